import { StoreError } from '../../src/errors';
import type { CounterStore } from '../../src/store/counter-store';
import { MemoryStore } from '../../src/store/memory/memory-store';
import { ManualClock } from '../../src/util/clock';
import { family, parseMetrics } from '../support/prometheus';
import { type StartedSluice, startTestSluice } from '../support/start-sluice';

// 2 s into a minute.
const T0 = 1_000 * 60_000 + 2_000;

const CONFIG = `
domain: api
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 3, name: per_client }
    descriptors:
      - key: path
        value: /orders
        rate_limit: { unit: hour, requests_per_unit: 100, algorithm: fixed_window }
  - key: vip
    rate_limit: { unlimited: true }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: second, requests_per_unit: 1, unit_multiplier: 10 }
`;

interface HttpAnswer {
  status: number;
  contentType: string | null;
  body: string;
}

async function http(port: number, path: string, init?: RequestInit): Promise<HttpAnswer> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, init);
  return { status: response.status, contentType: response.headers.get('content-type'), body: await response.text() };
}

function postJson(port: number, body: unknown): Promise<HttpAnswer> {
  return http(port, '/json', { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
}

describe('HTTP endpoints', () => {
  let sluice: StartedSluice;
  let clock: ManualClock;
  let storeFails = false;

  beforeAll(async () => {
    clock = new ManualClock(T0);
    const memory = new MemoryStore(clock);
    // Fails on demand, to see what /json answers when the store cannot.
    const store: CounterStore = {
      decide: (checks, options) =>
        storeFails ? Promise.reject(new StoreError('store unavailable: connection refused', true)) : memory.decide(checks, options),
      close: () => memory.close(),
    };
    sluice = await startTestSluice({ files: { 'config.yaml': CONFIG }, clock, store });
  });

  afterAll(() => sluice.stop());

  describe('POST /json on PORT', () => {
    it('answers 200 with proto3 JSON, then 429 when over the limit', async () => {
      const request = { domain: 'api', descriptors: [{ entries: [{ key: 'client_id', value: 'json-1' }] }], hitsAddend: 1 };
      const first = await postJson(sluice.app.httpPort, request);
      expect(first.status).toBe(200);
      expect(first.contentType).toBe('application/json');
      expect(JSON.parse(first.body)).toEqual({
        overallCode: 'OK',
        statuses: [
          {
            code: 'OK',
            currentLimit: { name: 'per_client', requestsPerUnit: 3, unit: 'MINUTE' },
            limitRemaining: 2,
            durationUntilReset: expect.stringMatching(/^\d+s$/),
          },
        ],
      });
      // snake_case is accepted too; 2 more hits use the limit up.
      const second = await postJson(sluice.app.httpPort, {
        domain: 'api',
        descriptors: [{ entries: [{ key: 'client_id', value: 'json-1' }] }],
        hits_addend: 2,
      });
      expect(second.status).toBe(200);
      expect(JSON.parse(second.body).statuses[0].limitRemaining).toBeUndefined();
      const over = await postJson(sluice.app.httpPort, request);
      expect(over.status).toBe(429);
      const body = JSON.parse(over.body);
      expect(body.overallCode).toBe('OVER_LIMIT');
      expect(body.statuses[0]).toMatchObject({ code: 'OVER_LIMIT', durationUntilReset: expect.stringMatching(/^\d+s$/) });
      expect(body.statuses[0].limitRemaining).toBeUndefined();
    });

    it('answers unmatched and unlimited descriptors like gRPC does', async () => {
      const answer = await postJson(sluice.app.httpPort, {
        domain: 'api',
        descriptors: [{ entries: [{ key: 'vip', value: 'x' }] }, { entries: [{ key: 'nothing', value: 'x' }] }],
      });
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toEqual({ overallCode: 'OK', statuses: [{ code: 'OK', limitRemaining: 4294967295 }, { code: 'OK' }] });
    });

    it.each([
      ['', 'Bad Request: empty body\n'],
      ['{"domain":', expect.stringMatching(/^Bad Request: invalid JSON: /)],
      [{ domain: 'api', descriptors: [], bogus: 1 }, 'Bad Request: bogus: unknown field\n'],
      [{ domain: '', descriptors: [{ entries: [{ key: 'k', value: 'v' }] }] }, 'Bad Request: domain: must not be empty\n'],
      [{ domain: 'api', descriptors: [] }, 'Bad Request: descriptors: must not be empty\n'],
    ])('answers 400 for %j', async (body, message) => {
      const answer = await postJson(sluice.app.httpPort, body);
      expect(answer.status).toBe(400);
      expect(answer.body).toEqual(message);
    });

    it('answers 405 for another method and 404 elsewhere', async () => {
      expect((await http(sluice.app.httpPort, '/json')).status).toBe(405);
      expect((await http(sluice.app.httpPort, '/json/')).status).toBe(404);
    });

    it('answers 413 for a body over the size cap', async () => {
      const answer = await postJson(sluice.app.httpPort, 'x'.repeat(2 * 1024 * 1024));
      expect(answer.status).toBe(413);
    });

    it('answers 503 naming the cause when the store cannot decide', async () => {
      storeFails = true;
      try {
        const answer = await postJson(sluice.app.httpPort, { domain: 'api', descriptors: [{ entries: [{ key: 'client_id', value: 'z' }] }] });
        expect(answer).toEqual({
          status: 503,
          contentType: 'text/plain; charset=utf-8',
          body: 'Service Unavailable: store unavailable: connection refused\n',
        });
      } finally {
        storeFails = false;
      }
    });
  });

  describe('debug port', () => {
    it('lists the loaded limits at /rlconfig in the reference format, with sluice fields after', async () => {
      const answer = await http(sluice.app.debugPort, '/rlconfig');
      expect(answer.status).toBe(200);
      expect(answer.body).toBe(
        [
          'api.client_id: unit=MINUTE requests_per_unit=3, shadow_mode: false, quota_mode: false, algorithm: sliding_window, unit_multiplier: 1, name: per_client',
          'api.client_id.path_/orders: unit=HOUR requests_per_unit=100, shadow_mode: false, quota_mode: false, algorithm: fixed_window, unit_multiplier: 1',
          'api.vip: unit=UNKNOWN requests_per_unit=0, shadow_mode: false, quota_mode: false, unlimited: true',
          'api.shadow: unit=SECOND requests_per_unit=1, shadow_mode: true, quota_mode: false, algorithm: sliding_window, unit_multiplier: 10',
          '',
        ].join('\n'),
      );
    });

    it('lists its endpoints at /', async () => {
      const answer = await http(sluice.app.debugPort, '/');
      expect(answer.body.split('\n')).toEqual(
        expect.arrayContaining(['/metrics: Prometheus metrics', expect.stringMatching(/^\/rlconfig: /)]),
      );
    });

    it('serves Prometheus metrics after a known sequence of calls', async () => {
      // A fresh client value on a 3-per-minute rule: 4 calls over gRPC, the 4th over the limit.
      for (let i = 0; i < 4; i++) {
        await sluice.client.shouldRateLimit({ domain: 'api', descriptors: [{ entries: [{ key: 'client_id', value: 'm' }] }] });
      }
      // Shadow rule (1 per 10 s): the 2nd hit is over, let through, counted as shadow_mode.
      for (let i = 0; i < 2; i++) {
        await sluice.client.shouldRateLimit({ domain: 'api', descriptors: [{ entries: [{ key: 'shadow', value: 's' }] }] });
      }
      const answer = await http(sluice.app.debugPort, '/metrics');
      expect(answer.status).toBe(200);
      expect(answer.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
      const m = parseMetrics(answer.body);
      // Together with the /json calls above: json-1 (1 + 2 + 1 hits, 1 over) and 'z' (store failed: nothing).
      expect(family(m, 'ratelimit_service_rate_limit_total_hits')).toEqual({
        'ratelimit_service_rate_limit_total_hits{domain="api",key1="client_id"}': 8,
        'ratelimit_service_rate_limit_total_hits{domain="api",key1="shadow"}': 2,
      });
      expect(m.get('ratelimit_service_rate_limit_over_limit{domain="api",key1="client_id"}')).toBe(2);
      expect(m.get('ratelimit_service_rate_limit_within_limit{domain="api",key1="client_id"}')).toBe(6);
      expect(m.get('ratelimit_service_rate_limit_near_limit{domain="api",key1="client_id"}')).toBe(2);
      expect(m.get('ratelimit_service_rate_limit_shadow_mode{domain="api",key1="shadow"}')).toBe(1);
      expect(m.get('ratelimit_service_rate_limit_shadow_mode{domain="api",key1="client_id"}')).toBe(0);
      expect(m.get('ratelimit_service_config_load_success')).toBe(1);
      expect(m.get('ratelimit_service_config_load_error')).toBe(0);
      expect(m.get('sluice_requests_total{result="over_limit"}')).toBe(2);
      expect(m.get('sluice_requests_total{result="unavailable"}')).toBe(1);
      expect(m.get('ratelimit_service_should_rate_limit_error{err_type="redis_error"}')).toBe(1);
      expect(m.get('sluice_store_errors_total{kind="unavailable"}')).toBe(1);
      expect(m.get('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    });
  });

  describe('GET /healthcheck on PORT', () => {
    it('reports config, store and draining state', async () => {
      expect(await http(sluice.app.httpPort, '/healthcheck')).toMatchObject({ status: 200, body: 'OK' });
      sluice.app.health.setStoreOk(false);
      expect(await http(sluice.app.httpPort, '/healthcheck')).toMatchObject({ status: 500, body: 'NOT OK: store unavailable' });
      sluice.app.health.setStoreOk(true);
      sluice.app.health.setDraining(true);
      expect(await http(sluice.app.httpPort, '/healthcheck')).toMatchObject({ status: 500, body: 'NOT OK: draining' });
      sluice.app.health.setDraining(false);
      expect(await sluice.client.health('')).toBe('SERVING');
    });
  });
});
