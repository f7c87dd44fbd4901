import { getHeapStatistics } from 'node:v8';
import { SluiceMetrics } from '../../../src/metrics/metrics';
import type { LimitCheck, LimitOutcome } from '../../../src/store/counter-store';
import { defaultMemoryStoreBytes } from '../../../src/store/memory/memory-budget';
import { MemoryStore, type MemoryStoreOptions } from '../../../src/store/memory/memory-store';
import { ManualClock } from '../../../src/util/clock';
import { Random } from '../../../bench/accuracy/prng';

const T0 = 1_000 * 3_600_000;
const HOUR = 3_600_000;
const ALL_OR_NOTHING = { chargeRejectedHits: false };

/** The accuracy bench's seeded generator (mulberry32): the same draws on every run. */
function seeded(seed: number): () => number {
  const random = new Random(seed);
  return () => random.next();
}

/** Keys of one length, so every counter costs the store the same bytes. */
const key = (name: string): string => `sluice:v3:{tag}:fixed_window:3600000:api:user_id=${name.padStart(8, '0')}`;
const check = (name: string, hits: number, windowMs = HOUR): LimitCheck => ({
  key: key(name),
  algorithm: 'fixed_window',
  // "over" has a small limit: over it, it counts fewer hits than the ordinary ones, and must still outlive them.
  limit: name === 'over' ? 10 : 100,
  windowMs,
  hits,
  enforced: true,
});

/** Five counters: expired (90 hits), 1, 50 and 99 hits of 100, and one over its limit of 10. */
function populate(store: MemoryStore, clock: ManualClock): void {
  store.decideNow([check('expired', 90, 1_000)], ALL_OR_NOTHING);
  store.decideNow([check('light', 1)], ALL_OR_NOTHING);
  store.decideNow([check('half', 50)], ALL_OR_NOTHING);
  store.decideNow([check('heavy', 99)], ALL_OR_NOTHING);
  store.decideNow([check('over', 10)], ALL_OR_NOTHING);
  expect(store.decideNow([check('over', 1)], ALL_OR_NOTHING)[0]!.admitted).toBe(false);
  clock.set(T0 + 1_000);
}

/** A store holding exactly what `populate` leaves (measured on a twin with room to spare). */
function fullStore(options: MemoryStoreOptions = {}): { store: MemoryStore; clock: ManualClock } {
  const twinClock = new ManualClock(T0);
  const twin = new MemoryStore(twinClock, { maxBytes: 1e9 });
  populate(twin, twinClock);
  const maxBytes = twin.stats().bytes;
  void twin.close();
  const clock = new ManualClock(T0);
  const store = new MemoryStore(clock, { maxBytes, evictionSamples: 64, random: seeded(7), ...options });
  populate(store, clock);
  return { store, clock };
}

describe('MemoryStore eviction', () => {
  it('evicts the cheapest first: expired, then fewest hits counted; over-limit counters last', () => {
    const forgiven: number[] = [];
    const { store } = fullStore({ onEvict: (hits) => forgiven.push(hits) });
    expect(store.size()).toBe(5);
    // Each newcomer uses its whole limit (so it is protected too) and costs the bytes of one counter.
    for (let i = 0; i < 4; i++) {
      store.decideNow([check(`new${i}`, 100)], ALL_OR_NOTHING);
      expect(store.stats().bytes).toBeLessThanOrEqual(store.stats().maxBytes);
    }
    expect(forgiven).toEqual([0, 1, 50, 99]);
    // The over-limit identity is still over: only ordinary counters were evicted.
    const over = store.decideNow([check('over', 1)], ALL_OR_NOTHING)[0]!;
    expect(over).toMatchObject({ admitted: false, remaining: 0 });
    // Once every counter is protected, the cheapest of those goes: "over", with its 10 hits.
    store.decideNow([check('new4', 100)], ALL_OR_NOTHING);
    expect(forgiven).toEqual([0, 1, 50, 99, 10]);
    expect(store.size()).toBe(5);
    void store.close();
  });

  it('keeps a counter that just rejected a request (nothing charged) as protected', () => {
    const forgiven: number[] = [];
    const { store } = fullStore({ onEvict: (hits) => forgiven.push(hits) });
    // heavy (99/100) asks for 2: rejected, nothing charged, but it is now at its limit.
    expect(store.decideNow([check('heavy', 2)], ALL_OR_NOTHING)[0]!.admitted).toBe(false);
    for (let i = 0; i < 3; i++) store.decideNow([check(`new${i}`, 100)], ALL_OR_NOTHING);
    // expired, light and half went; heavy (99 hits, now protected) outlived them, and so did over.
    expect(forgiven).toEqual([0, 1, 50]);
    const heavy: LimitOutcome = store.decideNow([check('heavy', 1)], ALL_OR_NOTHING)[0]!;
    expect(heavy).toMatchObject({ admitted: true, remaining: 0 });
    void store.close();
  });

  it('under a flood of fresh identities evicts the flood itself: a limited identity stays limited, a busy one keeps its count', () => {
    const clock = new ManualClock(T0);
    const forgiven: number[] = [];
    // Room for about 200 counters.
    const store = new MemoryStore(clock, { maxBytes: 48_000, random: seeded(11), onEvict: (h) => forgiven.push(h) });
    store.decideNow([check('over', 10)], ALL_OR_NOTHING);
    store.decideNow([check('busy', 60)], ALL_OR_NOTHING);
    for (let i = 0; i < 20_000; i++) {
      store.decideNow([check(`flood${i}`, 1)], ALL_OR_NOTHING);
      if (i % 1_000 === 0) expect(store.decideNow([check('over', 1)], ALL_OR_NOTHING)[0]!.admitted).toBe(false);
    }
    expect(store.stats().bytes).toBeLessThanOrEqual(48_000);
    expect(forgiven.length).toBeGreaterThan(19_000);
    // Every eviction was one of the flood's own single-hit counters.
    expect(forgiven.every((h) => h === 1)).toBe(true);
    expect(store.decideNow([check('over', 1)], ALL_OR_NOTHING)[0]).toMatchObject({ admitted: false, remaining: 0 });
    expect(store.decideNow([check('busy', 1)], ALL_OR_NOTHING)[0]).toMatchObject({ admitted: true, remaining: 39 });
    void store.close();
  });
});

describe('MemoryStore default budget', () => {
  it('is half the V8 heap limit, so counters alone can never exhaust the heap', () => {
    expect(defaultMemoryStoreBytes(200 * 2 ** 20)).toBe(100 * 2 ** 20);
    const store = new MemoryStore(new ManualClock(T0));
    expect(store.stats().maxBytes).toBe(Math.floor(getHeapStatistics().heap_size_limit / 2));
    void store.close();
  });
});

describe('MemoryStore metrics', () => {
  it('publishes evictions, the hits they held, and the fill level', async () => {
    const metrics = new SluiceMetrics({ nearLimitRatio: 0.8, detailedMetricMaxValues: 10, chargeRejectedHits: false, processMetrics: false });
    const { store } = fullStore({ onEvict: (hits) => metrics.memoryStoreEvicted(hits) });
    metrics.memoryStoreStats(() => store.stats());
    store.decideNow([check('new0', 100)], ALL_OR_NOTHING);
    store.decideNow([check('new1', 100)], ALL_OR_NOTHING);
    const text = await metrics.registry.metrics();
    expect(text).toContain('sluice_memory_store_evictions_total 2');
    // The expired counter forgave nothing, "light" its 1 hit.
    expect(text).toContain('sluice_memory_store_evicted_hits_total 1');
    expect(text).toContain('sluice_memory_store_counters 5');
    expect(text).toContain(`sluice_memory_store_bytes ${store.stats().bytes}`);
    expect(text).toContain(`sluice_memory_store_max_bytes ${store.stats().maxBytes}`);
    void store.close();
  });
});
