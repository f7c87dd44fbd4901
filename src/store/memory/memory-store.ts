import type { Clock } from '../../util/clock';
import { ALGORITHMS } from '../../limiter/algorithms/registry';
import type { Evaluation } from '../../limiter/algorithms/algorithm';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../counter-store';
import { CounterTable, type CounterStanding } from './counter-table';
import { defaultMemoryStoreBytes } from './memory-budget';

export interface MemoryStoreOptions {
  /** How often expired counters are reclaimed. */
  readonly sweepIntervalMs?: number;
  /** At most this many counters are examined per sweep tick, so a huge store never stalls the loop. */
  readonly sweepBatch?: number;
  /** MEMORY_STORE_MAX_BYTES: estimated bytes the counters may take; undefined or 0: a share of the heap limit. */
  readonly maxBytes?: number;
  /** Told about every eviction with the hits it forgave (metrics). */
  readonly onEvict?: (forgivenHits: number) => void;
  /** Candidates drawn per eviction. */
  readonly evictionSamples?: number;
  /** Random numbers in [0, 1) for eviction sampling (tests inject a seeded one). */
  readonly random?: () => number;
}

/** How full the store is, for metrics. */
export interface MemoryStoreStats {
  readonly counters: number;
  readonly bytes: number;
  readonly maxBytes: number;
}

/**
 * The embedded store: counters in compact per-algorithm columns (counter-table.ts), decided with
 * the same algorithm functions the Lua scripts mirror. A request is decided inside one synchronous
 * call, so on Node's single thread no other request interleaves between reading and charging: that
 * is what makes it atomic.
 *
 * Memory is bounded twice: every counter carries the instant after which it can no longer affect
 * a decision (a background sweep and every lookup drop expired ones), and the table holds at most
 * `maxBytes` (estimated), evicting the counters whose loss forgives the fewest hits beyond it.
 */
export class MemoryStore implements CounterStore {
  private readonly table: CounterTable;
  private readonly timer: NodeJS.Timeout;
  private readonly sweepBatch: number;

  constructor(
    private readonly clock: Clock,
    options: MemoryStoreOptions = {},
  ) {
    this.sweepBatch = options.sweepBatch ?? 10_000;
    const maxBytes = options.maxBytes !== undefined && options.maxBytes > 0 ? options.maxBytes : defaultMemoryStoreBytes();
    this.table = new CounterTable({
      maxBytes,
      ...(options.onEvict !== undefined && { onEvict: options.onEvict }),
      ...(options.evictionSamples !== undefined && { evictionSamples: options.evictionSamples }),
      ...(options.random !== undefined && { random: options.random }),
    });
    this.timer = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 1000);
    this.timer.unref();
  }

  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    return Promise.resolve(this.decideNow(checks, options));
  }

  /** The synchronous core of `decide`, also used by the local fallback limiter. */
  decideNow(checks: readonly LimitCheck[], options: DecideOptions): LimitOutcome[] {
    // Every call passes here: plain loops over arrays sized up front, no Map or closure per call.
    const now = this.clock.nowMs();
    const { table } = this;
    const charging = options.chargeRejectedHits;
    const n = checks.length;
    // Each key hashed once, for its read, its write and its mark.
    const hashes = new Array<number>(n);
    for (let i = 0; i < n; i++) hashes[i] = table.hash(checks[i]!.key);
    // Charges are staged so that two checks on one counter in the same request see each other,
    // and so that nothing is written when the request is rejected. `counter[i]`: the first check
    // on check i's counter; `stagedBy[c]`: the last check that staged a charge on counter c (-1:
    // none yet); `stagedOrder`: the counters in the order of their first charge.
    const counter = sameCounters(checks, hashes);
    const stagedBy = new Array<number>(n).fill(-1);
    const stagedOrder: number[] = [];
    const evaluations = new Array<Evaluation<unknown>>(n);
    let admitted = true;
    for (let i = 0; i < n; i++) {
      const check = checks[i]!;
      const c = counter[i]!;
      const prior = stagedBy[c]!;
      const state = prior >= 0 ? evaluations[prior]!.next : table.read(check.key, now, hashes[i]);
      const evaluation = ALGORITHMS[check.algorithm].evaluate(state, check, now, charging);
      evaluations[i] = evaluation;
      if (charging || evaluation.admitted) {
        if (prior < 0) stagedOrder.push(c);
        stagedBy[c] = i;
      } else if (check.enforced) admitted = false;
    }

    const outcomes = new Array<LimitOutcome>(n);
    if (!admitted) {
      // Nothing is charged, but the counters that rejected are at their limit: keep them last to go.
      for (let i = 0; i < n; i++) {
        const e = evaluations[i]!;
        outcomes[i] = e.uncharged;
        if (!e.admitted) table.mark(checks[i]!.key, standing(checks[i]!, e.uncharged), hashes[i]);
      }
      return outcomes;
    }
    for (let i = 0; i < n; i++) {
      const e = evaluations[i]!;
      outcomes[i] = charging || e.admitted ? e.charged : e.uncharged;
    }
    for (const c of stagedOrder) {
      const s = stagedBy[c]!;
      const check = checks[s]!;
      const e = evaluations[s]!;
      table.write(check.key, check.algorithm, e.next, e.nextExpiresAtMs, standing(check, e.charged), hashes[s]);
    }
    if (!charging) {
      for (let i = 0; i < n; i++) {
        const e = evaluations[i]!;
        if (!e.admitted) table.mark(checks[i]!.key, standing(checks[i]!, e.uncharged), hashes[i]);
      }
    }
    if (table.overBudget) table.makeRoom(now, new Set(stagedOrder.map((c) => checks[c]!.key)));
    return outcomes;
  }

  /** Number of counters held (expired ones not yet swept included). */
  size(): number {
    return this.table.count;
  }

  stats(): MemoryStoreStats {
    return { counters: this.table.count, bytes: this.table.bytes, maxBytes: this.table.maxBytes };
  }

  close(): Promise<void> {
    clearInterval(this.timer);
    this.table.clear();
    return Promise.resolve();
  }

  /** Reclaims expired counters, resuming where the previous tick stopped. */
  sweep(): void {
    this.table.sweep(this.clock.nowMs(), this.sweepBatch);
  }
}

/** Larger requests find their repeated counters through a Map rather than by comparing every pair. */
const SCAN_CHECKS = 16;

/** For each check, the index of the first check on the same counter (its own when it is the first). */
function sameCounters(checks: readonly LimitCheck[], hashes: readonly number[]): number[] {
  const n = checks.length;
  const counter = new Array<number>(n);
  if (n > SCAN_CHECKS) {
    const firstOf = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const key = checks[i]!.key;
      const first = firstOf.get(key);
      if (first === undefined) firstOf.set(key, i);
      counter[i] = first ?? i;
    }
    return counter;
  }
  for (let i = 0; i < n; i++) {
    let first = i;
    const h = hashes[i]!;
    const key = checks[i]!.key;
    for (let j = 0; j < i; j++) {
      if (hashes[j] === h && checks[j]!.key === key) {
        first = counter[j]!;
        break;
      }
    }
    counter[i] = first;
  }
  return counter;
}

/**
 * What losing a counter would forgive after `outcome`: the hits it counts (its capacity less the
 * whole hits left), and whether it is at or over its limit.
 */
function standing(check: LimitCheck, outcome: LimitOutcome): CounterStanding {
  const capacity = check.algorithm === 'token_bucket' ? (check.limit === 0 ? 0 : (check.burst ?? check.limit)) : check.limit;
  return { hits: Math.max(0, capacity - outcome.remaining), protect: !outcome.admitted || outcome.remaining === 0 };
}
