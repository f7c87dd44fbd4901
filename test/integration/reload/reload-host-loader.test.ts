import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { DEFAULT_CONFIG_SIZE_LIMITS } from '../../../src/config/config-files';
import { type LoadOutcome, ReloadHostLoader, reloadHeapMb } from '../../../src/config/reload-host-loader';
import { denseConfig } from '../../support/dense-config';
import { CONFIG_RELOAD_SCRIPT } from '../../support/start-sluice';

/**
 * The reload host for real (the dist/ build of its entry, a real child process running real
 * worker threads): what reaches the main thread, and what happens when the work runs out of memory
 * or time, or the host dies.
 */

let tmp: string;
let largest: string;
let heavy: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-reload-'));
  // The largest config the map bound accepts (20,000 maps: 9,999 limited descriptors and the top).
  largest = path.join(tmp, 'largest');
  fs.mkdirSync(largest);
  fs.writeFileSync(path.join(largest, 'big.yaml'), denseConfig('big', 9_999));
  // Just under the 4 MiB file limit: seconds of parsing and hundreds of MB before the map bound refuses it.
  heavy = path.join(tmp, 'heavy');
  fs.mkdirSync(heavy);
  fs.writeFileSync(path.join(heavy, 'heavy.yaml'), denseConfig('heavy', 51_000));
  expect(fs.statSync(path.join(heavy, 'heavy.yaml')).size).toBeLessThan(DEFAULT_CONFIG_SIZE_LIMITS.maxFileBytes);
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const loaders: ReloadHostLoader[] = [];
afterEach(() => {
  for (const made of loaders.splice(0)) made.close();
});

function loader(
  dir: string,
  overrides: { heapMb?: number; timeoutMs?: number; script?: string; pause?: () => Promise<void> } = {},
): ReloadHostLoader {
  const made = new ReloadHostLoader({
    ...(overrides.pause !== undefined && { pause: overrides.pause }),
    request: { dir, ignoreDotFiles: false, mergeDomainConfig: false, limits: DEFAULT_CONFIG_SIZE_LIMITS },
    heapMb: overrides.heapMb ?? reloadHeapMb(DEFAULT_CONFIG_SIZE_LIMITS.maxFileBytes),
    timeoutMs: overrides.timeoutMs ?? 60_000,
    script: overrides.script ?? CONFIG_RELOAD_SCRIPT,
  });
  loaders.push(made);
  return made;
}

/** The pids of this process's reload hosts (its children running reload-host.js). */
function reloadHosts(): number[] {
  const children = fs
    .readdirSync(`/proc/${process.pid}/task`)
    .flatMap((tid) => fs.readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').trim().split(' ').filter(Boolean))
    .map(Number);
  return children.filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('reload-host.js');
    } catch {
      return false; // ended meanwhile
    }
  });
}

/** Each thread of `pid` with its nice value (field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNice(pid: number): { tid: number; nice: number }[] {
  return fs.readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: state is field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { tid: Number(tid), nice: Number(fields[16]) };
  });
}

/**
 * Starts `reloads`' host and returns its pid once it has run its first lines (the last of which
 * sets its OOM score): before that it may still be booting, starting threads.
 */
async function startedHost(reloads: ReloadHostLoader): Promise<number> {
  reloads.start();
  await waitFor(() => reloadHosts().length === 1, 'the host');
  const [host] = reloadHosts();
  await waitFor(() => fs.readFileSync(`/proc/${host}/oom_score_adj`, 'utf8').trim() === '1000', 'the host to boot');
  return host!;
}

async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function problemsOf(outcome: LoadOutcome): string[] {
  return outcome.ok ? [] : outcome.problems.map((p) => p.message);
}

describe('ReloadHostLoader', () => {
  test('the largest accepted config arrives whole, re-linked on this thread in slices of under 25 ms each', async () => {
    // The main thread's share: from the reply's arrival (a few flat buffers) to the swap, in
    // slices with a turn of the event loop between them. Each slice is timed from resume to pause.
    const slices: number[] = [];
    let resumed: number | undefined;
    const pause = (): Promise<void> =>
      new Promise((resolve) => {
        if (resumed !== undefined) slices.push(performance.now() - resumed);
        setImmediate(() => {
          resumed = performance.now();
          resolve();
        });
      });
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const started = Date.now();
    const outcome = await loader(largest, { pause }).load();
    const tookMs = Date.now() - started;
    delay.disable();
    if (resumed !== undefined) slices.push(performance.now() - resumed);
    expect(problemsOf(outcome)).toEqual([]);
    if (!outcome.ok) return;
    expect(outcome.config.rules()).toHaveLength(9_999);
    expect(outcome.config.getLimit('big', [{ key: 'k', value: 'v9998' }])?.rule.limit?.requestsPerUnit).toBe(9_999);
    expect(outcome.fingerprints).toHaveLength(9_999);
    const longest = Math.max(...slices);
    // For the record: the whole load, the main thread's share, and the event loop's longest stall
    // (which on a busy 2-core machine also counts time this thread was not scheduled at all).
    console.log(
      `9,999-rule config: loaded in ${tookMs} ms; main thread: ${slices.length} slices, ${slices.reduce((a, b) => a + b, 0).toFixed(1)} ms in all, ` +
        `longest ${longest.toFixed(1)} ms; longest event-loop stall ${(delay.max / 1e6).toFixed(1)} ms`,
    );
    expect(slices.length).toBeGreaterThan(10);
    expect(longest).toBeLessThan(25);
  });

  test('out of memory: the worker ends, the reload is refused with a message, the host lives on', async () => {
    const reloads = loader(heavy, { heapMb: 32 });
    const outcome = await reloads.load();
    expect(problemsOf(outcome)).toEqual([`${heavy}: reading and checking the config needed more than 32 MB of memory; stopped`]);
    // The same host still loads (a fresh worker per reload).
    const hosts = reloadHosts();
    expect(hosts).toHaveLength(1);
    expect((await reloads.load()).ok).toBe(false);
    expect(reloadHosts()).toEqual(hosts);
    expect((await loader(largest).load()).ok).toBe(true);
  });

  test('out of time: the reload is refused, and the host ends the worker', async () => {
    const reloads = loader(heavy, { timeoutMs: 300 });
    const host = await startedHost(reloads);
    const atRest = threadNice(host).length;
    const started = Date.now();
    const outcome = await reloads.load();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(problemsOf(outcome)).toEqual([`${heavy}: reading and checking the config took over 300 ms; stopped (CONFIG_RELOAD_TIMEOUT)`]);
    await waitFor(() => threadNice(host!).length <= atRest, 'the host to end the worker');
  });

  test('every thread of the host runs at the lowest CPU priority, its reload workers included, and it dies first out of memory', async () => {
    const reloads = loader(heavy);
    const host = await startedHost(reloads);
    const atRest = threadNice(host);
    const loading = reloads.load();
    // A worker thread appears while it parses.
    await waitFor(() => threadNice(host).length > atRest.length, 'a reload worker');
    const working = threadNice(host);
    await loading;
    expect(working.length).toBeGreaterThan(atRest.length);
    expect(working.filter((thread) => thread.nice !== 19)).toEqual([]);
    // And sluice's own threads keep their priority.
    expect(threadNice(process.pid).filter((thread) => thread.nice !== 0)).toEqual([]);
    // Out of memory, the kernel ends the host before sluice.
    expect(fs.readFileSync(`/proc/${host}/oom_score_adj`, 'utf8').trim()).toBe('1000');
  });

  test('a host that died is started again by the next reload; a reload waiting on it is refused', async () => {
    const reloads = loader(heavy);
    const loading = reloads.load();
    await waitFor(() => reloadHosts().length === 1, 'the host');
    const [first] = reloadHosts();
    process.kill(first!, 'SIGKILL');
    expect(problemsOf(await loading)).toEqual([`${heavy}: config reload failed: the config reload host ended (signal SIGKILL) without an answer`]);
    const again = loader(largest);
    expect((await again.load()).ok).toBe(true);
    const outcome = await reloads.load();
    expect(outcome.ok).toBe(false);
    expect(problemsOf(outcome)[0]).toMatch(/the file expands to more than 20000 maps/);
    expect(reloadHosts()).not.toContain(first);
  });

  test('close() ends the host', async () => {
    const reloads = loader(largest);
    expect((await reloads.load()).ok).toBe(true);
    const [host] = reloadHosts();
    reloads.close();
    await waitFor(() => !reloadHosts().includes(host!), 'the host to end');
    expect(problemsOf(await reloads.load())).toEqual([`${largest}: config reload abandoned (sluice is stopping)`]);
  });

  test('stopping sluice abandons a running reload at once', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const loading = loader(heavy).load(controller.signal);
    setTimeout(() => controller.abort(), 100);
    expect(problemsOf(await loading)).toEqual([`${heavy}: config reload abandoned (sluice is stopping)`]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  test('a host that cannot start is a refused reload, not a crash', async () => {
    const outcome = await loader(largest, { script: path.join(tmp, 'no-such-reload.js') }).load();
    expect(problemsOf(outcome)).toEqual([expect.stringMatching(new RegExp(`^${largest}: config reload failed: the config reload host ended \\(exit code 1\\) without an answer: .*no-such-reload`))]);
  });

  test("each reload worker's heap follows the file limit: 128 bytes per byte, at least 256 MB", () => {
    expect(reloadHeapMb(DEFAULT_CONFIG_SIZE_LIMITS.maxFileBytes)).toBe(512);
    expect(reloadHeapMb(64 * 1024)).toBe(256);
    expect(reloadHeapMb(16 * 1024 * 1024)).toBe(2048);
  });
});
