import { status } from '@grpc/grpc-js';
import * as http from 'node:http';
import { ConfigError } from '../../src/errors';
import { ManualClock } from '../../src/util/clock';
import type { WireRequestShape, WireResponseShape } from '../support/rls-client';
import { type StartedSluice, startTestSluice } from '../support/start-sluice';

const MINUTE = 60_000;
// 10 s into a minute, on a Thursday 00:00 UTC week boundary + 10 s (1970-01-01 was a Thursday).
const T0 = 2_000 * 7 * 86_400_000 + 10_000;

const CONFIG = `
domain: api
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 3, name: per_client }
    descriptors:
      - key: user_id
        rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: client_id
    value: partner
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: client_id
    value: vip
    rate_limit: { unlimited: true }
  - key: client_id
    value: internal
  - key: path
    value: /v1/*/orders
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: path
    value: /files/*
    share_threshold: true
    rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: path
    value: /free/*
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: route
    value: orders
    rate_limit: { unit: second, requests_per_unit: 5, name: orders_route, replaces: [{ name: per_client }] }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: blocked
    rate_limit: { unit: minute, requests_per_unit: 0 }
  - key: weekly
    rate_limit: { unit: week, requests_per_unit: 1, algorithm: fixed_window }
  - key: monthly
    rate_limit: { unit: month, requests_per_unit: 5 }
  - key: yearly
    rate_limit: { unit: year, requests_per_unit: 5 }
  - key: five_minutes
    rate_limit: { unit: minute, unit_multiplier: 5, requests_per_unit: 2, algorithm: fixed_window }
`;

type Descriptor = Record<string, string> | { entries: Record<string, string>; hits?: number };

function request(descriptors: Descriptor[], hitsAddend = 0, domain = 'api'): WireRequestShape {
  return {
    domain,
    hits_addend: hitsAddend,
    descriptors: descriptors.map((d) => {
      const { entries, hits } = 'entries' in d && typeof d.entries === 'object' ? (d as { entries: Record<string, string>; hits?: number }) : { entries: d as Record<string, string>, hits: undefined };
      return {
        entries: Object.entries(entries).map(([key, value]) => ({ key, value })),
        ...(hits !== undefined ? { hits_addend: { value: hits } } : {}),
      };
    }),
  };
}

/** The status of a descriptor no limit applies to: no current_limit, no duration_until_reset. */
const NO_LIMIT = { code: 'OK', limit_remaining: 0 };

/** [code, remaining] per status; proto3 leaves a zero remaining off the wire. */
const brief = (res: WireResponseShape) => [res.overall_code, ...(res.statuses ?? []).map((s) => [s.code, s.limit_remaining ?? 0])];

// Both transports (GRPC_TRANSPORT): grpc-js, and the lean one on grpc-js's servers.
describe.each(['grpc-js', 'lean'] as const)('sluice over gRPC (memory store, GRPC_TRANSPORT=%s)', (transport) => {
  let sluice: StartedSluice;
  let clock: ManualClock;
  const call = (descriptors: Descriptor[], hitsAddend = 0, domain = 'api') =>
    sluice.client.shouldRateLimit(request(descriptors, hitsAddend, domain));

  beforeEach(async () => {
    clock = new ManualClock(T0);
    sluice = await startTestSluice({ files: { 'api.yaml': CONFIG }, clock, env: { GRPC_TRANSPORT: transport } });
  });
  afterEach(() => sluice.stop());

  it('answers every field Envoy reads, one status per descriptor in request order', async () => {
    const res = await call([{ client_id: 'a' }, { nothing: 'here' }, { client_id: 'a', user_id: 'u' }]);
    expect(res).toEqual({
      overall_code: 'OK',
      statuses: [
        {
          code: 'OK',
          current_limit: { name: 'per_client', requests_per_unit: 3, unit: 'MINUTE' },
          limit_remaining: 2,
          duration_until_reset: { seconds: 60 },
        },
        { code: 'OK', limit_remaining: 0 },
        { code: 'OK', current_limit: { requests_per_unit: 2, unit: 'MINUTE' }, limit_remaining: 1, duration_until_reset: { seconds: 60 } },
      ],
    });
  });

  it('answers OK with no limit for an unknown domain', async () => {
    expect(await call([{ client_id: 'a' }], 0, 'other')).toEqual({ overall_code: 'OK', statuses: [{ code: 'OK', limit_remaining: 0 }] });
  });

  it('keeps a counter per value under a value-less rule, and exact values win over it', async () => {
    for (let i = 0; i < 3; i++) await call([{ client_id: 'a' }]);
    expect(brief(await call([{ client_id: 'a' }]))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0]]);
    expect(brief(await call([{ client_id: 'b' }]))).toEqual(['OK', ['OK', 2]]);
    expect(brief(await call([{ client_id: 'partner' }]))).toEqual(['OK', ['OK', 0]]);
    expect(brief(await call([{ client_id: 'partner' }]))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0]]);
  });

  it('applies a limit only at the exact depth of its rule', async () => {
    const res = await call([{ client_id: 'a', user_id: 'u', extra: 'x' }, { user_id: 'u' }]);
    expect(res.statuses).toEqual([NO_LIMIT, NO_LIMIT]);
  });

  it('answers unlimited with 4294967295 remaining and whitelisted values with no limit', async () => {
    const res = await call([{ client_id: 'vip' }, { client_id: 'internal' }]);
    expect(res.statuses).toEqual([{ code: 'OK', limit_remaining: 4294967295 }, NO_LIMIT]);
  });

  it('matches wildcards in the middle, per value unless share_threshold pools them', async () => {
    expect(brief(await call([{ path: '/v1/a/orders' }]))).toEqual(['OK', ['OK', 0]]);
    expect(brief(await call([{ path: '/v1/b/orders' }]))).toEqual(['OK', ['OK', 0]]);
    expect(brief(await call([{ path: '/v1/a/orders' }]))[0]).toBe('OVER_LIMIT');
    await call([{ path: '/files/a' }]);
    await call([{ path: '/files/b' }]);
    expect(brief(await call([{ path: '/files/c' }]))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0]]);
  });

  it('blocks everything under a limit of 0', async () => {
    expect(brief(await call([{ blocked: 'x' }]))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0]]);
  });

  it('drops a limit replaced by another limit of the same request', async () => {
    const res = await call([{ client_id: 'a' }, { route: 'orders' }]);
    expect(res.statuses?.[0]).toEqual(NO_LIMIT);
    expect(res.statuses?.[1]?.current_limit?.name).toBe('orders_route');
  });

  it('reports a shadow-mode rule as OK while counting it', async () => {
    await call([{ shadow: 'x' }]);
    const res = await call([{ shadow: 'x' }]);
    expect(brief(res)).toEqual(['OK', ['OK', 0]]);
    expect(res.statuses?.[0]?.current_limit).toEqual({ requests_per_unit: 1, unit: 'MINUTE' });
  });

  it('charges the request hits_addend (0 means 1) and honours a per-descriptor addend, 0 = check only', async () => {
    expect(brief(await call([{ client_id: 'a' }], 2))).toEqual(['OK', ['OK', 1]]);
    expect(brief(await call([{ entries: { client_id: 'a' }, hits: 0 }], 5))).toEqual(['OK', ['OK', 1]]);
    // 2 more hits when 1 is left: over, nothing charged, 1 still left.
    expect(brief(await call([{ entries: { client_id: 'a' }, hits: 2 }]))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 1]]);
    expect(brief(await call([{ client_id: 'a' }]))).toEqual(['OK', ['OK', 0]]);
    expect(brief(await call([{ entries: { client_id: 'a' }, hits: 0 }]))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0]]);
  });

  it('applies a limit override sent by Envoy', async () => {
    const override: WireRequestShape = {
      domain: 'api',
      descriptors: [{ entries: [{ key: 'tenant', value: 't1' }], limit: { requests_per_unit: 1, unit: 'HOUR' } }],
    };
    const first = await sluice.client.shouldRateLimit(override);
    expect(first.statuses?.[0]?.current_limit).toEqual({ requests_per_unit: 1, unit: 'HOUR' });
    expect((await sluice.client.shouldRateLimit(override)).overall_code).toBe('OVER_LIMIT');
  });

  it('slides the window: the hits of a sub-window leave it spread between its first and last hit', async () => {
    await call([{ client_id: 'a' }]);
    clock.set(T0 + 1_000);
    // 1 hit at 10 s and 2 at 11 s share one 3 s sub-window (9–12 s) of the minute.
    await call([{ client_id: 'a' }], 2);
    clock.set(T0 + 30_000);
    const over = await call([{ client_id: 'a' }]);
    // One more fits once that sub-window weighs 1 + 2 × (11 s − start)/1 s ≤ 2: a window starting at
    // 10.5 s, i.e. at 70.5 s: 30.5 s from now (40 s), reported rounded up.
    expect(over.statuses?.[0]?.duration_until_reset).toEqual({ seconds: 31 });
    clock.set(T0 + MINUTE + 499);
    expect(brief(await call([{ client_id: 'a' }]))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0]]);
    clock.set(T0 + MINUTE + 500);
    expect(brief(await call([{ client_id: 'a' }]))).toEqual(['OK', ['OK', 0]]);
  });

  it('supports week, month and year units and custom windows with unit_multiplier', async () => {
    const res = await call([{ weekly: 'x' }, { monthly: 'x' }, { yearly: 'x' }, { five_minutes: 'x' }]);
    expect(res.statuses?.map((s) => s.current_limit?.unit)).toEqual(['WEEK', 'MONTH', 'YEAR', 'MINUTE']);
    // The week is epoch-aligned (Thursday 00:00 UTC): 10 s in, it resets in a week less 10 s.
    expect(res.statuses?.[0]?.duration_until_reset).toEqual({ seconds: 7 * 86_400 - 10 });
    // Five-minute fixed windows are aligned to multiples of 5 minutes since the epoch.
    expect(res.statuses?.[3]?.duration_until_reset).toEqual({ seconds: 300 - 10 });
  });

  it.each<[string, WireRequestShape, string]>([
    ['an empty domain', { domain: '', descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] }, 'domain: must not be empty'],
    ['no descriptors', { domain: 'api', descriptors: [] }, 'descriptors: must not be empty'],
    ['a descriptor without entries', { domain: 'api', descriptors: [{ entries: [] }] }, 'descriptors[0].entries: must not be empty'],
    ['an entry with an empty key', { domain: 'api', descriptors: [{ entries: [{ key: '', value: 'b' }] }] }, 'descriptors[0].entries[0].key: must not be empty'],
    ['a huge hits_addend', { domain: 'api', hits_addend: 4_000_000_000, descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] }, 'hits_addend: 4000000000 exceeds the limit of 1000000 (MAX_HITS_ADDEND)'],
  ])('answers INVALID_ARGUMENT naming the field for %s, and keeps serving', async (_name, bad, message) => {
    await expect(sluice.client.shouldRateLimit(bad)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: message });
    expect(brief(await call([{ client_id: 'a' }]))[0]).toBe('OK');
  });

  it('reports SERVING for "" and the RLS service, and OK on /healthcheck', async () => {
    expect(await sluice.client.health('')).toBe('SERVING');
    expect(await sluice.client.health('envoy.service.ratelimit.v3.RateLimitService')).toBe('SERVING');
    // The name envoyproxy/ratelimit reports, so health checks copied from its setups keep working.
    expect(await sluice.client.health('ratelimit')).toBe('SERVING');
    const body = await new Promise<[number, string]>((resolve, reject) => {
      http.get(`http://127.0.0.1:${sluice.app.httpPort}/healthcheck`, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve([res.statusCode ?? 0, text]));
      }).on('error', reject);
    });
    expect(body).toEqual([200, 'OK']);
  });
});

describe('sluice settings over gRPC', () => {
  const config = `
domain: api
descriptors:
  - key: a
    rate_limit: { unit: minute, requests_per_unit: 1, algorithm: fixed_window }
  - key: b
    rate_limit: { unit: minute, requests_per_unit: 5, algorithm: fixed_window }
`;
  const both: WireRequestShape = {
    domain: 'api',
    descriptors: [{ entries: [{ key: 'a', value: '1' }] }, { entries: [{ key: 'b', value: '1' }] }],
  };

  it('with SHADOW_MODE answers OK overall while statuses say OVER_LIMIT', async () => {
    const sluice = await startTestSluice({ files: { 'c.yaml': config }, env: { SHADOW_MODE: 'true' } });
    await sluice.client.shouldRateLimit(both);
    const res = await sluice.client.shouldRateLimit(both);
    expect(brief(res)).toEqual(['OK', ['OVER_LIMIT', 0], ['OK', 4]]);
    await sluice.stop();
  });

  it('with CHARGE_REJECTED_HITS counts the other descriptors of rejected requests, as the reference does', async () => {
    const reference = await startTestSluice({ files: { 'c.yaml': config }, args: ['--charge-rejected-hits'] });
    const ours = await startTestSluice({ files: { 'c.yaml': config } });
    for (const s of [reference, ours]) for (let i = 0; i < 3; i++) await s.client.shouldRateLimit(both);
    expect(brief(await reference.client.shouldRateLimit(both))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0], ['OK', 1]]);
    expect(brief(await ours.client.shouldRateLimit(both))).toEqual(['OVER_LIMIT', ['OVER_LIMIT', 0], ['OK', 4]]);
    await reference.stop();
    await ours.stop();
  });

  it('merges one domain from several files with MERGE_DOMAIN_CONFIG, and refuses it without', async () => {
    const files = {
      'one.yaml': 'domain: api\ndescriptors:\n  - key: a\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n',
      'two.yaml': 'domain: api\ndescriptors:\n  - key: b\n    rate_limit: { unit: minute, requests_per_unit: 2 }\n',
    };
    const merged = await startTestSluice({ files, env: { MERGE_DOMAIN_CONFIG: 'true' } });
    const res = await merged.client.shouldRateLimit(both);
    expect(res.statuses?.map((s) => s.current_limit?.requests_per_unit)).toEqual([1, 2]);
    await merged.stop();
    const refused = await startTestSluice({ files }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as ConfigError).problems.map((p) => p.reason)).toEqual(["duplicate domain 'api' in config file"]);
  });
});
