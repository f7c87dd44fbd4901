import { type RedisServer, redisCommand, startRedisServer } from '../../support/redis-server';
import { type StallLog, watchStalls } from '../../support/stall-log';
import { type StartedSluice, startTestSluice } from '../../support/start-sluice';
import {
  BIG_LIMIT,
  type CallRecord,
  FAULT_CONFIG,
  LOCAL_LIMIT,
  POLICIES,
  call,
  matchesDegraded,
  netLatencyMs,
  percentile,
  sleep,
  startLoad,
  summary,
  waitForHealth,
} from './fault-harness';

/**
 * The whole app, in this process, against a redis-server this file starts, while the server is
 * killed, frozen and restarted under load. Every call must be answered within 100 ms (Envoy's
 * default timeout is 20 ms; the margin absorbs a busy test machine), per the rule's
 * `store_failure` policy while Redis is away, and from Redis again once it is back.
 *
 * How "within 100 ms" is measured: the client runs in this same process, so a stall of the
 * process (a major GC late in a long jest run, or the OS running other jest workers and
 * redis-servers on the 2 cores) delays the answer's sending and its reading alike, and a call
 * sluice answered at once looks late. A StallLog records those stalls, and a call's latency less
 * the stalls during it (netLatencyMs) is what must stay under ANSWER_WITHIN_MS, with no call
 * excused. This still catches the fault the bound is for, sluice waiting on a dead or frozen
 * store: a wait on a socket or a timer leaves the event loop free, so it is never recorded as a
 * stall and counts in full. (Timing calls inside sluice, or from a client in another process,
 * would not help: sluice runs in this process, and a stall while it waits for Redis' reply lands
 * in its own answer time as well.)
 *
 * The client's own deadline is only a coarse bound (CLIENT_DEADLINE_MS), far above the one
 * asserted: a call the client gave up on has no answer to check against the policy nor a known
 * latency, and one that sluice answered (and charged) but the client gave up on after a stall
 * would make the exact counts below wrong. Sluice sees that deadline too; with REDIS_TIMEOUT well
 * below it, it only matters if sluice waits on the store past REDIS_TIMEOUT, which then shows as
 * a call far over ANSWER_WITHIN_MS. (Giving up on the store before a short gRPC deadline has its
 * own tests in deadline.test.ts.)
 */

const ANSWER_WITHIN_MS = 100;
const CLIENT_DEADLINE_MS = 1_000;
/** Short, so recovery after a fault shows within a test's time. */
const COOLDOWN = '200ms';
/**
 * Above the 10 ms default: this machine also runs the load generator and other test files, and a
 * store timeout here would be a test artefact, not a fault. Still well inside ANSWER_WITHIN_MS.
 */
const STORE_TIMEOUT = '40ms';

jest.setTimeout(60_000);

let redis: RedisServer | undefined;
let sluice: StartedSluice | undefined;
let stalls: StallLog;

beforeEach(() => {
  stalls = watchStalls();
});

async function startBoth(env: NodeJS.ProcessEnv = {}, redisArgs: string[] = []): Promise<{ redis: RedisServer; sluice: StartedSluice }> {
  redis = await startRedisServer({ args: redisArgs });
  sluice = await startTestSluice({
    files: FAULT_CONFIG,
    env: { REDIS_URL: redis.url, STORE_BREAKER_COOLDOWN: COOLDOWN, REDIS_TIMEOUT: STORE_TIMEOUT, ...env },
  });
  await waitForHealth(sluice.client, 'SERVING', 10_000);
  return { redis, sluice };
}

afterEach(async () => {
  stalls.stop();
  // Resume a frozen server first, or killing it could wait on nothing.
  try {
    redis?.kill('SIGCONT');
  } catch {
    // Already gone.
  }
  await sluice?.stop();
  await redis?.stop();
  sluice = undefined;
  redis = undefined;
});

/** A call's latency less this process's stalls during it (see the comment at the top). */
function net(record: CallRecord): number {
  return netLatencyMs(record, stalls);
}

/**
 * No call may fail in an unexpected way, whatever Redis does, and every call must be answered
 * within ANSWER_WITHIN_MS of the time this process was free to answer it (the comment at the top
 * says why that is the measure, and why it still fails on a wait for the store). A call the
 * client gave up on is late: it took CLIENT_DEADLINE_MS.
 */
function expectAllAnsweredInTime(records: readonly CallRecord[]): void {
  const odd = records.filter((r) => r.answer === 'OTHER');
  expect(odd.map((r) => r.details)).toEqual([]);
  const late = records
    .filter((r) => r.answer === 'DEADLINE_EXCEEDED' || net(r) >= ANSWER_WITHIN_MS)
    .map((r) => ({ policy: r.policy, answer: r.answer, details: r.details, ms: Math.round(r.latencyMs), netMs: Math.round(net(r)) }));
  expect({ late: late.length, first: late.slice(0, 5) }).toEqual({ late: 0, first: [] });
}

/** A call answered otherwise than its policy says while the store is away. */
function answeredWrongly(record: CallRecord): boolean {
  return !matchesDegraded(record);
}

/** The hits counted on Redis for `policy` and each worker id `<prefix>-<w>`, read with check-only calls. */
async function countedHits(s: StartedSluice, policy: (typeof POLICIES)[number], prefix: string, workers: number): Promise<number> {
  let counted = 0;
  for (let w = 0; w < workers; w++) {
    const response = await s.client.shouldRateLimit(
      {
        domain: 'faults',
        descriptors: [
          {
            entries: [
              { key: 'policy', value: policy },
              { key: 'id', value: `${prefix}-${w}` },
            ],
            hits_addend: { value: 0 },
          },
        ],
        hits_addend: 0,
      },
      { deadlineMs: 1_000 },
    );
    counted += BIG_LIMIT - response.statuses![0]!.limit_remaining!;
  }
  return counted;
}

/** Sends `n` calls for one fresh id, one after the other. */
async function sequence(s: StartedSluice, policy: (typeof POLICIES)[number], id: string, n: number): Promise<CallRecord[]> {
  const records: CallRecord[] = [];
  for (let i = 0; i < n; i++) records.push(await call(s.client, policy, id, CLIENT_DEADLINE_MS));
  return records;
}

describe('Redis killed (SIGKILL) mid-load', () => {
  it('answers every call within 100 ms, per each rule policy, without crashing', async () => {
    const { redis: server, sluice: app } = await startBoth();
    const load = startLoad(app.client, { policies: POLICIES, concurrency: 8, deadlineMs: CLIENT_DEADLINE_MS, idPrefix: 'kill' });
    await sleep(300);
    const killedAt = performance.now();
    server.kill('SIGKILL');
    await sleep(700);
    const records = await load.stop();

    expectAllAnsweredInTime(records);
    const before = records.filter((r) => r.startedAt + r.latencyMs < killedAt);
    // Redis was up: every non-local call admitted (huge limits), from Redis.
    expect(before.filter((r) => r.policy !== 'local').every((r) => r.answer === 'OK')).toBe(true);
    expect(before.length).toBeGreaterThan(20);
    // Started clearly after the kill: the policy answers, for every call.
    const after = records.filter((r) => r.startedAt > killedAt + 20);
    expect(after.length).toBeGreaterThan(50);
    const wrong = after.filter(answeredWrongly);
    expect({ wrong: wrong.length, summary: summary(after) }).toEqual({ wrong: 0, summary: summary(after) });

    // `local` is a real limiter, not a blanket answer: a fresh id gets exactly its limit.
    const local = await sequence(app, 'local', 'kill-fresh', LOCAL_LIMIT + 2);
    expect(local.map((r) => r.answer)).toEqual([...Array<string>(LOCAL_LIMIT).fill('OK'), 'OVER_LIMIT', 'OVER_LIMIT']);
    expect(await app.client.health('')).toBe('NOT_SERVING');
    expect(app.app.health.notReadyReasons()).toEqual(['store unavailable']);
  });

  it('costs no timeout per call once Redis is known to be gone', async () => {
    const { redis: server, sluice: app } = await startBoth();
    server.kill('SIGKILL');
    await waitForHealth(app.client, 'NOT_SERVING', 5_000);
    const records = await sequence(app, 'error', 'dead', 50);
    expect(records.every((r) => r.answer === 'UNAVAILABLE')).toBe(true);
    expect(records[0]!.details).toBe('14: store unavailable: not connected');
    // Far below REDIS_TIMEOUT per call: nothing waits on a dead store.
    expect(percentile(records, 50, net)).toBeLessThan(5);
  });
});

describe('Redis frozen (SIGSTOP)', () => {
  it('answers within 100 ms, fails fast once the breaker opens, and recovers on SIGCONT', async () => {
    const { redis: server, sluice: app } = await startBoth();
    const load = startLoad(app.client, { policies: POLICIES, concurrency: 8, deadlineMs: CLIENT_DEADLINE_MS, idPrefix: 'stop' });
    await sleep(200);
    const frozenAt = performance.now();
    server.kill('SIGSTOP');
    await sleep(1_200);
    const resumedAt = performance.now();
    server.kill('SIGCONT');
    const recoveredIn = await waitForHealth(app.client, 'SERVING', 10_000);
    await sleep(300);
    const records = await load.stop();

    expectAllAnsweredInTime(records);
    // While frozen: the policy answers (those in flight at the freeze may still get Redis' answer
    // if it came before; no call admitted by Redis can exist after the freeze).
    const frozen = records.filter((r) => r.startedAt > frozenAt + 5 && r.startedAt + r.latencyMs < resumedAt);
    const wrong = frozen.filter(answeredWrongly);
    expect({ wrong: wrong.length, summary: summary(frozen) }).toEqual({ wrong: 0, summary: summary(frozen) });

    // Only a handful of calls wait for the store timeout: those that open the breaker, and one
    // half-open probe per cooldown. The rest fail fast.
    const waited = frozen.filter((r) => r.details?.startsWith('14: store unavailable: timed out after') === true);
    const cooldowns = Math.ceil(1_200 / 200);
    expect(waited.length).toBeLessThanOrEqual(5 + 8 + cooldowns);
    const settled = frozen.filter((r) => r.startedAt > frozenAt + 100);
    expect(settled.length).toBeGreaterThan(100);
    // Failing fast costs a gRPC round trip on this busy machine (a few ms), far from the 40 ms
    // timeout. Latencies less this process's stalls, as for ANSWER_WITHIN_MS: a wait for the store
    // is never a stall, so each one still counts here in full.
    expect(percentile(settled, 50, net)).toBeLessThan(10);
    expect(settled.filter((r) => net(r) >= 40).length).toBeLessThanOrEqual(cooldowns + 8);

    // After SIGCONT and health SERVING: Redis decides again, every call.
    expect(recoveredIn).toBeLessThan(10_000);
    const healthyAt = resumedAt + recoveredIn;
    const back = records.filter((r) => r.startedAt > healthyAt + 20);
    expect(back.length).toBeGreaterThan(20);
    expect(back.filter((r) => r.policy !== 'local').every((r) => r.answer === 'OK')).toBe(true);

    // The scripts queued in the frozen server ran on SIGCONT, charging calls that had already been
    // answered UNAVAILABLE (they timed out). The Redis client still reads those late replies (its
    // own timeout is longer than REDIS_TIMEOUT on purpose) and the store takes the charges back:
    // the counter holds exactly the calls answered OK.
    const errorCalls = records.filter((r) => r.policy === 'error');
    const ok = errorCalls.filter((r) => r.answer === 'OK').length;
    expect(await countedHits(app, 'error', 'stop', 8)).toBe(ok);
  });
});

describe('Redis restarted on the same port', () => {
  it('recovers, and no call fails once Redis is up and health says so', async () => {
    const { redis: server, sluice: app } = await startBoth();
    const load = startLoad(app.client, { policies: ['error'], concurrency: 4, deadlineMs: CLIENT_DEADLINE_MS, idPrefix: 'restart' });
    await sleep(200);
    server.kill('SIGKILL');
    await sleep(300);
    await server.restart();
    const upIn = await waitForHealth(app.client, 'SERVING', 10_000);
    const healthyAt = performance.now();
    await sleep(500);
    // A script cache emptied under us (what a restart or failover does) must not fail a call.
    await redisCommand(server.port, ['SCRIPT', 'FLUSH']);
    await sleep(300);
    const records = await load.stop();

    expectAllAnsweredInTime(records);
    expect(upIn).toBeLessThan(10_000);
    const after = records.filter((r) => r.startedAt >= healthyAt);
    expect(after.length).toBeGreaterThan(50);
    expect(summary(after)).toEqual({ error: { OK: after.length } });
  });
});

describe('sluice started while Redis is down', () => {
  it('starts at once, reports NOT_SERVING, answers per policy, then serves once Redis is up', async () => {
    redis = await startRedisServer();
    const server = redis;
    server.kill('SIGKILL');
    const started = performance.now();
    sluice = await startTestSluice({
      files: FAULT_CONFIG,
      env: { REDIS_URL: `${server.host}:${server.port}`, STORE_BREAKER_COOLDOWN: COOLDOWN, REDIS_TIMEOUT: STORE_TIMEOUT },
    });
    const app = sluice;
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(await app.client.health('')).toBe('NOT_SERVING');
    for (const policy of POLICIES) {
      const record = await call(app.client, policy, 'down', CLIENT_DEADLINE_MS);
      expect({ policy, ok: matchesDegraded(record), latencyOk: net(record) < ANSWER_WITHIN_MS }).toEqual({
        policy,
        ok: true,
        latencyOk: true,
      });
    }

    await server.restart();
    await waitForHealth(app.client, 'SERVING', 10_000);
    const records = await sequence(app, 'error', 'up', 20);
    expect(records.every((r) => r.answer === 'OK')).toBe(true);
  });
});

describe('counts across a kill and restart', () => {
  it('neither loses nor doubles the hits of calls answered OK (error policy)', async () => {
    // Persist every write before it is acknowledged, so the counter survives the kill: whatever
    // Redis confirmed is still there after the restart.
    const { redis: server, sluice: app } = await startBoth({}, ['--appendonly', 'yes', '--appendfsync', 'always']);
    const load = startLoad(app.client, { policies: ['error'], concurrency: 6, deadlineMs: CLIENT_DEADLINE_MS, idPrefix: 'count', pauseMs: 1 });
    await sleep(400);
    server.kill('SIGKILL');
    await sleep(300);
    await server.restart();
    await waitForHealth(app.client, 'SERVING', 10_000);
    await sleep(400);
    const records = await load.stop();
    expectAllAnsweredInTime(records);

    const counted = await countedHits(app, 'error', 'count', 6);
    const ok = records.filter((r) => r.answer === 'OK').length;
    // Failed calls that reached Redis as it died (a reply lost with the connection) may or may not
    // have been applied; every other failure never reached it.
    const neverSent = /not connected|circuit breaker open|before the store was asked/;
    const ambiguous = records.filter((r) => r.answer === 'UNAVAILABLE' && !neverSent.test(r.details ?? '')).length;
    expect(ok).toBeGreaterThan(100);
    expect(counted).toBeGreaterThanOrEqual(ok);
    expect(counted).toBeLessThanOrEqual(ok + ambiguous);
  });
});
