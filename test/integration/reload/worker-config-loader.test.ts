import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { DEFAULT_CONFIG_SIZE_LIMITS } from '../../../src/config/config-files';
import { type LoadOutcome, WorkerConfigLoader, workerHeapMb } from '../../../src/config/worker-config-loader';
import { CONFIG_WORKER_SCRIPT } from '../../support/start-sluice';

/**
 * The reload worker for real (the dist/ build of its entry, on a real thread): what reaches the
 * main thread, and what happens when the work runs out of memory or time.
 */

/** `count` descriptors with a limit each, in flow style: about 80 bytes and 2 maps per descriptor. */
function denseConfig(domain: string, count: number): string {
  const lines = [`domain: ${domain}`, 'descriptors:'];
  for (let i = 0; i < count; i++) lines.push(`  - {key: k, value: v${i}, rate_limit: {unit: minute, requests_per_unit: ${i + 1}}}`);
  return `${lines.join('\n')}\n`;
}

let tmp: string;
let largest: string;
let heavy: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-worker-'));
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

function loader(
  dir: string,
  overrides: { heapMb?: number; timeoutMs?: number; script?: string; pause?: () => Promise<void> } = {},
): WorkerConfigLoader {
  return new WorkerConfigLoader({
    ...(overrides.pause !== undefined && { pause: overrides.pause }),
    request: { dir, ignoreDotFiles: false, mergeDomainConfig: false, limits: DEFAULT_CONFIG_SIZE_LIMITS },
    heapMb: overrides.heapMb ?? workerHeapMb(DEFAULT_CONFIG_SIZE_LIMITS.maxFileBytes),
    timeoutMs: overrides.timeoutMs ?? 60_000,
    script: overrides.script ?? CONFIG_WORKER_SCRIPT,
  });
}

function problemsOf(outcome: LoadOutcome): string[] {
  return outcome.ok ? [] : outcome.problems.map((p) => p.message);
}

describe('WorkerConfigLoader', () => {
  test('the largest accepted config arrives whole, re-linked on this thread in slices of under 25 ms each', async () => {
    // The main thread's share: from the reply's arrival (a transfer, no copy) to the swap, in
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

  test('out of memory: the worker ends, the reload is refused with a message, this process lives on', async () => {
    const outcome = await loader(heavy, { heapMb: 32 }).load();
    expect(problemsOf(outcome)).toEqual([`${heavy}: reading and checking the config needed more than 32 MB of memory; stopped`]);
    // The process can still load (a fresh worker per reload).
    expect((await loader(largest).load()).ok).toBe(true);
  });

  test('out of time: the worker is stopped and the reload refused', async () => {
    const started = Date.now();
    const outcome = await loader(heavy, { timeoutMs: 300 }).load();
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(problemsOf(outcome)).toEqual([`${heavy}: reading and checking the config took over 300 ms; stopped (CONFIG_RELOAD_TIMEOUT)`]);
  });

  test('stopping sluice abandons a running reload at once', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const loading = loader(heavy).load(controller.signal);
    setTimeout(() => controller.abort(), 100);
    expect(problemsOf(await loading)).toEqual([`${heavy}: config reload abandoned (sluice is stopping)`]);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  test('a worker that cannot start is a refused reload, not a crash', async () => {
    const outcome = await loader(largest, { script: path.join(tmp, 'no-such-worker.js') }).load();
    expect(problemsOf(outcome)).toEqual([expect.stringMatching(new RegExp(`^${largest}: config reload failed: .*no-such-worker`))]);
  });

  test('the worker heap follows the file limit: 128 bytes per byte, at least 256 MB', () => {
    expect(workerHeapMb(DEFAULT_CONFIG_SIZE_LIMITS.maxFileBytes)).toBe(512);
    expect(workerHeapMb(64 * 1024)).toBe(256);
    expect(workerHeapMb(16 * 1024 * 1024)).toBe(2048);
  });
});
