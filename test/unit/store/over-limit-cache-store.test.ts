import type { AlgorithmName } from '../../../src/config/types';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../../../src/store/counter-store';
import { MemoryStore } from '../../../src/store/memory/memory-store';
import { OverLimitCacheStore, entryBytes, isLocallyCached } from '../../../src/store/over-limit-cache-store';
import { ManualClock } from '../../../src/util/clock';

/** Counts the calls that reach the wrapped store. */
class CountingStore implements CounterStore {
  calls = 0;
  constructor(readonly inner: CounterStore) {}
  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    this.calls++;
    return this.inner.decide(checks, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const NO_CHARGE: DecideOptions = { chargeRejectedHits: false };
const CHARGE: DecideOptions = { chargeRejectedHits: true };

function check(key: string, overrides: Partial<LimitCheck> = {}): LimitCheck {
  return { key, algorithm: 'fixed_window', limit: 3, windowMs: 1_000, hits: 1, enforced: true, ...overrides };
}

function setup(maxEntries = 100, maxBytes = 0) {
  const clock = new ManualClock(10_000);
  const counting = new CountingStore(new MemoryStore(clock));
  const hits: number[] = [];
  const sizes: number[] = [];
  const store = new OverLimitCacheStore(counting, {
    clock,
    maxEntries,
    maxBytes,
    recorder: { overLimitCacheHit: () => hits.push(1), overLimitCacheEntries: (n) => sizes.push(n) },
  });
  return { clock, counting, store, hits, sizes };
}

/** A request is admitted when every enforced check admits (what the service decides). */
function requestAdmitted(checks: readonly LimitCheck[], outcomes: readonly LimitOutcome[]): boolean {
  return outcomes.every((o, i) => o.admitted || !checks[i]!.enforced);
}

describe('OverLimitCacheStore', () => {
  it('answers a key known to be over locally until its exact retry time', async () => {
    const { clock, counting, store, hits } = setup();
    for (let i = 0; i < 3; i++) expect((await store.decide([check('a')], NO_CHARGE))[0]!.admitted).toBe(true);
    const rejected = (await store.decide([check('a')], NO_CHARGE))[0]!;
    expect(rejected).toEqual({ admitted: false, remaining: 0, resetMs: 1_000 });
    expect(counting.calls).toBe(4);

    for (let i = 0; i < 100; i++) {
      const [outcome] = await store.decide([check('a')], NO_CHARGE);
      expect(outcome!.admitted).toBe(false);
      expect(isLocallyCached(outcome!)).toBe(true);
    }
    expect(counting.calls).toBe(4);
    expect(hits).toHaveLength(100);

    clock.advance(999);
    expect((await store.decide([check('a')], NO_CHARGE))[0]).toMatchObject({ admitted: false, resetMs: 1 });
    expect(counting.calls).toBe(4);
    clock.advance(1);
    expect((await store.decide([check('a')], NO_CHARGE))[0]!.admitted).toBe(true);
    expect(counting.calls).toBe(5);
    await store.close();
  });

  it('answers locally only checks needing at least the hits that were rejected', async () => {
    const { clock, counting, store } = setup();
    const sliding = (hits: number): LimitCheck => check('s', { algorithm: 'sliding_window', limit: 10, hits });
    expect((await store.decide([sliding(8)], NO_CHARGE))[0]!.admitted).toBe(true);
    clock.advance(500);
    // 5 hits do not fit until the 8 have left the window; 2 fit now.
    expect((await store.decide([sliding(5)], NO_CHARGE))[0]!.admitted).toBe(false);
    const calls = counting.calls;
    expect((await store.decide([sliding(6)], NO_CHARGE))[0]!.admitted).toBe(false);
    expect(counting.calls).toBe(calls);
    expect((await store.decide([sliding(2)], NO_CHARGE))[0]!.admitted).toBe(true);
    expect(counting.calls).toBe(calls + 1);
    await store.close();
  });

  it('treats a check-only call as one hit and never caches across different limits', async () => {
    const { counting, store } = setup();
    await store.decide([check('a', { hits: 3 })], NO_CHARGE);
    expect((await store.decide([check('a', { hits: 0 })], NO_CHARGE))[0]!.admitted).toBe(false);
    const calls = counting.calls;
    expect((await store.decide([check('a', { hits: 0 })], NO_CHARGE))[0]!.admitted).toBe(false);
    expect(counting.calls).toBe(calls);
    // Same key, another limit (a reload): asked of the store.
    expect((await store.decide([check('a', { limit: 5 })], NO_CHARGE))[0]!.admitted).toBe(true);
    expect(counting.calls).toBe(calls + 1);
    await store.close();
  });

  it('short-circuits only when every check of the request is cached; otherwise the store decides it whole', async () => {
    const { counting, store } = setup();
    await store.decide([check('client', { hits: 3 })], NO_CHARGE);
    await store.decide([check('client')], NO_CHARGE); // learnt
    const calls = counting.calls;
    const outcomes = await store.decide([check('client'), check('global', { limit: 100 })], NO_CHARGE);
    expect(outcomes.map((o) => o.admitted)).toEqual([false, true]);
    expect(counting.calls).toBe(calls + 1);
    // The rejected request charged nothing to the other counter.
    expect((await store.decide([check('global', { limit: 100, hits: 0 })], NO_CHARGE))[0]!.remaining).toBe(100);
    await store.close();
  });

  it('reports shadow checks answered locally as rejected, without blocking anything itself', async () => {
    const { counting, store } = setup();
    const shadow = check('sh', { enforced: false });
    for (let i = 0; i < 4; i++) await store.decide([shadow], NO_CHARGE);
    const calls = counting.calls;
    const [outcome] = await store.decide([shadow], NO_CHARGE);
    expect(outcome!.admitted).toBe(false);
    expect(counting.calls).toBe(calls);
    expect(requestAdmitted([shadow], [outcome!])).toBe(true);
    await store.close();
  });

  it('with CHARGE_REJECTED_HITS caches fixed windows only', async () => {
    const { counting, store } = setup();
    for (let i = 0; i < 5; i++) await store.decide([check('f'), check('t', { algorithm: 'token_bucket' })], CHARGE);
    let calls = counting.calls;
    await store.decide([check('f', { hits: 0 })], CHARGE);
    expect(counting.calls).toBe(calls);
    calls = counting.calls;
    await store.decide([check('t', { algorithm: 'token_bucket' })], CHARGE);
    expect(counting.calls).toBe(calls + 1);
    await store.close();
  });

  it('stays within its entry and byte budgets, evicting the least recently used', async () => {
    const byEntries = setup(3);
    for (let i = 0; i < 10; i++) await byEntries.store.decide([check(`k${i}`, { hits: 4 })], NO_CHARGE);
    expect(byEntries.store.size()).toBe(3);
    expect(byEntries.sizes.at(-1)).toBe(3);
    await byEntries.store.close();

    const budget = entryBytes('k0') * 4;
    const byBytes = setup(0, budget);
    for (let i = 0; i < 10; i++) await byBytes.store.decide([check(`k${i}`, { hits: 4 })], NO_CHARGE);
    expect(byBytes.store.size()).toBe(4);
    expect(byBytes.store.sizeInBytes()).toBeLessThanOrEqual(budget);
    // k6 is used, then a new key evicts k7 (the oldest unused), not k6.
    await byBytes.store.decide([check('k6', { hits: 4 })], NO_CHARGE);
    await byBytes.store.decide([check('k10', { hits: 4 })], NO_CHARGE);
    const calls = byBytes.counting.calls;
    await byBytes.store.decide([check('k6', { hits: 4 })], NO_CHARGE);
    expect(byBytes.counting.calls).toBe(calls);
    await byBytes.store.decide([check('k7', { hits: 4 })], NO_CHARGE);
    expect(byBytes.counting.calls).toBe(calls + 1);
    await byBytes.store.close();
  });

  it('drops expired entries when read', async () => {
    const { clock, store } = setup();
    await store.decide([check('a', { hits: 4 })], NO_CHARGE);
    expect(store.size()).toBe(1);
    clock.advance(1_000);
    await store.decide([check('b', { hits: 0 })], NO_CHARGE);
    await store.decide([check('a', { hits: 1 })], NO_CHARGE);
    expect(store.size()).toBe(0);
    await store.close();
  });

  describe('differential: identical decisions to a plain MemoryStore on the same trace', () => {
    const ALGORITHMS: AlgorithmName[] = ['fixed_window', 'sliding_window', 'sliding_log', 'token_bucket'];

    /** Deterministic PRNG (mulberry32). */
    function rng(seed: number): () => number {
      let a = seed;
      return () => {
        a = (a + 0x6d2b79f5) | 0;
        let t = Math.imul(a ^ (a >>> 15), 1 | a);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
    }

    for (const options of [NO_CHARGE, CHARGE]) {
      for (const seed of [1, 2, 3, 4, 5, 6]) {
        it(`seed ${seed}, chargeRejectedHits ${options.chargeRejectedHits}`, async () => {
          const random = rng(seed);
          const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
          const clock = new ManualClock(1_000_000 + Math.floor(random() * 10_000));
          const plain = new MemoryStore(clock);
          const counting = new CountingStore(new MemoryStore(clock));
          const cached = new OverLimitCacheStore(counting, { clock, maxEntries: 4, maxBytes: 0 });
          // A few counters, each with a fixed (algorithm, limit, window), plus a rare reload of one.
          const counters = Array.from({ length: 6 }, (_, i) => ({
            key: `c${i}`,
            algorithm: pick(ALGORITHMS),
            limit: 1 + Math.floor(random() * 5),
            windowMs: pick([100, 250, 1_000]),
            burst: random() < 0.3 ? 1 + Math.floor(random() * 8) : undefined,
          }));
          let local = 0;
          for (let step = 0; step < 4_000; step++) {
            clock.advance(pick([0, 0, 0, 1, 3, 10, 37, 120]));
            if (random() < 0.002) {
              const c = pick(counters);
              c.limit = 1 + Math.floor(random() * 5);
            }
            const n = random() < 0.7 ? 1 : 2 + Math.floor(random() * 2);
            const checks: LimitCheck[] = Array.from({ length: n }, () => {
              const c = pick(counters);
              return {
                key: c.key,
                algorithm: c.algorithm,
                limit: c.limit,
                windowMs: c.windowMs,
                ...(c.burst !== undefined && { burst: c.burst }),
                hits: pick([0, 1, 1, 1, 2, 3, 7]),
                enforced: random() < 0.85,
              };
            });
            const before = counting.calls;
            const expected = await plain.decide(checks, options);
            const actual = await cached.decide(checks, options);
            if (counting.calls === before) local++;
            const context = { step, checks, expected, actual };
            expect({ ...context, actual: actual.map((o) => o.admitted) }).toEqual({ ...context, actual: expected.map((o) => o.admitted) });
            expect(requestAdmitted(checks, actual)).toBe(requestAdmitted(checks, expected));
          }
          // The cache did answer a share of the trace by itself.
          expect(local).toBeGreaterThan(50);
          await Promise.all([plain.close(), cached.close()]);
        });
      }
    }
  });
});
