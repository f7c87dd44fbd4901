import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { DescriptorEntry, LimitRule, RateLimitConfig } from '../config/types';
import type { BreakerState } from '../store/circuit-breaker';
import type { MemoryStoreStats } from '../store/memory/memory-store';
import { FastHistogram, type HistogramSeries } from './fast-histogram';
import { hitStats } from './hit-stats';
import { DetailedLabelCap, type RuleLabels, detailedLabels, staticLabels } from './rule-labels';

/**
 * sluice's Prometheus metrics, on a registry of its own (several sluices can live in one process,
 * as in tests). Names follow the reference's Prometheus mapping where one exists, so dashboards
 * built for envoyproxy/ratelimit keep working; sluice's own additions are prefixed `sluice_`.
 *
 * Reference names (counters, no `_total` suffix, as the reference's statsd exporter writes them):
 * - `ratelimit_service_rate_limit_{total_hits,over_limit,near_limit,within_limit,shadow_mode}{domain,key1,key2}`
 * - `ratelimit_service_rate_limit_over_limit_with_local_cache{domain,key1,key2}`: over-limit hits
 *   answered by the over-limit cache (LOCAL_CACHE_SIZE_IN_BYTES), also counted in `over_limit`
 * - `ratelimit_service_config_load_success`, `ratelimit_service_config_load_error`
 * - `ratelimit_service_global_shadow_mode`
 * - `ratelimit_service_rate_limit_domain_not_found{domain}` (the reference's `<domain>.domain_not_found`;
 *   at most DETAILED_METRIC_MAX_VALUES domains, the rest as `_other_`)
 * - `ratelimit_service_should_rate_limit_error{err_type}`: `redis_error` (store), `service_error` (the rest)
 * - `ratelimit_service_total_requests{grpc_method}`, `ratelimit_service_response_time_seconds{grpc_method}`
 *   (the decision latency histogram)
 * sluice additions:
 * - `sluice_requests_total{result}`: ok, over_limit, invalid, unavailable, error
 * - `sluice_store_duration_seconds{result}`: store latency (ok, error)
 * - `sluice_store_errors_total{kind}`: timeout, unavailable, error
 * - `sluice_store_circuit_breaker_state{state}`: 1 for the current state of closed, open, half_open
 * - `sluice_config_rules`, `sluice_config_last_load_success_timestamp_seconds`
 * - `sluice_over_limit_cache_hits_total` (requests answered without the store),
 *   `sluice_over_limit_cache_entries`
 * - `sluice_memory_store_evictions_total`, `sluice_memory_store_evicted_hits_total` (hits counted by
 *   the evicted counters: what eviction forgave, at most), `sluice_memory_store_counters`,
 *   `sluice_memory_store_bytes` (estimated) and `sluice_memory_store_max_bytes` (MEMORY_STORE_MAX_BYTES)
 * - Node.js process metrics (`process_*`, `nodejs_*`).
 * With WORKERS > 1 the cluster primary serves the sum over workers (cluster/primary.ts) and adds
 * `sluice_workers` and `sluice_worker_restarts_total`.
 */
export interface MetricsOptions {
  /** NEAR_LIMIT_RATIO. */
  readonly nearLimitRatio: number;
  /** DETAILED_METRIC_MAX_VALUES: distinct label sets per detailed rule before `_other_`. */
  readonly detailedMetricMaxValues: number;
  /** CHARGE_REJECTED_HITS: how the store counted, needed to read its outcomes. */
  readonly chargeRejectedHits: boolean;
  /** Node.js process metrics; default true. */
  readonly processMetrics?: boolean;
}

export type RequestResult = 'ok' | 'over_limit' | 'invalid' | 'unavailable' | 'deadline_exceeded' | 'overloaded' | 'error';
export type StoreErrorKind = 'timeout' | 'unavailable' | 'error';

/** One decided descriptor, as the service hands it over. */
export interface DecidedDescriptor {
  readonly rule: LimitRule;
  readonly requestsPerUnit: number;
  readonly entries: readonly DescriptorEntry[];
  readonly hits: number;
  readonly admitted: boolean;
  readonly remaining: number;
  /** The limit came in the request (Envoy's `limit` override): its labels hold request values. */
  readonly override: boolean;
  /** Whether the rule blocks on its own (not shadow, not quota). */
  readonly enforced: boolean;
  /** The over-limit cache answered it (store/over-limit-cache-store.ts `isLocallyCached`). */
  readonly localCache?: boolean;
}

const RULE_STATS = ['totalHits', 'withinLimit', 'nearLimit', 'overLimit', 'shadowMode', 'overLimitWithLocalCache'] as const;
type RuleStat = (typeof RULE_STATS)[number];

/**
 * The per-rule counters of one label set, and the hits counted since the last scrape. Every
 * decided descriptor adds to `pending` (plain numbers); a scrape hands them to prom-client, whose
 * `inc` hashes the labels on every call (two to four per descriptor, which was about 3 % of the
 * memory store's CPU under load).
 */
interface RuleSeries {
  readonly counters: Readonly<Record<RuleStat, Counter.Internal>>;
  readonly pending: Record<RuleStat, number>;
  /** In `dirtySeries`: some of `pending` is not 0. */
  dirty: boolean;
}

const RULE_LABELS = ['domain', 'key1', 'key2'] as const;
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const BREAKER_STATES: readonly BreakerState[] = ['closed', 'open', 'half_open'];
/** Synthetic rule id under which limits sent in requests share one cap, per domain. */
const OVERRIDE_CAP_ID = '\u0000override:';

export class SluiceMetrics {
  readonly registry = new Registry();
  private readonly totalHits: Counter<(typeof RULE_LABELS)[number]>;
  private readonly overLimit: Counter<(typeof RULE_LABELS)[number]>;
  private readonly nearLimit: Counter<(typeof RULE_LABELS)[number]>;
  private readonly withinLimit: Counter<(typeof RULE_LABELS)[number]>;
  private readonly shadowMode: Counter<(typeof RULE_LABELS)[number]>;
  private readonly overLimitWithLocalCache: Counter<(typeof RULE_LABELS)[number]>;
  private readonly overLimitCacheHits: Counter;
  private readonly overLimitCacheEntries: Gauge;
  private readonly memoryEvictions: Counter;
  private readonly memoryEvictedHits: Counter;
  /** Read when the metrics are scraped: the memory store's fill level. */
  private memoryStats: (() => MemoryStoreStats) | undefined;
  private readonly configLoadSuccess: Counter;
  private readonly configLoadError: Counter;
  private readonly globalShadowModeHits: Counter;
  private readonly domainNotFoundHits: Counter<'domain'>;
  private readonly shouldRateLimitError: Counter<'err_type'>;
  private readonly totalRequests: Counter<'grpc_method'>;
  private readonly responseTime: FastHistogram<'grpc_method'>;
  private readonly shouldRateLimitTime: HistogramSeries;
  private readonly requests: Counter<'result'>;
  private readonly storeDuration: FastHistogram<'result'>;
  private readonly storeDurationOk: HistogramSeries;
  private readonly storeDurationError: HistogramSeries;
  private readonly storeErrors: Counter<'kind'>;
  private readonly breakerState: Gauge<'state'>;
  private readonly breakerTransitions: Counter<'state'>;
  private readonly descriptorsInFlight: Gauge;
  private readonly configRules: Gauge;
  private readonly configLoadedAt: Gauge;

  /** Series of rules without request values in their labels, built once per rule object. */
  private readonly staticSeries = new WeakMap<LimitRule, RuleSeries>();
  /** Series with hits not yet handed to prom-client. */
  private readonly dirtySeries: RuleSeries[] = [];
  /** Requests finished since the last scrape, by result (see `RuleSeries` for why). */
  private readonly pendingRequests = new Map<RequestResult, number>();
  /** Series by label identity, for detailed and override rules (bounded by the cap). */
  private readonly detailedSeries = new Map<string, RuleSeries>();
  private readonly cap: DetailedLabelCap;

  constructor(private readonly options: MetricsOptions) {
    const registers = [this.registry];
    // Counts kept by the hot path are handed over before prom-client reads any of them.
    const collect = (): void => this.handOverPending();
    const ruleCounter = (stat: string, help: string): Counter<(typeof RULE_LABELS)[number]> =>
      new Counter({ name: `ratelimit_service_rate_limit_${stat}`, help, labelNames: RULE_LABELS, registers, collect });
    this.totalHits = ruleCounter('total_hits', 'Hits on a rule (hits_addend summed), whatever the outcome');
    this.overLimit = ruleCounter('over_limit', 'Hits over the limit of a rule');
    this.nearLimit = ruleCounter('near_limit', 'Hits above NEAR_LIMIT_RATIO of the limit of a rule, not over it');
    this.withinLimit = ruleCounter('within_limit', 'Hits within the limit of a rule');
    this.shadowMode = ruleCounter('shadow_mode', 'Hits over the limit of a shadow_mode rule (let through)');
    this.overLimitWithLocalCache = ruleCounter(
      'over_limit_with_local_cache',
      'Hits over the limit of a rule answered by the over-limit cache, without the store',
    );
    this.overLimitCacheHits = new Counter({
      name: 'sluice_over_limit_cache_hits_total',
      help: 'Requests answered over limit by the over-limit cache, without calling the store',
      registers,
    });
    this.overLimitCacheEntries = new Gauge({
      name: 'sluice_over_limit_cache_entries',
      help: 'Counters the over-limit cache holds as rejected until their retry time',
      registers,
    });
    this.memoryEvictions = new Counter({
      name: 'sluice_memory_store_evictions_total',
      help: 'Counters the memory store evicted to stay within MEMORY_STORE_MAX_BYTES (expired ones swept are not counted)',
      registers,
    });
    this.memoryEvictedHits = new Counter({
      name: 'sluice_memory_store_evicted_hits_total',
      help: 'Hits the evicted counters held at their last decision: at most what eviction forgave',
      registers,
    });
    const fill = (name: string, help: string, read: (stats: MemoryStoreStats) => number): void => {
      const metrics = this;
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const stats = metrics.memoryStats?.();
          if (stats !== undefined) this.set(read(stats));
        },
      });
    };
    fill('sluice_memory_store_counters', 'Counters the memory store holds (expired ones not yet swept included)', (s) => s.counters);
    fill('sluice_memory_store_bytes', 'Estimated bytes the memory store holds: columns as allocated, keys, packed states, index', (s) => s.bytes);
    fill('sluice_memory_store_max_bytes', 'MEMORY_STORE_MAX_BYTES in force (derived from the heap limit when set to 0)', (s) => s.maxBytes);
    this.configLoadSuccess = new Counter({
      name: 'ratelimit_service_config_load_success',
      help: 'Config loads accepted (the first one and every reload)',
      registers,
    });
    this.configLoadError = new Counter({
      name: 'ratelimit_service_config_load_error',
      help: 'Config reloads refused (the previous config kept serving)',
      registers,
    });
    this.globalShadowModeHits = new Counter({
      name: 'ratelimit_service_global_shadow_mode',
      help: 'Requests answered OK only because of SHADOW_MODE',
      registers,
    });
    this.domainNotFoundHits = new Counter({
      name: 'ratelimit_service_rate_limit_domain_not_found',
      help: 'Requests for a domain no config file defines (answered OK, no limits)',
      labelNames: ['domain'],
      registers,
    });
    this.shouldRateLimitError = new Counter({
      name: 'ratelimit_service_should_rate_limit_error',
      help: 'Failed decisions: redis_error (store unavailable), service_error (bad request, no config, bug)',
      labelNames: ['err_type'],
      registers,
    });
    this.totalRequests = new Counter({
      name: 'ratelimit_service_total_requests',
      help: 'ShouldRateLimit calls (gRPC and POST /json)',
      labelNames: ['grpc_method'],
      registers,
      collect,
    });
    this.responseTime = new FastHistogram({
      name: 'ratelimit_service_response_time_seconds',
      help: 'Decision latency, from request to response, in seconds',
      labelName: 'grpc_method',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.shouldRateLimitTime = this.responseTime.series('ShouldRateLimit');
    this.requests = new Counter({
      name: 'sluice_requests_total',
      help:
        'Decisions by result: ok, over_limit, invalid (bad request), unavailable (no config or store), ' +
        'deadline_exceeded (the caller deadline passed first), overloaded (shed: RESOURCE_EXHAUSTED), error (bug)',
      labelNames: ['result'],
      registers,
      collect,
    });
    this.storeDuration = new FastHistogram({
      name: 'sluice_store_duration_seconds',
      help: 'Counter store call latency in seconds, until its reply (late replies included)',
      labelName: 'result',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.storeDurationOk = this.storeDuration.series('ok');
    this.storeDurationError = this.storeDuration.series('error');
    this.storeErrors = new Counter({
      name: 'sluice_store_errors_total',
      help: 'Counter store calls that failed: timeout (no reply in time), unavailable (connection), error (the store refused)',
      labelNames: ['kind'],
      registers,
    });
    this.breakerState = new Gauge({
      name: 'sluice_store_circuit_breaker_state',
      help: 'Store circuit breaker: 1 for the current state (closed, open, half_open), 0 for the others; across workers, how many are in each',
      labelNames: ['state'],
      registers,
    });
    this.breakerTransitions = new Counter({
      name: 'sluice_store_circuit_breaker_transitions_total',
      help: 'Store circuit breaker transitions, by the state entered',
      labelNames: ['state'],
      registers,
    });
    this.descriptorsInFlight = new Gauge({
      name: 'sluice_descriptors_in_flight',
      help: 'Descriptors of the calls being decided now (the work bound MAX_DESCRIPTORS_IN_FLIGHT applies to it)',
      registers,
    });
    // Across cluster workers (WORKERS > 1) counters, histograms and the other gauges sum; these
    // two describe the one config every worker loads: the most rules, and the oldest load (a
    // worker that missed a reload shows as the oldest).
    this.configRules = new Gauge({ name: 'sluice_config_rules', help: 'Rules in the config serving now', registers, aggregator: 'max' });
    this.configLoadedAt = new Gauge({
      name: 'sluice_config_last_load_success_timestamp_seconds',
      help: 'When the config serving now was loaded (Unix seconds; across workers, the oldest)',
      registers,
      aggregator: 'min',
    });
    for (const result of ['ok', 'over_limit', 'invalid', 'unavailable', 'deadline_exceeded', 'overloaded', 'error'] as const) {
      this.requests.inc({ result }, 0);
    }
    for (const state of BREAKER_STATES) this.breakerTransitions.inc({ state }, 0);
    this.totalRequests.inc({ grpc_method: 'ShouldRateLimit' }, 0);
    this.cap = new DetailedLabelCap(options.detailedMetricMaxValues);
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text for `GET /metrics`. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  // --- decisions ---------------------------------------------------------------------------

  /**
   * Records the per-rule stats of one decided request. Descriptors without a finite limit
   * (unmatched, unlimited, replaced) record nothing, as in the reference.
   */
  recordDescriptors(descriptors: readonly DecidedDescriptor[]): void {
    if (descriptors.length === 0) return;
    // The store charges a request's hits only when every blocking check admits them, unless
    // CHARGE_REJECTED_HITS; that decides how an outcome's `remaining` reads.
    const charged = this.options.chargeRejectedHits || descriptors.every((d) => d.admitted || !d.enforced);
    for (const d of descriptors) {
      const stats = hitStats({
        limit: d.requestsPerUnit,
        hits: d.hits,
        admitted: d.admitted,
        remaining: d.remaining,
        charged,
        shadowMode: d.rule.shadowMode,
        nearLimitRatio: this.options.nearLimitRatio,
      });
      const series = this.seriesFor(d);
      const pending = series.pending;
      pending.totalHits += stats.totalHits;
      pending.withinLimit += stats.withinLimit;
      pending.nearLimit += stats.nearLimit;
      pending.overLimit += stats.overLimit;
      pending.shadowMode += stats.shadowMode;
      if (d.localCache === true) pending.overLimitWithLocalCache += stats.overLimit;
      if (!series.dirty) {
        series.dirty = true;
        this.dirtySeries.push(series);
      }
    }
  }

  /** Hands the counts the hot path kept to prom-client (at every scrape, before anything is read). */
  private handOverPending(): void {
    for (const series of this.dirtySeries) {
      for (const stat of RULE_STATS) {
        const value = series.pending[stat];
        if (value > 0) series.counters[stat].inc(value);
        series.pending[stat] = 0;
      }
      series.dirty = false;
    }
    this.dirtySeries.length = 0;
    let total = 0;
    for (const [result, count] of this.pendingRequests) {
      if (count === 0) continue;
      this.requests.inc({ result }, count);
      total += count;
      this.pendingRequests.set(result, 0);
    }
    if (total > 0) this.totalRequests.inc({ grpc_method: 'ShouldRateLimit' }, total);
  }

  /**
   * One finished ShouldRateLimit, from either front end. `storeFailure`: an `unavailable` result
   * came from the counter store (the reference's `redis_error`) rather than from a missing config.
   */
  requestFinished(result: RequestResult, seconds: number, storeFailure = false): void {
    this.pendingRequests.set(result, (this.pendingRequests.get(result) ?? 0) + 1);
    this.shouldRateLimitTime.observe(seconds);
    if (result !== 'ok' && result !== 'over_limit') {
      this.shouldRateLimitError.inc({ err_type: storeFailure ? 'redis_error' : 'service_error' });
    }
  }

  /** SHADOW_MODE turned an over-limit request into OK. */
  globalShadowMode(): void {
    this.globalShadowModeHits.inc();
  }

  /**
   * A request named a domain the config does not have. Callers choose the domain, so its label
   * takes at most DETAILED_METRIC_MAX_VALUES distinct values, the rest counted as `_other_`.
   */
  domainNotFound(domain: string): void {
    this.domainNotFoundHits.inc({ domain: this.cap.overCap('domain_not_found', domain) ? '_other_' : domain });
  }

  // --- config ------------------------------------------------------------------------------

  configLoaded(config: RateLimitConfig): void {
    this.configLoadSuccess.inc();
    this.configRules.set(config.rules().length);
    this.configLoadedAt.set(Date.now() / 1000);
  }

  configLoadFailed(): void {
    this.configLoadError.inc();
  }

  // --- store -------------------------------------------------------------------------------

  storeCall(seconds: number, error: StoreErrorKind | undefined): void {
    (error === undefined ? this.storeDurationOk : this.storeDurationError).observe(seconds);
    if (error !== undefined) this.storeErrors.inc({ kind: error });
  }

  /** The over-limit cache answered a request without the store. */
  overLimitCacheHit(): void {
    this.overLimitCacheHits.inc();
  }

  /** The over-limit cache's size, after every change. */
  overLimitCacheEntriesSet(entries: number): void {
    this.overLimitCacheEntries.set(entries);
  }

  /** One counter evicted by the memory store, which held `hits` at its last decision. */
  memoryStoreEvicted(hits: number): void {
    this.memoryEvictions.inc();
    if (hits > 0) this.memoryEvictedHits.inc(hits);
  }

  /** Where the memory store's fill level is read from at every scrape. */
  memoryStoreStats(read: () => MemoryStoreStats): void {
    this.memoryStats = read;
  }

  /** Publishes the breaker's state; call once at start and on every change. */
  breaker(state: BreakerState): void {
    for (const s of BREAKER_STATES) this.breakerState.set({ state: s }, s === state ? 1 : 0);
  }

  /** The breaker entered `state` (after the initial `breaker(state)`). */
  breakerTransition(state: BreakerState): void {
    this.breakerTransitions.inc({ state });
    this.breaker(state);
  }

  /** The descriptors being decided now, after every change. */
  descriptorsInFlightSet(descriptors: number): void {
    this.descriptorsInFlight.set(descriptors);
  }

  // --- internals ---------------------------------------------------------------------------

  private seriesFor(d: DecidedDescriptor): RuleSeries {
    if (!d.override && !d.rule.detailedMetric) {
      let series = this.staticSeries.get(d.rule);
      if (series === undefined) {
        series = this.series(staticLabels(d.rule, d.entries));
        this.staticSeries.set(d.rule, series);
      }
      return series;
    }
    const keepExact = !d.override;
    let labels = detailedLabels(d.rule, d.entries, false, keepExact);
    const capId = d.override ? `${OVERRIDE_CAP_ID}${d.rule.domain}` : d.rule.id;
    if (this.cap.overCap(capId, identity(labels))) labels = detailedLabels(d.rule, d.entries, true, keepExact);
    const id = identity(labels);
    let series = this.detailedSeries.get(id);
    if (series === undefined) {
      series = this.series(labels);
      this.detailedSeries.set(id, series);
    }
    return series;
  }

  /** The counters of one label set, created at 0 so that rates start from the first hit. */
  private series(labels: RuleLabels): RuleSeries {
    const child = (counter: Counter<(typeof RULE_LABELS)[number]>): Counter.Internal => {
      counter.inc(labels, 0);
      return counter.labels(labels);
    };
    return {
      counters: {
        totalHits: child(this.totalHits),
        withinLimit: child(this.withinLimit),
        nearLimit: child(this.nearLimit),
        overLimit: child(this.overLimit),
        shadowMode: child(this.shadowMode),
        overLimitWithLocalCache: child(this.overLimitWithLocalCache),
      },
      pending: { totalHits: 0, withinLimit: 0, nearLimit: 0, overLimit: 0, shadowMode: 0, overLimitWithLocalCache: 0 },
      dirty: false,
    };
  }
}

function identity(labels: RuleLabels): string {
  return `${labels.domain}\u0000${labels.key1 ?? ''}\u0000${labels.key2 ?? ''}`;
}
