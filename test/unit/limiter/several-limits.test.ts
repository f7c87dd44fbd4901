import { ConfigHolder } from '../../../src/config/config-holder';
import { parseConfigFiles } from '../../../src/config/load';
import type { LimitRule, LimitSpec, RateLimitConfig } from '../../../src/config/types';
import { type DecidedLimit, type DescriptorDecision, Limiter, mostConstraining } from '../../../src/limiter/limiter';
import { RlsService } from '../../../src/service/rate-limit-service';
import { DEFAULT_REQUEST_CAPS } from '../../../src/service/request-validation';
import type { DescriptorStatus, RateLimitRequest } from '../../../src/service/types';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../../../src/store/counter-store';
import { MemoryStore } from '../../../src/store/memory/memory-store';
import { ManualClock } from '../../../src/util/clock';

/**
 * Several limits on one descriptor node (`rate_limits:`), end to end through the RLS handler: all
 * of them are decided in one store call, all or nothing, and the status reports the most
 * constraining one.
 */

const CONFIG = `
domain: api
descriptors:
  - key: client_id
    rate_limits:
      - { name: burst, unit: second, requests_per_unit: 2, algorithm: token_bucket }
      - { name: quota, unit: minute, requests_per_unit: 5, algorithm: fixed_window }
  - key: twin
    rate_limits:
      - { unit: minute, requests_per_unit: 3 }
      - { unit: minute, requests_per_unit: 5 }
  - key: route
    value: bulk
    rate_limit: { unit: minute, requests_per_unit: 100, replaces: [{ name: quota }] }
`;

/** A MemoryStore that records every decide call. */
class RecordingStore implements CounterStore {
  readonly calls: LimitCheck[][] = [];
  constructor(readonly inner: MemoryStore) {}
  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    this.calls.push([...checks]);
    return this.inner.decide(checks, options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function loadConfig(yaml: string): RateLimitConfig {
  const { config, problems } = parseConfigFiles([{ name: 'test.yaml', content: yaml }], { mergeDomainConfig: false });
  expect(problems).toEqual([]);
  return config!;
}

// On a minute boundary: the fixed window's reset reads plainly.
const T0 = 1_000 * 60_000;

function setup() {
  const clock = new ManualClock(T0);
  const store = new RecordingStore(new MemoryStore(clock));
  const configs = new ConfigHolder();
  configs.set(loadConfig(CONFIG));
  const limiter = new Limiter(store, { chargeRejectedHits: false });
  const service = new RlsService(configs, limiter, { caps: DEFAULT_REQUEST_CAPS, shadowMode: false });
  return { clock, store, limiter, service };
}

const req = (descriptors: Array<Array<[string, string]>>, hitsAddend = 0): RateLimitRequest => ({
  domain: 'api',
  hitsAddend,
  descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
});

/** The parts of a status these tests read. */
const brief = (s: DescriptorStatus) => ({
  code: s.code,
  name: s.currentLimit?.name,
  remaining: s.limitRemaining,
  reset: s.durationUntilResetSeconds,
});

describe('several limits on one descriptor', () => {
  let ctx: ReturnType<typeof setup>;
  beforeEach(() => {
    ctx = setup();
  });
  afterEach(async () => {
    await ctx.store.close();
  });

  const client = (): RateLimitRequest => req([[['client_id', 'app-1']]]);

  it('decides every limit of the node in one store call and reports the one with the fewest hits left', async () => {
    const first = await ctx.service.shouldRateLimit(client());
    expect(ctx.store.calls).toHaveLength(1);
    expect(ctx.store.calls[0]!.map((c) => [c.algorithm, c.limit, c.windowMs, c.hits])).toEqual([
      ['token_bucket', 2, 1_000, 1],
      ['fixed_window', 5, 60_000, 1],
    ]);
    // burst: 1 of 2 left, quota: 4 of 5 left.
    expect(first.overallCode).toBe('OK');
    expect(brief(first.statuses[0]!)).toEqual({ code: 'OK', name: 'burst', remaining: 1, reset: 1 });
    expect(first.statuses[0]!.currentLimit).toEqual({ requestsPerUnit: 2, unit: 'SECOND', name: 'burst' });
  });

  it('reports the limit that rejected, and charges none of them', async () => {
    await ctx.service.shouldRateLimit(client());
    await ctx.service.shouldRateLimit(client());
    const third = await ctx.service.shouldRateLimit(client());
    expect(third.overallCode).toBe('OVER_LIMIT');
    // A token is back in 500 ms: one second, rounded up.
    expect(brief(third.statuses[0]!)).toEqual({ code: 'OVER_LIMIT', name: 'burst', remaining: 0, reset: 1 });
    // The quota was not charged for the rejected request: the next one is its third hit.
    ctx.clock.advance(1_000);
    const later = await ctx.limiter.decide('api', [{ match: match(['client_id', 'app-1']), hits: 1 }]);
    expect(limitsOf(later[0]!).map((l) => [l.rule.name, l.outcome.admitted, l.outcome.remaining])).toEqual([
      ['burst', true, 1],
      ['quota', true, 2],
    ]);
  });

  it('switches the report to the quota once it is the closer one, and to the quota rejection after', async () => {
    for (let i = 0; i < 2; i++) {
      await ctx.service.shouldRateLimit(client());
      ctx.clock.advance(1_000);
    }
    // burst 1 left, quota 2 left: burst reported; then burst 1, quota 1: the first of equals.
    expect(brief((await ctx.service.shouldRateLimit(client())).statuses[0]!)).toMatchObject({ name: 'burst', remaining: 1 });
    ctx.clock.advance(1_000);
    expect(brief((await ctx.service.shouldRateLimit(client())).statuses[0]!)).toMatchObject({ name: 'burst', remaining: 1 });
    ctx.clock.advance(1_000);
    expect(brief((await ctx.service.shouldRateLimit(client())).statuses[0]!)).toEqual({
      code: 'OK',
      name: 'quota',
      remaining: 0,
      reset: 56,
    });
    ctx.clock.advance(1_000);
    // The bucket has room, the quota does not: the quota's window ends in 55 s.
    expect(brief((await ctx.service.shouldRateLimit(client())).statuses[0]!)).toEqual({
      code: 'OVER_LIMIT',
      name: 'quota',
      remaining: 0,
      reset: 55,
    });
  });

  it('charges hits_addend to every limit of the node', async () => {
    const response = await ctx.service.shouldRateLimit(req([[['client_id', 'app-1']]], 2));
    expect(ctx.store.calls[0]!.map((c) => c.hits)).toEqual([2, 2]);
    expect(brief(response.statuses[0]!)).toMatchObject({ code: 'OK', name: 'burst', remaining: 0 });
    ctx.clock.advance(1_000);
    const next = await ctx.limiter.decide('api', [{ match: match(['client_id', 'app-1']), hits: 0 }]);
    expect(limitsOf(next[0]!).map((l) => l.outcome.remaining)).toEqual([2, 3]);
  });

  it('drops only the replaced limit of a node, in the same single call', async () => {
    const response = await ctx.service.shouldRateLimit(req([[['client_id', 'app-1']], [['route', 'bulk']]]));
    expect(ctx.store.calls).toHaveLength(1);
    expect(ctx.store.calls[0]!.map((c) => c.limit)).toEqual([2, 100]);
    expect(brief(response.statuses[0]!)).toMatchObject({ code: 'OK', name: 'burst', remaining: 1 });
  });

  it('keeps separate counters for two limits with the same algorithm and window', async () => {
    const twin = req([[['twin', 'x']]]);
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push((await ctx.service.shouldRateLimit(twin)).overallCode);
    expect(codes).toEqual(['OK', 'OK', 'OK', 'OVER_LIMIT']);
    const keys = ctx.store.calls[0]!.map((c) => c.key);
    expect(new Set(keys).size).toBe(2);
    expect(keys[1]).toBe(`${keys[0]!.replace(':60000:', ':60000.1:')}`);
    // Each counter holds 3 hits, not 6: neither saw the other's charge.
    const peek = await ctx.limiter.decide('api', [{ match: match(['twin', 'x']), hits: 0 }]);
    expect(limitsOf(peek[0]!).map((l) => l.outcome.remaining)).toEqual([0, 2]);
    expect(peek[0]).toMatchObject({ kind: 'limited', limit: { requestsPerUnit: 3 } });
  });

  function match(...entries: Array<[string, string]>) {
    return loadConfig(CONFIG).getLimit(
      'api',
      entries.map(([key, value]) => ({ key, value })),
    );
  }
});

function limitsOf(decision: DescriptorDecision): readonly DecidedLimit[] {
  if (decision.kind !== 'limited') throw new Error(`expected a limited decision, got ${decision.kind}`);
  return decision.limits;
}

describe('mostConstraining', () => {
  const rule = { id: 'd.k' } as LimitRule;
  const limit = { requestsPerUnit: 10 } as LimitSpec;
  const of = (admitted: boolean, remaining: number, resetMs = 0): DecidedLimit => ({ rule, limit, outcome: { admitted, remaining, resetMs } });

  it('picks the first limit that rejected', () => {
    const limits = [of(true, 0), of(false, 3), of(false, 0)];
    expect(mostConstraining(limits)).toBe(limits[1]);
  });

  it('else the one with the fewest hits left, the first of equals', () => {
    const limits = [of(true, 4), of(true, 2), of(true, 2), of(true, 9)];
    expect(mostConstraining(limits)).toBe(limits[1]);
  });

  it('reports a single limit as itself', () => {
    const only = of(true, 7);
    expect(mostConstraining([only])).toBe(only);
  });
});

describe('replaces on an item of a rate_limits list', () => {
  it('drops the named limit whichever item of the list names it', async () => {
    const config = loadConfig(`
domain: api
descriptors:
  - key: client_id
    rate_limit: { name: per_client, unit: minute, requests_per_unit: 1 }
  - key: route
    rate_limits:
      - { name: route_burst, unit: second, requests_per_unit: 10 }
      - { name: route_quota, unit: day, requests_per_unit: 1000, replaces: [{ name: per_client }] }
`);
    const configs = new ConfigHolder();
    configs.set(config);
    const store = new MemoryStore(new ManualClock(T0));
    const service = new RlsService(configs, new Limiter(store, { chargeRejectedHits: false }), {
      caps: DEFAULT_REQUEST_CAPS,
      shadowMode: false,
    });
    const both = req([[['client_id', 'a']], [['route', 'r']]]);
    for (let i = 0; i < 3; i++) {
      const res = await service.shouldRateLimit(both);
      // per_client (1/minute) would reject the second call; the second item of route replaces it.
      expect(res.overallCode).toBe('OK');
      expect(res.statuses[0]).toEqual({ code: 'OK', limitRemaining: 0 });
    }
    await store.close();
  });
});
