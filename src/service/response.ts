import type { DescriptorDecision } from '../limiter/limiter';
import type { Code, DescriptorStatus, RateLimitResponse } from './types';

/** `limit_remaining` of an unlimited descriptor: the largest uint32, as the reference answers. */
export const UNLIMITED_REMAINING = 4294967295;

export interface ResponseOptions {
  /** Global SHADOW_MODE: the overall code is forced to OK; statuses still tell the truth. */
  readonly globalShadowMode: boolean;
}

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
  return { overallCode, statuses, responseHeadersToAdd: [] };
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
        currentLimit: {
          requestsPerUnit: limit.requestsPerUnit,
          unit: limit.unit,
          ...(rule.name !== undefined ? { name: rule.name } : {}),
        },
        limitRemaining: outcome.remaining,
        durationUntilResetSeconds: seconds,
      };
    }
  }
}
