import type { AlgorithmName } from '../../src/config/types';
import type { LimitCheck } from '../../src/store/counter-store';
import { MemoryStore } from '../../src/store/memory/memory-store';
import { ManualClock } from '../../src/util/clock';
import type { Trace, TraceLimit } from './traces';

/** One algorithm as configured for a replay. */
export interface Contender {
  /** Row label, e.g. `token_bucket (burst = 1)`. */
  readonly label: string;
  readonly algorithm: AlgorithmName;
  readonly burst?: number;
}

/** How one algorithm did on one trace, measured against an exact sliding count. */
export interface ReplayResult {
  readonly contender: string;
  readonly trace: string;
  readonly requests: number;
  readonly admitted: number;
  /** Admitted requests that, counted, put more than `limit` admitted hits in the trailing window. */
  readonly overAdmitted: number;
  /** The most admitted hits any trailing window held (≤ limit means never over). */
  readonly worstWindow: number;
  /** Rejected requests that would have fit: the trailing window had room for them. */
  readonly underAdmitted: number;
  /** The most room (limit − admitted hits in the trailing window) a rejected request was refused with. */
  readonly worstRoom: number;
  /** Requests the exact count admits when replayed alone (the ideal, for comparison). */
  readonly exactAdmitted: number;
  /** Per identity: requests, over-admissions, under-admissions. */
  readonly byIdentity: { readonly requests: Int32Array; readonly over: Int32Array; readonly under: Int32Array };
}

/**
 * Admitted hits of one identity in the trailing window (t − window, t]: the ground truth. A ring
 * of (instant, hits) with a running sum; entries leave once t − window ≥ their instant.
 */
class TrailingCount {
  private at: number[] = [];
  private hits: number[] = [];
  private head = 0;
  sum = 0;

  advance(t: number, windowMs: number): void {
    while (this.head < this.at.length && this.at[this.head]! <= t - windowMs) {
      this.sum -= this.hits[this.head]!;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.at.length) {
      this.at = this.at.slice(this.head);
      this.hits = this.hits.slice(this.head);
      this.head = 0;
    }
  }

  add(t: number, hits: number): void {
    this.at.push(t);
    this.hits.push(hits);
    this.sum += hits;
  }
}

/**
 * Replays a trace through a MemoryStore (the same algorithm functions the Lua mirrors) at
 * simulated time, one request per decision, every identity its own counter, and scores every
 * decision against the exact sliding count of what that algorithm admitted.
 */
export function replay(trace: Trace, { limit, windowMs }: TraceLimit, contender: Contender): ReplayResult {
  const clock = new ManualClock(trace.times[0] ?? 0);
  const store = new MemoryStore(clock, { sweepIntervalMs: 3_600_000 });
  const truth = Array.from({ length: trace.identities }, () => new TrailingCount());
  const exact = Array.from({ length: trace.identities }, () => new TrailingCount());
  const keys = Array.from({ length: trace.identities }, (_, id) => `id-${id}`);
  let admitted = 0;
  let overAdmitted = 0;
  let worstWindow = 0;
  let underAdmitted = 0;
  let worstRoom = 0;
  let exactAdmitted = 0;
  const byIdentity = {
    requests: new Int32Array(trace.identities),
    over: new Int32Array(trace.identities),
    under: new Int32Array(trace.identities),
  };
  const options = { chargeRejectedHits: false };

  for (let i = 0; i < trace.times.length; i++) {
    const t = trace.times[i]!;
    const id = trace.ids[i]!;
    const hits = trace.hits[i]!;
    clock.set(t);
    const check: LimitCheck = {
      key: keys[id]!,
      algorithm: contender.algorithm,
      limit,
      windowMs,
      hits,
      enforced: true,
      ...(contender.burst !== undefined && { burst: contender.burst }),
    };
    const outcome = store.decideNow([check], options)[0]!;

    const count = truth[id]!;
    count.advance(t, windowMs);
    byIdentity.requests[id]!++;
    if (outcome.admitted) {
      admitted++;
      count.add(t, hits);
      if (count.sum > limit) {
        overAdmitted++;
        byIdentity.over[id]!++;
      }
      if (count.sum > worstWindow) worstWindow = count.sum;
    } else if (count.sum + hits <= limit) {
      underAdmitted++;
      byIdentity.under[id]!++;
      if (limit - count.sum > worstRoom) worstRoom = limit - count.sum;
    }

    // The ideal: an exact sliding count deciding on its own.
    const ideal = exact[id]!;
    ideal.advance(t, windowMs);
    if (ideal.sum + hits <= limit) {
      ideal.add(t, hits);
      exactAdmitted++;
    }
  }
  void store.close();
  return {
    contender: contender.label,
    trace: trace.name,
    requests: trace.times.length,
    admitted,
    overAdmitted,
    worstWindow,
    underAdmitted,
    worstRoom,
    exactAdmitted,
    byIdentity,
  };
}
