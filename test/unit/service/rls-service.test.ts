import { ConfigHolder } from '../../../src/config/config-holder';
import { parseConfigFiles } from '../../../src/config/load';
import type { RateLimitConfig } from '../../../src/config/types';
import { InvalidArgumentError, UnavailableError } from '../../../src/errors';
import { Limiter } from '../../../src/limiter/limiter';
import { RlsService } from '../../../src/service/rate-limit-service';
import { DEFAULT_REQUEST_CAPS } from '../../../src/service/request-validation';
import type { RateLimitRequest, RateLimitResponse } from '../../../src/service/types';
import { MemoryStore } from '../../../src/store/memory/memory-store';
import { ManualClock } from '../../../src/util/clock';

const CONFIG = `
domain: test
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 3, name: per_client }
    descriptors:
      - key: user_id
        rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: client_id
    value: vip
    rate_limit: { unlimited: true }
  - key: client_id
    value: trusted
  - key: route
    value: orders
    rate_limit: { unit: second, requests_per_unit: 1, name: orders_route, replaces: [{ name: per_client }] }
  - key: shadow
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: quota
    quota_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: fixed
    rate_limit: { unit: minute, requests_per_unit: 2, algorithm: fixed_window }
  - key: blocked
    rate_limit: { unit: minute, requests_per_unit: 0 }
  - key: a
    rate_limit: { unit: hour, requests_per_unit: 10, name: A, replaces: [{ name: B }] }
  - key: b
    rate_limit: { unit: hour, requests_per_unit: 10, name: B, replaces: [{ name: C }] }
  - key: c
    rate_limit: { unit: hour, requests_per_unit: 10, name: C }
`;

function loadConfig(yaml: string): RateLimitConfig {
  const { config, problems } = parseConfigFiles([{ name: 'test.yaml', content: yaml }], { mergeDomainConfig: false });
  expect(problems).toEqual([]);
  return config!;
}

const T0 = 1_000 * 60_000 + 10_000;

function setup(options: { shadowMode?: boolean; chargeRejectedHits?: boolean; config?: RateLimitConfig | null } = {}) {
  const clock = new ManualClock(T0);
  const store = new MemoryStore(clock);
  const configs = new ConfigHolder();
  if (options.config !== null) configs.set(options.config ?? loadConfig(CONFIG));
  const service = new RlsService(configs, new Limiter(store, { chargeRejectedHits: options.chargeRejectedHits ?? false }), {
    caps: DEFAULT_REQUEST_CAPS,
    shadowMode: options.shadowMode ?? false,
  });
  return { clock, store, service };
}

type Entries = Record<string, string> | [string, string][];
interface WithHits {
  entries: Entries;
  hitsAddend: number;
}
const req = (descriptors: (Entries | WithHits)[], hitsAddend = 0, domain = 'test'): RateLimitRequest => ({
  domain,
  hitsAddend,
  descriptors: descriptors.map((d) => {
    const withHits = !Array.isArray(d) && typeof d.hitsAddend === 'number' ? (d as WithHits) : undefined;
    const entries = withHits ? withHits.entries : (d as Entries);
    const list = Array.isArray(entries) ? entries : Object.entries(entries);
    return {
      entries: list.map(([key, value]) => ({ key, value })),
      ...(withHits ? { hitsAddend: withHits.hitsAddend } : {}),
    };
  }),
});

const summary = (r: RateLimitResponse) => ({
  overall: r.overallCode,
  statuses: r.statuses.map((s) => [s.code, s.limitRemaining]),
});

describe('RlsService', () => {
  let env: ReturnType<typeof setup>;
  beforeEach(() => {
    env = setup();
  });
  afterEach(() => env.store.close());

  it('answers OK with no limit for an unknown domain', async () => {
    const res = await env.service.shouldRateLimit(req([{ client_id: 'x' }], 0, 'nope'));
    expect(res).toEqual({ overallCode: 'OK', statuses: [{ code: 'OK', limitRemaining: 0 }], responseHeadersToAdd: [] });
  });

  it('answers OK with no limit for a descriptor that matches no rule, or the wrong depth', async () => {
    const res = await env.service.shouldRateLimit(req([{ nothing: 'x' }, [['client_id', 'a'], ['user_id', 'u'], ['extra', 'e']]]));
    expect(res.statuses).toEqual([
      { code: 'OK', limitRemaining: 0 },
      { code: 'OK', limitRemaining: 0 },
    ]);
  });

  it('reports the limit, its name, what remains and when it drains, in request order', async () => {
    const res = await env.service.shouldRateLimit(req([{ client_id: 'a' }, [['client_id', 'a'], ['user_id', 'u']]]));
    expect(res.statuses).toEqual([
      { code: 'OK', currentLimit: { requestsPerUnit: 3, unit: 'MINUTE', name: 'per_client' }, limitRemaining: 2, durationUntilResetSeconds: 60 },
      { code: 'OK', currentLimit: { requestsPerUnit: 2, unit: 'MINUTE' }, limitRemaining: 1, durationUntilResetSeconds: 60 },
    ]);
  });

  it('keeps one counter per value under a value-less rule', async () => {
    for (let i = 0; i < 3; i++) await env.service.shouldRateLimit(req([{ client_id: 'a' }]));
    expect(summary(await env.service.shouldRateLimit(req([{ client_id: 'a' }])))).toEqual({ overall: 'OVER_LIMIT', statuses: [['OVER_LIMIT', 0]] });
    expect(summary(await env.service.shouldRateLimit(req([{ client_id: 'b' }])))).toEqual({ overall: 'OK', statuses: [['OK', 2]] });
  });

  it('answers unlimited with the largest uint32 remaining and no limit; whitelisted values with none', async () => {
    const res = await env.service.shouldRateLimit(req([{ client_id: 'vip' }, { client_id: 'trusted' }]));
    expect(res.statuses).toEqual([
      { code: 'OK', limitRemaining: 4294967295 },
      { code: 'OK', limitRemaining: 0 },
    ]);
  });

  it('rejects the whole request when one descriptor is over, charging none of them', async () => {
    for (let i = 0; i < 2; i++) await env.service.shouldRateLimit(req([{ fixed: 'x' }]));
    const res = await env.service.shouldRateLimit(req([{ client_id: 'a' }, { fixed: 'x' }]));
    expect(summary(res)).toEqual({ overall: 'OVER_LIMIT', statuses: [['OK', 3], ['OVER_LIMIT', 0]] });
    expect(res.statuses[1]!.durationUntilResetSeconds).toBe(50);
    expect(summary(await env.service.shouldRateLimit(req([{ client_id: 'a' }])))).toEqual({ overall: 'OK', statuses: [['OK', 2]] });
  });

  it('with chargeRejectedHits keeps counting the other descriptors, as the reference does', async () => {
    const ref = setup({ chargeRejectedHits: true });
    for (let i = 0; i < 2; i++) await ref.service.shouldRateLimit(req([{ fixed: 'x' }]));
    const res = await ref.service.shouldRateLimit(req([{ client_id: 'a' }, { fixed: 'x' }]));
    expect(summary(res)).toEqual({ overall: 'OVER_LIMIT', statuses: [['OK', 2], ['OVER_LIMIT', 0]] });
    await ref.store.close();
  });

  it('blocks every request under a limit of 0', async () => {
    expect(summary(await env.service.shouldRateLimit(req([{ blocked: 'x' }])))).toEqual({ overall: 'OVER_LIMIT', statuses: [['OVER_LIMIT', 0]] });
  });

  it('drops a limit replaced by another limit of the same request, without touching its counter', async () => {
    const res = await env.service.shouldRateLimit(req([{ client_id: 'a' }, { route: 'orders' }]));
    expect(res.statuses[0]).toEqual({ code: 'OK', limitRemaining: 0 });
    expect(res.statuses[1]).toMatchObject({ code: 'OK', currentLimit: { name: 'orders_route' } });
    expect(summary(await env.service.shouldRateLimit(req([{ client_id: 'a' }]))).statuses).toEqual([['OK', 2]]);
  });

  it('follows replaces one step only: A replaces B, B replaces C ⇒ B and C dropped, A kept', async () => {
    const res = await env.service.shouldRateLimit(req([{ a: '1' }, { b: '1' }, { c: '1' }]));
    expect(res.statuses.map((s) => s.currentLimit?.name)).toEqual(['A', undefined, undefined]);
    const bc = await env.service.shouldRateLimit(req([{ b: '1' }, { c: '1' }]));
    expect(bc.statuses.map((s) => s.currentLimit?.name)).toEqual(['B', undefined]);
  });

  it('rewrites an over-limit shadow-mode rule to OK but keeps its limit and counts', async () => {
    await env.service.shouldRateLimit(req([{ shadow: 'x' }]));
    const res = await env.service.shouldRateLimit(req([{ shadow: 'x' }, { client_id: 'a' }]));
    expect(summary(res)).toEqual({ overall: 'OK', statuses: [['OK', 0], ['OK', 2]] });
    expect(res.statuses[0]!.currentLimit).toEqual({ requestsPerUnit: 1, unit: 'MINUTE' });
  });

  it('with global SHADOW_MODE forces only the overall code to OK; statuses still say OVER_LIMIT', async () => {
    const shadow = setup({ shadowMode: true });
    await shadow.service.shouldRateLimit(req([{ blocked: 'x' }]));
    expect(summary(await shadow.service.shouldRateLimit(req([{ blocked: 'x' }])))).toEqual({ overall: 'OK', statuses: [['OVER_LIMIT', 0]] });
    await shadow.store.close();
  });

  it('fails a request on quota descriptors only when all of them are over', async () => {
    await env.service.shouldRateLimit(req([{ quota: 'q1' }]));
    const one = await env.service.shouldRateLimit(req([{ quota: 'q1' }, { quota: 'q2' }]));
    expect(summary(one)).toEqual({ overall: 'OK', statuses: [['OVER_LIMIT', 0], ['OK', 0]] });
  });

  it('uses the request hits_addend (0 means 1) unless a descriptor carries its own', async () => {
    expect(summary(await env.service.shouldRateLimit(req([{ client_id: 'a' }], 2))).statuses).toEqual([['OK', 1]]);
    expect(summary(await env.service.shouldRateLimit(req([{ entries: { client_id: 'b' }, hitsAddend: 3 }], 1))).statuses).toEqual([['OK', 0]]);
  });

  it('rejects hits partly over the limit without charging them, and says what is left', async () => {
    await env.service.shouldRateLimit(req([{ client_id: 'a' }]));
    const res = await env.service.shouldRateLimit(req([{ client_id: 'a' }], 3));
    expect(summary(res)).toEqual({ overall: 'OVER_LIMIT', statuses: [['OVER_LIMIT', 2]] });
    expect(summary(await env.service.shouldRateLimit(req([{ client_id: 'a' }], 2))).statuses).toEqual([['OK', 0]]);
  });

  it('treats a per-descriptor hits_addend of 0 as check only', async () => {
    const check = req([{ entries: { client_id: 'a' }, hitsAddend: 0 }]);
    for (let i = 0; i < 5; i++) expect(summary(await env.service.shouldRateLimit(check)).statuses).toEqual([['OK', 3]]);
    await env.service.shouldRateLimit(req([{ client_id: 'a' }], 3));
    expect(summary(await env.service.shouldRateLimit(check))).toEqual({ overall: 'OVER_LIMIT', statuses: [['OVER_LIMIT', 0]] });
  });

  it('applies a limit override sent by Envoy instead of the config tree, for a known domain only', async () => {
    const override = (domain: string): RateLimitRequest => ({
      domain,
      hitsAddend: 0,
      descriptors: [{ entries: [{ key: 'anything', value: 'x' }], limitOverride: { requestsPerUnit: 1, unit: 3 } }],
    });
    const first = await env.service.shouldRateLimit(override('test'));
    expect(first.statuses[0]).toMatchObject({ code: 'OK', currentLimit: { requestsPerUnit: 1, unit: 'HOUR' }, limitRemaining: 0 });
    expect((await env.service.shouldRateLimit(override('test'))).overallCode).toBe('OVER_LIMIT');
    expect((await env.service.shouldRateLimit(override('unknown'))).statuses[0]).toEqual({ code: 'OK', limitRemaining: 0 });
  });

  it.each<[string, RateLimitRequest, string]>([
    ['empty domain', req([{ client_id: 'a' }], 0, ''), 'domain: must not be empty'],
    ['no descriptors', req([]), 'descriptors: must not be empty'],
    ['a descriptor without entries', req([{ client_id: 'a' }, {}]), 'descriptors[1].entries: must not be empty'],
    ['an empty key', req([[['client_id', 'a'], ['', 'v']]]), 'descriptors[0].entries[1].key: must not be empty'],
    ['a long value', req([{ client_id: 'x'.repeat(1025) }]), 'descriptors[0].entries[0].value: 1025 characters exceed the limit of 1024 (MAX_VALUE_LENGTH)'],
    ['a long key', req([{ ['k'.repeat(257)]: 'v' }]), 'descriptors[0].entries[0].key: 257 characters exceed the limit of 256 (MAX_KEY_LENGTH)'],
    ['too many descriptors', req(Array.from({ length: 65 }, () => ({ a: 'b' }))), 'descriptors: 65 descriptors exceed the limit of 64 (MAX_DESCRIPTORS_PER_REQUEST)'],
    ['too many entries', req([Array.from({ length: 17 }, (_, i): [string, string] => [`k${i}`, 'v'])]), 'descriptors[0].entries: 17 entries exceed the limit of 16 (MAX_ENTRIES_PER_DESCRIPTOR)'],
    ['a huge request hits_addend', req([{ a: 'b' }], 1_000_001), 'hits_addend: 1000001 exceeds the limit of 1000000 (MAX_HITS_ADDEND)'],
    ['a huge descriptor hits_addend', req([{ entries: { a: 'b' }, hitsAddend: 2 ** 40 }]), `descriptors[0].hits_addend: ${2 ** 40} exceeds the limit of 1000000 (MAX_HITS_ADDEND)`],
    ['a hits_addend beyond exact integers', req([{ entries: { a: 'b' }, hitsAddend: 2 ** 64 }]), `descriptors[0].hits_addend: ${2 ** 64} exceeds the limit of 1000000 (MAX_HITS_ADDEND)`],
    ['a fractional hits_addend', req([{ a: 'b' }], 1.5), 'hits_addend: must be a non-negative integer, got 1.5'],
  ])('rejects %s with INVALID_ARGUMENT naming the field', async (_name, request, message) => {
    const error = await env.service.shouldRateLimit(request).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toBe(message);
  });

  it('is UNAVAILABLE until a config is loaded', async () => {
    const none = setup({ config: null });
    await expect(none.service.shouldRateLimit(req([{ a: 'b' }]))).rejects.toThrow(new UnavailableError('no rate limit configuration loaded'));
    await none.store.close();
  });
});
