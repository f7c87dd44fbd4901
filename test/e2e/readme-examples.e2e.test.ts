import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SETTING_SPECS } from '../../src/settings/setting-specs';
import { SLUICE_BIN, type SluiceProcess, startSluiceProcess } from '../support/sluice-process';

/**
 * The README's examples, run: the commands are read out of README.md and run as written against a
 * freshly started `npm start` (examples/oauth2, in-memory store), and what they print must be
 * what the README prints. Only two rewrites, both of addresses: the service here listens on free
 * ports instead of the defaults the README assumes (checked below to be the defaults), and
 * `npx sluice` is the built `dist/src/cli/main.js` (what npx would run, without asking a registry).
 *
 * Compared tolerantly, and only these: the seconds until reset (`reset 60s`,
 * `"durationUntilReset":"60s"`) may be 1 s off the printed value, because they are counted from
 * the wall clock at the moment of the call. Everything else must be equal.
 */

const ROOT = path.resolve(__dirname, '../..');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const EXAMPLE_CONFIG = path.join(ROOT, 'examples/oauth2');
/** README examples may be written for curl; CI installs it (.ci/run). */
const SHELL = '/bin/sh';

interface Block {
  readonly lang: string;
  readonly lines: readonly string[];
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** Index of the next block, when only blank lines separate the two. */
  readonly followedBy?: Block;
}

function fencedBlocks(markdown: string): Block[] {
  const lines = markdown.split('\n');
  const raw: { lang: string; lines: string[]; line: number; end: number }[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i] ?? '');
    if (open === null) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) body.push(lines[i] ?? '');
    raw.push({ lang: open[1] ?? '', lines: body, line: start + 1, end: i });
  }
  const blocks: Block[] = [];
  for (let k = raw.length - 1; k >= 0; k--) {
    const b = raw[k]!;
    const next = raw[k + 1];
    const adjacent = next !== undefined && lines.slice(b.end + 1, next.line - 1).every((l) => l.trim() === '');
    blocks.unshift({ lang: b.lang, lines: b.lines, line: b.line, ...(adjacent && { followedBy: blocks[0] }) });
  }
  return blocks;
}

const blocks = fencedBlocks(README);
const shellBlocks = blocks.filter((b) => b.lang === 'sh');

/** A `sluice client` block and the unlabeled block printed right after it (the last command's output). */
const clientExamples = shellBlocks
  .map((b) => ({ block: b, commands: b.lines.filter((l) => l.startsWith('npx sluice client ')) }))
  .filter((e) => e.commands.length > 0)
  .map((e) => ({ ...e, printed: e.block.followedBy?.lang === '' ? e.block.followedBy.lines.join('\n') : undefined }));

/** `curl …` followed by a `# {…}` line: that line is its answer. */
const curlExamples = shellBlocks.flatMap((b) =>
  b.lines.flatMap((l, i) => {
    const answer = b.lines[i + 1];
    return l.startsWith('curl ') && answer?.startsWith('# {') ? [{ line: b.line + 1 + i, command: l, printed: answer.slice(2) }] : [];
  }),
);

const checkConfigCommands = shellBlocks.flatMap((b) => b.lines.filter((l) => l.startsWith('npx sluice check-config ')));

/** The README's addresses, pointed at the service under test. */
function localize(command: string, sluice: Pick<SluiceProcess, 'grpcPort' | 'httpPort'>): string {
  return command
    .replace(/^npx sluice client /, `node ${SLUICE_BIN} client --addr 127.0.0.1:${sluice.grpcPort} `)
    .replace(/^npx sluice /, `node ${SLUICE_BIN} `)
    .replace(/\blocalhost:8080\b/g, `127.0.0.1:${sluice.httpPort}`);
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(command: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(SHELL, ['-c', command], { cwd: ROOT, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Replaces each `reset Ns` after checking it against the printed one (±1 s; see the top). */
function resetTolerant(actual: string, printed: string): [string, string] {
  const pattern = /reset (\d+)s/g;
  const want = [...printed.matchAll(pattern)].map((m) => Number(m[1]));
  const got = [...actual.matchAll(pattern)].map((m) => Number(m[1]));
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(Math.abs(g - (want[i] ?? NaN))).toBeLessThanOrEqual(1));
  return [actual.replace(pattern, 'reset Ns'), printed.replace(pattern, 'reset Ns')];
}

function jsonResetTolerant(actual: unknown, printed: unknown): [unknown, unknown] {
  const seconds = (value: unknown): number[] =>
    ((value as { statuses?: { durationUntilReset?: string }[] }).statuses ?? []).map((s) => parseFloat(s.durationUntilReset ?? 'NaN'));
  const got = seconds(actual);
  const want = seconds(printed);
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(Math.abs(g - (want[i] ?? NaN))).toBeLessThanOrEqual(1));
  const strip = (value: unknown): unknown => JSON.parse(JSON.stringify(value).replace(/"durationUntilReset":"[^"]*"/g, '"durationUntilReset":"Ns"'));
  return [strip(actual), strip(printed)];
}

describe('README examples', () => {
  let sluice: SluiceProcess | undefined;

  afterEach(async () => {
    await sluice?.stop();
    sluice = undefined;
  });

  it('are found where the README shows them, with the addresses that npm start serves', () => {
    expect(clientExamples.length).toBeGreaterThan(0);
    expect(clientExamples.some((e) => e.printed !== undefined)).toBe(true);
    expect(curlExamples.map((e) => e.command)).toEqual([expect.stringContaining('localhost:8080/json')]);
    expect(checkConfigCommands).toEqual(['npx sluice check-config examples/oauth2']);
    // The rewrites above assume the defaults: HTTP on 8080, and `sluice client` talking to 8081.
    expect(SETTING_SPECS.port.default).toBe('8080');
    expect(SETTING_SPECS.grpcPort.default).toBe('8081');
    expect(README).toMatch(/gRPC on 8081, HTTP on 8080/);
  });

  test.each(clientExamples.map((e) => [e.block.line, e] as const))(
    'the sluice client block at README line %i prints what the README shows',
    async (_line, example) => {
      sluice = await startSluiceProcess(EXAMPLE_CONFIG);
      let last: Run | undefined;
      for (const command of example.commands) {
        last = await sh(localize(command, sluice));
        expect({ command, code: last.code, stderr: last.stderr }).toEqual({ command, code: 0, stderr: '' });
      }
      if (example.printed !== undefined && last !== undefined) {
        const [actual, printed] = resetTolerant(last.stdout.trimEnd(), example.printed.trimEnd());
        expect(actual).toBe(printed);
      }
    },
  );

  test.each(curlExamples.map((e) => [e.line, e] as const))('the curl example at README line %i answers what the README shows', async (_line, example) => {
    sluice = await startSluiceProcess(EXAMPLE_CONFIG);
    const run = await sh(localize(example.command, sluice));
    expect(run.code).toBe(0);
    const [actual, printed] = jsonResetTolerant(JSON.parse(run.stdout) as unknown, JSON.parse(example.printed) as unknown);
    expect(actual).toEqual(printed);
  });

  test.each(checkConfigCommands)('`%s` accepts the bundled config', async (command) => {
    // Offline: no service, so no address to rewrite (the ports are never used).
    const run = await sh(localize(command, { grpcPort: 0, httpPort: 0 }));
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  });

  describe('config reference', () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-readme-'));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('the example config (the README\'s yaml block) is valid', async () => {
      const yamlBlocks = blocks.filter((b) => b.lang === 'yaml');
      expect(yamlBlocks).toHaveLength(1);
      fs.mkdirSync(path.join(dir, 'config'));
      fs.writeFileSync(path.join(dir, 'config', 'ratelimit.yaml'), yamlBlocks[0]!.lines.join('\n'));
      const run = await sh(`node ${SLUICE_BIN} check-config ${path.join(dir, 'config')}`);
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    });

    it('the printed validation errors are what check-config prints for those two mistakes', async () => {
      // The block right after "Validation refuses a bad config whole": its lines name a file
      // (config/ratelimit.yaml) and two problems; a file with exactly those problems is built here.
      const errorBlock = blocks.find((b) => b.lang === '' && b.lines.some((l) => l.includes("invalid rate limit unit 'fortnight'")));
      expect(errorBlock?.lines).toHaveLength(2);
      fs.mkdirSync(path.join(dir, 'config'));
      fs.writeFileSync(
        path.join(dir, 'config', 'ratelimit.yaml'),
        [
          'domain: api',
          'descriptors:',
          '  - key: a',
          '    rate_limit: { unit: fortnight, requests_per_unit: 1 }',
          '  - key: b',
          '    ratelimit: { unit: minute, requests_per_unit: 1 }',
        ].join('\n'),
      );
      const run = await sh(`node ${SLUICE_BIN} check-config ${path.join(dir, 'config')}`);
      expect(run.code).toBe(1);
      const printed = run.stdout + run.stderr;
      for (const line of errorBlock?.lines ?? []) expect(printed).toContain(line);
    });

    it('the /rlconfig line is what the debug port prints for the limit it describes', async () => {
      const line = /`(\w+)\.(\w+): unit=(\w+) requests_per_unit=(\d+), [^`]*`/.exec(README);
      expect(line).not.toBeNull();
      const [shown, domain, key, unit, requests] = line!;
      fs.writeFileSync(
        path.join(dir, 'config.yaml'),
        `domain: ${domain}\ndescriptors:\n  - key: ${key}\n    rate_limit: { unit: ${unit!.toLowerCase()}, requests_per_unit: ${requests} }\n`,
      );
      sluice = await startSluiceProcess(dir);
      const body = await (await fetch(`http://127.0.0.1:${sluice.debugPort}/rlconfig`)).text();
      expect(body.split('\n')).toContain(shown.slice(1, -1));
    });
  });
});
