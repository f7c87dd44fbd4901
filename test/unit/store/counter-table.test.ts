import type { AlgorithmName } from '../../../src/config/types';
import { CounterTable } from '../../../src/store/memory/counter-table';
import { Random } from '../../../bench/accuracy/prng';

/** The accuracy bench's seeded generator (mulberry32): the same draws on every run. */
function seeded(seed: number): () => number {
  const random = new Random(seed);
  return () => random.next();
}

const ALGORITHMS: AlgorithmName[] = ['fixed_window', 'token_bucket', 'sliding_window', 'sliding_log'];

function stateFor(algorithm: AlgorithmName, n: number): unknown {
  switch (algorithm) {
    case 'fixed_window':
      return { window: n, count: n * 0.5 };
    case 'token_bucket':
      return { t: 1.7e12 + n, d: n * 3, l: 7 };
    case 'sliding_window':
      // Flat (hits, first, last) per sub-window, as SlidingWindowState holds them.
      return Array.from({ length: 1 + (n % 21) }, (_, i) => [i + 1, 1.7e12 + i * 1000 + 0.25, 1.7e12 + i * 1000 + n]).flat();
    case 'sliding_log':
      return Array.from({ length: 1 + (n % 5) }, (_, i) => 1.7e12 + i * 3 + n);
  }
}

describe('CounterTable bookkeeping', () => {
  it('keeps every key findable through index resizes, column growth and sweeps', () => {
    const table = new CounterTable({ maxBytes: 1e9 });
    const now = 1.7e12;
    for (let i = 0; i < 20_000; i++) {
      const algorithm = ALGORITHMS[i % 4]!;
      // Half expire after 1 s, half after an hour.
      table.write(`key:${i}`, algorithm, stateFor(algorithm, i), now + (i % 2 === 0 ? 1_000 : 3_600_000), { hits: 1, protect: i % 3 === 0 });
      if (i % 2_500 === 0) expect(table.verify()).toEqual([]);
    }
    expect(table.count).toBe(20_000);
    expect(table.verify()).toEqual([]);
    for (let i = 0; i < 10; i++) table.sweep(now + 2_000, 10_000);
    expect(table.count).toBe(10_000);
    expect(table.verify()).toEqual([]);
    for (let i = 1; i < 20_000; i += 2) expect(table.read(`key:${i}`, now + 2_000)).toEqual(stateFor(ALGORITHMS[i % 4]!, i));
  });


  it.each([1, 2, 3])('keeps index, columns and ranges consistent through random writes, marks, expiry, sweeps and evictions (seed %i)', (seed) => {
    const random = seeded(seed);
    const table = new CounterTable({ maxBytes: 200_000, random: seeded(seed + 100) });
    // What each key last stored, to read back exactly (while it is still held).
    const stored = new Map<string, { algorithm: AlgorithmName; state: unknown }>();
    let now = 1.7e12;
    for (let op = 0; op < 30_000; op++) {
      now += Math.floor(random() * 50);
      const key = `k:${Math.floor(random() * 3_000)}`;
      const algorithm = ALGORITHMS[Number(key.slice(2)) % 4]!;
      const roll = random();
      if (roll < 0.6) {
        const state = stateFor(algorithm, op);
        table.write(key, algorithm, state, now + Math.floor(random() * 20_000), { hits: Math.floor(random() * 100), protect: random() < 0.2 });
        stored.set(key, { algorithm, state });
        table.makeRoom(now, new Set([key]));
      } else if (roll < 0.7) {
        table.mark(key, { hits: 100, protect: random() < 0.5 });
      } else if (roll < 0.99) {
        const read = table.read(key, now);
        // Held: exactly what was written. Gone (expired or evicted): undefined.
        if (read !== undefined) expect(read).toEqual(stored.get(key)!.state);
      } else {
        table.sweep(now, 500);
      }
      if (op % 1_000 === 0) {
        expect(table.verify()).toEqual([]);
        expect(table.bytes).toBeLessThanOrEqual(200_000);
      }
    }
    expect(table.verify()).toEqual([]);
    expect(table.count).toBeGreaterThan(100);
  });

  it.each([1, 2, 3])('writes a key where it is now after other keys moved it (few keys, many moves: the found-ids cache; seed %i)', (seed) => {
    const random = seeded(seed);
    const table = new CounterTable({ maxBytes: 1e9 });
    const stored = new Map<string, unknown>();
    let now = 1.7e12;
    for (let op = 0; op < 20_000; op++) {
      now += Math.floor(random() * 20);
      // Twelve keys of one algorithm share a slab, so an expiry or a change of range moves them often.
      const key = `k:${Math.floor(random() * 12)}`;
      const roll = random();
      if (roll < 0.5) {
        const state = stateFor('sliding_window', op);
        table.write(key, 'sliding_window', state, now + Math.floor(random() * 200), { hits: 1, protect: random() < 0.5 });
        stored.set(key, state);
      } else if (roll < 0.6) {
        table.mark(key, { hits: 2, protect: random() < 0.5 });
      } else {
        const read = table.read(key, now);
        if (read !== undefined) expect(read).toEqual(stored.get(key));
      }
      if (op % 500 === 0) expect(table.verify()).toEqual([]);
    }
    expect(table.verify()).toEqual([]);
  });

  it.each(ALGORITHMS)('fills its budget without a mass eviction, and then evicts one counter per new one (%s)', (algorithm) => {
    // Before, the columns grew by an eighth when the store first filled, and that growth was paid
    // for at once: about 27,000 evictions in one call at a 100 MB budget.
    let evictions = 0;
    const table = new CounterTable({ maxBytes: 4_000_000, onEvict: () => evictions++, random: seeded(3) });
    const now = 1.7e12;
    let mostAtOnce = 0;
    for (let i = 0; i < 60_000; i++) {
      const key = `sluice:v3:{tag}:${algorithm}:3600000:api:user_id=u${1_000_000 + i}`;
      const before = evictions;
      table.write(key, algorithm, stateFor(algorithm, 1), now + 3_600_000, { hits: 1, protect: false });
      table.makeRoom(now, new Set([key]));
      mostAtOnce = Math.max(mostAtOnce, evictions - before);
      expect(table.bytes).toBeLessThanOrEqual(4_000_000);
    }
    expect(evictions).toBeGreaterThan(10_000);
    // At most a growth step's columns (256 positions) at once.
    expect(mostAtOnce).toBeLessThanOrEqual(256);
    // Full: one out for each one in.
    const settled = evictions;
    for (let i = 60_000; i < 61_000; i++) {
      const key = `sluice:v3:{tag}:${algorithm}:3600000:api:user_id=u${1_000_000 + i}`;
      table.write(key, algorithm, stateFor(algorithm, 1), now + 3_600_000, { hits: 1, protect: false });
      table.makeRoom(now, new Set([key]));
    }
    expect(evictions - settled).toBe(1_000);
    expect(table.verify()).toEqual([]);
  });
});
