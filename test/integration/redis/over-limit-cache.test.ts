import type { CounterStore, LimitCheck } from '../../../src/store/counter-store';
import { OverLimitCacheStore } from '../../../src/store/over-limit-cache-store';
import type { RedisStore } from '../../../src/store/redis/redis-store';
import { systemClock } from '../../../src/util/clock';
import { type RedisServer, startRedisServer } from '../../support/redis-server';
import { availableStore, scriptCalls, singleOptions, uniquePrefix } from './helpers';

/** A flood from one client against a token endpoint: 1,000 requests, 5 allowed per day (no window boundary inside the test). */
const FLOOD = 1_000;

describe('over-limit cache on a real redis-server', () => {
  let server: RedisServer;
  let redis: RedisStore;

  beforeAll(async () => {
    server = await startRedisServer();
    redis = await availableStore(singleOptions(server));
  }, 30_000);

  afterAll(async () => {
    await redis?.close();
    await server?.stop();
  });

  async function flood(store: CounterStore, algorithm: LimitCheck['algorithm']): Promise<{ decisions: boolean[]; calls: number }> {
    const key = `${uniquePrefix()}token:client_id_abc`;
    const before = await scriptCalls([server.port]);
    const decisions: boolean[] = [];
    for (let i = 0; i < FLOOD; i++) {
      const [outcome] = await store.decide(
        [{ key, algorithm, limit: 5, windowMs: 86_400_000, hits: 1, enforced: true }],
        { chargeRejectedHits: false },
      );
      decisions.push(outcome!.admitted);
    }
    return { decisions, calls: (await scriptCalls([server.port])) - before };
  }

  for (const algorithm of ['sliding_window', 'fixed_window', 'token_bucket'] as const) {
    it(`${algorithm}: after the first rejection the flood costs Redis nothing, with unchanged decisions`, async () => {
      const without = await flood(redis, algorithm);
      const cached = new OverLimitCacheStore(redis, { clock: systemClock, maxBytes: 1 << 20, maxEntries: 0 });
      const withCache = await flood(cached, algorithm);

      expect(withCache.decisions).toEqual(without.decisions);
      expect(without.decisions.filter(Boolean)).toHaveLength(5);
      expect(without.calls).toBeGreaterThanOrEqual(FLOOD);
      // 5 admitted + the first rejection; "a handful" leaves room for a boundary crossing.
      expect(withCache.calls).toBeLessThanOrEqual(10);
      process.stdout.write(`${algorithm}: script calls without cache ${without.calls}, with cache ${withCache.calls}\n`);
    });
  }
});
