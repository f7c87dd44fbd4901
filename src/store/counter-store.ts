import type { AlgorithmName } from '../config/types';

/**
 * What to answer for a check when the store cannot: `error` fails the call (gRPC UNAVAILABLE,
 * and Envoy's failure_mode_deny decides), `allow` admits, `deny` rejects, `local` decides with an
 * in-process limiter until the store is back.
 */
export type StoreFailureMode = 'error' | 'allow' | 'deny' | 'local';

/** One limit to decide for one request: a counter identity, its limit, and the hits to charge. */
export interface LimitCheck {
  /** Counter identity, built only by `limiter/counter-key.ts`. */
  readonly key: string;
  readonly algorithm: AlgorithmName;
  /** Hits allowed per window. */
  readonly limit: number;
  readonly windowMs: number;
  /** token_bucket: the bucket size; undefined means `limit`. Ignored by the other algorithms. */
  readonly burst?: number;
  /** Hits this request adds; 0 asks whether one more hit would be admitted, and charges nothing. */
  readonly hits: number;
  /** False for shadow-mode rules: their rejection is reported but does not block the request. */
  readonly enforced: boolean;
  /** The rule's `store_failure` policy; undefined means the process default (STORE_FAILURE_MODE). */
  readonly onStoreFailure?: StoreFailureMode;
}

/** What one check decided. Being over the limit is an outcome, never an exception. */
export interface LimitOutcome {
  readonly admitted: boolean;
  /** Whole hits left after the decision (never negative). */
  readonly remaining: number;
  /**
   * Rejected: milliseconds until this check's hits would be admitted.
   * Admitted: milliseconds until the counter has fully drained (0 when it holds nothing).
   */
  readonly resetMs: number;
  /** True when the over-limit cache answered without asking the store (for metrics). */
  readonly localCache?: boolean;
}

export interface DecideOptions {
  /**
   * False (default): all-or-nothing — hits are charged to every check only when every enforced
   * check admits them; a rejected request charges nothing.
   * True: the reference's counting — every check is charged whatever the outcome, and a check is
   * over when its count after charging exceeds the limit.
   */
  readonly chargeRejectedHits: boolean;
  /**
   * Epoch milliseconds by which the caller needs an answer (the gRPC deadline). The resilient
   * layer answers from the failure policy when the store has not answered by then.
   */
  readonly deadlineMs?: number;
  /**
   * Set by a caller that stops waiting for this decision (its deadline passed, or the store was
   * declared sick): a store that answers afterwards takes back what it charged, because nobody
   * was told about those hits.
   */
  readonly ticket?: DecisionTicket;
}

/** See `DecideOptions.ticket`. */
export interface DecisionTicket {
  readonly abandoned: boolean;
}

/**
 * Where counters live. Implementations decide a whole request atomically: no other request's
 * decision interleaves between reading and charging its checks.
 */
export interface CounterStore {
  /**
   * Decides every check of one request and returns one outcome per check, in order.
   * Rejects with a `StoreError` when the store cannot answer; never charges partially.
   */
  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]>;
  /** Releases timers and connections. */
  close(): Promise<void>;
}
