import type { AlgorithmName, LimitSpec } from '../src/config/types';
import { counterKey } from '../src/limiter/counter-key';
import type { LimitCheck } from '../src/store/counter-store';
import { MemoryStore } from '../src/store/memory/memory-store';
import { ManualClock } from '../src/util/clock';

/**
 * `npm run bench:memory`: bytes per live counter in the memory store, per algorithm, measured as
 * V8 sees them: heap used plus array buffers (typed-array columns live outside the heap), after
 * full garbage collections, before and after filling a store with MEMORY_BYTES_COUNTERS counters
 * (200,000 by default), divided by that count. Keys are real counter keys of a one-entry
 * descriptor (`counterKey('', 'api', [user_id=u1000000…], limit)`, 66–68 characters), the limit
 * hourly, as an identity flood would make them.
 *
 * Rows: fixed_window and token_bucket with one hit; sliding_window with 1 sub-window and with all
 * 21 (one hit in each, 21 sub-windows apart); sliding_log with 1 hit and 10 hits a second apart.
 * "estimate" is what the store itself counts against MEMORY_STORE_MAX_BYTES (it must not be
 * below "measured", or the budget would let the heap fill past it).
 *
 * Needs --expose-gc (the npm script passes it).
 */

const COUNTERS = Number(process.env.MEMORY_BYTES_COUNTERS ?? 200_000);
const HOUR = 3_600_000;
const T0 = 1_800_000_000_000;

interface Row {
  readonly name: string;
  readonly algorithm: AlgorithmName;
  /** One hit per counter at each of these offsets from T0 (ms). */
  readonly offsets: readonly number[];
}

const SUB_MS = HOUR / 20;
/** Late in the first sub-window, then one hit at the start of each of the next 20: 21 sub-windows live at the end. */
const FULL_SLIDING = [SUB_MS - 1_000, ...Array.from({ length: 20 }, (_, k) => (k + 1) * SUB_MS)];

const ROWS: readonly Row[] = [
  { name: 'fixed_window, 1 hit', algorithm: 'fixed_window', offsets: [0] },
  { name: 'token_bucket, 1 hit', algorithm: 'token_bucket', offsets: [0] },
  { name: 'sliding_window, 1 sub-window', algorithm: 'sliding_window', offsets: [0] },
  { name: 'sliding_window, 21 sub-windows', algorithm: 'sliding_window', offsets: FULL_SLIDING },
  { name: 'sliding_log, 1 hit', algorithm: 'sliding_log', offsets: [0] },
  { name: 'sliding_log, 10 hits', algorithm: 'sliding_log', offsets: Array.from({ length: 10 }, (_, k) => k * 1_000) },
];

function gc(): void {
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) collect();
}

function used(): number {
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

function measure(row: Row): { measured: number; estimate: number | undefined; keyLength: number } {
  const spec: LimitSpec = { requestsPerUnit: 1_000, unit: 'HOUR', unitMultiplier: 1, algorithm: row.algorithm, windowMs: HOUR };
  const clock = new ManualClock(T0);
  const before = used();
  const store = new MemoryStore(clock, { maxBytes: 8 * 2 ** 30, sweepIntervalMs: 10 * HOUR });
  let keyLength = 0;
  let lastCheck: LimitCheck | undefined;
  for (const offset of row.offsets) {
    clock.set(T0 + offset);
    for (let i = 0; i < COUNTERS; i++) {
      // Built afresh every time, as a request builds it.
      const key = counterKey('', 'api', [{ key: 'user_id', value: `u${1_000_000 + i}` }], spec);
      keyLength = key.length;
      const check: LimitCheck = { key, algorithm: row.algorithm, limit: 1_000, windowMs: HOUR, hits: 1, enforced: true };
      store.decideNow([check], { chargeRejectedHits: false });
      lastCheck = { ...check, hits: 0 };
    }
  }
  const after = used();
  if (store.size() !== COUNTERS) throw new Error(`expected ${COUNTERS} counters, store holds ${store.size()}`);
  // Every counter holds what the row says (the last one is read back as a check).
  const last = store.decideNow([lastCheck!], { chargeRejectedHits: false })[0]!;
  if (last.remaining !== 1_000 - row.offsets.length) throw new Error(`${row.name}: expected ${1_000 - row.offsets.length} left, got ${last.remaining}`);
  const stats = (store as { stats?: () => { bytes: number } }).stats?.();
  void store.close();
  return { measured: (after - before) / COUNTERS, estimate: stats === undefined ? undefined : stats.bytes / COUNTERS, keyLength };
}

function main(): void {
  console.log(`node ${process.version}, ${COUNTERS} counters per row`);
  console.log('| counter | key chars | bytes per counter (measured) | estimate (budget) |');
  console.log('| --- | --- | --- | --- |');
  for (const row of ROWS) {
    const r = measure(row);
    const estimate = r.estimate === undefined ? '—' : r.estimate.toFixed(0);
    console.log(`| ${row.name} | ${r.keyLength} | ${r.measured.toFixed(0)} | ${estimate} |`);
  }
}

main();
