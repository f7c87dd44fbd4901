import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MAX_CONFIG_FILE_BYTES, readConfigDirectory } from '../../../src/config/config-files';
import { inspectConfigDirectory } from '../../../src/config/load';
import { runCheckConfig } from '../../../src/cli/check-config';

/** What a config directory may hold before sluice refuses to read it, file by file. */

const GOOD = 'domain: good\ndescriptors:\n  - key: client_id\n    rate_limit: { unit: minute, requests_per_unit: 10 }\n';

let tmp: string;
let dir: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-config-limits-'));
  dir = path.join(tmp, 'config');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'good.yaml'), GOOD);
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const options = { ignoreDotFiles: false, mergeDomainConfig: false };

describe('a config directory', () => {
  test('a file over MAX_CONFIG_FILE_BYTES is refused by name and limit, without being read', () => {
    fs.writeFileSync(path.join(dir, 'huge.yaml'), Buffer.alloc(MAX_CONFIG_FILE_BYTES + 1, 0x20));
    const { config, problems } = inspectConfigDirectory(dir, options);
    expect(config).toBeUndefined();
    expect(problems.map((p) => p.message)).toEqual([
      `config.huge.yaml: config file is ${MAX_CONFIG_FILE_BYTES + 1} bytes, over the limit of ${MAX_CONFIG_FILE_BYTES}; not read`,
    ]);
  });

  test('CONFIG_MAX_FILE_BYTES and CONFIG_MAX_DIRECTORY_BYTES move the limits; the messages name file and limit', () => {
    fs.writeFileSync(path.join(dir, 'more.yaml'), GOOD.replace('good', 'more'));
    const tight = inspectConfigDirectory(dir, { ...options, limits: { maxFileBytes: GOOD.length - 1, maxDirectoryBytes: 1_000 } });
    expect(tight.problems.map((p) => p.message)).toEqual([
      `config.good.yaml: config file is ${GOOD.length} bytes, over the limit of ${GOOD.length - 1}; not read`,
      `config.more.yaml: config file is ${GOOD.length} bytes, over the limit of ${GOOD.length - 1}; not read`,
    ]);
    const total = inspectConfigDirectory(dir, { ...options, limits: { maxFileBytes: 1_000, maxDirectoryBytes: GOOD.length + 1 } });
    expect(total.problems.map((p) => p.message)).toEqual([`config.more.yaml: config files add up to over ${GOOD.length + 1} bytes here; not read`]);
    // check-config reads them from the environment as serve does.
    const err: string[] = [];
    const io = { out: () => undefined, err: (line: string) => err.push(line) };
    expect(runCheckConfig([dir], io, { CONFIG_MAX_FILE_BYTES: String(GOOD.length - 1) })).toBe(1);
    expect(err[0]).toBe(`config.good.yaml: config file is ${GOOD.length} bytes, over the limit of ${GOOD.length - 1}; not read`);
    expect(runCheckConfig([dir], io, {})).toBe(0);
    expect(runCheckConfig([dir], io, { CONFIG_MAX_DIRECTORY_BYTES: 'lots' })).toBe(2);
    expect(err).toContain("sluice check-config: CONFIG_MAX_DIRECTORY_BYTES must be a positive integer, got 'lots'");
  });

  test('on reload (settleMs), a file changed more recently than that is still being written: not taken yet, worth a retry', () => {
    // Written just now: a reload should not have come yet, so a writer may be between two writes.
    const early = readConfigDirectory(dir, { ...options, settleMs: 60_000 });
    expect(early.files).toEqual([]);
    expect(early.unstable).toBe(true);
    expect(early.problems.map((p) => p.message)).toEqual([expect.stringMatching(/^config\.good\.yaml: config file changed \d+ ms ago and may still be being written; not taken yet$/)]);
    // Old enough, or no settle asked for (start, check-config): taken.
    const past = new Date(Date.now() - 1_000);
    fs.utimesSync(path.join(dir, 'good.yaml'), past, past);
    expect(readConfigDirectory(dir, { ...options, settleMs: 500 }).problems).toEqual([]);
    expect(readConfigDirectory(dir, options).problems).toEqual([]);
    // An mtime in the future (a clock that stepped back) cannot tell anything: taken.
    const future = new Date(Date.now() + 3_600_000);
    fs.utimesSync(path.join(dir, 'good.yaml'), future, future);
    expect(readConfigDirectory(dir, { ...options, settleMs: 500 }).problems).toEqual([]);
  });

  test('a symlink out of the directory is refused by name and not followed: nothing of its target is quoted', () => {
    const outside = path.join(tmp, 'secrets');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'db.yaml'), 'db_password: s3cr3t-VALUE\n');
    fs.symlinkSync(outside, path.join(dir, 'etc'));
    fs.symlinkSync(path.join(outside, 'db.yaml'), path.join(dir, 'db.yaml'));
    const { config, problems } = inspectConfigDirectory(dir, options);
    expect(config).toBeUndefined();
    expect(problems.map((p) => p.message)).toEqual([
      'config.db.yaml: symlink points outside the config directory; not followed',
      'config.etc: symlink points outside the config directory; not followed',
    ]);
    expect(JSON.stringify(problems)).not.toContain('s3cr3t');
  });

  test('links inside the directory, as the kubelet makes them (..data swaps), are followed', () => {
    const version = path.join(dir, '..2026_12_04');
    fs.mkdirSync(version);
    fs.renameSync(path.join(dir, 'good.yaml'), path.join(version, 'good.yaml'));
    fs.symlinkSync('..2026_12_04', path.join(dir, '..data'));
    fs.symlinkSync(path.join('..data', 'good.yaml'), path.join(dir, 'good.yaml'));
    const { config, problems } = inspectConfigDirectory(dir, { ...options, ignoreDotFiles: true });
    expect(problems).toEqual([]);
    expect(config?.domains()).toEqual(['good']);
  });

  test('a file that is not valid UTF-8 is a problem naming the file and where, not a silent U+FFFD', () => {
    fs.writeFileSync(path.join(dir, 'bytes.yaml'), Buffer.concat([Buffer.from('domain: bytes\ndescriptors:\n  - key: user_id\n    value: "a'), Buffer.from([0xff]), Buffer.from('"\n')]));
    const { problems } = readConfigDirectory(dir, options);
    expect(problems.map((p) => p.message)).toEqual(['config.bytes.yaml: config file is not valid UTF-8 (line 4, byte 57)']);
  });
});
