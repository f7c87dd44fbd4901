import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { listConfigFiles, loadConfigDirectory, parseConfigFiles } from '../../../src/config/load';
import { ConfigError } from '../../../src/errors';

const FIXTURES = path.join(__dirname, '../../fixtures/config');
const INVALID = path.join(FIXTURES, 'invalid');
const VALID = path.join(FIXTURES, 'valid');

function fixture(...parts: string[]): string {
  return fs.readFileSync(path.join(FIXTURES, ...parts), 'utf8');
}

function messages(files: { name: string; content: string }[], mergeDomainConfig = false): string[] {
  return parseConfigFiles(files, { mergeDomainConfig }).problems.map((problem) => problem.message);
}

function loadError(dir: string, options = { ignoreDotFiles: false, mergeDomainConfig: false }): ConfigError {
  try {
    loadConfigDirectory(dir, options);
  } catch (error) {
    if (error instanceof ConfigError) {
      return error;
    }
    throw error;
  }
  throw new Error(`expected ${dir} to be rejected`);
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-config-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function writeFile(relative: string, content: string): string {
  const full = path.join(tmp, relative);
  fs.mkdirSync(path.dirname(full), { recursive: true });
  fs.writeFileSync(full, content);
  return full;
}

describe('invalid fixtures: one problem each, with the exact message', () => {
  const cases: [fixture: string, message: string][] = [
    ['empty_domain.yaml', 'empty_domain.yaml: domain: config file cannot have empty domain'],
    ['missing_domain.yaml', 'missing_domain.yaml: domain: config file cannot have empty domain'],
    ['comments_only.yaml', 'comments_only.yaml: domain: config file cannot have empty domain'],
    ['empty_key.yaml', 'empty_key.yaml: descriptors[2]: descriptor has empty key'],
    [
      'duplicate_key.yaml',
      "duplicate_key.yaml: descriptors[1]: duplicate descriptor composite key 'test-domain.key1_value1'",
    ],
    [
      'duplicate_key_valueless.yaml',
      "duplicate_key_valueless.yaml: descriptors[2]: duplicate descriptor composite key 'test-domain.key1'",
    ],
    [
      'duplicate_key_nested.yaml',
      'duplicate_key_nested.yaml: descriptors[0].descriptors[1]: ' +
        "duplicate descriptor composite key 'test-domain.key1_value1.key2_value2'",
    ],
    ['bad_limit_unit.yaml', "bad_limit_unit.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'foo'"],
    ['missing_limit_unit.yaml', "missing_limit_unit.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit ''"],
    [
      'unlimited_with_unit.yaml',
      'unlimited_with_unit.yaml: descriptors[0].rate_limit: should not specify rate limit unit when unlimited',
    ],
    [
      'unlimited_with_algorithm.yaml',
      'unlimited_with_algorithm.yaml: descriptors[0].rate_limit: should not specify unit_multiplier or algorithm when unlimited',
    ],
    [
      'unlimited_with_unit_multiplier.yaml',
      'unlimited_with_unit_multiplier.yaml: descriptors[0].rate_limit: ' +
        'should not specify unit_multiplier or algorithm when unlimited',
    ],
    [
      'replaces_self.yaml',
      'replaces_self.yaml: descriptors[0].rate_limit.replaces[1]: replaces should not contain name of same descriptor',
    ],
    [
      'replaces_empty.yaml',
      'replaces_empty.yaml: descriptors[0].rate_limit.replaces[0]: should not have an empty replaces entry',
    ],
    ['bad_yaml.yaml', 'bad_yaml.yaml: error loading config file: Missing closing "quote at line 5, column 1'],
    [
      'multiple_documents.yaml',
      'multiple_documents.yaml: error loading config file: ' +
        'multiple YAML documents in one file are not supported at line 2, column 1',
    ],
    ['misspelled_key.yaml', "misspelled_key.yaml: descriptors[0].ratelimit: config error, unknown key 'ratelimit'"],
    [
      'misspelled_key_in_rate_limit.yaml',
      'misspelled_key_in_rate_limit.yaml: descriptors[0].descriptors[0].rate_limit.requestsperunit: ' +
        "config error, unknown key 'requestsperunit'",
    ],
    ['unit_on_descriptor.yaml', "unit_on_descriptor.yaml: descriptors[0].unit: config error, unknown key 'unit'"],
    ['non_string_key.yaml', 'non_string_key.yaml: descriptors[0]: config error, key is not of type string: 0.25'],
    [
      'non_map_list.yaml',
      'non_map_list.yaml: descriptors[1]: config error, yaml file contains list of type other than map: a',
    ],
    [
      'float_requests_per_unit.yaml',
      'float_requests_per_unit.yaml: descriptors[0].rate_limit.requests_per_unit: error checking config',
    ],
    ['map_as_key.yaml', 'map_as_key.yaml: descriptors[0].key: error checking config'],
    ['string_as_bool.yaml', 'string_as_bool.yaml: descriptors[0].shadow_mode: error checking config'],
    ['metadata_not_map.yaml', 'metadata_not_map.yaml: descriptors[0].metadata: error checking config'],
    ['top_level_list.yaml', 'top_level_list.yaml: error checking config'],
    [
      'share_threshold_without_wildcard.yaml',
      'share_threshold_without_wildcard.yaml: descriptors[0].share_threshold: ' +
        "share_threshold can only be used with wildcard values (containing '*'), but found key 'file_exact'",
    ],
    ['bad_store_failure.yaml', "bad_store_failure.yaml: descriptors[0].rate_limit.store_failure: invalid store_failure 'fail_open'"],
    [
      'bad_algorithm.yaml',
      "bad_algorithm.yaml: descriptors[0].rate_limit.algorithm: invalid rate limit algorithm 'leaky_bucket'",
    ],
    [
      'zero_unit_multiplier.yaml',
      'zero_unit_multiplier.yaml: descriptors[0].rate_limit.unit_multiplier: unit_multiplier must be a positive integer',
    ],
    [
      'window_too_long.yaml',
      'window_too_long.yaml: descriptors[0].rate_limit.unit_multiplier: ' +
        'unit_multiplier is too large: the window must be at most 9007199254740991 ms',
    ],
    [
      'negative_requests_per_unit.yaml',
      'negative_requests_per_unit.yaml: descriptors[0].rate_limit.requests_per_unit: ' +
        'requests_per_unit must be an integer between 0 and 4294967295',
    ],
    [
      'huge_requests_per_unit.yaml',
      'huge_requests_per_unit.yaml: descriptors[0].rate_limit.requests_per_unit: ' +
        'requests_per_unit must be an integer between 0 and 4294967295',
    ],
    [
      'sliding_log_too_large.yaml',
      'sliding_log_too_large.yaml: descriptors[0].rate_limit.requests_per_unit: ' +
        'requests_per_unit must be at most 128 with algorithm sliding_log (it keeps one entry per hit in the window); ' +
        'use sliding_window or token_bucket for larger limits',
    ],
    [
      'burst_without_token_bucket.yaml',
      'burst_without_token_bucket.yaml: descriptors[0].rate_limit.burst: burst is only valid with algorithm token_bucket',
    ],
    ['zero_burst.yaml', 'zero_burst.yaml: descriptors[0].rate_limit.burst: burst must be an integer between 1 and 4294967295'],
    [
      'bucket_too_large.yaml',
      'bucket_too_large.yaml: descriptors[0].rate_limit.requests_per_unit: token_bucket is too large for the window: ' +
        '(burst + 1) × the window in ms must be at most 9007199254740991 (burst defaults to requests_per_unit)',
    ],
    ['unlimited_with_burst.yaml', 'unlimited_with_burst.yaml: descriptors[0].rate_limit: should not specify burst when unlimited'],
    [
      'both_rate_limit_and_rate_limits.yaml',
      'both_rate_limit_and_rate_limits.yaml: descriptors[0]: should not specify both rate_limit and rate_limits',
    ],
    ['rate_limits_empty.yaml', 'rate_limits_empty.yaml: descriptors[0].rate_limits: rate_limits should not be empty'],
    ['rate_limits_not_list.yaml', 'rate_limits_not_list.yaml: descriptors[0].rate_limits: error checking config'],
    [
      'unlimited_in_rate_limits.yaml',
      'unlimited_in_rate_limits.yaml: descriptors[0].rate_limits[1].unlimited: ' +
        'unlimited is not allowed in rate_limits; use rate_limit: {unlimited: true}',
    ],
    [
      'duplicate_limit_name.yaml',
      "duplicate_limit_name.yaml: descriptors[0].rate_limits[1].name: duplicate rate limit name 'per_client' in rate_limits",
    ],
    [
      'replaces_sibling.yaml',
      'replaces_sibling.yaml: descriptors[0].rate_limits[1].replaces[0]: replaces should not contain name of same descriptor',
    ],
    ['rate_limits_bad_unit.yaml', "rate_limits_bad_unit.yaml: descriptors[0].rate_limits[1].unit: invalid rate limit unit 'fortnight'"],
  ];

  it.each(cases)('%s', (name, message) => {
    const result = parseConfigFiles([{ name, content: fixture('invalid', name) }], { mergeDomainConfig: false });
    expect(result.problems.map((problem) => problem.message)).toEqual([message]);
    expect(result.config).toBeUndefined();
  });

  it('has a case for every fixture in the directory', () => {
    expect(cases.map(([name]) => name).sort()).toEqual(fs.readdirSync(INVALID).sort());
  });

  it('splits each problem into file, path and reason', () => {
    const [problem] = parseConfigFiles([{ name: 'f.yaml', content: fixture('invalid', 'bad_limit_unit.yaml') }], {
      mergeDomainConfig: false,
    }).problems;
    expect(problem).toEqual({
      file: 'f.yaml',
      path: 'descriptors[0].rate_limit.unit',
      reason: "invalid rate limit unit 'foo'",
      message: "f.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'foo'",
    });
  });

  it('names the file by its path from the config directory parent, as the reference does', () => {
    writeFile('config/ratelimit.yaml', fixture('invalid', 'bad_limit_unit.yaml'));
    writeFile('config/team/extra.yaml', 'domain: extra\ndescriptors:\n  - value: v\n');
    const error = loadError(path.join(tmp, 'config'));
    expect(error.problems.map((problem) => problem.message)).toEqual([
      "config.ratelimit.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'foo'",
      'config.team.extra.yaml: descriptors[0]: descriptor has empty key',
    ]);
    expect(error.message).toBe(error.problems.map((problem) => problem.message).join('\n'));
  });
});

describe('parseConfigFiles', () => {
  it('accepts an empty file set as a config with no domains', () => {
    const result = parseConfigFiles([], { mergeDomainConfig: false });
    expect(result.problems).toEqual([]);
    expect(result.config?.domains()).toEqual([]);
    expect(result.config?.rules()).toEqual([]);
  });

  it('reports every problem in every file, not just the first', () => {
    const first = [
      'domain: d',
      'descriptors:',
      '  - key: a',
      '    ratelimit: {}',
      '  - key: b',
      '    rate_limit: {unit: fortnight, requests_per_unit: 1.5}',
      '  - value: x',
    ].join('\n');
    const second = ['domain: ""', 'descriptors:', '  - key: c', '    rate_limit: {unlimited: true, unit: second}'].join(
      '\n',
    );
    expect(
      messages([
        { name: 'first.yaml', content: first },
        { name: 'second.yaml', content: second },
      ]),
    ).toEqual([
      "first.yaml: descriptors[0].ratelimit: config error, unknown key 'ratelimit'",
      "first.yaml: descriptors[1].rate_limit.unit: invalid rate limit unit 'fortnight'",
      'first.yaml: descriptors[1].rate_limit.requests_per_unit: error checking config',
      'first.yaml: descriptors[2]: descriptor has empty key',
      'second.yaml: domain: config file cannot have empty domain',
      'second.yaml: descriptors[0].rate_limit: should not specify rate limit unit when unlimited',
    ]);
  });

  it('rejects a domain defined in two files, naming the second file', () => {
    const content = fixture('valid', 'basic', 'ratelimit.yaml');
    expect(
      messages([
        { name: 'a.yaml', content },
        { name: 'b.yaml', content },
      ]),
    ).toEqual(["b.yaml: domain: duplicate domain 'test-domain' in config file"]);
  });

  it('still checks the descriptors of a file whose domain was rejected', () => {
    const content = 'domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: minute}\n';
    const broken = 'domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unit: eon}\n';
    expect(
      messages([
        { name: 'a.yaml', content },
        { name: 'b.yaml', content: broken },
      ]),
    ).toEqual([
      "b.yaml: domain: duplicate domain 'd' in config file",
      "b.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'eon'",
    ]);
  });

  describe('with mergeDomainConfig', () => {
    const teamA = { name: 'team-a.yaml', content: fixture('valid', 'merge', 'team-a.yaml') };
    const teamB = { name: 'team-b.yaml', content: fixture('valid', 'merge', 'team-b.yaml') };

    it('merges descriptors of one domain from several files', () => {
      const { config, problems } = parseConfigFiles([teamA, teamB], { mergeDomainConfig: true });
      expect(problems).toEqual([]);
      expect(config?.domains()).toEqual(['shared']);
      expect(config?.rules().map((rule) => rule.id)).toEqual(['shared.team_a', 'shared.team_b']);
      expect(config?.getLimit('shared', [{ key: 'team', value: 'b' }])?.rule.limit?.requestsPerUnit).toBe(20);
    });

    it('is off by default: the same files are a duplicate domain', () => {
      expect(messages([teamA, teamB])).toEqual(["team-b.yaml: domain: duplicate domain 'shared' in config file"]);
    });

    it('still rejects the same composite key from two files', () => {
      expect(messages([teamA, { ...teamA, name: 'team-a-copy.yaml' }], true)).toEqual([
        "team-a-copy.yaml: descriptors[0]: duplicate descriptor composite key 'shared.team_a'",
      ]);
    });

    it('does not merge children of the same key from two files', () => {
      const parent = (child: string): string =>
        `domain: d\ndescriptors:\n  - key: p\n    descriptors:\n      - key: ${child}\n        rate_limit: {unit: second}\n`;
      expect(
        messages(
          [
            { name: 'x.yaml', content: parent('c1') },
            { name: 'y.yaml', content: parent('c2') },
          ],
          true,
        ),
      ).toEqual(["y.yaml: descriptors[0]: duplicate descriptor composite key 'd.p'"]);
    });
  });

  it('reads YAML 1.1 scalars as the reference does: numbers and booleans as text in string fields', () => {
    const content = [
      'domain: 42',
      'descriptors:',
      '  - key: enabled',
      '    value: yes',
      '    shadow_mode: on',
      '    rate_limit: {unit: second, requests_per_unit: 3, name: 1.50}',
    ].join('\n');
    const { config, problems } = parseConfigFiles([{ name: 'f', content }], { mergeDomainConfig: false });
    expect(problems).toEqual([]);
    const rule = config?.getLimit('42', [{ key: 'enabled', value: 'yes' }])?.rule;
    expect(rule).toMatchObject({ id: '42.enabled_yes', name: '1.50', shadowMode: true });
  });

  it('treats an empty value like no value, as the reference does', () => {
    const content = 'domain: d\ndescriptors:\n  - key: k\n    value: ""\n    rate_limit: {unit: second}\n';
    const { config } = parseConfigFiles([{ name: 'f', content }], { mergeDomainConfig: false });
    expect(config?.getLimit('d', [{ key: 'k', value: 'anything' }])?.rule.id).toBe('d.k');
  });

  it('rejects unknown keys at the top level too', () => {
    const content = 'domain: d\ndefaults: &per-minute {unit: minute, requests_per_unit: 5}\n';
    expect(messages([{ name: 'f', content }])).toEqual(["f: defaults: config error, unknown key 'defaults'"]);
  });

  it('supports anchors, aliases and merge keys', () => {
    const aliased = [
      'domain: d',
      'descriptors:',
      '  - key: a',
      '    rate_limit: &per-minute {unit: minute, requests_per_unit: 5}',
      '  - key: b',
      '    rate_limit: *per-minute',
      '  - key: c',
      '    rate_limit:',
      '      <<: *per-minute',
      '      requests_per_unit: 9',
    ].join('\n');
    const { config, problems } = parseConfigFiles([{ name: 'f', content: aliased }], { mergeDomainConfig: false });
    expect(problems).toEqual([]);
    const limitOf = (key: string): number | undefined =>
      config?.getLimit('d', [{ key, value: 'v' }])?.rule.limit?.requestsPerUnit;
    expect([limitOf('a'), limitOf('b'), limitOf('c')]).toEqual([5, 5, 9]);
    expect(config?.getLimit('d', [{ key: 'c', value: 'v' }])?.rule.limit?.unit).toBe('MINUTE');
  });

  it('rejects a descriptor that aliases its own ancestor instead of recursing forever', () => {
    const content = ['domain: d', 'descriptors:', '  - &loop', '    key: a', '    descriptors:', '      - *loop'].join(
      '\n',
    );
    expect(messages([{ name: 'f', content }])).toEqual(['f: descriptors[0].descriptors[0]: error checking config']);
  });
});

describe('listConfigFiles', () => {
  it('lists every regular file recursively, sorted by path, named from the parent of the directory', () => {
    writeFile('config/b.yaml', '');
    writeFile('config/a.yaml', '');
    writeFile('config/sub/c.conf', '');
    writeFile('config/.hidden.yaml', '');
    const dir = path.join(tmp, 'config');
    expect(listConfigFiles(dir, { ignoreDotFiles: false })).toEqual([
      { name: 'config..hidden.yaml', path: path.join(dir, '.hidden.yaml') },
      { name: 'config.a.yaml', path: path.join(dir, 'a.yaml') },
      { name: 'config.b.yaml', path: path.join(dir, 'b.yaml') },
      { name: 'config.sub.c.conf', path: path.join(dir, 'sub', 'c.conf') },
    ]);
    expect(listConfigFiles(dir, { ignoreDotFiles: true }).map((file) => file.name)).toEqual([
      'config.a.yaml',
      'config.b.yaml',
      'config.sub.c.conf',
    ]);
  });

  it('follows symlinks inside the directory, skips dangling ones and does not loop on a link to an enclosing directory', () => {
    writeFile('config/own.yaml', '');
    writeFile('config/sub/real.yaml', '');
    const dir = path.join(tmp, 'config');
    fs.symlinkSync(path.join(dir, 'sub'), path.join(dir, 'linked'));
    fs.symlinkSync(path.join(tmp, 'missing.yaml'), path.join(dir, 'dangling.yaml'));
    fs.symlinkSync('.', path.join(dir, 'self'));
    fs.symlinkSync('..', path.join(dir, 'sub', 'up'));
    const names = listConfigFiles(dir, { ignoreDotFiles: false }).map((file) => file.name);
    // `self` and `sub/up` lead back to the directory being walked, so the walk stops there.
    expect(names).toEqual(['config.linked.real.yaml', 'config.own.yaml', 'config.sub.real.yaml']);
  });

  it('refuses symlinks that leave the directory, naming them', () => {
    writeFile('elsewhere/real.yaml', '');
    writeFile('config/own.yaml', 'domain: own\n');
    const dir = path.join(tmp, 'config');
    fs.symlinkSync(path.join(tmp, 'elsewhere'), path.join(dir, 'linked'));
    fs.symlinkSync('..', path.join(dir, 'up'));
    expect(loadError(dir).problems.map((p) => p.message)).toEqual([
      'config.linked: symlink points outside the config directory; not followed',
      'config.up: symlink points outside the config directory; not followed',
    ]);
  });

  it('reports a missing directory', () => {
    const dir = path.join(tmp, 'nope');
    expect(() => listConfigFiles(dir, { ignoreDotFiles: false })).toThrow(ConfigError);
    const error = loadError(dir);
    expect(error.problems).toHaveLength(1);
    expect(error.problems[0]?.message).toMatch(
      new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read config directory: ENOENT`),
    );
  });

  it('reports a file given where a directory is expected', () => {
    const file = writeFile('plain.yaml', 'domain: d\n');
    expect(loadError(file).problems[0]?.reason).toMatch(/^cannot read config directory: ENOTDIR/);
  });
});

describe('loadConfigDirectory', () => {
  it('loads an empty directory as a config with no domains', () => {
    fs.mkdirSync(path.join(tmp, 'config'));
    const config = loadConfigDirectory(path.join(tmp, 'config'), { ignoreDotFiles: false, mergeDomainConfig: false });
    expect(config.domains()).toEqual([]);
  });

  it('loads several files and subdirectories into one config', () => {
    const config = loadConfigDirectory(path.join(VALID, 'multi'), { ignoreDotFiles: false, mergeDomainConfig: false });
    expect(config.domains()).toEqual(['auth', 'api']);
    expect(config.rules().map((rule) => rule.id)).toEqual(['auth.client_id', 'api.path_/v1/search']);
  });

  describe('Kubernetes ConfigMap volume layout', () => {
    let dir: string;
    beforeEach(() => {
      dir = path.join(tmp, 'config');
      writeFile('config/..2024_01_01_00_00_00.123/ratelimit.yaml', fixture('valid', 'basic', 'ratelimit.yaml'));
      fs.symlinkSync('..2024_01_01_00_00_00.123', path.join(dir, '..data'));
      fs.symlinkSync('..data/ratelimit.yaml', path.join(dir, 'ratelimit.yaml'));
    });

    it('loads the one visible file with ignoreDotFiles', () => {
      expect(listConfigFiles(dir, { ignoreDotFiles: true })).toEqual([
        { name: 'config.ratelimit.yaml', path: path.join(dir, 'ratelimit.yaml') },
      ]);
      const config = loadConfigDirectory(dir, { ignoreDotFiles: true, mergeDomainConfig: false });
      expect(config.domains()).toEqual(['test-domain']);
    });

    it('sees the hidden copies without it, and rejects the duplicate domain', () => {
      expect(loadError(dir).problems.map((problem) => problem.message)).toEqual([
        "config...data.ratelimit.yaml: domain: duplicate domain 'test-domain' in config file",
        "config.ratelimit.yaml: domain: duplicate domain 'test-domain' in config file",
      ]);
    });
  });
});
