import { type LimitRule, type MatchedLimit, type RateLimitConfig, type Unit, UNIT_NUMBERS, UNIT_SECONDS } from '../config/types';
import { DeadlineExceededError, type ErrorKind, InvalidArgumentError, SluiceError, StoreError, UnavailableError } from '../errors';
import type { DescriptorDecision, DescriptorPlan, Limiter } from '../limiter/limiter';
import type { DecidedDescriptor, RequestResult } from '../metrics/metrics';
import { type RequestCaps, validateRequest } from './request-validation';
import { WorkBudget } from './work-budget';
import { type RateLimitHeaderNames, type ResponseOptions, buildResponse } from './response';
import type { CallContext, RateLimitRequest, RateLimitResponse, RateLimitService, RequestDescriptor } from './types';

export interface ConfigSource {
  current(): RateLimitConfig | undefined;
}

export interface ServiceOptions {
  readonly caps: RequestCaps;
  /** Global SHADOW_MODE. */
  readonly shadowMode: boolean;
  /** LIMIT_RESPONSE_HEADERS_ENABLED: the rate-limit header names; undefined adds none. */
  readonly responseHeaders?: RateLimitHeaderNames;
  /** Per-rule stats, request results and decision latency (`SluiceMetrics`); none when undefined. */
  readonly metrics?: ServiceMetrics;
  /** MAX_DESCRIPTORS_IN_FLIGHT: calls beyond it are refused at once (RESOURCE_EXHAUSTED). Unbounded when unset. */
  readonly maxDescriptorsInFlight?: number;
}

/** What the service reports to metrics. */
export interface ServiceMetrics {
  recordDescriptors(descriptors: readonly DecidedDescriptor[]): void;
  requestFinished(result: RequestResult, seconds: number, storeFailure?: boolean): void;
  globalShadowMode(): void;
  domainNotFound(domain: string): void;
  descriptorsInFlightSet(descriptors: number): void;
}

/** The RLS v3 decision: validate, match every descriptor, decide them in one store call, answer. */
export class RlsService implements RateLimitService {
  private readonly budget: WorkBudget | undefined;
  private readonly responseOptions: ResponseOptions;

  constructor(
    private readonly configs: ConfigSource,
    private readonly limiter: Limiter,
    private readonly options: ServiceOptions,
  ) {
    const metrics = options.metrics;
    this.budget =
      options.maxDescriptorsInFlight === undefined
        ? undefined
        : new WorkBudget(options.maxDescriptorsInFlight, metrics === undefined ? undefined : (n) => metrics.descriptorsInFlightSet(n));
    this.responseOptions = {
      globalShadowMode: options.shadowMode,
      ...(options.responseHeaders !== undefined && { headers: options.responseHeaders }),
    };
  }

  async shouldRateLimit(request: RateLimitRequest, context: CallContext = {}): Promise<RateLimitResponse> {
    // One async frame for the whole decision: each call passes here, and every await is a promise.
    const metrics = this.options.metrics;
    const started = metrics === undefined ? 0 : performance.now();
    try {
      validateRequest(request, this.options.caps);
      const config = this.configs.current();
      if (config === undefined) throw new UnavailableError('no rate limit configuration loaded');
      if (!config.hasDomain(request.domain)) metrics?.domainNotFound(request.domain);

      // Request level 0 (Envoy's default) means 1; a per-descriptor addend, when present, wins and may be 0.
      const requestHits = Math.max(1, request.hitsAddend);
      const units = request.descriptors.length;
      const plans = new Array<DescriptorPlan>(units);
      for (let i = 0; i < units; i++) {
        const descriptor = request.descriptors[i]!;
        plans[i] = { match: match(config, request.domain, descriptor, i), hits: descriptor.hitsAddend ?? requestHits };
      }
      this.budget?.acquire(units);
      let decisions: DescriptorDecision[];
      try {
        decisions = await this.limiter.decide(request.domain, plans, context);
      } finally {
        this.budget?.release(units);
      }
      const response = buildResponse(decisions, this.responseOptions);
      if (metrics !== undefined) {
        recordMetrics(metrics, request, plans, decisions, response);
        metrics.requestFinished(response.overallCode === 'OVER_LIMIT' ? 'over_limit' : 'ok', (performance.now() - started) / 1000);
      }
      return response;
    } catch (err) {
      metrics?.requestFinished(RESULT_BY_KIND[err instanceof SluiceError ? err.kind : 'internal'], (performance.now() - started) / 1000, isStoreFailure(err));
      throw err;
    }
  }
}

const RESULT_BY_KIND: Readonly<Record<ErrorKind, RequestResult>> = {
  invalid_argument: 'invalid',
  unavailable: 'unavailable',
  deadline_exceeded: 'deadline_exceeded',
  resource_exhausted: 'overloaded',
  unimplemented: 'invalid',
  unauthenticated: 'invalid',
  internal: 'error',
};

/** The counter store did not decide (the reference's `redis_error`): it failed, or its time ran out. */
function isStoreFailure(err: unknown): boolean {
  return err instanceof StoreError || err instanceof DeadlineExceededError;
}

/** Hands the limited descriptors of one decided request to metrics. */
function recordMetrics(
  metrics: ServiceMetrics,
  request: RateLimitRequest,
  plans: readonly DescriptorPlan[],
  decisions: readonly DescriptorDecision[],
  response: RateLimitResponse,
): void {
  const decided: DecidedDescriptor[] = [];
  let overLimit = false;
  for (let i = 0; i < decisions.length; i++) {
    const decision = decisions[i]!;
    if (decision.kind !== 'limited') continue;
    const { rule, limit, outcome } = decision;
    if (!outcome.admitted && !rule.shadowMode && !rule.quotaMode) overLimit = true;
    decided.push({
      rule,
      requestsPerUnit: limit.requestsPerUnit,
      entries: request.descriptors[i]!.entries,
      hits: plans[i]!.hits,
      admitted: outcome.admitted,
      remaining: outcome.remaining,
      override: request.descriptors[i]!.limitOverride !== undefined,
      enforced: !rule.shadowMode && !rule.quotaMode,
      localCache: outcome.localCache === true,
    });
  }
  metrics.recordDescriptors(decided);
  if (overLimit && response.overallCode === 'OK') metrics.globalShadowMode();
}

function match(config: RateLimitConfig, domain: string, descriptor: RequestDescriptor, index: number): MatchedLimit | undefined {
  if (descriptor.limitOverride === undefined) return config.getLimit(domain, descriptor.entries);
  // As in the reference: an override from Envoy bypasses the tree, but only for a known domain.
  if (!config.hasDomain(domain)) return undefined;
  return overrideLimit(domain, descriptor, index);
}

const UNIT_BY_NUMBER = new Map<number, Unit>(
  (Object.keys(UNIT_SECONDS) as Unit[]).map((unit) => [UNIT_NUMBERS[unit], unit]),
);

/** A limit sent by Envoy (`RateLimitDescriptor.limit`): never shadowed, never named. */
function overrideLimit(domain: string, descriptor: RequestDescriptor, index: number): MatchedLimit {
  const override = descriptor.limitOverride!;
  const unit = UNIT_BY_NUMBER.get(override.unit);
  if (unit === undefined) {
    throw new InvalidArgumentError(`descriptors[${index}].limit.unit: unknown rate limit unit ${override.unit}`);
  }
  const rule: LimitRule = {
    id: [domain, ...descriptor.entries.map((e) => `${e.key}_${e.value}`)].join('.'),
    domain,
    limit: {
      requestsPerUnit: override.requestsPerUnit,
      unit,
      unitMultiplier: 1,
      algorithm: 'sliding_window',
      windowMs: UNIT_SECONDS[unit] * 1000,
    },
    unlimited: false,
    name: undefined,
    replaces: [],
    shadowMode: false,
    quotaMode: false,
    detailedMetric: false,
  };
  return { rule, counterEntries: descriptor.entries };
}
