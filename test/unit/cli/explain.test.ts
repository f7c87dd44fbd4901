import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runExplain } from '../../../src/cli/explain';

const BASIC = path.join(__dirname, '../../fixtures/config/valid/basic');

function run(args: string[], env: Record<string, string | undefined> = {}): { code: number; out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  const code = runExplain(args, { out: (line) => out.push(line), err: (line) => err.push(line) }, env);
  return { code, out, err };
}

describe('sluice explain', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-explain-'));
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('explains every descriptor, in order, and exits 0', () => {
    const result = run(['--config', BASIC, '--domain', 'test-domain', '--descriptor', 'client_id=web', '--descriptor', 'second=s,first=f']);
    expect(result).toEqual({
      code: 0,
      err: [],
      out: [
        `domain test-domain, config ${BASIC}`,
        'descriptor [0] client_id=web',
        '  level 1  client_id=web: exact node client_id=web absent; no wildcard patterns; value-less node client_id matched ⇒ node client_id',
        '  ⇒ rule test-domain.client_id: 20 per minute, sliding_window, name -, shadow off',
        'descriptor [1] second=s,first=f',
        expect.stringMatching(/^ {2}level 1 {2}second=s: no node has key second at this level \(keys here: key1, client_id, /),
        '  ⇒ no limit: second=s matches no node at level 1',
        '  near misses:',
        '    entry order matters: a rule exists for (first, second) [test-domain.first.second]',
      ],
    });
  });

  it('reads `\\,` in a value as a comma (the parsing of sluice client)', () => {
    fs.writeFileSync(path.join(tmp, 'a.yaml'), 'domain: d\ndescriptors:\n  - key: k\n    value: "a,b"\n    rate_limit: { unit: second, requests_per_unit: 1 }\n');
    const result = run(['--config', tmp, '--domain', 'd', '--descriptor', 'k=a\\,b']);
    expect(result.code).toBe(0);
    expect(result.out).toContain('  ⇒ rule d.k_a,b: 1 per second, sliding_window, name -, shadow off');
  });

  it('an unknown domain is an answer, not an error', () => {
    const result = run(['--config', BASIC, '--domain', 'other', '--descriptor', 'k=v']);
    expect(result.code).toBe(0);
    expect(result.out).toContain('  ⇒ no limit: unknown domain "other" (domains: test-domain)');
  });

  it('exits 1 and prints every problem of a broken config', () => {
    fs.writeFileSync(path.join(tmp, 'a.yaml'), 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight }\n');
    fs.writeFileSync(path.join(tmp, 'b.yaml'), 'domain: d\n');
    const result = run(['--config', tmp, '--domain', 'd', '--descriptor', 'k=v']);
    expect(result.code).toBe(1);
    expect(result.out).toEqual([]);
    expect(result.err.length).toBeGreaterThanOrEqual(2);
  });

  it('--merge-domain-config and --ignore-dotfiles load as serve would', () => {
    fs.writeFileSync(path.join(tmp, 'a.yaml'), 'domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 1 }\n');
    fs.writeFileSync(path.join(tmp, 'b.yaml'), 'domain: d\ndescriptors:\n  - key: b\n    rate_limit: { unit: second, requests_per_unit: 2 }\n');
    fs.writeFileSync(path.join(tmp, '.hidden.yaml'), 'not: [valid');
    expect(run(['--config', tmp, '--domain', 'd', '--descriptor', 'b=1']).code).toBe(1);
    const merged = run(['--config', tmp, '--domain', 'd', '--descriptor', 'b=1', '--merge-domain-config', '--ignore-dotfiles']);
    expect(merged.code).toBe(0);
    expect(merged.out).toContain('  ⇒ rule d.b: 2 per second, sliding_window, name -, shadow off');
  });

  it('MERGE_DOMAIN_CONFIG and RUNTIME_IGNOREDOTFILES in the environment load as serve would (as check-config)', () => {
    fs.writeFileSync(path.join(tmp, 'a.yaml'), 'domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 1 }\n');
    fs.writeFileSync(path.join(tmp, 'b.yaml'), 'domain: d\ndescriptors:\n  - key: b\n    rate_limit: { unit: second, requests_per_unit: 2 }\n');
    // A dotfile that serve skips with RUNTIME_IGNOREDOTFILES=true must not give explain another domain.
    fs.writeFileSync(path.join(tmp, '.old.yaml'), 'domain: legacy\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 9 }\n');
    const env = { MERGE_DOMAIN_CONFIG: 'true', RUNTIME_IGNOREDOTFILES: 'yes' };
    const merged = run(['--config', tmp, '--domain', 'd', '--descriptor', 'b=1'], env);
    expect(merged.code).toBe(0);
    expect(merged.out).toContain('  ⇒ rule d.b: 2 per second, sliding_window, name -, shadow off');
    const legacy = run(['--config', tmp, '--domain', 'legacy', '--descriptor', 'a=1'], env);
    expect(legacy.out).toContain('  ⇒ no limit: unknown domain "legacy" (domains: d)');
    // Without them, as serve without them: the duplicate domain is an error.
    expect(run(['--config', tmp, '--domain', 'd', '--descriptor', 'b=1']).code).toBe(1);
  });

  it('exits 2 on an environment flag that is not true or false', () => {
    const result = run(['--config', BASIC, '--domain', 'd', '--descriptor', 'k=v'], { MERGE_DOMAIN_CONFIG: 'maybe' });
    expect(result.code).toBe(2);
    expect(result.err[0]).toMatch(/MERGE_DOMAIN_CONFIG must be true or false, got 'maybe'/);
  });

  it.each<[string, string[], RegExp]>([
    ['no --config', ['--domain', 'd', '--descriptor', 'k=v'], /--config is required/],
    ['no --domain', ['--config', BASIC, '--descriptor', 'k=v'], /--domain is required/],
    ['no --descriptor', ['--config', BASIC, '--domain', 'd'], /at least one --descriptor/],
    ['an entry without =', ['--config', BASIC, '--domain', 'd', '--descriptor', 'k'], /is not key=value/],
    ['an unknown flag', ['--config', BASIC, '--domain', 'd', '--descriptor', 'k=v', '--bogus'], /bogus/],
    ['a positional', ['--config', BASIC, '--domain', 'd', '--descriptor', 'k=v', 'extra'], /extra/],
  ])('exits 2 with usage on %s', (_name, args, message) => {
    const result = run(args);
    expect(result.code).toBe(2);
    expect(result.out).toEqual([]);
    expect(result.err[0]).toMatch(message);
    expect(result.err.join('\n')).toContain('usage: sluice explain');
  });
});
