import { Redis } from 'ioredis';
import type { AlgorithmName, LimitSpec } from '../../src/config/types';
import { counterKey } from '../../src/limiter/counter-key';
import type { CounterStore, LimitCheck } from '../../src/store/counter-store';
import { ManualClock } from '../../src/util/clock';
import { availableStore, singleOptions } from '../../test/integration/redis/helpers';
import { startRedisServer } from '../../test/support/redis-server';

/**
 * Redis cost of each algorithm, measured on a redis-server this process starts (no persistence,
 * loopback): server CPU per decision from `INFO commandstats` (usec_per_call of EVALSHA — server
 * time only, so client and network noise stay out) and memory per identity from `MEMORY USAGE`
 * and from the `used_memory` growth over many identities (which adds the keyspace and expiry
 * dictionaries).
 *
 * Every decision goes through RedisStore, so it runs exactly the production script. Time is a
 * ManualClock moved evenly through each round of requests (deterministic state sizes); one extra
 * run reads Redis TIME instead, as production does, to show what that adds.
 */

export interface CpuRow {
  readonly label: string;
  /** Checks per script call. */
  readonly checks: number;
  readonly decisions: number;
  /** Fraction of decisions admitted. */
  readonly admitted: number;
  readonly usecPerCall: number;
}

export interface MemoryRow {
  readonly label: string;
  /** MEMORY USAGE <key> SAMPLES 0 of one identity's counter. */
  readonly keyBytes: number;
  /** used_memory growth divided by the identities (key, value, expiry, dictionary slots). */
  readonly amortisedBytes: number;
  readonly identities: number;
}

export interface RedisCost {
  readonly redisVersion: string;
  readonly keyLength: number;
  readonly cpu: readonly CpuRow[];
  readonly memory: readonly MemoryRow[];
}

const WINDOW_MS = 60_000;
const LIMIT = 100;
const IN_FLIGHT = 50;

function limitOf(algorithm: AlgorithmName, requestsPerUnit = LIMIT, windowMs = WINDOW_MS): LimitSpec {
  return { requestsPerUnit, unit: 'MINUTE', unitMultiplier: windowMs / 60_000, algorithm, windowMs };
}

/** A realistic counter key (~90 characters): an OAuth2 client and user. */
function keyOf(identity: number, limit: LimitSpec): string {
  const client = `client-${String(identity % 1000).padStart(5, '0')}`;
  const user = `user-${String(identity).padStart(6, '0')}`;
  return counterKey('', 'oauth2', [{ key: 'client_id', value: client }, { key: 'user_id', value: user }], limit);
}

/** usec per script call since the last CONFIG RESETSTAT (EVALSHA plus any EVAL after NOSCRIPT). */
async function scriptUsecPerCall(client: Redis): Promise<{ calls: number; usecPerCall: number }> {
  const info = await client.info('commandstats');
  let calls = 0;
  let usec = 0;
  for (const name of ['evalsha', 'eval']) {
    const match = new RegExp(`^cmdstat_${name}:calls=(\\d+),usec=(\\d+)`, 'm').exec(info);
    if (match) {
      calls += Number(match[1]);
      usec += Number(match[2]);
    }
  }
  return { calls, usecPerCall: calls === 0 ? 0 : usec / calls };
}

async function usedMemory(client: Redis): Promise<number> {
  const info = await client.info('memory');
  return Number(/^used_memory:(\d+)/m.exec(info)![1]);
}

/** A workload: `rounds` requests for each of `identities`, one round every `roundMs`. */
interface Load {
  readonly identities: number;
  readonly rounds: number;
  readonly roundMs: number;
}

/**
 * Decides a load round-robin (so requests in flight together never share a counter and the order
 * is the same every run), `IN_FLIGHT` at a time, the clock moving evenly through each round.
 */
async function drive(
  store: CounterStore,
  clock: ManualClock | undefined,
  load: Load,
  checksOf: (identity: number) => LimitCheck[],
): Promise<{ decisions: number; admitted: number }> {
  let admitted = 0;
  let decisions = 0;
  const { identities, rounds, roundMs } = load;
  const total = identities * rounds;
  for (let start = 0; start < total; start += IN_FLIGHT) {
    const batch: Promise<readonly { admitted: boolean }[]>[] = [];
    for (let i = start; i < Math.min(total, start + IN_FLIGHT); i++) {
      // decide reads the clock synchronously (and floors it to whole ms).
      clock?.advance(roundMs / identities);
      batch.push(store.decide(checksOf(i % identities), { chargeRejectedHits: false }));
    }
    for (const outcomes of await Promise.all(batch)) {
      decisions++;
      if (outcomes.every((o) => o.admitted)) admitted++;
    }
  }
  return { decisions, admitted };
}

const check = (identity: number, limit: LimitSpec): LimitCheck => ({
  key: keyOf(identity, limit),
  algorithm: limit.algorithm,
  limit: limit.requestsPerUnit,
  windowMs: limit.windowMs,
  hits: 1,
  enforced: true,
});

const ALGORITHMS: readonly AlgorithmName[] = ['fixed_window', 'sliding_window', 'token_bucket', 'sliding_log'];

/**
 * Light: 2,000 identities × 10 requests a second apart (all admitted; logs of 10). Heavy: 500 ×
 * 150 requests 100 ms apart (the first 100 admitted, then a third of the rest; logs of 100).
 */
const LIGHT: Load = { identities: 2_000, rounds: 10, roundMs: 1_000 };
const HEAVY: Load = { identities: 500, rounds: 150, roundMs: 100 };
const FULL_LOG: Load = { identities: 500, rounds: 128, roundMs: 100 };
/** One hit a second for 62 s: a window then reaches into 21 sub-windows of 3 s, the most it can. */
const FULL_SUB_WINDOWS: Load = { identities: 500, rounds: 62, roundMs: 1_000 };

export async function measureRedisCost(): Promise<RedisCost> {
  const server = await startRedisServer();
  const client = new Redis({ host: server.host, port: server.port });
  try {
    const info = await client.info('server');
    const redisVersion = /^redis_version:(\S+)/m.exec(info)![1]!;
    const cpu: CpuRow[] = [];
    const memory: MemoryRow[] = [];
    /** MEMORY USAGE of identity 0's first counter, as the last run left it. */
    let lastKeyBytes = 0;

    const run = async (
      label: string,
      load: Load,
      checksOf: (identity: number) => LimitCheck[],
      useRedisTime = false,
    ): Promise<{ keysBytes: number }> => {
      await client.flushall();
      const clock = useRedisTime ? undefined : new ManualClock(28_000_000 * WINDOW_MS);
      const store = await availableStore(singleOptions(server, { replyTimeoutMs: 5_000 }), clock);
      try {
        // Warm up: the script is loaded, connections are open.
        await store.decide(checksOf(load.identities + 1), { chargeRejectedHits: false });
        await client.del(...checksOf(load.identities + 1).map((c) => c.key));
        await client.config('RESETSTAT');
        const { decisions, admitted } = await drive(store, clock, load, checksOf);
        const stats = await scriptUsecPerCall(client);
        cpu.push({ label, checks: checksOf(0).length, decisions, admitted: admitted / decisions, usecPerCall: stats.usecPerCall });
        // What the counters hold: used_memory with them, minus without them (FLUSHALL is synchronous
        // here), so connection buffers and caches that come and go between runs stay out.
        const withKeys = await usedMemory(client);
        const sample = await client.call('MEMORY', 'USAGE', checksOf(0)[0]!.key, 'SAMPLES', '0');
        await client.flushall('SYNC');
        const without = await usedMemory(client);
        lastKeyBytes = Number(sample);
        return { keysBytes: withKeys - without };
      } finally {
        await store.close();
      }
    };

    for (const algorithm of ALGORITHMS) {
      const limit = limitOf(algorithm);
      const light = await run(`${algorithm}, light`, LIGHT, (id) => [check(id, limit)]);
      // Light traffic is 10 hits 1 s apart: 10 log entries, 4 sub-windows of 3 s.
      const label = { sliding_log: 'sliding_log, 10 entries', sliding_window: 'sliding_window, 4 sub-windows' }[algorithm as string] ?? algorithm;
      memory.push({ label, keyBytes: lastKeyBytes, amortisedBytes: light.keysBytes / LIGHT.identities, identities: LIGHT.identities });

      const heavy = await run(`${algorithm}, heavy`, HEAVY, (id) => [check(id, limit)]);
      if (algorithm === 'sliding_log') {
        memory.push({
          label: 'sliding_log, 100 entries',
          keyBytes: lastKeyBytes,
          amortisedBytes: heavy.keysBytes / HEAVY.identities,
          identities: HEAVY.identities,
        });
      }
    }

    // The largest log the config allows: 128 hits at 128 instants.
    {
      const limit = limitOf('sliding_log', 128);
      const full = await run('sliding_log, 128 entries', FULL_LOG, (id) => [check(id, limit)]);
      memory.push({
        label: 'sliding_log, 128 entries',
        keyBytes: lastKeyBytes,
        amortisedBytes: full.keysBytes / FULL_LOG.identities,
        identities: FULL_LOG.identities,
      });
    }

    // The largest sliding window state: 21 sub-windows.
    {
      const full = await run('sliding_window, 21 sub-windows', FULL_SUB_WINDOWS, (id) => [check(id, limitOf('sliding_window'))]);
      memory.push({
        label: 'sliding_window, 21 sub-windows',
        keyBytes: lastKeyBytes,
        amortisedBytes: full.keysBytes / FULL_SUB_WINDOWS.identities,
        identities: FULL_SUB_WINDOWS.identities,
      });
    }

    // Production reads Redis TIME instead of an injected now.
    await run('sliding_window, light, Redis TIME', LIGHT, (id) => [check(id, limitOf('sliding_window'))], true);

    // A rate_limits node: a per-second bucket and a per-day window, decided in one call.
    const burst = limitOf('token_bucket', 10, 1_000);
    const daily = limitOf('sliding_window', 10_000, 86_400_000);
    await run('token_bucket + sliding_window (one rate_limits node), light', LIGHT, (id) => [check(id, burst), check(id, daily)]);

    return { redisVersion, keyLength: keyOf(0, limitOf('sliding_window')).length, cpu, memory };
  } finally {
    client.disconnect();
    await server.stop();
  }
}
