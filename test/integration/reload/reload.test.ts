import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../../../src/errors';
import type { CounterStore } from '../../../src/store/counter-store';
import { MemoryStore } from '../../../src/store/memory/memory-store';
import { systemClock } from '../../../src/util/clock';
import { parseMetrics } from '../../support/prometheus';
import type { WireResponseShape } from '../../support/rls-client';
import { type StartedSluice, startTestSluice } from '../../support/start-sluice';
import { FakeConfigMapVolume, FakeRuntimeRoot, capturingLogger, sleep, tempDir, waitFor } from './fake-volumes';

const STORE_DELAY_MS = 50;

/** A one-rule file: `key` limited to `requests` per minute in `domain`. */
function ruleFile(domain: string, key: string, requests: number, extra = ''): string {
  return `domain: ${domain}\ndescriptors:\n  - key: ${key}\n    rate_limit: { unit: minute, requests_per_unit: ${requests} }\n${extra}`;
}

/** The limit sluice applies now to `key=probe`, read without charging (descriptor hits_addend 0). */
async function limitOf(sluice: StartedSluice, domain: string, key: string): Promise<number | undefined> {
  const res = await sluice.client.shouldRateLimit({
    domain,
    descriptors: [{ entries: [{ key, value: 'probe' }], hits_addend: { value: 0 } }],
  });
  return res.statuses?.[0]?.current_limit?.requests_per_unit;
}

async function metric(sluice: StartedSluice, series: string): Promise<number> {
  return parseMetrics(await sluice.app.metrics.text()).get(series) ?? 0;
}

async function rlconfig(sluice: StartedSluice): Promise<string> {
  return (await fetch(`http://127.0.0.1:${sluice.app.debugPort}/rlconfig`)).text();
}

/** Starts sluice on a ConfigMap volume the documented way: RUNTIME_* env, no --config. */
function startOnVolume(root: string, volume: string, logger = capturingLogger().logger, store?: CounterStore, eagerReloadHost = false): Promise<StartedSluice> {
  return startTestSluice({
    ...(store !== undefined && { store }),
    eagerReloadHost,
    files: {},
    configDir: path.join(root, volume),
    configFromEnv: true,
    env: {
      RUNTIME_ROOT: root,
      RUNTIME_SUBDIRECTORY: '',
      RUNTIME_APPDIRECTORY: volume,
      RUNTIME_WATCH_ROOT: 'false',
      RUNTIME_IGNOREDOTFILES: 'true',
    },
    logger,
  });
}

describe('hot reload of a Kubernetes ConfigMap volume (kubelet ..data swap)', () => {
  let root: string;
  let volume: FakeConfigMapVolume;
  let sluice: StartedSluice;
  let log: ReturnType<typeof capturingLogger>;

  beforeEach(async () => {
    root = tempDir('sluice-reload-');
    volume = new FakeConfigMapVolume(path.join(root, 'ratelimit'));
    volume.update({ 'api.yaml': ruleFile('api', 'client_id', 2) });
    log = capturingLogger();
    sluice = await startOnVolume(root, 'ratelimit', log.logger);
  });

  afterEach(async () => {
    await sluice.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('reads only the visible files, not the hidden ..<timestamp> copy', async () => {
    expect(await limitOf(sluice, 'api', 'client_id')).toBe(2);
    expect(await rlconfig(sluice)).toBe(
      'api.client_id: unit=MINUTE requests_per_unit=2, shadow_mode: false, quota_mode: false, algorithm: sliding_window, unit_multiplier: 1\n',
    );
  });

  it('serves edited, added and removed files within a second', async () => {
    volume.update({ 'api.yaml': ruleFile('api', 'client_id', 5) });
    const edited = await waitFor(async () => (await limitOf(sluice, 'api', 'client_id')) === 5, 1000, 'the edited limit');

    volume.update({ 'api.yaml': ruleFile('api', 'client_id', 5), 'web.yaml': ruleFile('web', 'ip', 7) });
    const added = await waitFor(async () => (await limitOf(sluice, 'web', 'ip')) === 7, 1000, 'the added file');

    volume.update({ 'web.yaml': ruleFile('web', 'ip', 7) });
    const removed = await waitFor(async () => (await limitOf(sluice, 'api', 'client_id')) === undefined, 1000, 'the removed file');
    expect(await limitOf(sluice, 'web', 'ip')).toBe(7);

    expect(Math.max(edited, added, removed)).toBeLessThan(1000);
    // One reload per kubelet update (the multi-step swap is debounced into one), plus the initial load.
    expect(await metric(sluice, 'ratelimit_service_config_load_success')).toBe(4);
    expect(await metric(sluice, 'ratelimit_service_config_load_error')).toBe(0);
  });

  it('refuses a broken update whole, logs every problem, counts it, keeps serving; a fix recovers', async () => {
    volume.update({
      'api.yaml': ruleFile('api', 'client_id', 9),
      'bad-unit.yaml': 'domain: b\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n',
      'bad-yaml.yaml': 'domain: [c\n',
    });
    await waitFor(async () => (await metric(sluice, 'ratelimit_service_config_load_error')) === 1, 1000, 'the refused reload');
    // The good file of the broken set is not applied either.
    expect(await limitOf(sluice, 'api', 'client_id')).toBe(2);
    const refused = log.lines.find((line) => line['msg'] === 'config reload refused; the previous config keeps serving');
    expect(refused?.['level']).toBe(50);
    const problems = refused?.['problems'] as string[];
    expect(problems).toHaveLength(2);
    expect(problems[0]).toBe("ratelimit.bad-unit.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'");
    expect(problems[1]).toMatch(/^ratelimit\.bad-yaml\.yaml: error loading config file: /);
    expect(await sluice.client.health('')).toBe('SERVING');

    volume.update({ 'api.yaml': ruleFile('api', 'client_id', 9) });
    await waitFor(async () => (await limitOf(sluice, 'api', 'client_id')) === 9, 1000, 'the fixed config');
    expect(await metric(sluice, 'ratelimit_service_config_load_success')).toBe(2);
    expect(await metric(sluice, 'ratelimit_service_config_load_error')).toBe(1);
  });

  it('keeps the counters of limits that did not change', async () => {
    const hit = (value: string): Promise<WireResponseShape> =>
      sluice.client.shouldRateLimit({ domain: 'api', descriptors: [{ entries: [{ key: 'client_id', value }] }] });
    expect((await hit('a')).statuses?.[0]?.limit_remaining).toBe(1);
    // Another rule changes; client_id (2 per minute, sliding window) does not.
    volume.update({ 'api.yaml': ruleFile('api', 'client_id', 2, '  - key: other\n    rate_limit: { unit: second, requests_per_unit: 1 }\n') });
    await waitFor(async () => (await limitOf(sluice, 'api', 'other')) === 1, 1000, 'the new rule');
    const second = await hit('a');
    expect([second.overall_code, second.statuses?.[0]?.limit_remaining ?? 0]).toEqual(['OK', 0]);
    expect((await hit('a')).overall_code).toBe('OVER_LIMIT');
  });

  it('swaps while 200 calls are in flight: none fails, none waits, both configs serve', async () => {
    // A store that takes 50 ms per decision: each call holds the config it read across the swap,
    // and 200 calls stay in flight without the test burning the CPU other suites need.
    await sluice.stop();
    const memory = new MemoryStore(systemClock);
    const slowStore: CounterStore = {
      decide: async (checks, options) => {
        await sleep(STORE_DELAY_MS);
        return memory.decide(checks, options);
      },
      close: () => memory.close(),
    };
    volume.update({ 'api.yaml': ruleFile('api', 'client_id', 1_000_000) });
    // The reload host started with sluice, as in production: this times the swap under load, not
    // a fork of this jest process, which the first reload of a lazily started host would pay.
    sluice = await startOnVolume(root, 'ratelimit', log.logger, slowStore, true);
    let inFlight = 0;
    let mostInFlight = 0;

    const seen = new Set<number>();
    const failures: unknown[] = [];
    const latencies: number[] = [];
    let stop = false;
    let n = 0;
    // 200 workers, each starting its next call as soon as the previous one answers: 200 calls in
    // flight for the whole run, across the swap.
    const worker = async (): Promise<void> => {
      while (!stop) {
        const started = performance.now();
        inFlight++;
        try {
          if (seen.size === 1) mostInFlight = Math.max(mostInFlight, inFlight);
          const res = await sluice.client.shouldRateLimit({
            domain: 'api',
            descriptors: [{ entries: [{ key: 'client_id', value: `c${n++ % 500}` }] }],
          });
          // Calls of the warm-up (the client connecting) are not what this measures.
          if (started >= warmedUp) latencies.push(performance.now() - started);
          if (res.overall_code !== 'OK') failures.push(res);
          seen.add(res.statuses?.[0]?.current_limit?.requests_per_unit ?? -1);
        } catch (err) {
          failures.push(err);
        } finally {
          inFlight--;
        }
      }
    };
    let warmedUp = Infinity;
    const workers = Array.from({ length: 200 }, worker);
    try {
      await sleep(200);
      warmedUp = performance.now();
      volume.update({ 'api.yaml': ruleFile('api', 'client_id', 2_000_000) });
      await waitFor(() => seen.has(2_000_000), 2000, 'the new limit under load');
      await sleep(200);
    } finally {
      // Whatever failed above: 200 callers left looping against a stopped sluice would fill this
      // process's heap with failures (once: 4 GB, and the whole suite died).
      stop = true;
      await Promise.all(workers);
    }

    expect(failures).toEqual([]);
    expect([...seen].sort()).toEqual([1_000_000, 2_000_000]);
    expect(mostInFlight).toBe(200);
    expect(latencies.length).toBeGreaterThan(200);
    // Nothing waits on the reload (200 concurrent calls on a shared CI machine take up to a few
    // hundred ms each anyway; a call stuck behind file reads or a lock would take far longer).
    expect(Math.max(...latencies)).toBeLessThan(1000);
  });
});

describe('hot reload of a plain directory (--config DIR)', () => {
  let sluice: StartedSluice;

  beforeEach(async () => {
    sluice = await startTestSluice({
      files: { 'api.yaml': ruleFile('api', 'client_id', 2), 'team/web.yaml': ruleFile('web', 'ip', 3) },
      args: ['--config-reload-debounce', '50ms'],
    });
  });

  afterEach(() => sluice.stop());

  it('reloads on an in-place edit, a new file, a removed file and an edit in a subdirectory', async () => {
    fs.writeFileSync(path.join(sluice.configDir, 'api.yaml'), ruleFile('api', 'client_id', 4));
    await waitFor(async () => (await limitOf(sluice, 'api', 'client_id')) === 4, 1000, 'the edit');

    fs.writeFileSync(path.join(sluice.configDir, 'extra.yaml'), ruleFile('extra', 'user', 5));
    await waitFor(async () => (await limitOf(sluice, 'extra', 'user')) === 5, 1000, 'the new file');

    fs.unlinkSync(path.join(sluice.configDir, 'extra.yaml'));
    await waitFor(async () => (await limitOf(sluice, 'extra', 'user')) === undefined, 1000, 'the removal');

    fs.writeFileSync(path.join(sluice.configDir, 'team', 'web.yaml'), ruleFile('web', 'ip', 6));
    await waitFor(async () => (await limitOf(sluice, 'web', 'ip')) === 6, 1000, 'the subdirectory edit');

    fs.mkdirSync(path.join(sluice.configDir, 'new-team'));
    fs.writeFileSync(path.join(sluice.configDir, 'new-team', 'x.yaml'), ruleFile('x', 'k', 8));
    await waitFor(async () => (await limitOf(sluice, 'x', 'k')) === 8, 1000, 'a file in a new subdirectory');
  });

  it('keeps serving the last good config after a broken edit and recovers when it is fixed', async () => {
    fs.writeFileSync(path.join(sluice.configDir, 'api.yaml'), 'domain: api\ndescriptors:\n  - key: client_id\n    rate_limit: {unit: minute, requests_per_unit: -1}\n');
    await waitFor(async () => (await metric(sluice, 'ratelimit_service_config_load_error')) >= 1, 1000, 'the refused reload');
    expect(await limitOf(sluice, 'api', 'client_id')).toBe(2);
    fs.writeFileSync(path.join(sluice.configDir, 'api.yaml'), ruleFile('api', 'client_id', 7));
    await waitFor(async () => (await limitOf(sluice, 'api', 'client_id')) === 7, 1000, 'the fix');
  });

  it('reloads on demand too', async () => {
    fs.writeFileSync(path.join(sluice.configDir, 'api.yaml'), ruleFile('api', 'client_id', 11));
    expect(await sluice.app.reloadConfig()).toBe(true);
    expect(await limitOf(sluice, 'api', 'client_id')).toBe(11);
  });
});

describe('CONFIG_MAX_FILE_BYTES on reload', () => {
  it('a file over the limit set is refused by name and limit, the last good config keeps serving', async () => {
    const log = capturingLogger();
    const sluice = await startTestSluice({
      files: { 'api.yaml': ruleFile('api', 'client_id', 2) },
      env: { CONFIG_MAX_FILE_BYTES: '200' },
      args: ['--config-reload-debounce', '50ms'],
      logger: log.logger,
    });
    try {
      const big = ruleFile('big', 'user', 3, `# ${'x'.repeat(200)}\n`);
      fs.writeFileSync(path.join(sluice.configDir, 'big.yaml'), big);
      await waitFor(async () => (await metric(sluice, 'ratelimit_service_config_load_error')) === 1, 2000, 'the refused reload');
      const refused = log.lines.find((line) => line['msg'] === 'config reload refused; the previous config keeps serving');
      expect(refused?.['problems']).toEqual([`${path.basename(sluice.configDir)}.big.yaml: config file is ${big.length} bytes, over the limit of 200; not read`]);
      expect(await limitOf(sluice, 'api', 'client_id')).toBe(2);
    } finally {
      await sluice.stop();
    }
  });
});

describe('RUNTIME_WATCH_ROOT=true (the reference default): reload on a swap of RUNTIME_ROOT', () => {
  let base: string;
  let runtime: FakeRuntimeRoot;
  let sluice: StartedSluice;

  beforeEach(async () => {
    base = tempDir('sluice-root-');
    runtime = new FakeRuntimeRoot(base);
    runtime.deploy({ 'api.yaml': ruleFile('api', 'client_id', 2) });
    sluice = await startTestSluice({
      files: {},
      configDir: path.join(runtime.root, 'config'),
      configFromEnv: true,
      env: { RUNTIME_ROOT: runtime.root, RUNTIME_APPDIRECTORY: 'config' },
    });
  });

  afterEach(async () => {
    await sluice.stop();
    fs.rmSync(base, { recursive: true, force: true });
  });

  it('ignores edits inside the tree and reloads when the root symlink is swapped', async () => {
    const live = fs.realpathSync(path.join(runtime.root, 'config'));
    fs.writeFileSync(path.join(live, 'api.yaml'), ruleFile('api', 'client_id', 3));
    await sleep(500);
    expect(await limitOf(sluice, 'api', 'client_id')).toBe(2);

    runtime.deploy({ 'api.yaml': ruleFile('api', 'client_id', 4) });
    await waitFor(async () => (await limitOf(sluice, 'api', 'client_id')) === 4, 1000, 'the swapped root');
    expect(await metric(sluice, 'ratelimit_service_config_load_success')).toBe(2);
  });
});

describe('a ConfigMap volume without RUNTIME_IGNOREDOTFILES', () => {
  it('reads the hidden copy as a second file, so the same domain appears twice (why the recipe sets it)', async () => {
    const root = tempDir('sluice-dot-');
    try {
      new FakeConfigMapVolume(path.join(root, 'rl')).update({ 'api.yaml': ruleFile('api', 'client_id', 2) });
      const started = startTestSluice({
        files: {},
        configDir: path.join(root, 'rl'),
        configFromEnv: true,
        env: { RUNTIME_ROOT: root, RUNTIME_APPDIRECTORY: 'rl', RUNTIME_WATCH_ROOT: 'false' },
      });
      await expect(started).rejects.toBeInstanceOf(ConfigError);
      await expect(started).rejects.toThrow("duplicate domain 'api' in config file");
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
