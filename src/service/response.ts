import type { DescriptorDecision } from '../limiter/limiter';
import type { Code, DescriptorStatus, HeaderValue, RateLimitResponse } from './types';

/** `limit_remaining` of an unlimited descriptor: the largest uint32, as the reference answers. */
export const UNLIMITED_REMAINING = 4294967295;

export interface ResponseOptions {
  /** Global SHADOW_MODE: the overall code is forced to OK; statuses still tell the truth. */
  readonly globalShadowMode: boolean;
  /** LIMIT_RESPONSE_HEADERS_ENABLED: the header names to fill; undefined adds no headers. */
  readonly headers?: RateLimitHeaderNames;
}

/** The names of the rate-limit headers (LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER). */
export interface RateLimitHeaderNames {
  readonly limit: string;
  readonly remaining: string;
  readonly reset: string;
}

export const DEFAULT_HEADER_NAMES: RateLimitHeaderNames = {
  limit: 'RateLimit-Limit',
  remaining: 'RateLimit-Remaining',
  reset: 'RateLimit-Reset',
};

/** Added, with the chosen descriptor's reset, when the overall code is OVER_LIMIT and headers are on. */
export const RETRY_AFTER_HEADER = 'Retry-After';

/** Builds the RLS response from the per-descriptor decisions, in request order. */
export function buildResponse(decisions: readonly DescriptorDecision[], options: ResponseOptions): RateLimitResponse {
  const statuses = decisions.map(toStatus);
  let overLimit = false;
  let quotaDescriptors = 0;
  let quotaOver = 0;
  decisions.forEach((decision, i) => {
    const over = statuses[i]!.code === 'OVER_LIMIT';
    if (decision.kind === 'limited' && decision.rule.quotaMode) {
      quotaDescriptors++;
      if (over) quotaOver++;
    } else if (over) {
      overLimit = true;
    }
  });
  // Quota descriptors fail the request only when every one of them is over (the reference's quota_mode).
  if (quotaDescriptors > 0 && quotaOver === quotaDescriptors) overLimit = true;
  const overallCode: Code = overLimit && !options.globalShadowMode ? 'OVER_LIMIT' : 'OK';
  const responseHeadersToAdd =
    options.headers === undefined ? [] : rateLimitHeaders(decisions, statuses, overallCode, options.headers);
  return { overallCode, statuses, responseHeadersToAdd };
}

/**
 * The reference's header choice (its service/ratelimit.go): ONE descriptor speaks for the request,
 * the limited one with the smallest `limit_remaining` (the first of equals), overridden by every
 * non-quota OVER_LIMIT status in turn (so the last one wins, not the one with the longest reset).
 * A shadow-mode rule reports OK and competes only on its remaining. No limited descriptor: no headers.
 *
 * Limit is the number the status reports (`current_limit.requests_per_unit`, so both header modes
 * agree; a `unit_multiplier` window says its length only through Reset), except a token_bucket
 * whose `burst` is larger: then the bucket size, so that Remaining never exceeds Limit.
 * Retry-After (sluice's, not the reference's) only when the overall code is OVER_LIMIT: when the
 * request could pass (`secondsUntilAdmitted`), which may be later than the chosen status's Reset.
 */
function rateLimitHeaders(
  decisions: readonly DescriptorDecision[],
  statuses: readonly DescriptorStatus[],
  overallCode: Code,
  names: RateLimitHeaderNames,
): HeaderValue[] {
  let chosen: number | undefined;
  // The remaining to beat. As the reference, an OVER_LIMIT pick sets it to 0, so no later status
  // displaces it but another OVER_LIMIT one (a rejected hits_addend can leave remaining above 0).
  let minRemaining = Infinity;
  decisions.forEach((decision, i) => {
    if (decision.kind !== 'limited') return;
    const status = statuses[i]!;
    if (status.limitRemaining < minRemaining) {
      chosen = i;
      minRemaining = status.limitRemaining;
    }
    if (status.code !== 'OVER_LIMIT') return;
    if (!decision.rule.quotaMode) {
      chosen = i;
      minRemaining = 0;
    }
  });
  if (chosen === undefined) return [];
  const decision = decisions[chosen] as Extract<DescriptorDecision, { kind: 'limited' }>;
  const status = statuses[chosen]!;
  const { limit } = decision;
  const limitValue =
    limit.algorithm === 'token_bucket' && limit.burst !== undefined
      ? Math.max(limit.requestsPerUnit, limit.burst)
      : limit.requestsPerUnit;
  const reset = status.durationUntilResetSeconds ?? 0;
  const headers: HeaderValue[] = [
    { key: names.limit, value: String(limitValue) },
    { key: names.remaining, value: String(status.limitRemaining) },
    { key: names.reset, value: String(reset) },
  ];
  if (overallCode === 'OVER_LIMIT') {
    headers.push({ key: RETRY_AFTER_HEADER, value: String(secondsUntilAdmitted(decisions, statuses)) });
  }
  return headers;
}

/**
 * When an OVER_LIMIT request could pass if nothing else were charged, in whole seconds (≥ 1):
 * every enforced descriptor that is over must free, each when the last of its rejected limits
 * does (a `rate_limits` descriptor reports only its first rejected one); and when every quota
 * descriptor is over, the soonest of them must free too. A client that honours Retry-After is
 * then not rejected again by a limit the headers did not name.
 */
function secondsUntilAdmitted(decisions: readonly DescriptorDecision[], statuses: readonly DescriptorStatus[]): number {
  let waitMs = 0;
  let quotaDescriptors = 0;
  let quotaOver = 0;
  let soonestQuotaMs = Infinity;
  decisions.forEach((decision, i) => {
    if (decision.kind !== 'limited') return;
    if (decision.rule.quotaMode) quotaDescriptors++;
    if (statuses[i]!.code !== 'OVER_LIMIT') return;
    let freesMs = 0;
    for (const { outcome } of decision.limits) if (!outcome.admitted) freesMs = Math.max(freesMs, outcome.resetMs);
    if (decision.rule.quotaMode) {
      quotaOver++;
      soonestQuotaMs = Math.min(soonestQuotaMs, freesMs);
    } else {
      waitMs = Math.max(waitMs, freesMs);
    }
  });
  if (quotaDescriptors > 0 && quotaOver === quotaDescriptors) waitMs = Math.max(waitMs, soonestQuotaMs);
  return Math.max(1, Math.ceil(waitMs / 1000));
}

function toStatus(decision: DescriptorDecision): DescriptorStatus {
  switch (decision.kind) {
    case 'none':
      return { code: 'OK', limitRemaining: 0 };
    case 'unlimited':
      return { code: 'OK', limitRemaining: UNLIMITED_REMAINING };
    case 'limited': {
      const { rule, limit, outcome } = decision;
      // A shadow-mode rule is counted and reported, but never turns a request away.
      const code: Code = outcome.admitted || rule.shadowMode ? 'OK' : 'OVER_LIMIT';
      let seconds = Math.ceil(outcome.resetMs / 1000);
      if (!outcome.admitted && seconds < 1) seconds = 1;
      return {
        code,
        currentLimit:
          rule.name === undefined
            ? { requestsPerUnit: limit.requestsPerUnit, unit: limit.unit }
            : { requestsPerUnit: limit.requestsPerUnit, unit: limit.unit, name: rule.name },
        limitRemaining: outcome.remaining,
        durationUntilResetSeconds: seconds,
      };
    }
  }
}
