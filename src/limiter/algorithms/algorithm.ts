import type { AlgorithmName } from '../../config/types';
import type { LimitCheck, LimitOutcome } from '../../store/counter-store';

/**
 * A rate-limit algorithm as pure maths over one counter's stored state. The memory store runs
 * these functions directly; each Redis Lua script mirrors one of them operation for operation,
 * and the store conformance suite holds the two to the same answers.
 *
 * Adding an algorithm is a new file in this folder plus one line in `registry.ts`.
 */
export interface Algorithm<S> {
  readonly name: AlgorithmName;
  /**
   * What charging `check.hits` at `nowMs` would do to `state` (undefined: nothing stored).
   * Changes nothing. With `chargeRejectedHits` the hits are charged whatever the outcome and the
   * check is over when the count after charging exceeds the limit (the reference's counting).
   */
  evaluate(state: S | undefined, check: LimitCheck, nowMs: number, chargeRejectedHits: boolean): Evaluation<S>;
}

export interface Evaluation<S> {
  /** Whether this check admits its hits. */
  readonly admitted: boolean;
  /** The state to store if the hits are charged. */
  readonly next: S;
  /** When `next` can no longer affect any decision and may be dropped (epoch ms). */
  readonly nextExpiresAtMs: number;
  /** The outcome to report when the hits are charged. */
  readonly charged: LimitOutcome;
  /** The outcome to report when nothing is charged (this or another check rejected the request). */
  readonly uncharged: LimitOutcome;
}

/** Hits that a check needs room for: a check-only call (0 hits) asks about one more hit. */
export function hitsToAdmit(check: LimitCheck): number {
  return check.hits === 0 ? 1 : check.hits;
}

/** Whole hits left under `limit` once `used` is counted (fractional usage rounds remaining down). */
export function remainingAfter(limit: number, used: number): number {
  const left = Math.floor(limit - used);
  return left < 0 ? 0 : left > limit ? limit : left;
}
