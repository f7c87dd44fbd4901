import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfigFiles } from '../../../src/config/load';
import type { RateLimitConfig } from '../../../src/config/types';
import { Limiter } from '../../../src/limiter/limiter';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../../../src/store/counter-store';

const FIXTURE = path.join(__dirname, '../../fixtures/config/valid/store_failure/ratelimit.yaml');

function load(content: string): RateLimitConfig {
  const result = parseConfigFiles([{ name: 'ratelimit.yaml', content }], { mergeDomainConfig: false });
  expect(result.problems).toEqual([]);
  return result.config!;
}

function problems(content: string): string[] {
  return parseConfigFiles([{ name: 'f.yaml', content }], { mergeDomainConfig: false }).problems.map((p) => p.message);
}

describe('rate_limit.store_failure', () => {
  it('reads each policy onto its rule, and leaves it unset where the file says nothing', () => {
    const config = load(fs.readFileSync(FIXTURE, 'utf8'));
    expect(config.rules().map((rule) => [rule.id, rule.storeFailure])).toEqual([
      ['auth.route_token', 'deny'],
      ['auth.route_userinfo', 'allow'],
      ['auth.client_id', 'local'],
      ['auth.user_id', 'error'],
      ['auth.scope', undefined],
      ['auth.health', 'allow'],
    ]);
    expect(config.rules().find((rule) => rule.id === 'auth.scope')).not.toHaveProperty('storeFailure');
  });

  it('names the path and the bad value, case-sensitively like every other enum-ish key', () => {
    const rule = (value: string): string =>
      `domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1, store_failure: ${value}}\n`;
    expect(problems(rule('ALLOW'))).toEqual(["f.yaml: descriptors[0].rate_limit.store_failure: invalid store_failure 'ALLOW'"]);
    expect(problems(rule('""'))).toEqual(["f.yaml: descriptors[0].rate_limit.store_failure: invalid store_failure ''"]);
    // Written but empty (null) means unset, as for every other key.
    expect(problems(rule('null'))).toEqual([]);
    expect(problems(rule('[allow]'))).toEqual(['f.yaml: descriptors[0].rate_limit.store_failure: error checking config']);
  });

  it('checks the value on an unlimited rule too', () => {
    expect(
      problems('domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, store_failure: open}\n'),
    ).toEqual(["f.yaml: descriptors[0].rate_limit.store_failure: invalid store_failure 'open'"]);
  });
});

describe('the limiter hands the policy to the store', () => {
  class RecordingStore implements CounterStore {
    checks: readonly LimitCheck[] = [];
    options: DecideOptions | undefined;

    decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
      this.checks = checks;
      this.options = options;
      return Promise.resolve(checks.map((c) => ({ admitted: true, remaining: c.limit, resetMs: 0 })));
    }

    close(): Promise<void> {
      return Promise.resolve();
    }
  }

  it('sets onStoreFailure from the rule, omits it without one, and passes the deadline', async () => {
    const config = load(fs.readFileSync(FIXTURE, 'utf8'));
    const store = new RecordingStore();
    const limiter = new Limiter(store, { chargeRejectedHits: false });
    const entries = [
      [{ key: 'route', value: 'token' }],
      [{ key: 'client_id', value: 'c1' }],
      [{ key: 'scope', value: 'read' }],
    ];
    await limiter.decide(
      'auth',
      entries.map((e) => ({ match: config.getLimit('auth', e), hits: 1 })),
      { deadlineMs: 1_700_000_000_020 },
    );
    expect(store.checks.map((c) => c.onStoreFailure)).toEqual(['deny', 'local', undefined]);
    expect(store.checks[2]).not.toHaveProperty('onStoreFailure');
    expect(store.options).toEqual({ chargeRejectedHits: false, deadlineMs: 1_700_000_000_020 });

    await limiter.decide('auth', [{ match: config.getLimit('auth', entries[0]!), hits: 1 }]);
    expect(store.options).toEqual({ chargeRejectedHits: false });
  });
});
