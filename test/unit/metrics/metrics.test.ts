import { ConfigHolder } from '../../../src/config/config-holder';
import { parseConfigFiles } from '../../../src/config/load';
import type { RateLimitConfig } from '../../../src/config/types';
import { StoreError } from '../../../src/errors';
import { Limiter } from '../../../src/limiter/limiter';
import { InstrumentedStore } from '../../../src/metrics/instrumented-store';
import { SluiceMetrics } from '../../../src/metrics/metrics';
import { RlsService } from '../../../src/service/rate-limit-service';
import { DEFAULT_REQUEST_CAPS } from '../../../src/service/request-validation';
import type { RateLimitRequest } from '../../../src/service/types';
import type { CounterStore } from '../../../src/store/counter-store';
import { MemoryStore } from '../../../src/store/memory/memory-store';
import { ManualClock } from '../../../src/util/clock';
import { family, parseMetrics } from '../../support/prometheus';

const CONFIG = `
domain: api
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 10 }
    descriptors:
      - key: path
        value: /orders
        rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: user
    detailed_metric: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: vip
    rate_limit: { unlimited: true }
`;

function loadConfig(): RateLimitConfig {
  const { config, problems } = parseConfigFiles([{ name: 'config.yaml', content: CONFIG }], { mergeDomainConfig: false });
  expect(problems).toEqual([]);
  return config!;
}

function req(entries: Record<string, string>[], hitsAddend = 0): RateLimitRequest {
  return {
    domain: 'api',
    hitsAddend,
    descriptors: entries.map((e) => ({ entries: Object.entries(e).map(([key, value]) => ({ key, value })) })),
  };
}

const T0 = 1_000 * 60_000;

function setup(options: { detailedMetricMaxValues?: number; shadowMode?: boolean; store?: CounterStore } = {}) {
  const metrics = new SluiceMetrics({
    nearLimitRatio: 0.8,
    detailedMetricMaxValues: options.detailedMetricMaxValues ?? 100,
    chargeRejectedHits: false,
    processMetrics: false,
  });
  const configs = new ConfigHolder();
  configs.set(loadConfig());
  const store = new InstrumentedStore(options.store ?? new MemoryStore(new ManualClock(T0)), metrics);
  const service = new RlsService(configs, new Limiter(store, { chargeRejectedHits: false }), {
    caps: DEFAULT_REQUEST_CAPS,
    shadowMode: options.shadowMode ?? false,
    metrics,
  });
  return { metrics, service, store };
}

async function scrape(metrics: SluiceMetrics): Promise<Map<string, number>> {
  return parseMetrics(await metrics.text());
}

describe('Prometheus metrics', () => {
  it('counts total/within/near/over per rule with the reference names and labels', async () => {
    const { metrics, service, store } = setup();
    // 12 single hits on client_id (limit 10, near from 8): 10 admitted, 2 over.
    for (let i = 0; i < 12; i++) await service.shouldRateLimit(req([{ client_id: 'c1' }]));
    // Nested rule, limit 2: a bulk addend of 3 is over (before 0, after 3: 1 over, 2 − max(1, 0) = 1 near).
    await service.shouldRateLimit(req([{ client_id: 'c2', path: '/orders' }], 3));
    const m = await scrape(metrics);
    expect(family(m, 'ratelimit_service_rate_limit_total_hits')).toEqual({
      'ratelimit_service_rate_limit_total_hits{domain="api",key1="client_id"}': 12,
      'ratelimit_service_rate_limit_total_hits{domain="api",key1="client_id",key2="path_/orders"}': 3,
    });
    expect(family(m, 'ratelimit_service_rate_limit_within_limit')).toEqual({
      'ratelimit_service_rate_limit_within_limit{domain="api",key1="client_id"}': 10,
      'ratelimit_service_rate_limit_within_limit{domain="api",key1="client_id",key2="path_/orders"}': 0,
    });
    expect(family(m, 'ratelimit_service_rate_limit_near_limit')).toEqual({
      'ratelimit_service_rate_limit_near_limit{domain="api",key1="client_id"}': 2,
      'ratelimit_service_rate_limit_near_limit{domain="api",key1="client_id",key2="path_/orders"}': 1,
    });
    expect(family(m, 'ratelimit_service_rate_limit_over_limit')).toEqual({
      'ratelimit_service_rate_limit_over_limit{domain="api",key1="client_id"}': 2,
      'ratelimit_service_rate_limit_over_limit{domain="api",key1="client_id",key2="path_/orders"}': 1,
    });
    expect(family(m, 'sluice_requests_total')).toEqual({
      'sluice_requests_total{result="ok"}': 10,
      'sluice_requests_total{result="over_limit"}': 3,
      'sluice_requests_total{result="invalid"}': 0,
      'sluice_requests_total{result="unavailable"}': 0,
      'sluice_requests_total{result="deadline_exceeded"}': 0,
      'sluice_requests_total{result="overloaded"}': 0,
      'sluice_requests_total{result="error"}': 0,
    });
    expect(m.get('ratelimit_service_total_requests{grpc_method="ShouldRateLimit"}')).toBe(13);
    expect(m.get('ratelimit_service_response_time_seconds_count{grpc_method="ShouldRateLimit"}')).toBe(13);
    expect(m.get('sluice_store_duration_seconds_count{result="ok"}')).toBe(13);
    await store.close();
  });

  it('mirrors shadow rule overs into shadow_mode and counts global shadow mode', async () => {
    const { metrics, service, store } = setup({ shadowMode: true });
    await service.shouldRateLimit(req([{ shadow: 'x' }]));
    await service.shouldRateLimit(req([{ shadow: 'x' }]));
    // Global shadow: client over its limit of 10 is let through.
    for (let i = 0; i < 11; i++) await service.shouldRateLimit(req([{ client_id: 'g' }]));
    const m = await scrape(metrics);
    expect(m.get('ratelimit_service_rate_limit_shadow_mode{domain="api",key1="shadow"}')).toBe(1);
    expect(m.get('ratelimit_service_rate_limit_over_limit{domain="api",key1="shadow"}')).toBe(1);
    expect(m.get('ratelimit_service_global_shadow_mode')).toBe(1);
    await store.close();
  });

  it('counts requests for an unknown domain per domain, folding domains past the cap into _other_', async () => {
    const { metrics, service, store } = setup({ detailedMetricMaxValues: 2 });
    for (const domain of ['a', 'a', 'b', 'c', 'd', 'api']) await service.shouldRateLimit({ ...req([{ client_id: 'x' }]), domain });
    const m = await scrape(metrics);
    expect(m.get('ratelimit_service_rate_limit_domain_not_found{domain="a"}')).toBe(2);
    expect(m.get('ratelimit_service_rate_limit_domain_not_found{domain="b"}')).toBe(1);
    expect(m.get('ratelimit_service_rate_limit_domain_not_found{domain="_other_"}')).toBe(2);
    expect(m.get('ratelimit_service_rate_limit_domain_not_found{domain="api"}')).toBeUndefined();
    await store.close();
  });

  it('records nothing per rule for unlimited and unmatched descriptors', async () => {
    const { metrics, service, store } = setup();
    await service.shouldRateLimit(req([{ vip: 'x' }, { nomatch: 'y' }]));
    const m = await scrape(metrics);
    expect(family(m, 'ratelimit_service_rate_limit_total_hits')).toEqual({});
    expect(m.get('sluice_requests_total{result="ok"}')).toBe(1);
    await store.close();
  });

  it('puts values in labels only for detailed_metric rules, then caps them into _other_', async () => {
    const { metrics, service, store } = setup({ detailedMetricMaxValues: 2 });
    for (const user of ['alice', 'bob', 'carol', 'dave', 'alice']) await service.shouldRateLimit(req([{ user }]));
    const m = await scrape(metrics);
    expect(family(m, 'ratelimit_service_rate_limit_total_hits')).toEqual({
      'ratelimit_service_rate_limit_total_hits{domain="api",key1="user_alice"}': 2,
      'ratelimit_service_rate_limit_total_hits{domain="api",key1="user_bob"}': 1,
      'ratelimit_service_rate_limit_total_hits{domain="api",key1="user__other_"}': 2,
    });
    await store.close();
  });

  it('caps limits sent in the request (they carry request values) per domain', async () => {
    const { metrics, service, store } = setup({ detailedMetricMaxValues: 1 });
    const override = (value: string): RateLimitRequest => ({
      domain: 'api',
      hitsAddend: 1,
      descriptors: [{ entries: [{ key: 'ip', value }], limitOverride: { requestsPerUnit: 5, unit: 2 } }],
    });
    for (const ip of ['1.1.1.1', '2.2.2.2', '3.3.3.3']) await service.shouldRateLimit(override(ip));
    const m = await scrape(metrics);
    expect(family(m, 'ratelimit_service_rate_limit_total_hits')).toEqual({
      'ratelimit_service_rate_limit_total_hits{domain="api",key1="ip_1.1.1.1"}': 1,
      'ratelimit_service_rate_limit_total_hits{domain="api",key1="ip__other_"}': 2,
    });
    await store.close();
  });

  it('counts failed requests by result and store errors by kind', async () => {
    let fail: StoreError | undefined;
    const flaky: CounterStore = {
      decide: async (checks, options) => {
        if (fail !== undefined) throw fail;
        return new MemoryStore(new ManualClock(T0)).decide(checks, options);
      },
      close: async () => undefined,
    };
    const { metrics, service } = setup({ store: flaky });
    await expect(service.shouldRateLimit(req([]))).rejects.toThrow('descriptors: must not be empty');
    fail = new StoreError('connection refused', true);
    await expect(service.shouldRateLimit(req([{ client_id: 'x' }]))).rejects.toThrow('connection refused');
    fail = new StoreError('NOSCRIPT', false);
    await expect(service.shouldRateLimit(req([{ client_id: 'x' }]))).rejects.toThrow('NOSCRIPT');
    const m = await scrape(metrics);
    expect(m.get('sluice_requests_total{result="invalid"}')).toBe(1);
    expect(m.get('sluice_requests_total{result="unavailable"}')).toBe(2);
    expect(m.get('ratelimit_service_should_rate_limit_error{err_type="service_error"}')).toBe(1);
    expect(m.get('ratelimit_service_should_rate_limit_error{err_type="redis_error"}')).toBe(2);
    expect(m.get('sluice_store_errors_total{kind="unavailable"}')).toBe(1);
    expect(m.get('sluice_store_errors_total{kind="error"}')).toBe(1);
    expect(m.get('sluice_store_duration_seconds_count{result="error"}')).toBe(2);
  });

  it('counts a reply that came after its caller stopped waiting as a store timeout', async () => {
    const recorded: (string | undefined)[] = [];
    const slow = new InstrumentedStore(
      { decide: async () => [], close: async () => undefined },
      { storeCall: (_s, kind) => recorded.push(kind) },
    );
    await slow.decide([], { chargeRejectedHits: false, ticket: { abandoned: true } });
    await slow.decide([], { chargeRejectedHits: false, ticket: { abandoned: false } });
    await slow.decide([], { chargeRejectedHits: false });
    expect(recorded).toEqual(['timeout', undefined, undefined]);
  });

  it('publishes config loads, the breaker state and process metrics', async () => {
    const metrics = new SluiceMetrics({ nearLimitRatio: 0.8, detailedMetricMaxValues: 10, chargeRejectedHits: false });
    metrics.configLoaded(loadConfig());
    metrics.configLoadFailed();
    metrics.breaker('closed');
    metrics.breaker('open');
    const text = await metrics.text();
    const m = parseMetrics(text);
    expect(m.get('ratelimit_service_config_load_success')).toBe(1);
    expect(m.get('ratelimit_service_config_load_error')).toBe(1);
    expect(m.get('sluice_config_rules')).toBe(5);
    expect(m.get('sluice_config_last_load_success_timestamp_seconds')).toBeGreaterThan(1.7e9);
    expect(family(m, 'sluice_store_circuit_breaker_state')).toEqual({
      'sluice_store_circuit_breaker_state{state="closed"}': 0,
      'sluice_store_circuit_breaker_state{state="open"}': 1,
      'sluice_store_circuit_breaker_state{state="half_open"}': 0,
    });
    expect(text).toContain('process_cpu_user_seconds_total');
    expect(text).toContain('# TYPE ratelimit_service_rate_limit_total_hits counter');
  });
});
