import type { AlgorithmName, LimitRule, LimitSpec } from '../../../src/config/types';
import type { DescriptorDecision } from '../../../src/limiter/limiter';
import { DEFAULT_HEADER_NAMES, type RateLimitHeaderNames, buildResponse } from '../../../src/service/response';
import type { HeaderValue } from '../../../src/service/types';

interface Spec {
  readonly remaining: number;
  readonly admitted?: boolean;
  readonly resetS?: number;
  readonly limit?: number;
  readonly quota?: boolean;
  readonly shadow?: boolean;
  readonly algorithm?: AlgorithmName;
  readonly burst?: number;
  readonly multiplier?: number;
}

function limited(spec: Spec): DescriptorDecision {
  const limit: LimitSpec = {
    requestsPerUnit: spec.limit ?? 10,
    unit: 'MINUTE',
    unitMultiplier: spec.multiplier ?? 1,
    algorithm: spec.algorithm ?? 'sliding_window',
    windowMs: (spec.multiplier ?? 1) * 60_000,
    ...(spec.burst !== undefined && { burst: spec.burst }),
  };
  const rule: LimitRule = {
    id: 'd.k',
    domain: 'd',
    limit,
    unlimited: false,
    name: undefined,
    replaces: [],
    shadowMode: spec.shadow ?? false,
    quotaMode: spec.quota ?? false,
    detailedMetric: false,
  };
  const outcome = { admitted: spec.admitted ?? true, remaining: spec.remaining, resetMs: (spec.resetS ?? 30) * 1000 };
  return { kind: 'limited', rule, limit, outcome, limits: [{ rule, limit, outcome }] };
}

const NONE: DescriptorDecision = { kind: 'none' };
const UNLIMITED: DescriptorDecision = {
  kind: 'unlimited',
  rule: { id: 'd.u', domain: 'd', limit: undefined, unlimited: true, name: undefined, replaces: [], shadowMode: false, quotaMode: false, detailedMetric: false },
};

function headers(
  decisions: readonly DescriptorDecision[],
  options: { names?: RateLimitHeaderNames; globalShadowMode?: boolean } = {},
): Record<string, string> {
  const response = buildResponse(decisions, {
    globalShadowMode: options.globalShadowMode ?? false,
    headers: options.names ?? DEFAULT_HEADER_NAMES,
  });
  return Object.fromEntries(response.responseHeadersToAdd.map((h: HeaderValue) => [h.key, h.value]));
}

const H = (limit: number, remaining: number, reset: number, retryAfter?: number): Record<string, string> => ({
  'RateLimit-Limit': String(limit),
  'RateLimit-Remaining': String(remaining),
  'RateLimit-Reset': String(reset),
  ...(retryAfter !== undefined && { 'Retry-After': String(retryAfter) }),
});

describe('rate-limit response headers', () => {
  it('adds nothing when headers are off', () => {
    const response = buildResponse([limited({ remaining: 0, admitted: false })], { globalShadowMode: false });
    expect(response.responseHeadersToAdd).toEqual([]);
  });

  it("the reference's test: MINUTE limit 10, over ⇒ 10 / 0 / reset, plus Retry-After", () => {
    const response = buildResponse([limited({ remaining: 0, admitted: false, resetS: 58 })], {
      globalShadowMode: false,
      headers: DEFAULT_HEADER_NAMES,
    });
    expect(response.responseHeadersToAdd).toEqual([
      { key: 'RateLimit-Limit', value: '10' },
      { key: 'RateLimit-Remaining', value: '0' },
      { key: 'RateLimit-Reset', value: '58' },
      { key: 'Retry-After', value: '58' },
    ]);
  });

  it.each<[string, DescriptorDecision[], Record<string, string>]>([
    ['no descriptor', [], {}],
    ['no limited descriptor (unmatched, unlimited)', [NONE, UNLIMITED], {}],
    ['one admitted descriptor', [limited({ remaining: 7, resetS: 12 })], H(10, 7, 12)],
    [
      'the smallest remaining wins',
      [limited({ remaining: 7, resetS: 1 }), NONE, limited({ remaining: 3, limit: 5, resetS: 2 }), limited({ remaining: 4, resetS: 3 })],
      H(5, 3, 2),
    ],
    ['ties: the first wins', [limited({ remaining: 3, limit: 5, resetS: 1 }), limited({ remaining: 3, limit: 6, resetS: 2 })], H(5, 3, 1)],
    [
      'an over-limit descriptor beats a smaller remaining before it',
      [limited({ remaining: 0, limit: 4, resetS: 1 }), limited({ remaining: 2, admitted: false, resetS: 9 })],
      H(10, 2, 9, 9),
    ],
    [
      // RateLimit-* as the reference; Retry-After is when the request can pass: when the last one frees.
      'several over: the LAST one, not the longest reset (but Retry-After waits for both)',
      [limited({ remaining: 0, admitted: false, limit: 3, resetS: 50 }), limited({ remaining: 0, admitted: false, limit: 4, resetS: 5 }), limited({ remaining: 1 })],
      H(4, 0, 5, 50),
    ],
    [
      // hits_addend 5 with 2 left is rejected with remaining 2; the reference's over-limit pick still holds.
      'an over-limit descriptor is not displaced by a later admitted one with less remaining',
      [limited({ remaining: 2, admitted: false, limit: 10, resetS: 9 }), limited({ remaining: 1, limit: 5, resetS: 3 })],
      H(10, 2, 9, 9),
    ],
    [
      'every quota descriptor over and a regular one over: Retry-After waits for the regular one and the soonest quota',
      [limited({ remaining: 0, admitted: false, resetS: 4 }), limited({ remaining: 0, admitted: false, quota: true, resetS: 40 }), limited({ remaining: 0, admitted: false, quota: true, resetS: 20 })],
      H(10, 0, 4, 20),
    ],
    [
      'the only quota descriptor over: the request fails, and it has the smallest remaining',
      [limited({ remaining: 0, admitted: false, quota: true, limit: 2, resetS: 40 }), limited({ remaining: 5, resetS: 3 })],
      H(2, 0, 40, 40),
    ],
    [
      'quota over but not chosen: Retry-After is the soonest quota reset',
      [limited({ remaining: 0, limit: 7, resetS: 3 }), limited({ remaining: 0, admitted: false, quota: true, resetS: 40 }), limited({ remaining: 0, admitted: false, quota: true, resetS: 20 })],
      H(7, 0, 3, 20),
    ],
    [
      'quota over while another quota passes: no Retry-After (overall OK)',
      [limited({ remaining: 0, admitted: false, quota: true, resetS: 40 }), limited({ remaining: 1, quota: true, resetS: 2 })],
      H(10, 0, 40),
    ],
    [
      'a shadow rule over reports OK: it competes on remaining only, no Retry-After',
      [limited({ remaining: 2 }), limited({ remaining: 0, admitted: false, shadow: true, limit: 1, resetS: 6 })],
      H(1, 0, 6),
    ],
    [
      'a shadow rule over does not override a real over-limit one',
      [limited({ remaining: 0, admitted: false, limit: 3, resetS: 8 }), limited({ remaining: 0, admitted: false, shadow: true, limit: 1, resetS: 6 })],
      H(3, 0, 8, 8),
    ],
    ['unit_multiplier: Limit is requests_per_unit, Reset tells the window', [limited({ remaining: 49, limit: 50, multiplier: 5, resetS: 300 })], H(50, 49, 300)],
    ['token_bucket with a larger burst: Limit is the bucket size', [limited({ remaining: 15, limit: 10, algorithm: 'token_bucket', burst: 20 })], H(20, 15, 30)],
    ['token_bucket with a smaller burst: Limit is requests_per_unit', [limited({ remaining: 1, limit: 10, algorithm: 'token_bucket', burst: 2 })], H(10, 1, 30)],
  ])('%s', (_name, decisions, expected) => {
    expect(headers(decisions)).toEqual(expected);
  });

  it('Retry-After waits for every rejected limit of a rate_limits descriptor, not only the reported one', () => {
    // A per-second burst and a per-day quota, both over: the status reports the burst (first
    // rejected), but a retry after one second is rejected by the day limit.
    const burst = limited({ remaining: 0, admitted: false, limit: 10, resetS: 1 });
    const day = limited({ remaining: 0, admitted: false, limit: 1000, resetS: 3_600 });
    if (burst.kind !== 'limited' || day.kind !== 'limited') throw new Error('unreachable');
    const both: DescriptorDecision = { ...burst, limits: [...burst.limits, ...day.limits] };
    expect(headers([both])).toEqual(H(10, 0, 1, 3_600));
  });

  it('global shadow mode: the headers still tell the truth, but no Retry-After (the request passes)', () => {
    expect(headers([limited({ remaining: 0, admitted: false, resetS: 9 })], { globalShadowMode: true })).toEqual(H(10, 0, 9));
  });

  it('uses the configured names', () => {
    const names = { limit: 'X-RateLimit-Limit', remaining: 'X-Left', reset: 'X-Reset' };
    expect(headers([limited({ remaining: 0, admitted: false, resetS: 4 })], { names })).toEqual({
      'X-RateLimit-Limit': '10',
      'X-Left': '0',
      'X-Reset': '4',
      'Retry-After': '4',
    });
  });

  it('statuses carry the fields Envoy x-ratelimit mode reads, headers on or off', () => {
    for (const headersOn of [false, true]) {
      const response = buildResponse([limited({ remaining: 4, resetS: 17 })], {
        globalShadowMode: false,
        ...(headersOn && { headers: DEFAULT_HEADER_NAMES }),
      });
      expect(response.statuses[0]).toEqual({
        code: 'OK',
        currentLimit: { requestsPerUnit: 10, unit: 'MINUTE' },
        limitRemaining: 4,
        durationUntilResetSeconds: 17,
      });
    }
  });
});
