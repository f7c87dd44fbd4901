import { parseConfigFiles } from '../../../src/config/load';
import type { DescriptorEntry, LimitRule, RateLimitConfig } from '../../../src/config/types';
import { DetailedLabelCap, detailedLabels, ruleLevels, staticLabels } from '../../../src/metrics/rule-labels';

const CONFIG = `
domain: web.example.com
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 3 }
    descriptors:
      - key: path
        value: /v1/a.b
        rate_limit: { unit: minute, requests_per_unit: 2 }
      - key: path
        value: /files/*.txt
        descriptors:
          - key: user
            rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: remote_address
    value: 10.0.0.1
    detailed_metric: true
    rate_limit: { unit: second, requests_per_unit: 5 }
  - key: user
    detailed_metric: true
    rate_limit: { unit: second, requests_per_unit: 5 }
`;

function load(): RateLimitConfig {
  const parsed = parseConfigFiles([{ name: 'config.yaml', content: CONFIG }], { mergeDomainConfig: false });
  expect(parsed.problems).toEqual([]);
  return parsed.config!;
}

function matched(config: RateLimitConfig, entries: Record<string, string>): { rule: LimitRule; entries: DescriptorEntry[] } {
  const list = Object.entries(entries).map(([key, value]) => ({ key, value }));
  const match = config.getLimit('web.example.com', list);
  expect(match).toBeDefined();
  return { rule: match!.rule, entries: list };
}

describe('rule labels (the reference statsd → Prometheus mapping)', () => {
  const config = load();

  it('reads levels back from the rule id, dots in domain and values included', () => {
    const { rule, entries } = matched(config, { client_id: 'c.1', path: '/v1/a.b' });
    expect(rule.id).toBe('web.example.com.client_id.path_/v1/a.b');
    expect(ruleLevels(rule, entries)).toEqual([
      { key: 'client_id', kind: 'valueless' },
      { key: 'path', kind: 'exact', configValue: '/v1/a.b' },
    ]);
    expect(staticLabels(rule, entries)).toEqual({ domain: 'web.example.com', key1: 'client_id', key2: 'path_/v1/a.b' });
  });

  it('keeps the wildcard pattern, not the request value, and folds levels past the second', () => {
    const { rule, entries } = matched(config, { client_id: 'c', path: '/files/x.y.txt', user: 'u' });
    expect(ruleLevels(rule, entries)?.map((l) => l.kind)).toEqual(['valueless', 'wildcard', 'valueless']);
    expect(staticLabels(rule, entries)).toEqual({ domain: 'web.example.com', key1: 'client_id', key2: 'path_/files/*.txt' });
  });

  it('gives one level one key label', () => {
    const { rule, entries } = matched(config, { client_id: 'abc' });
    expect(staticLabels(rule, entries)).toEqual({ domain: 'web.example.com', key1: 'client_id' });
  });

  it('puts request values in labels only for detailed rules, exact config values kept when capped', () => {
    const user = matched(config, { user: 'alice' });
    expect(detailedLabels(user.rule, user.entries, false)).toEqual({ domain: 'web.example.com', key1: 'user_alice' });
    expect(detailedLabels(user.rule, user.entries, true)).toEqual({ domain: 'web.example.com', key1: 'user__other_' });
    const ip = matched(config, { remote_address: '10.0.0.1' });
    expect(detailedLabels(ip.rule, ip.entries, true)).toEqual({ domain: 'web.example.com', key1: 'remote_address_10.0.0.1' });
    // A limit sent in the request has no config behind it: nothing is kept past the cap.
    expect(detailedLabels(ip.rule, ip.entries, true, false)).toEqual({ domain: 'web.example.com', key1: 'remote_address__other_' });
  });

  it('caps distinct label sets per rule', () => {
    const cap = new DetailedLabelCap(2);
    expect(['a', 'b', 'a', 'c', 'b', 'd'].map((v) => cap.overCap('rule', v))).toEqual([false, false, false, true, false, true]);
    expect(cap.overCap('other rule', 'c')).toBe(false);
  });

  it('falls back to splitting the id when it does not have the expected shape', () => {
    const rule = { ...matched(config, { client_id: 'x' }).rule, id: 'other.a.b.c' };
    expect(staticLabels(rule, [{ key: 'client_id', value: 'x' }])).toEqual({ domain: 'web.example.com', key1: 'a', key2: 'b' });
  });
});
