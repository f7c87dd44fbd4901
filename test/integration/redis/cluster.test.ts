import type { Cluster } from 'ioredis';
import type { DescriptorEntry } from '../../../src/config/types';
import { StoreError } from '../../../src/errors';
import { counterKey } from '../../../src/limiter/counter-key';
import type { LimitCheck } from '../../../src/store/counter-store';
import { keySlot } from '../../../src/store/redis/key-slot';
import type { RedisStore } from '../../../src/store/redis/redis-store';
import { ManualClock } from '../../../src/util/clock';
import { type RedisCluster, startRedisCluster } from '../../support/redis-server';
import { availableStore, clusterOptions, fixedWindowState, inspector, scriptCalls, uniquePrefix } from './helpers';

/**
 * Redis Cluster specifics: slots computed like Redis does, one script call per slot, and
 * all-or-nothing across slots (charge per slot, refund on any rejection).
 */

const MINUTE = 60_000;
const T0 = 1_000 * MINUTE;
const ALL_OR_NOTHING = { chargeRejectedHits: false };

let cluster: RedisCluster;
let redis: Cluster;
let store: RedisStore;
let clock: ManualClock;
let prefix: string;

beforeAll(async () => {
  cluster = await startRedisCluster(3);
  redis = inspector(cluster) as Cluster;
  clock = new ManualClock(T0);
  store = await availableStore(clusterOptions(cluster), clock);
});

afterAll(async () => {
  await store?.close();
  await redis?.quit();
  await cluster?.stop();
});

beforeEach(() => {
  prefix = uniquePrefix();
  clock.set(T0);
});

const ports = (): number[] => cluster.nodes.map((n) => n.port);

const entries = (...pairs: Array<[string, string]>): DescriptorEntry[] => pairs.map(([key, value]) => ({ key, value }));

const check = (pairs: Array<[string, string]>, limitCount: number, hits = 1, extra: Partial<LimitCheck> = {}): LimitCheck => ({
  key: counterKey(prefix, 'oauth2', entries(...pairs), {
    requestsPerUnit: limitCount,
    unit: 'MINUTE',
    unitMultiplier: 1,
    algorithm: 'fixed_window',
    windowMs: MINUTE,
  }),
  algorithm: 'fixed_window',
  limit: limitCount,
  windowMs: MINUTE,
  hits,
  enforced: true,
  ...extra,
});

/** Two first entries whose keys land in different slots (and, here, on different nodes). */
function twoSlots(): [Array<[string, string]>, Array<[string, string]>] {
  const a: Array<[string, string]> = [['client_id', 'alpha']];
  const slotA = keySlot(check(a, 1).key);
  for (let i = 0; ; i++) {
    const b: Array<[string, string]> = [['client_id', `beta-${i}`]];
    if (keySlot(check(b, 1).key) !== slotA) return [a, b];
  }
}

describe('Redis Cluster', () => {
  it('computes the same slot as CLUSTER KEYSLOT', async () => {
    const keys = [
      'plain',
      '{tag}rest',
      'a{}b',
      '{}{x}',
      'a{b',
      'a}b{c}',
      'x{y}z{w}',
      'é{ü}',
      check([['client_id', '{evil}']], 1).key,
      check([['client_id', 'app-1'], ['user_id', 'u\n1']], 1).key,
    ];
    for (const key of keys) expect([key, keySlot(key)]).toEqual([key, await redis.cluster('KEYSLOT', key)]);
  });

  it('decides the limits of one client (same first entry) in one script call', async () => {
    const client: [string, string] = ['client_id', 'app-1'];
    const checks = [check([client], 10), check([client, ['user_id', 'u-1']], 5), check([client, ['scope', 'orders.read']], 3)];
    const before = await scriptCalls(ports());
    const outcomes = await store.decide(checks, ALL_OR_NOTHING);
    expect(await scriptCalls(ports())).toBe(before + 1);
    expect(outcomes.map((o) => o.remaining)).toEqual([9, 4, 2]);
  });

  it('rejects a one-client request in its one script call, charging nothing and reporting what each check would leave', async () => {
    const client: [string, string] = ['client_id', 'app-2'];
    const wide = check([client], 5);
    const narrow = check([client, ['user_id', 'u-2']], 1);
    expect(keySlot(wide.key)).toBe(keySlot(narrow.key));
    await store.decide([check([client], 5, 2)], ALL_OR_NOTHING);
    await store.decide([narrow], ALL_OR_NOTHING);
    const before = await scriptCalls(ports());
    const outcomes = await store.decide([wide, narrow], ALL_OR_NOTHING);
    expect(await scriptCalls(ports())).toBe(before + 1);
    expect(outcomes).toEqual([
      { admitted: true, remaining: 3, resetMs: MINUTE },
      { admitted: false, remaining: 0, resetMs: MINUTE },
    ]);
    expect(await fixedWindowState(redis, wide.key)).toEqual({ w: '1000', c: '2' });
    expect(await fixedWindowState(redis, narrow.key)).toEqual({ w: '1000', c: '1' });
  });

  it('names the slot when a one-slot call fails', async () => {
    const client: [string, string] = ['client_id', 'app-3'];
    const broken = check([client, ['user_id', 'u-3']], 5);
    await redis.hset(broken.key, 'not', 'a string');
    const failure = store.decide([check([client], 5), broken], ALL_OR_NOTHING);
    await expect(failure).rejects.toMatchObject({
      transient: false,
      message: expect.stringMatching(new RegExp(`^redis decide \\(2 checks, slot ${keySlot(broken.key)}\\) failed: .*WRONGTYPE`)),
    });
  });

  it('decides a request spanning two slots with one call per slot when both admit', async () => {
    const [a, b] = twoSlots();
    const before = await scriptCalls(ports());
    const outcomes = await store.decide([check(a, 2), check(b, 2)], ALL_OR_NOTHING);
    expect(await scriptCalls(ports())).toBe(before + 2);
    expect(outcomes).toEqual([
      { admitted: true, remaining: 1, resetMs: MINUTE },
      { admitted: true, remaining: 1, resetMs: MINUTE },
    ]);
  });

  it('leaves the admitting slot unchanged when another slot rejects the request', async () => {
    const [a, b] = twoSlots();
    await store.decide([check(a, 5, 2)], ALL_OR_NOTHING);
    await store.decide([check(b, 1)], ALL_OR_NOTHING);
    const stateBefore = await fixedWindowState(redis, check(a, 5).key);
    expect(stateBefore).toEqual({ w: '1000', c: '2' });

    const outcomes = await store.decide([check(a, 5), check(b, 1)], ALL_OR_NOTHING);
    expect(outcomes).toEqual([
      // What a would leave if the request had charged nothing: it charged nothing.
      { admitted: true, remaining: 3, resetMs: MINUTE },
      { admitted: false, remaining: 0, resetMs: MINUTE },
    ]);
    expect(await fixedWindowState(redis, check(a, 5).key)).toEqual(stateBefore);
    expect(await fixedWindowState(redis, check(b, 1).key)).toEqual({ w: '1000', c: '1' });
  });

  it('does not block on a shadow rejection in another slot, and charges only the enforced check', async () => {
    const [a, b] = twoSlots();
    await store.decide([check(b, 1)], ALL_OR_NOTHING);
    const outcomes = await store.decide([check(a, 5), check(b, 1, 1, { enforced: false })], ALL_OR_NOTHING);
    expect(outcomes.map((o) => o.admitted)).toEqual([true, false]);
    expect(await fixedWindowState(redis, check(a, 5).key)).toEqual({ w: '1000', c: '1' });
    expect(await fixedWindowState(redis, check(b, 1).key)).toEqual({ w: '1000', c: '1' });
  });

  it('with chargeRejectedHits charges every slot and refunds nothing', async () => {
    const [a, b] = twoSlots();
    await store.decide([check(b, 1)], { chargeRejectedHits: true });
    const outcomes = await store.decide([check(a, 5), check(b, 1)], { chargeRejectedHits: true });
    expect(outcomes.map((o) => [o.admitted, o.remaining])).toEqual([
      [true, 4],
      [false, 0],
    ]);
    expect(await fixedWindowState(redis, check(a, 5).key)).toEqual({ w: '1000', c: '1' });
    expect(await fixedWindowState(redis, check(b, 1).key)).toEqual({ w: '1000', c: '2' });
  });

  it('refunds the slots that charged when another slot fails, and reports the failure', async () => {
    const [a, b] = twoSlots();
    await store.decide([check(a, 5, 2)], ALL_OR_NOTHING);
    // A key of the wrong type makes the script fail in b's slot (WRONGTYPE): a permanent error.
    await redis.hset(check(b, 1).key, 'not', 'a string');
    const failure = store.decide([check(a, 5), check(b, 1)], ALL_OR_NOTHING);
    await expect(failure).rejects.toThrow(StoreError);
    await expect(failure).rejects.toMatchObject({ transient: false, message: expect.stringMatching(/^redis decide \(1 check, slot \d+\) failed: .*WRONGTYPE/) });
    expect(await fixedWindowState(redis, check(a, 5).key)).toEqual({ w: '1000', c: '2' });
  });

  it('never answers CROSSSLOT, whatever the mix of keys', async () => {
    for (let request = 0; request < 20; request++) {
      const checks = [
        ...Array.from({ length: 8 }, (_, i) => check([['client_id', `c-${request}-${i}`]], 100)),
        check([['client_id', `c-${request}-0`], ['user_id', 'u']], 100),
        check([['client_id', `c-${request}-0`], ['user_id', 'u']], 100),
      ];
      const outcomes = await store.decide(checks, ALL_OR_NOTHING);
      expect(outcomes.every((o) => o.admitted)).toBe(true);
      // The two checks on one counter saw each other.
      expect(outcomes[9]!.remaining).toBe(98);
    }
  });

  it('takes time from each shard (Redis TIME) when no clock is given', async () => {
    const timeStore = await availableStore(clusterOptions(cluster));
    try {
      const [a, b] = twoSlots();
      const before = Date.now();
      const outcomes = await timeStore.decide([check(a, 2), check(b, 2)], ALL_OR_NOTHING);
      const untilWindowEnd = MINUTE - (before % MINUTE);
      for (const outcome of outcomes) {
        expect(outcome.admitted).toBe(true);
        expect(outcome.resetMs).toBeGreaterThan(0);
        expect(outcome.resetMs).toBeLessThanOrEqual(MINUTE);
        // Within the test's own runtime (and shard clock skew, nil here) of the local estimate.
        expect(Math.abs(outcome.resetMs - untilWindowEnd)).toBeLessThan(2_000);
      }
    } finally {
      await timeStore.close();
    }
  });
});
