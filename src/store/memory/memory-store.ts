import type { Clock } from '../../util/clock';
import { ALGORITHMS } from '../../limiter/algorithms/registry';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../counter-store';

interface StoredCounter {
  state: unknown;
  expiresAtMs: number;
}

export interface MemoryStoreOptions {
  /** How often expired counters are reclaimed. */
  readonly sweepIntervalMs?: number;
  /** At most this many counters are examined per sweep tick, so a huge map never stalls the loop. */
  readonly sweepBatch?: number;
}

/**
 * The embedded store: counters in a Map, decided with the same algorithm functions the Lua
 * scripts mirror. A request is decided inside one synchronous call, so on Node's single thread no
 * other request interleaves between reading and charging: that is what makes it atomic.
 *
 * Memory stays bounded by traffic: every counter carries the instant after which it can no longer
 * affect a decision, and a background sweep (plus every lookup) drops expired ones.
 */
export class MemoryStore implements CounterStore {
  private readonly counters = new Map<string, StoredCounter>();
  private readonly timer: NodeJS.Timeout;
  private readonly sweepBatch: number;
  private sweepCursor: Iterator<[string, StoredCounter]> | undefined;

  constructor(
    private readonly clock: Clock,
    options: MemoryStoreOptions = {},
  ) {
    this.sweepBatch = options.sweepBatch ?? 10_000;
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
    const staged = new Map<string, StoredCounter>();
    const evaluations = checks.map((check) => {
      const algorithm = ALGORITHMS[check.algorithm];
      const stored = staged.get(check.key) ?? this.live(check.key, now);
      const evaluation = algorithm.evaluate(stored?.state, check, now, options.chargeRejectedHits);
      if (options.chargeRejectedHits || evaluation.admitted) {
        staged.set(check.key, { state: evaluation.next, expiresAtMs: evaluation.nextExpiresAtMs });
      }
      return evaluation;
    });

    const admitted =
      options.chargeRejectedHits || evaluations.every((e, i) => e.admitted || !checks[i]!.enforced);
    if (!admitted) {
      return evaluations.map((e) => e.uncharged);
    }
    for (const [key, counter] of staged) this.counters.set(key, counter);
    return evaluations.map((e) => (options.chargeRejectedHits || e.admitted ? e.charged : e.uncharged));
  }

  /** Number of counters held (expired ones not yet swept included). */
  size(): number {
    return this.counters.size;
  }

  close(): Promise<void> {
    clearInterval(this.timer);
    this.counters.clear();
    return Promise.resolve();
  }

  private live(key: string, now: number): StoredCounter | undefined {
    const counter = this.counters.get(key);
    if (counter !== undefined && counter.expiresAtMs <= now) {
      this.counters.delete(key);
      return undefined;
    }
    return counter;
  }

  /** Reclaims expired counters, resuming where the previous tick stopped. */
  sweep(): void {
    const now = this.clock.nowMs();
    this.sweepCursor ??= this.counters.entries();
    for (let i = 0; i < this.sweepBatch; i++) {
      const next = this.sweepCursor.next();
      if (next.done === true) {
        this.sweepCursor = undefined;
        return;
      }
      const [key, counter] = next.value;
      if (counter.expiresAtMs <= now) this.counters.delete(key);
    }
  }
}
