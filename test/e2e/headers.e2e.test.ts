import { ManualClock } from '../../src/util/clock';
import type { WireRequestShape } from '../support/rls-client';
import { type StartedSluice, startTestSluice } from '../support/start-sluice';

// 10 s into a minute (1970-01-01 was a Thursday, so this is also a week boundary + 10 s).
const T0 = 2_000 * 7 * 86_400_000 + 10_000;

const CONFIG = `
domain: api
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 10, algorithm: fixed_window }
  - key: user_id
    rate_limit: { unit: hour, requests_per_unit: 100, algorithm: fixed_window }
`;

function request(...descriptors: Record<string, string>[]): WireRequestShape {
  return {
    domain: 'api',
    hits_addend: 0,
    descriptors: descriptors.map((d) => ({ entries: Object.entries(d).map(([key, value]) => ({ key, value })) })),
  };
}

describe('rate-limit headers over gRPC', () => {
  let sluice: StartedSluice | undefined;
  afterEach(async () => {
    await sluice?.stop();
    sluice = undefined;
  });

  it("LIMIT_RESPONSE_HEADERS_ENABLED: the reference's RateLimit-* from the tightest descriptor, Retry-After when over", async () => {
    sluice = await startTestSluice({
      files: { 'api.yaml': CONFIG },
      clock: new ManualClock(T0),
      env: { LIMIT_RESPONSE_HEADERS_ENABLED: 'true' },
    });
    const first = await sluice.client.shouldRateLimit(request({ user_id: 'u' }, { client_id: 'c' }));
    expect(first.overall_code).toBe('OK');
    expect(first.response_headers_to_add).toEqual([
      { key: 'RateLimit-Limit', value: '10' },
      { key: 'RateLimit-Remaining', value: '9' },
      { key: 'RateLimit-Reset', value: '50' },
    ]);
    for (let i = 0; i < 9; i++) await sluice.client.shouldRateLimit(request({ client_id: 'c' }));
    const over = await sluice.client.shouldRateLimit(request({ client_id: 'c' }, { user_id: 'u' }));
    expect(over.overall_code).toBe('OVER_LIMIT');
    expect(over.response_headers_to_add).toEqual([
      { key: 'RateLimit-Limit', value: '10' },
      { key: 'RateLimit-Remaining', value: '0' },
      { key: 'RateLimit-Reset', value: '50' },
      { key: 'Retry-After', value: '50' },
    ]);
    // The fields Envoy's own x-ratelimit-* mode reads are on the status either way.
    expect(over.statuses?.[0]).toEqual({
      code: 'OVER_LIMIT',
      current_limit: { requests_per_unit: 10, unit: 'MINUTE' },
      limit_remaining: 0,
      duration_until_reset: { seconds: 50 },
    });
  });

  it('uses the configured header names', async () => {
    sluice = await startTestSluice({
      files: { 'api.yaml': CONFIG },
      clock: new ManualClock(T0),
      args: ['--limit-response-headers-enabled', 'true', '--limit-limit-header', 'X-Limit'],
      env: { LIMIT_REMAINING_HEADER: 'X-Left', LIMIT_RESET_HEADER: 'X-Reset' },
    });
    const res = await sluice.client.shouldRateLimit(request({ client_id: 'c' }));
    expect(res.response_headers_to_add).toEqual([
      { key: 'X-Limit', value: '10' },
      { key: 'X-Left', value: '9' },
      { key: 'X-Reset', value: '50' },
    ]);
  });

  it('adds no headers by default, and none when no descriptor is limited', async () => {
    sluice = await startTestSluice({ files: { 'api.yaml': CONFIG }, clock: new ManualClock(T0) });
    const res = await sluice.client.shouldRateLimit(request({ client_id: 'c' }));
    expect(res.response_headers_to_add ?? []).toEqual([]);
    await sluice.stop();
    sluice = await startTestSluice({
      files: { 'api.yaml': CONFIG },
      clock: new ManualClock(T0),
      env: { LIMIT_RESPONSE_HEADERS_ENABLED: 'true' },
    });
    const none = await sluice.client.shouldRateLimit(request({ path: '/x' }));
    expect(none.response_headers_to_add ?? []).toEqual([]);
  });
});
