/**
 * The reference's per-rule hit arithmetic (envoyproxy/ratelimit base_limiter.go), applied to one
 * decided descriptor. With `before`/`after` the rule's count before and after this request's hits
 * and `threshold = floor(limit × NEAR_LIMIT_RATIO)`:
 *
 * - admitted: `within_limit += hits`; the hits above the threshold also count as `near_limit`
 *   (all of them when `before ≥ threshold`, else `after − threshold`);
 * - over: `over_limit += hits` when `before ≥ limit`, else `after − limit`, and then the part
 *   between the threshold and the limit, `limit − max(threshold, before)`, is `near_limit`;
 * - a shadow-mode rule that is over also adds the over part to `shadow_mode`;
 * - `total_hits += hits` always.
 *
 * sluice's store reports `remaining` (whole hits left) rather than the raw count, and by default
 * charges nothing on a rejected request, so the counts are derived: `before = limit − remaining`
 * for an uncharged outcome and `after = limit − remaining` for a charged one. Sliding windows
 * weigh the previous window, so `remaining` is rounded down and the derived counts are whole
 * hits. With CHARGE_REJECTED_HITS a rejected outcome reports 0 remaining, so its `before` is
 * unknown; all its hits then count as over the limit.
 */
export interface HitStats {
  readonly totalHits: number;
  readonly withinLimit: number;
  readonly nearLimit: number;
  readonly overLimit: number;
  readonly shadowMode: number;
}

export interface HitInput {
  /** requests_per_unit. */
  readonly limit: number;
  readonly hits: number;
  /** The descriptor's own outcome. */
  readonly admitted: boolean;
  readonly remaining: number;
  /** Whether this request's hits were charged to the counter (see `LimitOutcome`). */
  readonly charged: boolean;
  readonly shadowMode: boolean;
  readonly nearLimitRatio: number;
}

/** floor(limit × ratio), robust to 0.1-style binary fractions (3 × 0.1 × 10 …). */
export function nearThreshold(limit: number, ratio: number): number {
  return Math.floor(limit * ratio + 1e-9);
}

export function hitStats(input: HitInput): HitStats {
  const { limit, hits, admitted, remaining, charged } = input;
  const threshold = nearThreshold(limit, input.nearLimitRatio);
  const clamp = (n: number): number => Math.min(hits, Math.max(0, n));
  if (admitted) {
    const after = charged ? limit - remaining : limit - remaining + hits;
    const before = after - hits;
    const near = after > threshold ? (before >= threshold ? hits : after - threshold) : 0;
    return { totalHits: hits, withinLimit: hits, nearLimit: clamp(near), overLimit: 0, shadowMode: 0 };
  }
  const before = charged ? limit : limit - remaining;
  const after = before + hits;
  const over = clamp(before >= limit ? hits : after - limit);
  const near = before >= limit ? 0 : clamp(limit - Math.max(threshold, before));
  return {
    totalHits: hits,
    withinLimit: 0,
    nearLimit: near,
    overLimit: over,
    shadowMode: input.shadowMode ? over : 0,
  };
}
