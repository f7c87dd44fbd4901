import { Redis } from 'ioredis';
import type { AlgorithmName, DescriptorEntry, LimitSpec } from '../src/config/types';
import { counterKey } from '../src/limiter/counter-key';
import type { LimitCheck } from '../src/store/counter-store';
import { ManualClock } from '../src/util/clock';
import { availableStore, singleOptions } from '../test/integration/redis/helpers';
import { startRedisServer } from '../test/support/redis-server';

/**
 * `npm run bench:redis-cpu`: Redis CPU per decision of the bench's 4-descriptor OAuth2 request
 * (per client, per client and user, per user — minute windows — and per route and scope — a
 * second window), as sluice sends it: through RedisStore, with the calls of one event-loop turn
 * batched into one script call (REDIS_CPU_IN_FLIGHT calls per turn, 32 by default).
 *
 * Server time only: `usec` of EVALSHA from `INFO commandstats`, divided by the decisions made, so
 * client, network and machine load stay out of it. "Full state": identities are hit for more than
 * a window before measuring, so every sliding_window counter holds all of its 21 sub-windows (its
 * most expensive case), and every fixed_window counter exists.
 */

const IN_FLIGHT = Number(process.env.REDIS_CPU_IN_FLIGHT ?? 32);
const IDENTITIES = 50;
/** Simulated ms between turns: 70 s of warm-up fills every sub-window of a minute window. */
const STEP_MS = 25;
const WARMUP_TURNS = 3_000;
const MEASURED_TURNS = 1_000;

function limit(algorithm: AlgorithmName, windowMs: number): LimitSpec {
  return { requestsPerUnit: 1_000_000_000, unit: windowMs === 1_000 ? 'SECOND' : 'MINUTE', unitMultiplier: 1, algorithm, windowMs };
}

function checks(algorithm: AlgorithmName, identity: number): LimitCheck[] {
  const client = `client-${identity % 10}`;
  const user = `user-${identity}`;
  const shapes: [DescriptorEntry[], number][] = [
    [[{ key: 'client_id', value: client }], 60_000],
    [[{ key: 'client_id', value: client }, { key: 'user_id', value: user }], 60_000],
    [[{ key: 'user_id', value: user }], 60_000],
    [[{ key: 'route', value: 'orders-read' }, { key: 'scope', value: 'orders:read' }], 1_000],
  ];
  return shapes.map(([entries, windowMs]) => {
    const spec = limit(algorithm, windowMs);
    return { key: counterKey('', 'bench', entries, spec), algorithm, limit: spec.requestsPerUnit, windowMs, hits: 1, enforced: true };
  });
}

async function scriptUsec(redis: Redis): Promise<{ calls: number; usec: number }> {
  const info = await redis.info('commandstats');
  let calls = 0;
  let usec = 0;
  for (const m of info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+),usec=(\d+)/gm)) {
    calls += Number(m[1]);
    usec += Number(m[2]);
  }
  return { calls, usec };
}

async function main(): Promise<void> {
  const server = await startRedisServer();
  const inspect = new Redis({ host: server.host, port: server.port });
  const lines = [
    `Redis CPU per 4-descriptor decision (${IN_FLIGHT} calls per script call, full state; EVALSHA usec from INFO commandstats)`,
    '',
    '| algorithm | decisions | script calls | µs per script call | µs per decision |',
    '|---|---|---|---|---|',
  ];
  try {
    for (const algorithm of ['sliding_window', 'fixed_window', 'token_bucket'] as const) {
      const clock = new ManualClock(1_800_000_000_000);
      const store = await availableStore(singleOptions(server), clock);
      let identity = 0;
      const turn = async (): Promise<void> => {
        clock.advance(STEP_MS);
        await Promise.all(Array.from({ length: IN_FLIGHT }, () => store.decide(checks(algorithm, identity++ % IDENTITIES), { chargeRejectedHits: false })));
      };
      for (let i = 0; i < WARMUP_TURNS; i++) await turn();
      await inspect.config('RESETSTAT');
      for (let i = 0; i < MEASURED_TURNS; i++) await turn();
      const { calls, usec } = await scriptUsec(inspect);
      const decisions = MEASURED_TURNS * IN_FLIGHT;
      lines.push(`| ${algorithm} | ${decisions} | ${calls} | ${(usec / Math.max(1, calls)).toFixed(1)} | ${(usec / decisions).toFixed(2)} |`);
      await store.close();
    }
  } finally {
    inspect.disconnect();
    await server.stop();
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:redis-cpu failed: ${String(err)}\n`);
  process.exitCode = 1;
});
