import { MemoryStore } from '../../../src/store/memory/memory-store';
import { ManualClock } from '../../../src/util/clock';
import { describeCounterStore } from '../../conformance/counter-store.suite';

describeCounterStore('memory', (clock) => new MemoryStore(clock));

describe('MemoryStore memory bound', () => {
  it('reclaims counters once their windows can no longer matter', async () => {
    const clock = new ManualClock(0);
    const store = new MemoryStore(clock, { sweepIntervalMs: 60_000, sweepBatch: 100 });
    const checks = Array.from({ length: 250 }, (_, i) => ({
      key: `k${i}`,
      algorithm: 'sliding_window' as const,
      limit: 10,
      windowMs: 1_000,
      hits: 1,
      enforced: true,
    }));
    await store.decide(checks, { chargeRejectedHits: false });
    expect(store.size()).toBe(250);
    // A sliding window's hits matter until they leave the window: one window after the newest.
    clock.set(999);
    store.sweep();
    expect(store.size()).toBe(250);
    clock.set(1_000);
    store.sweep();
    store.sweep();
    store.sweep();
    expect(store.size()).toBe(0);
    await store.close();
  });
});
