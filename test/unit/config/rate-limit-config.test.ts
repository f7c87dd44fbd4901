import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfigFiles } from '../../../src/config/load';
import { WildcardPattern } from '../../../src/config/rate-limit-config';
import type { DescriptorEntry, RateLimitConfig } from '../../../src/config/types';

const BASIC = path.join(__dirname, '../../fixtures/config/valid/basic/ratelimit.yaml');
const DOMAIN = 'test-domain';

function loadBasic(): RateLimitConfig {
  const { config, problems } = parseConfigFiles([{ name: 'basic.yaml', content: fs.readFileSync(BASIC, 'utf8') }], {
    mergeDomainConfig: false,
  });
  expect(problems).toEqual([]);
  if (config === undefined) {
    throw new Error('basic fixture did not load');
  }
  return config;
}

/** `k=v,k2=v2` → entries, so the tables below read like requests. */
function entries(text: string): DescriptorEntry[] {
  return text === ''
    ? []
    : text.split(',').map((pair) => {
        const at = pair.indexOf('=');
        return { key: pair.slice(0, at), value: pair.slice(at + 1) };
      });
}

const config = loadBasic();

describe('getLimit on the basic fixture', () => {
  // [request, expected rule id or undefined, why]
  const cases: [string, string | undefined, string][] = [
    ['key1=value1', 'test-domain.key1_value1', 'exact key and value'],
    ['key1=other', undefined, 'no rule for that value and no value-less rule'],
    ['client_id=abc', 'test-domain.client_id', 'value-less rule matches any value'],
    ['client_id=premium', 'test-domain.client_id_premium', 'exact beats value-less'],
    ['client_id=internal-batch', undefined, 'an exact node without limit or children whitelists'],
    ['key2=value2', undefined, 'a placeholder parent has no limit at its own depth'],
    ['key2=value2,subkey2=subvalue2', 'test-domain.key2_value2.subkey2_subvalue2', 'nested exact'],
    ['key2=value2,subkey2=other', 'test-domain.key2_value2.subkey2', 'nested value-less'],
    ['key2=value2,subkey2=whitelisted', undefined, 'nested whitelist beats nested value-less'],
    ['key2=value2,subkey2=subvalue2,extra=x', undefined, 'an extra entry matches nothing'],
    ['key2=other,subkey2=subvalue2', undefined, 'an unmatched first entry ends the walk'],
    ['key3=a', 'test-domain.key3', 'limit at depth one'],
    ['key3=a,user_id=u', 'test-domain.key3.user_id', 'limit at depth two'],
    ['key3=a,user_id=u,more=1', undefined, 'too deep: the shallower limits are no fallback'],
    ['user_id=u,key3=a', undefined, 'entry order matters'],
    ['first=1,second=2', 'test-domain.first.second', 'ordered path'],
    ['second=2,first=1', undefined, 'reversed path'],
    ['first=1', undefined, 'missing entry: the parent has no limit'],
    ['key4=unlimited', 'test-domain.key4_unlimited', 'unlimited is a match'],
    ['path=/login', 'test-domain.path_/login', 'named limit'],
    ['path=/other', 'test-domain.path', 'named value-less limit'],
    ['shadow=on', 'test-domain.shadow_on', 'YAML 1.1 boolean written as a value is its text'],
    ['status=404', 'test-domain.status_404', 'a number written as a value is its text'],
    ['wild=foo1', 'test-domain.wild_foo1', 'exact beats wildcard'],
    ['wild=foo2', 'test-domain.wild_foo*', 'trailing wildcard'],
    ['wild=foo', 'test-domain.wild_foo*', '`*` matches zero characters'],
    ['wild=foobar', 'test-domain.wild_foo*', 'first matching wildcard in file order'],
    ['wild=xbar', 'test-domain.wild_*bar', 'leading wildcard'],
    ['wild=aXbYc', 'test-domain.wild_a*b*c', 'several wildcards, in order'],
    ['wild=abc', 'test-domain.wild_a*b*c', 'several wildcards matching nothing'],
    ['wild=acb', 'test-domain.wild', 'pieces out of order fall back to value-less'],
    ['wild=foo*', 'test-domain.wild_foo*', 'the pattern text itself matches exactly'],
    ['wild=zzz', 'test-domain.wild', 'wildcard beats default only when it matches'],
    ['files=/files/a.txt', 'test-domain.files_/files/*', 'shared wildcard'],
    ['files=/files/special', 'test-domain.files_/files/special', 'exact beats shared wildcard'],
    ['tenant=t1,route=/api/v2/items', 'test-domain.tenant_*.route_/api/*/items', 'wildcards at depth, middle `*`'],
    ['tenant=,route=/api/users', 'test-domain.tenant_*.route_/api/*', 'lone `*` matches the empty value'],
    ['tenant=t1', undefined, 'wildcard placeholder has no limit of its own'],
    ['a_b=c', 'test-domain.a_b_c', 'underscore in the key'],
    ['a=b_c', 'test-domain.a_b_c', 'underscore in the value'],
    ['a=b', undefined, 'no prefix match across the underscore'],
    ['blocked=forever', 'test-domain.blocked_forever', 'limit of zero'],
    ['', undefined, 'no entries'],
  ];

  it.each(cases)('%s ⇒ %s (%s)', (request, id) => {
    expect(config.getLimit(DOMAIN, entries(request))?.rule.id).toBe(id);
  });

  it('returns undefined for an unknown domain', () => {
    expect(config.hasDomain(DOMAIN)).toBe(true);
    expect(config.hasDomain('other')).toBe(false);
    expect(config.getLimit('other', entries('key1=value1'))).toBeUndefined();
  });

  it('keeps `a_b`=`c` and `a`=`b_c` apart, unlike the reference', () => {
    const underscoreInKey = config.getLimit(DOMAIN, entries('a_b=c'))?.rule;
    const underscoreInValue = config.getLimit(DOMAIN, entries('a=b_c'))?.rule;
    expect(underscoreInKey?.limit?.requestsPerUnit).toBe(1);
    expect(underscoreInValue?.limit?.requestsPerUnit).toBe(2);
    expect(underscoreInKey).not.toBe(underscoreInValue);
  });
});

describe('counterEntries', () => {
  it('carries the request values, so a value-less rule counts each value apart', () => {
    const a = config.getLimit(DOMAIN, entries('client_id=a'));
    const b = config.getLimit(DOMAIN, entries('client_id=b'));
    expect(a?.rule).toBe(b?.rule);
    expect(a?.counterEntries).toEqual(entries('client_id=a'));
    expect(b?.counterEntries).toEqual(entries('client_id=b'));
  });

  it('keeps per-value counters for a wildcard without share_threshold', () => {
    expect(config.getLimit(DOMAIN, entries('wild=foo7'))?.counterEntries).toEqual(entries('wild=foo7'));
  });

  it('replaces a share_threshold match with the pattern, so all values share one counter', () => {
    expect(config.getLimit(DOMAIN, entries('files=/files/a'))?.counterEntries).toEqual(entries('files=/files/*'));
    expect(config.getLimit(DOMAIN, entries('files=/files/b'))?.counterEntries).toEqual(entries('files=/files/*'));
  });

  it('rewrites only the shared level of a nested descriptor and leaves the request untouched', () => {
    const request = entries('tenant=t1,route=/api/v2/items');
    const match = config.getLimit(DOMAIN, request);
    expect(match?.counterEntries).toEqual(entries('tenant=t1,route=/api/*/items'));
    expect(request).toEqual(entries('tenant=t1,route=/api/v2/items'));
  });

  it('keeps the request value when an exact node beats the shared wildcard', () => {
    expect(config.getLimit(DOMAIN, entries('files=/files/special'))?.counterEntries).toEqual(
      entries('files=/files/special'),
    );
  });
});

describe('rules', () => {
  it('describes each limit as written', () => {
    const rule = (request: string) => config.getLimit(DOMAIN, entries(request))?.rule;
    expect(rule('key1=value1')).toEqual({
      id: 'test-domain.key1_value1',
      domain: DOMAIN,
      limit: { requestsPerUnit: 5, unit: 'SECOND', unitMultiplier: 1, algorithm: 'sliding_window', windowMs: 1000 },
      unlimited: false,
      name: undefined,
      replaces: [],
      shadowMode: false,
      quotaMode: false,
      detailedMetric: false,
    });
    expect(rule('key4=unlimited')).toMatchObject({
      limit: undefined,
      unlimited: true,
      name: 'everything',
      replaces: ['generic'],
    });
    expect(rule('path=/login')).toMatchObject({ name: 'login', replaces: ['generic'] });
    expect(rule('path=/x')).toMatchObject({ name: 'generic', replaces: [] });
    expect(rule('shadow=on')).toMatchObject({ shadowMode: true, quotaMode: false });
    expect(rule('blocked=forever')?.limit?.requestsPerUnit).toBe(0);
    expect(rule('tenant=t,route=/api/x/items')).toMatchObject({
      detailedMetric: true,
      quotaMode: true,
      limit: { unit: 'WEEK', algorithm: 'fixed_window', windowMs: 7 * 86400 * 1000 },
    });
  });

  it.each([
    ['key1=value1', 'SECOND', 1000],
    ['client_id=x', 'MINUTE', 60_000],
    ['key3=x', 'HOUR', 3_600_000],
    ['key2=value2,subkey2=x', 'DAY', 86_400_000],
    ['tenant=t,route=/api/x/items', 'WEEK', 604_800_000],
    ['tenant=t,route=/api/x', 'MONTH', 30 * 86_400_000],
    ['unit=year', 'YEAR', 365 * 86_400_000],
    ['unit=day', 'DAY', 86_400_000],
    ['window=five-minutes', 'MINUTE', 300_000],
  ])('%s has unit %s and a %d ms window', (request, unit, windowMs) => {
    expect(config.getLimit(DOMAIN, entries(request))?.rule.limit).toMatchObject({ unit, windowMs });
  });

  it('returns the same rule object on every call, and the same one rules() lists', () => {
    const first = config.getLimit(DOMAIN, entries('client_id=a'))?.rule;
    const second = config.getLimit(DOMAIN, entries('client_id=b'))?.rule;
    expect(first).toBeDefined();
    expect(first).toBe(second);
    expect(config.rules()).toContain(first);
    expect(Object.isFrozen(first)).toBe(true);
  });

  it('lists every rule in file order and the domains', () => {
    expect(config.domains()).toEqual([DOMAIN]);
    expect(config.rules().map((rule) => rule.id)).toEqual([
      'test-domain.key1_value1',
      'test-domain.client_id',
      'test-domain.client_id_premium',
      'test-domain.key2_value2.subkey2_subvalue2',
      'test-domain.key2_value2.subkey2',
      'test-domain.key3',
      'test-domain.key3.user_id',
      'test-domain.key4_unlimited',
      'test-domain.path_/login',
      'test-domain.path',
      'test-domain.shadow_on',
      'test-domain.blocked_forever',
      'test-domain.wild_foo1',
      'test-domain.wild_foo*',
      'test-domain.wild_*bar',
      'test-domain.wild_a*b*c',
      'test-domain.wild',
      'test-domain.files_/files/*',
      'test-domain.files_/files/special',
      'test-domain.tenant_*.route_/api/*/items',
      'test-domain.tenant_*.route_/api/*',
      'test-domain.unit_year',
      'test-domain.unit_day',
      'test-domain.window_five-minutes',
      'test-domain.a_b_c',
      'test-domain.a_b_c',
      'test-domain.status_404',
      'test-domain.first.second',
    ]);
  });
});

describe('WildcardPattern', () => {
  it.each([
    ['*', '', true],
    ['*', 'anything', true],
    ['foo*', 'foo', true],
    ['foo*', 'foobar', true],
    ['foo*', 'fo', false],
    ['*bar', 'bar', true],
    ['*bar', 'barx', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'a-b-c', true],
    ['a*b*c', 'acb', false],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    ['ab*bc', 'abc', false],
    ['ab*bc', 'abbc', true],
    ['**', 'x', true],
    ['/api/*/items', '/api/v1/items', true],
    ['/api/*/items', '/api/v1/items/1', false],
    ['x*y*x', 'xyx', true],
    ['x*y*x', 'xy', false],
  ])('%s against %j ⇒ %s', (pattern, value, expected) => {
    expect(new WildcardPattern(pattern).matches(value)).toBe(expected);
  });
});
