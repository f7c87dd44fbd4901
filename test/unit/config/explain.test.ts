import * as path from 'node:path';
import { type DescriptorExplanation, explainDescriptor, explainRequest, formatExplanation } from '../../../src/config/explain';
import { loadConfigDirectory, parseConfigFiles } from '../../../src/config/load';
import { LoadedRateLimitConfig } from '../../../src/config/rate-limit-config';
import type { DescriptorEntry } from '../../../src/config/types';

const BASIC = path.join(__dirname, '../../fixtures/config/valid/basic');
const config = loadConfigDirectory(BASIC, { ignoreDotFiles: false, mergeDomainConfig: false });
if (!(config instanceof LoadedRateLimitConfig)) throw new Error('expected the loaded tree');
const DOMAIN = 'test-domain';

/** `k=v,k2=v2` (no escapes needed here). */
const entries = (spec: string): DescriptorEntry[] =>
  spec === ''
    ? []
    : spec.split(',').map((part) => {
        const eq = part.indexOf('=');
        return { key: part.slice(0, eq), value: part.slice(eq + 1) };
      });

/** One line per level: the steps tried, compact. */
function steps(e: DescriptorExplanation): string[] {
  return e.levels.map((t) => {
    if (!t.keyKnown) return `${t.level}:no-key`;
    const parts = [`${t.level}:exact=${t.exactMatched ? 'y' : 'n'}`];
    if (t.wildcards.length > 0) parts.push(t.wildcards.map((w) => `${w.pattern}${w.matched ? '+' : '-'}`).join(' '));
    if (t.valuelessMatched !== undefined) parts.push(`valueless=${t.valuelessMatched ? 'y' : 'n'}`);
    return parts.join(' ');
  });
}

function verdict(e: DescriptorExplanation): string {
  const v = e.verdict;
  switch (v.kind) {
    case 'limited':
      return `limited ${v.rules.map((r) => r.id).join(' ')}`;
    case 'too-deep':
    case 'whitelisted':
    case 'stops-early':
    case 'no-match':
      return `${v.kind}@${v.level}`;
    default:
      return v.kind;
  }
}

describe('explainDescriptor on test/fixtures/config/valid/basic', () => {
  it.each<[string, string, string[], string[]]>([
    // descriptor, verdict, level steps, near misses (kind keys)
    ['key1=value1', 'limited test-domain.key1_value1', ['1:exact=y'], []],
    ['client_id=web', 'limited test-domain.client_id', ['1:exact=n valueless=y'], []],
    ['client_id=premium', 'limited test-domain.client_id_premium', ['1:exact=y'], []],
    ['client_id=internal-batch', 'whitelisted@1', ['1:exact=y'], []],
    ['client_id=web,user_id=u', 'too-deep@1', ['1:exact=n valueless=y'], ['shallower client_id']],
    ['key2=value2', 'stops-early@1', ['1:exact=y'], []],
    ['key2=value2,subkey2=subvalue2', 'limited test-domain.key2_value2.subkey2_subvalue2', ['1:exact=y', '2:exact=y'], []],
    ['key2=value2,subkey2=other', 'limited test-domain.key2_value2.subkey2', ['1:exact=y', '2:exact=n valueless=y'], []],
    ['key2=value2,subkey2=whitelisted', 'whitelisted@2', ['1:exact=y', '2:exact=y'], []],
    ['key2=other,subkey2=subvalue2', 'no-match@1', ['1:exact=n valueless=n'], []],
    ['key2=value2,nope=x', 'no-match@2', ['1:exact=y', '2:no-key'], []],
    ['key3=a', 'limited test-domain.key3', ['1:exact=n valueless=y'], ['deeper key3,user_id']],
    ['key3=a,user_id=u', 'limited test-domain.key3.user_id', ['1:exact=n valueless=y', '2:exact=n valueless=y'], ['shallower key3']],
    ['user_id=u,key3=a', 'no-match@1', ['1:no-key'], ['order key3,user_id']],
    ['second=s,first=f', 'no-match@1', ['1:no-key'], ['order first,second']],
    ['first=f', 'stops-early@1', ['1:exact=n valueless=y'], []],
    ['first=f,second=s,third=t', 'too-deep@2', ['1:exact=n valueless=y', '2:exact=n valueless=y'], ['shallower first,second']],
    ['key4=unlimited', 'limited test-domain.key4_unlimited', ['1:exact=y'], []],
    ['wild=foo1', 'limited test-domain.wild_foo1', ['1:exact=y'], []],
    ['wild=foo2', 'limited test-domain.wild_foo*', ['1:exact=n foo*+'], []],
    ['wild=xbar', 'limited test-domain.wild_*bar', ['1:exact=n foo*- *bar+'], []],
    ['wild=aXbYc', 'limited test-domain.wild_a*b*c', ['1:exact=n foo*- *bar- a*b*c+'], []],
    ['wild=zzz', 'limited test-domain.wild', ['1:exact=n foo*- *bar- a*b*c- valueless=y'], []],
    ['wild=*bar', 'limited test-domain.wild_*bar', ['1:exact=y'], []],
    ['files=/files/x', 'limited test-domain.files_/files/*', ['1:exact=n /files/*+'], []],
    ['files=/elsewhere', 'no-match@1', ['1:exact=n /files/*- valueless=n'], []],
    ['tenant=t,route=/api/v1/items', 'limited test-domain.tenant_*.route_/api/*/items', ['1:exact=n *+', '2:exact=n /api/*/items+'], []],
    ['tenant=t,route=/api/v1', 'limited test-domain.tenant_*.route_/api/*', ['1:exact=n *+', '2:exact=n /api/*/items- /api/*+'], []],
    ['tenant=t', 'stops-early@1', ['1:exact=n *+'], []],
    ['a=b_c', 'limited test-domain.a_b_c', ['1:exact=y'], []],
    ['', 'empty', [], []],
  ])('%s ⇒ %s', (spec, expectedVerdict, expectedSteps, expectedMisses) => {
    const e = explainDescriptor(config, DOMAIN, entries(spec));
    expect(verdict(e)).toBe(expectedVerdict);
    expect(steps(e)).toEqual(expectedSteps);
    expect(e.nearMisses.map((m) => `${m.kind} ${m.path.keys.join(',')}`)).toEqual(expectedMisses);
    // The trace and the matcher agree.
    const matched = config.getLimit(DOMAIN, entries(spec));
    if (e.verdict.kind === 'limited') expect(e.verdict.rules[0]).toBe(matched?.rule);
    else expect(matched).toBeUndefined();
  });

  it('an unknown domain names the known ones', () => {
    const e = explainDescriptor(config, 'nope', entries('key1=value1'));
    expect(e.verdict).toEqual({ kind: 'unknown-domain', domains: ['test-domain'] });
    expect(formatExplanation(e, 0)).toEqual([
      'descriptor [0] key1=value1',
      '  ⇒ no limit: unknown domain "nope" (domains: test-domain)',
    ]);
  });

  it('stops-early lists the deeper limits under the node', () => {
    const e = explainDescriptor(config, DOMAIN, entries('key2=value2'));
    expect(formatExplanation(e, 3)).toEqual([
      'descriptor [3] key2=value2',
      '  level 1  key2=value2: exact node key2=value2 matched',
      '  ⇒ no limit: key2=value2 at level 1 has no limit of its own',
      '     the limit is on (key2, subkey2) [test-domain.key2_value2.subkey2_subvalue2, test-domain.key2_value2.subkey2] but the descriptor stops at level 1',
    ]);
  });

  it('formats the depth rule, the order rule and the rule line', () => {
    expect(formatExplanation(explainDescriptor(config, DOMAIN, entries('client_id=web,user_id=u')), 0)).toEqual([
      'descriptor [0] client_id=web,user_id=u',
      '  level 1  client_id=web: exact node client_id=web absent; no wildcard patterns; value-less node client_id matched ⇒ node client_id',
      '  ⇒ no limit: matched client_id at level 1 but the descriptor has 2 entries and that node has no children',
      '  near misses:',
      '    depth: a rule exists for (client_id) [test-domain.client_id]; it applies only to a descriptor that ends at level 1',
    ]);
    expect(formatExplanation(explainDescriptor(config, DOMAIN, entries('second=s,first=f')), 0).slice(-2)).toEqual([
      '  near misses:',
      '    entry order matters: a rule exists for (first, second) [test-domain.first.second]',
    ]);
    expect(formatExplanation(explainDescriptor(config, DOMAIN, entries('key3=a')), 0).slice(2)).toEqual([
      '  ⇒ rule test-domain.key3: 1000 per hour, sliding_window, name -, shadow off',
      '  near misses:',
      '    depth: a rule exists for (key3, user_id) [test-domain.key3.user_id] but the descriptor stops at level 1',
    ]);
    expect(formatExplanation(explainDescriptor(config, DOMAIN, entries('window=five-minutes')), 0)[2]).toBe(
      '  ⇒ rule test-domain.window_five-minutes: 50 per 5 minute, sliding_window, name -, shadow off',
    );
    expect(formatExplanation(explainDescriptor(config, DOMAIN, entries('shadow=on')), 0).slice(2)).toEqual([
      '  ⇒ rule test-domain.shadow_on: 1 per second, sliding_window, name -, shadow on',
      '  note: shadow mode: counted and reported, never rejects',
    ]);
    expect(formatExplanation(explainDescriptor(config, DOMAIN, entries('wild=zzz')), 0)[1]).toBe(
      '  level 1  wild=zzz: exact node wild=zzz absent; patterns foo* no, *bar no, a*b*c no; value-less node wild matched ⇒ node wild',
    );
  });

  it('notes a limit replaced by another descriptor of the request', () => {
    const [generic, login] = explainRequest(config, DOMAIN, [entries('path=/other'), entries('path=/login')]);
    expect(generic!.replacedBy).toEqual([{ name: 'generic', descriptor: 1 }]);
    expect(login!.replacedBy).toEqual([]);
    expect(formatExplanation(generic!, 0)).toContain(
      '  note: limit "generic" is replaced by descriptor [1] of this request ⇒ not applied with it',
    );
  });

  it('notes a limit replaced by any item of a rate_limits list, as the limiter drops it', () => {
    const { config: listConfig } = parseConfigFiles(
      [
        {
          name: 'list.yaml',
          content: `
domain: api
descriptors:
  - key: client_id
    rate_limit: { name: per_client, unit: minute, requests_per_unit: 1 }
  - key: route
    rate_limits:
      - { name: route_burst, unit: second, requests_per_unit: 10 }
      - { name: route_quota, unit: day, requests_per_unit: 1000, replaces: [{ name: per_client }] }
`,
        },
      ],
      { mergeDomainConfig: false },
    );
    if (!(listConfig instanceof LoadedRateLimitConfig)) throw new Error('expected the loaded tree');
    const [client, route] = explainRequest(listConfig, 'api', [entries('client_id=a'), entries('route=r')]);
    expect(client!.replacedBy).toEqual([{ name: 'per_client', descriptor: 1 }]);
    expect(route!.replacedBy).toEqual([]);
  });
});
