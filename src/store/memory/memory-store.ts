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

interface Staged {
  /** The key's hash in the table. */
  hash: number;
  state: unknown;
  expiresAtMs: number;
  /** The check that staged it last, and its evaluation: they say what the counter's loss would forgive. */
  check: LimitCheck;
  evaluation: Evaluation<unknown>;
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
    const now = this.clock.nowMs();
    // Charges are staged so that two checks on one counter in the same request see each other,
    // and so that nothing is written when the request is rejected.
    const staged = new Map<string, Staged>();
    // Each key hashed once, for its read, its write and its mark.
    const hashes = checks.map((check) => this.table.hash(check.key));
    const evaluations = checks.map((check, i) => {
      const algorithm = ALGORITHMS[check.algorithm];
      const prior = staged.get(check.key);
      const state = prior !== undefined ? prior.state : this.table.read(check.key, now, hashes[i]);
      const evaluation = algorithm.evaluate(state, check, now, options.chargeRejectedHits);
      if (options.chargeRejectedHits || evaluation.admitted) {
        staged.set(check.key, { hash: hashes[i]!, state: evaluation.next, expiresAtMs: evaluation.nextExpiresAtMs, check, evaluation });
      }
      return evaluation;
    });

    const admitted =
      options.chargeRejectedHits || evaluations.every((e, i) => e.admitted || !checks[i]!.enforced);
    if (!admitted) {
      // Nothing is charged, but the counters that rejected are at their limit: keep them last to go.
      checks.forEach((check, i) => {
        const e = evaluations[i]!;
        if (!e.admitted) this.table.mark(check.key, standing(check, e.uncharged), hashes[i]);
      });
      return evaluations.map((e) => e.uncharged);
    }
    const outcomes = evaluations.map((e) => (options.chargeRejectedHits || e.admitted ? e.charged : e.uncharged));
    for (const [key, s] of staged) {
      this.table.write(key, s.check.algorithm, s.state, s.expiresAtMs, standing(s.check, s.evaluation.charged), s.hash);
    }
    checks.forEach((check, i) => {
      const e = evaluations[i]!;
      if (!options.chargeRejectedHits && !e.admitted) this.table.mark(check.key, standing(check, e.uncharged), hashes[i]);
    });
    this.table.makeRoom(now, staged);
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

/**
 * What losing a counter would forgive after `outcome`: the hits it counts (its capacity less the
 * whole hits left), and whether it is at or over its limit.
 */
function standing(check: LimitCheck, outcome: LimitOutcome): CounterStanding {
  const capacity = check.algorithm === 'token_bucket' ? (check.limit === 0 ? 0 : (check.burst ?? check.limit)) : check.limit;
  return { hits: Math.max(0, capacity - outcome.remaining), protect: !outcome.admitted || outcome.remaining === 0 };
}
