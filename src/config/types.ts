import type { StoreFailureMode } from '../store/counter-store';

/**
 * The loaded rate-limit configuration, as the rest of sluice sees it. Parsing and validation
 * live in `load.ts`; matching lives in `rate-limit-config.ts`. Nothing here knows about YAML.
 */

/** Response units, with the wire enum numbers of `RateLimitResponse.RateLimit.Unit`. */
export const UNIT_NUMBERS = {
  UNKNOWN: 0,
  SECOND: 1,
  MINUTE: 2,
  HOUR: 3,
  DAY: 4,
  MONTH: 5,
  YEAR: 6,
  WEEK: 7,
} as const;

export type Unit = Exclude<keyof typeof UNIT_NUMBERS, 'UNKNOWN'>;

/** Seconds per unit. Month and year are fixed lengths (30 and 365 days), as in the reference. */
export const UNIT_SECONDS: Readonly<Record<Unit, number>> = {
  SECOND: 1,
  MINUTE: 60,
  HOUR: 3600,
  DAY: 86400,
  WEEK: 7 * 86400,
  MONTH: 30 * 86400,
  YEAR: 365 * 86400,
};

/** Names accepted in `rate_limit.algorithm`. Adding one is a new file under limiter/algorithms. */
export type AlgorithmName = 'sliding_window' | 'fixed_window' | 'sliding_log' | 'token_bucket';

/**
 * Largest `requests_per_unit` of a `sliding_log` limit. The log keeps one entry per instant at
 * which hits were admitted inside the window, so its size follows the limit: at 128 a Redis hash
 * stays in its compact listpack encoding (hash-max-listpack-entries) and a decision reads at most
 * 128 fields. Larger limits belong to sliding_window or token_bucket (docs/algorithms.md).
 */
export const SLIDING_LOG_MAX_REQUESTS = 128;

export interface DescriptorEntry {
  readonly key: string;
  readonly value: string;
}

/** A finite limit: `requestsPerUnit` hits per `unitMultiplier` × `unit`. */
export interface LimitSpec {
  readonly requestsPerUnit: number;
  readonly unit: Unit;
  readonly unitMultiplier: number;
  readonly algorithm: AlgorithmName;
  /** unitMultiplier × UNIT_SECONDS[unit] × 1000, computed once at load. */
  readonly windowMs: number;
  /**
   * token_bucket only: the bucket size (hits admitted at once from a full bucket); the bucket
   * refills at requestsPerUnit per window. Undefined: requestsPerUnit.
   */
  readonly burst?: number;
  /**
   * Separates the counters of limits on one config node that share algorithm and window (a
   * `rate_limits:` list): undefined or 0 for the first such limit, k for the k-th later one.
   * Part of the counter key (counter-key.ts), so two limits of one node never share a counter.
   */
  readonly counterVariant?: number;
}

/**
 * One config node that carries a `rate_limit` (finite or unlimited). Identity is stable for the
 * life of a loaded config, so per-rule state (metrics) can hang off it.
 */
export interface LimitRule {
  /** `<domain>.<k1>_<v1>.<k2>` — the reference's stats key for this node (values of value-less nodes omitted). */
  readonly id: string;
  readonly domain: string;
  /** Undefined when `unlimited: true`. */
  readonly limit: LimitSpec | undefined;
  readonly unlimited: boolean;
  readonly name: string | undefined;
  /** Names of limits that this one replaces in the same request. */
  readonly replaces: readonly string[];
  readonly shadowMode: boolean;
  readonly quotaMode: boolean;
  readonly detailedMetric: boolean;
  /** `rate_limit.store_failure`: what to answer when the store cannot; undefined ⇒ STORE_FAILURE_MODE. */
  readonly storeFailure?: StoreFailureMode;
  /**
   * Set when the node carries a `rate_limits:` list: this rule is item `limitIndex` of it. Every
   * item is a rule of its own (its own name, replaces, store_failure and limit) that shares the
   * node's `id` (the reference's stats key), flags and counter entries; `<id>[<limitIndex>]` tells
   * the items apart where one is needed.
   */
  readonly limitIndex?: number;
}

/** The result of matching one request descriptor. */
export interface MatchedLimit {
  /** The node's rule; for a `rate_limits:` node, its first item. */
  readonly rule: LimitRule;
  /**
   * Every rule of the node, in config order, when it carries a `rate_limits:` list (all of them
   * are decided, in one store call); undefined means `[rule]`.
   */
  readonly rules?: readonly LimitRule[];
  /**
   * The entries that identify the counter: the request's own entries, except that an entry
   * matched by a `share_threshold` wildcard carries the pattern, so all matching values share one
   * counter. Two requests share a counter exactly when domain, these entries and the limit agree.
   */
  readonly counterEntries: readonly DescriptorEntry[];
}

/**
 * Every rule a match decides (and whose `replaces` count): all items of a `rate_limits:` node, or
 * its one rule. Reading only `rule` would miss the later items.
 */
export function rulesOf(match: MatchedLimit): readonly LimitRule[] {
  return match.rules ?? [match.rule];
}

/** A loaded, validated, immutable configuration. */
export interface RateLimitConfig {
  hasDomain(domain: string): boolean;
  /**
   * The limit for one request descriptor, by the reference's rules: per level exact `key=value`,
   * then wildcard values in file order, then the value-less `key`; the limit applies only when the
   * descriptor ends exactly at the node that carries it. Undefined when nothing applies (unknown
   * domain, unmatched entry, wrong depth, whitelisted node).
   */
  getLimit(domain: string, entries: readonly DescriptorEntry[]): MatchedLimit | undefined;
  /** Every rule, in file order, for `/rlconfig` and `check-config` summaries. */
  rules(): readonly LimitRule[];
  domains(): readonly string[];
}

/** One config problem, already formatted as `<file>: <yaml.path>: <reason>`. */
export interface ConfigProblem {
  readonly file: string;
  /** YAML path such as `descriptors[0].rate_limit.unit`; empty for file-level problems. */
  readonly path: string;
  readonly reason: string;
  readonly message: string;
}
