import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCheckConfig } from '../../../src/cli/check-config';

const FIXTURES = path.join(__dirname, '../../fixtures/config');

function run(args: string[], env: Record<string, string> = {}): { code: number; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const code = runCheckConfig(args, { out: (line) => out.push(line), err: (line) => err.push(line) }, env);
  return { code, out, err };
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-check-config-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('sluice check-config', () => {
  it('prints a one-line summary and exits 0 for a valid directory', () => {
    expect(run([path.join(FIXTURES, 'valid', 'multi')])).toEqual({
      code: 0,
      out: ['config OK: 2 files, 2 domains (auth, api), 2 limits'],
      err: [],
    });
    expect(run([path.join(FIXTURES, 'valid', 'basic')]).out).toEqual([
      'config OK: 1 file, 1 domain (test-domain), 28 limits',
    ]);
  });

  it('accepts an empty directory', () => {
    expect(run([tmp]).out).toEqual(['config OK: 0 files, 0 domains, 0 limits']);
  });

  it('prints every problem and exits 1 for an invalid directory', () => {
    const dir = path.join(tmp, 'config');
    fs.mkdirSync(dir);
    for (const name of ['bad_limit_unit.yaml', 'empty_key.yaml', 'misspelled_key.yaml']) {
      fs.copyFileSync(path.join(FIXTURES, 'invalid', name), path.join(dir, name));
    }
    expect(run([dir])).toEqual({
      code: 1,
      out: [],
      err: [
        "config.bad_limit_unit.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'foo'",
        "config.empty_key.yaml: domain: duplicate domain 'test-domain' in config file",
        'config.empty_key.yaml: descriptors[2]: descriptor has empty key',
        "config.misspelled_key.yaml: domain: duplicate domain 'test-domain' in config file",
        "config.misspelled_key.yaml: descriptors[0].ratelimit: config error, unknown key 'ratelimit'",
      ],
    });
  });

  it('reports a missing directory and exits 1', () => {
    const dir = path.join(tmp, 'nope');
    const result = run([dir]);
    expect(result.code).toBe(1);
    expect(result.err).toHaveLength(1);
    expect(result.err[0]?.startsWith(`${dir}: cannot read config directory: ENOENT`)).toBe(true);
  });

  describe('domain merging', () => {
    const dir = path.join(FIXTURES, 'valid', 'merge');

    it('rejects one domain in two files by default', () => {
      expect(run([dir])).toEqual({
        code: 1,
        out: [],
        err: ["merge.team-b.yaml: domain: duplicate domain 'shared' in config file"],
      });
    });

    it('merges with --merge-domain-config', () => {
      expect(run([dir, '--merge-domain-config']).out).toEqual(['config OK: 2 files, 1 domain (shared), 2 limits']);
    });

    it('merges with MERGE_DOMAIN_CONFIG=true', () => {
      expect(run([dir], { MERGE_DOMAIN_CONFIG: 'true' }).code).toBe(0);
      expect(run([dir], { MERGE_DOMAIN_CONFIG: 'false' }).code).toBe(1);
    });
  });

  describe('dot files', () => {
    let dir: string;
    beforeEach(() => {
      dir = path.join(tmp, 'config');
      fs.mkdirSync(path.join(dir, '..2024_01_01'), { recursive: true });
      fs.copyFileSync(path.join(FIXTURES, 'valid', 'multi', 'auth.yaml'), path.join(dir, '..2024_01_01', 'auth.yaml'));
      fs.symlinkSync('..2024_01_01', path.join(dir, '..data'));
      fs.symlinkSync('..data/auth.yaml', path.join(dir, 'auth.yaml'));
    });

    it('skips them with --ignore-dotfiles or RUNTIME_IGNOREDOTFILES=true', () => {
      const ok = 'config OK: 1 file, 1 domain (auth), 1 limit';
      expect(run([dir, '--ignore-dotfiles']).out).toEqual([ok]);
      expect(run([dir], { RUNTIME_IGNOREDOTFILES: 'true' }).out).toEqual([ok]);
    });

    it('reads them otherwise', () => {
      expect(run([dir]).code).toBe(1);
    });
  });

  describe('usage errors exit 2', () => {
    it('without a directory', () => {
      expect(run([])).toEqual({
        code: 2,
        out: [],
        err: ['usage: sluice check-config <dir> [--merge-domain-config] [--ignore-dotfiles]'],
      });
    });

    it('with two directories', () => {
      expect(run([tmp, tmp]).code).toBe(2);
    });

    it('with an unknown option', () => {
      const result = run([tmp, '--merge']);
      expect(result.code).toBe(2);
      expect(result.err[0]).toMatch(/^sluice check-config: Unknown option '--merge'/);
    });

    it('with an unreadable boolean in the environment', () => {
      expect(run([tmp], { MERGE_DOMAIN_CONFIG: 'maybe' })).toEqual({
        code: 2,
        out: [],
        err: [
          "sluice check-config: MERGE_DOMAIN_CONFIG must be true or false, got 'maybe'",
          'usage: sluice check-config <dir> [--merge-domain-config] [--ignore-dotfiles]',
        ],
      });
    });
  });
});
