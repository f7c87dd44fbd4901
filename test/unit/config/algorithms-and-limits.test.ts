import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfigFiles } from '../../../src/config/load';
import type { AlgorithmName, DescriptorEntry, RateLimitConfig } from '../../../src/config/types';

const FIXTURES = path.join(__dirname, '../../fixtures/config');

function load(content: string): RateLimitConfig {
  const { config, problems } = parseConfigFiles([{ name: 'f.yaml', content }], { mergeDomainConfig: false });
  expect(problems).toEqual([]);
  return config!;
}

function problems(content: string): string[] {
  return parseConfigFiles([{ name: 'f.yaml', content }], { mergeDomainConfig: false }).problems.map((p) => p.message);
}

const entries = (...pairs: Array<[string, string]>): DescriptorEntry[] => pairs.map(([key, value]) => ({ key, value }));

describe('rate_limit.algorithm', () => {
  it.each<AlgorithmName>(['sliding_window', 'fixed_window', 'sliding_log', 'token_bucket'])('accepts %s', (algorithm) => {
    const config = load(`domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: ${algorithm}}\n`);
    expect(config.getLimit('d', entries(['k', 'v']))?.rule.limit?.algorithm).toBe(algorithm);
  });

  it('defaults to sliding_window', () => {
    const config = load('domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: minute, requests_per_unit: 5}\n');
    expect(config.getLimit('d', entries(['k', 'v']))?.rule.limit?.algorithm).toBe('sliding_window');
  });

  it('caps sliding_log at 128 requests_per_unit, 128 itself included', () => {
    const yaml = (n: number): string =>
      `domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: ${n}, algorithm: sliding_log}\n`;
    expect(load(yaml(128)).getLimit('d', entries(['k', 'v']))?.rule.limit?.requestsPerUnit).toBe(128);
    expect(problems(yaml(129))).toEqual([
      'f.yaml: descriptors[0].rate_limit.requests_per_unit: requests_per_unit must be at most 128 with algorithm sliding_log ' +
        '(it keeps one entry per hit in the window); use sliding_window or token_bucket for larger limits',
    ]);
    // The cap is the log's: other algorithms take any requests_per_unit.
    expect(problems(yaml(129).replace('sliding_log', 'sliding_window'))).toEqual([]);
  });

  it('reads burst for token_bucket only, and leaves it unset when not given', () => {
    const config = load(
      [
        'domain: d',
        'descriptors:',
        '  - key: a',
        '    rate_limit: {unit: second, requests_per_unit: 10, algorithm: token_bucket, burst: 25}',
        '  - key: b',
        '    rate_limit: {unit: second, requests_per_unit: 10, algorithm: token_bucket}',
      ].join('\n'),
    );
    expect(config.getLimit('d', entries(['a', 'x']))?.rule.limit).toMatchObject({ algorithm: 'token_bucket', burst: 25 });
    expect(config.getLimit('d', entries(['b', 'x']))?.rule.limit).not.toHaveProperty('burst');
  });

  it('checks burst like requests_per_unit: an integer, in range, and a bucket that stays exact', () => {
    const yaml = (burst: string, unit = 'second'): string =>
      `domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: ${unit}, requests_per_unit: 10, algorithm: token_bucket, burst: ${burst}}\n`;
    expect(problems(yaml('1.5'))).toEqual(['f.yaml: descriptors[0].rate_limit.burst: burst must be an integer between 1 and 4294967295']);
    expect(problems(yaml('-1'))).toEqual(['f.yaml: descriptors[0].rate_limit.burst: burst must be an integer between 1 and 4294967295']);
    expect(problems(yaml('many'))).toEqual(['f.yaml: descriptors[0].rate_limit.burst: error checking config']);
    expect(problems(yaml('4294967295'))).toEqual([]);
    expect(problems(yaml('4294967295', 'year'))).toEqual([
      'f.yaml: descriptors[0].rate_limit.burst: token_bucket is too large for the window: ' +
        '(burst + 1) × the window in ms must be at most 9007199254740991 (burst defaults to requests_per_unit)',
    ]);
  });

  it('names only the bad algorithm when burst comes with a misspelled one', () => {
    expect(
      problems('domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, algorithm: gcra, burst: 2}\n'),
    ).toEqual(["f.yaml: descriptors[0].rate_limit.algorithm: invalid rate limit algorithm 'gcra'"]);
  });
});

describe('rate_limits: several limits on one node', () => {
  const config = load(fs.readFileSync(path.join(FIXTURES, 'valid', 'several_limits', 'ratelimit.yaml'), 'utf8'));

  it('matches a node with all of its limits, in config order, each a rule sharing the node id', () => {
    const match = config.getLimit('oauth2', entries(['client_id', 'app-1']));
    expect(match?.rules).toHaveLength(2);
    expect(match?.rule).toBe(match?.rules?.[0]);
    const [burst, daily] = match!.rules!;
    expect(burst).toMatchObject({
      id: 'oauth2.client_id',
      name: 'client_burst',
      limitIndex: 0,
      unlimited: false,
      limit: { requestsPerUnit: 10, unit: 'SECOND', algorithm: 'token_bucket', burst: 20, windowMs: 1_000 },
    });
    expect(burst).not.toHaveProperty('storeFailure');
    expect(daily).toMatchObject({
      id: 'oauth2.client_id',
      name: 'client_daily',
      limitIndex: 1,
      storeFailure: 'allow',
      limit: { requestsPerUnit: 10_000, unit: 'DAY', algorithm: 'sliding_window', windowMs: 86_400_000 },
    });
  });

  it('gives limits with the same algorithm and window distinct counter variants, and no others', () => {
    const client = config.getLimit('oauth2', entries(['client_id', 'app-1']))!.rules!;
    expect(client.map((r) => r.limit?.counterVariant)).toEqual([undefined, undefined]);
    const user = config.getLimit('oauth2', entries(['client_id', 'app-1'], ['user_id', 'u']))!.rules!;
    expect(user.map((r) => r.limit?.counterVariant)).toEqual([undefined, 1]);
    expect(user[1]).toMatchObject({ id: 'oauth2.client_id.user_id', replaces: ['client_daily'], name: undefined });
  });

  it('lists every limit as a rule', () => {
    expect(config.rules().map((r) => [r.id, r.limitIndex ?? null])).toEqual([
      ['oauth2.client_id', 0],
      ['oauth2.client_id', 1],
      ['oauth2.client_id.user_id', 0],
      ['oauth2.client_id.user_id', 1],
      ['oauth2.username', null],
      ['oauth2.otp', null],
    ]);
  });

  it('leaves a node with one rate_limit exactly as before: no rules list, no index', () => {
    const match = config.getLimit('oauth2', entries(['username', 'alice']));
    expect(match).not.toHaveProperty('rules');
    expect(match?.rule).not.toHaveProperty('limitIndex');
    expect(match?.rule.limit).toEqual({ requestsPerUnit: 5, unit: 'MINUTE', unitMultiplier: 1, algorithm: 'sliding_log', windowMs: 60_000 });
  });

  it('loads the upstream fixture unchanged: no key of this issue appears', () => {
    const basic = load(fs.readFileSync(path.join(FIXTURES, 'valid', 'basic', 'ratelimit.yaml'), 'utf8'));
    for (const rule of basic.rules()) {
      expect(rule).not.toHaveProperty('limitIndex');
      if (rule.limit !== undefined) {
        expect(Object.keys(rule.limit).sort()).toEqual(['algorithm', 'requestsPerUnit', 'unit', 'unitMultiplier', 'windowMs']);
      }
    }
  });

  it('accepts one item, and a null rate_limits as no limit', () => {
    const one = load('domain: d\ndescriptors:\n  - key: k\n    rate_limits:\n      - {unit: second, requests_per_unit: 3}\n');
    expect(one.getLimit('d', entries(['k', 'v']))?.rules).toHaveLength(1);
    const none = load('domain: d\ndescriptors:\n  - key: k\n    rate_limits:\n');
    expect(none.getLimit('d', entries(['k', 'v']))).toBeUndefined();
  });

  it('checks every item like a rate_limit block, with the item in the path', () => {
    const yaml = [
      'domain: d',
      'descriptors:',
      '  - key: k',
      '    rate_limits:',
      '      - {unit: second, requests_per_unit: 3, algorithm: sliding_log, burst: 2}',
      '      - {unit: minute, requests_per_unit: 500, algorithm: sliding_log}',
      '      - {unit: minute, requests_per_unit: 5, store_failure: maybe, colour: red}',
      '      - just-a-string',
    ].join('\n');
    expect(problems(yaml)).toEqual([
      "f.yaml: descriptors[0].rate_limits[2].colour: config error, unknown key 'colour'",
      'f.yaml: descriptors[0].rate_limits[3]: config error, yaml file contains list of type other than map: just-a-string',
      'f.yaml: descriptors[0].rate_limits[0].burst: burst is only valid with algorithm token_bucket',
      'f.yaml: descriptors[0].rate_limits[1].requests_per_unit: requests_per_unit must be at most 128 with algorithm sliding_log ' +
        '(it keeps one entry per hit in the window); use sliding_window or token_bucket for larger limits',
      "f.yaml: descriptors[0].rate_limits[2].store_failure: invalid store_failure 'maybe'",
    ]);
  });

  it('still rejects a duplicate composite key, whatever limits the nodes carry', () => {
    const yaml = [
      'domain: d',
      'descriptors:',
      '  - key: k',
      '    rate_limits: [{unit: second, requests_per_unit: 3}]',
      '  - key: k',
      '    rate_limit: {unit: second, requests_per_unit: 3}',
    ].join('\n');
    expect(problems(yaml)).toEqual(["f.yaml: descriptors[1]: duplicate descriptor composite key 'd.k'"]);
  });
});
