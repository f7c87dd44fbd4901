import * as path from 'node:path';
import * as v8 from 'node:v8';
import { configFromSnapshot, type ConfigSnapshot, SNAPSHOT_CHUNK, snapshotOf, transferablesOf } from '../../../src/config/config-snapshot';
import { inspectConfigDirectory, parseConfigFiles } from '../../../src/config/load';
import { type DescriptorLevel, LoadedRateLimitConfig } from '../../../src/config/rate-limit-config';
import { checkForReload } from '../../../src/config/reload-job';
import { DEFAULT_CONFIG_SIZE_LIMITS } from '../../../src/config/config-files';
import type { LimitRule } from '../../../src/config/types';

/**
 * A reload's config crosses from the reload worker as a snapshot and is re-linked on the main thread:
 * the re-linked config must be the same config, down to each level's match order.
 */

const VALID = path.join(__dirname, '../../fixtures/config/valid');

/** Everything matching reads from a level, as plain data: keys in order, the three buckets, rules by index. */
function dump(level: DescriptorLevel, rules: readonly LimitRule[]): unknown {
  return level.keys().map((key) => {
    const nodes = level.nodesOf(key)!;
    const node = (n: { key: string; value: string | undefined; shareThreshold: boolean; rules: readonly LimitRule[]; children: DescriptorLevel }): unknown => ({
      key: n.key,
      value: n.value,
      share: n.shareThreshold,
      // By identity: a node's rules must be the very objects of rules(), as per-rule metrics hang off them.
      rules: n.rules.map((rule) => rules.indexOf(rule)),
      children: dump(n.children, rules),
    });
    return {
      key,
      exact: [...nodes.exact.values()].map(node),
      wildcards: nodes.wildcards.map((n) => n.value),
      valueless: nodes.valueless === undefined ? undefined : node(nodes.valueless),
    };
  });
}

function dumpConfig(config: LoadedRateLimitConfig): unknown {
  return { domains: config.domains(), rules: config.rules(), trees: config.domains().map((d) => dump(config.tree(d)!, config.rules())) };
}

const immediately = (): Promise<void> => Promise.resolve();

async function roundTrip(config: LoadedRateLimitConfig): Promise<LoadedRateLimitConfig> {
  // Both hops for real: a structured clone with its buffers transferred, as the reload worker
  // posts it to the reload host, then V8's serializer, as the host's IPC channel (serialization:
  // 'advanced') sends it to sluice.
  const snapshot = snapshotOf(config);
  const inHost = structuredClone(snapshot, { transfer: transferablesOf(snapshot) });
  expect(snapshot.slices.filter((slice) => slice.byteLength > 0)).toEqual([]); // moved, not copied
  const relinked = await configFromSnapshot(v8.deserialize(v8.serialize(inHost)) as ConfigSnapshot, immediately);
  expect(relinked.ruleJson).toEqual(config.rules().map((rule) => JSON.stringify(rule)));
  return relinked.config;
}

describe('config snapshots', () => {
  test.each(['basic', 'merge', 'multi', 'several_limits', 'store_failure'])('the %s fixture re-links to the same config', async (fixture) => {
    const { config, problems } = inspectConfigDirectory(path.join(VALID, fixture), { ignoreDotFiles: false, mergeDomainConfig: fixture === 'merge' });
    expect(problems).toEqual([]);
    const original = config as LoadedRateLimitConfig;
    const rebuilt = await roundTrip(original);
    expect(rebuilt.rules().length).toBeGreaterThan(0);
    expect(dumpConfig(rebuilt)).toEqual(dumpConfig(original));
  });

  test('wildcards keep their file order, and a request matches the same rule', async () => {
    const content = [
      'domain: w',
      'descriptors:',
      '  - { key: path, value: "/api/*", rate_limit: { unit: second, requests_per_unit: 1 } }',
      '  - { key: path, value: "/api/v1/*", rate_limit: { unit: second, requests_per_unit: 2 } }',
      '  - { key: path, rate_limit: { unit: second, requests_per_unit: 3 } }',
      '  - { key: path, value: "/exact", rate_limit: { unit: second, requests_per_unit: 4 } }',
      '  - { key: tenant, value: "t*", share_threshold: true, rate_limit: { unit: second, requests_per_unit: 5 } }',
    ].join('\n');
    const { config } = parseConfigFiles([{ name: 'w.yaml', content }], { mergeDomainConfig: false });
    const original = config as LoadedRateLimitConfig;
    const rebuilt = await roundTrip(original);
    for (const [key, value] of [['path', '/api/v1/x'], ['path', '/api/*'], ['path', '/exact'], ['path', '/other'], ['tenant', 'tx']] as const) {
      const before = original.getLimit('w', [{ key, value }]);
      const after = rebuilt.getLimit('w', [{ key, value }]);
      expect(after?.rule.id).toBe(before?.rule.id);
      expect(after?.rule.limit?.requestsPerUnit).toBe(before?.rule.limit?.requestsPerUnit);
      expect(after?.counterEntries).toEqual(before?.counterEntries);
    }
  });

  test('a large config is re-linked in slices, pausing between them', async () => {
    const lines = ['domain: big', 'descriptors:'];
    for (let i = 0; i < 2_500; i++) lines.push(`  - { key: k, value: v${i}, descriptors: [ { key: u, rate_limit: { unit: minute, requests_per_unit: ${i + 1} } } ] }`);
    const { config, problems } = parseConfigFiles([{ name: 'big.yaml', content: lines.join('\n') }], { mergeDomainConfig: false });
    expect(problems).toEqual([]);
    const snapshot = snapshotOf(config as LoadedRateLimitConfig);
    let pauses = 0;
    const rebuilt = await configFromSnapshot(snapshot, () => {
      pauses++;
      return Promise.resolve();
    });
    // 2,500 rules in 3 slices and 5,000 nodes in 5, a pause before each slice.
    expect(snapshot.slices).toHaveLength(Math.ceil(2_500 / SNAPSHOT_CHUNK) + 5_000 / SNAPSHOT_CHUNK);
    expect(pauses).toBe(snapshot.slices.length);
    expect(dumpConfig(rebuilt.config)).toEqual(dumpConfig(config as LoadedRateLimitConfig));
  });

  test('a snapshot that does not describe a config is refused, not half-built', async () => {
    const { config } = parseConfigFiles([{ name: 'b.yaml', content: 'domain: b\ndescriptors:\n  - { key: k, rate_limit: { unit: second, requests_per_unit: 1 } }\n' }], { mergeDomainConfig: false });
    const snapshot = snapshotOf(config as LoadedRateLimitConfig);
    await expect(configFromSnapshot({ ...snapshot, domains: [] }, immediately)).rejects.toThrow('node 0 does not fit');
    await expect(configFromSnapshot({ ...snapshot, slices: [] }, immediately)).rejects.toThrow('rule slice 0 is missing');
  });
});

describe('checkForReload (the worker thread\'s job)', () => {
  test('a good directory: a snapshot; a bad one: its problems', () => {
    const request = { dir: path.join(VALID, 'basic'), ignoreDotFiles: false, mergeDomainConfig: false, limits: DEFAULT_CONFIG_SIZE_LIMITS };
    const good = checkForReload(request);
    expect(good.ok && good.snapshot.domains).toEqual(['test-domain']);
    const bad = checkForReload({ ...request, limits: { maxFileBytes: 100, maxDirectoryBytes: 1000 } });
    expect(bad.ok).toBe(false);
    expect(!bad.ok && bad.problems[0]?.message).toMatch(/^basic\.ratelimit\.yaml: config file is \d+ bytes, over the limit of 100; not read$/);
    expect(!bad.ok && bad.unstable).toBe(false);
  });
});
