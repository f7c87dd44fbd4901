import { ManualClock } from '../../src/util/clock';
import { family, parseMetrics } from '../support/prometheus';
import { startTestSluice } from '../support/start-sluice';

const CONFIG = `
domain: api
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 2 }
`;

describe('the over-limit cache, end to end', () => {
  it('answers a client flooding past its limit from the cache, and counts those answers per rule', async () => {
    const clock = new ManualClock(1_000 * 60_000);
    const sluice = await startTestSluice({ files: { 'api.yaml': CONFIG }, clock, env: { LOCAL_CACHE_MAX_ENTRIES: '100' } });
    const request = { domain: 'api', descriptors: [{ entries: [{ key: 'client_id', value: 'flood' }] }] };
    const codes: string[] = [];
    for (let i = 0; i < 10; i++) codes.push(String((await sluice.client.shouldRateLimit(request)).overall_code));
    expect(codes).toEqual(['OK', 'OK', ...Array<string>(8).fill('OVER_LIMIT')]);

    const text = await (await fetch(`http://127.0.0.1:${sluice.app.debugPort}/metrics`)).text();
    const metrics = parseMetrics(text);
    // The first rejection came from the store; the 7 after it from the cache.
    expect(Object.values(family(metrics, 'ratelimit_service_rate_limit_over_limit_with_local_cache'))).toEqual([7]);
    expect(Object.values(family(metrics, 'ratelimit_service_rate_limit_over_limit'))).toEqual([8]);
    await sluice.stop();
  });
});
