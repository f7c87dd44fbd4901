import type { AlgorithmName } from '../../../src/config/types';
import type { LimitCheck } from '../../../src/store/counter-store';
import { keySlot } from '../../../src/store/redis/key-slot';
import type { RedisStore } from '../../../src/store/redis/redis-store';
import { type RedisCluster, type RedisServer, startRedisCluster, startRedisServer } from '../../support/redis-server';
import { availableStore, clusterOptions, fixedWindowState, inspector, singleOptions, uniquePrefix } from './helpers';

/**
 * Concurrency never over-admits: 1,000 decisions fired at once from two separate stores (two
 * connections, as two sluice instances would have) on a limit of 100 admit exactly 100. Time comes
 * from Redis TIME; the window is 30 days, so a run cannot straddle a boundary.
 */

const WINDOW = 30 * 24 * 3_600_000;
const LIMIT = 100;
const REQUESTS = 1_000;

let server: RedisServer;
let cluster: RedisCluster;

beforeAll(async () => {
  [server, cluster] = await Promise.all([startRedisServer(), startRedisCluster(3)]);
});

afterAll(async () => {
  await Promise.all([server?.stop(), cluster?.stop()]);
});

const check = (key: string, algorithm: AlgorithmName): LimitCheck => ({
  key,
  algorithm,
  limit: LIMIT,
  windowMs: WINDOW,
  hits: 1,
  enforced: true,
});

/** Fires `REQUESTS` decisions at once, alternating between the stores; returns how many were admitted. */
async function burst(stores: readonly RedisStore[], checks: readonly LimitCheck[]): Promise<number> {
  const outcomes = await Promise.all(
    Array.from({ length: REQUESTS }, (_, i) => stores[i % stores.length]!.decide(checks, { chargeRejectedHits: false })),
  );
  // A request is admitted when every check admits (a rejected one reports, per check, whether
  // that check alone would have admitted).
  return outcomes.filter((o) => o.every((c) => c.admitted)).length;
}

describe.each([
  ['single Redis', () => singleOptions(server)],
  ['Redis Cluster', () => clusterOptions(cluster)],
] as const)('concurrent decisions on %s', (_name, options) => {
  let stores: RedisStore[];

  beforeAll(async () => {
    stores = await Promise.all([availableStore(options()), availableStore(options())]);
  });

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  it.each<AlgorithmName>(['sliding_window', 'fixed_window'])('admit exactly the limit (%s)', async (algorithm) => {
    const key = `${uniquePrefix()}hot`;
    expect(await burst(stores, [check(key, algorithm)])).toBe(LIMIT);
    const outcome = await stores[0]!.decide([check(key, algorithm)], { chargeRejectedHits: false });
    expect(outcome[0]).toMatchObject({ admitted: false, remaining: 0 });
  });
});

describe('concurrent decisions spanning two cluster slots', () => {
  let stores: RedisStore[];

  beforeAll(async () => {
    stores = await Promise.all([availableStore(clusterOptions(cluster)), availableStore(clusterOptions(cluster))]);
  });

  afterAll(async () => {
    await Promise.all(stores.map((s) => s.close()));
  });

  it('never over-admit, and leave no charge of a rejected request behind', async () => {
    const prefix = uniquePrefix();
    const a = `${prefix}{a}`;
    let b = `${prefix}{b}`;
    for (let i = 0; keySlot(b) === keySlot(a); i++) b = `${prefix}{b${i}}`;
    const admitted = await burst(stores, [check(a, 'fixed_window'), check(b, 'fixed_window')]);
    // Reservations that meet a rejection in the other slot are refunded: a burst may briefly
    // under-admit, never over-admit.
    expect(admitted).toBeLessThanOrEqual(LIMIT);
    expect(admitted).toBeGreaterThanOrEqual(LIMIT * 0.8);
    // Every refund landed: each counter holds exactly the admitted requests.
    const redis = inspector(cluster);
    try {
      expect(Number((await fixedWindowState(redis, a))?.c)).toBe(admitted);
      expect(Number((await fixedWindowState(redis, b))?.c)).toBe(admitted);
    } finally {
      await redis.quit();
    }
  });
});
