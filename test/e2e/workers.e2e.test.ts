import { execFileSync, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { shouldRateLimitMethod, unaryCall } from '../../src/server/proto';
import { metricValue, parseMetrics } from '../support/prometheus';
import { type RedisServer, startRedisServer } from '../support/redis-server';
import { SLUICE_BIN, type SluiceProcess, startSluiceProcess } from '../support/sluice-process';

// `sluice serve` with WORKERS=2, the built command as deployed: a node:cluster primary and two
// workers sharing the ports (port 0 included), the counters shared through a real Redis.
const CONFIG = `
domain: api
descriptors:
  - key: client_id
    # An hour-long sliding window: the burst cannot straddle a window boundary in a way that matters.
    rate_limit: { unit: hour, requests_per_unit: 100 }
`;

/** Connections to open: node:cluster hands each new one to the next worker, so both get some. */
const CONNECTIONS = 8;

/**
 * A client on a connection of its own: grpc-js otherwise shares one connection among clients to
 * the same address, and one connection is served by one worker.
 */
function ownConnection(port: number): grpc.Client {
  return new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
}

function decide(client: grpc.Client, clientId: string): Promise<string> {
  return unaryCall(client, shouldRateLimitMethod, { domain: 'api', descriptors: [{ entries: [{ key: 'client_id', value: clientId }] }] }, 5000).then(
    (res) => String(res.overall_code),
    (err: { details?: string }) => `error: ${err.details ?? String(err)}`,
  );
}

function count(answers: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const answer of answers) counts[answer] = (counts[answer] ?? 0) + 1;
  return counts;
}

async function metrics(sluice: SluiceProcess): Promise<Map<string, number>> {
  const response = await fetch(`http://127.0.0.1:${sluice.debugPort}/metrics`);
  expect(response.status).toBe(200);
  return parseMetrics(await response.text());
}

function logged(sluice: SluiceProcess, msg: string): Record<string, unknown>[] {
  return sluice.log.flatMap((line) => {
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      return parsed.msg === msg ? [parsed] : [];
    } catch {
      return [];
    }
  });
}

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

let configDir: string;
beforeAll(() => {
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-workers-'));
  fs.writeFileSync(path.join(configDir, 'api.yaml'), CONFIG);
});
afterAll(() => fs.rmSync(configDir, { recursive: true, force: true }));

describe('WORKERS=2 on Redis', () => {
  let redis: RedisServer;
  let sluice: SluiceProcess;
  let clients: grpc.Client[] = [];

  beforeAll(async () => {
    redis = await startRedisServer();
    // REDIS_TIMEOUT: Redis is held still for a moment in the drain test, and must not count as down.
    sluice = await startSluiceProcess(configDir, { REDIS_URL: redis.url, WORKERS: '2', REDIS_TIMEOUT: '5s' });
    clients = Array.from({ length: CONNECTIONS }, () => ownConnection(sluice.grpcPort));
  }, 30_000);

  afterAll(async () => {
    clients.forEach((client) => client.close());
    await sluice.stop();
    await redis.stop();
  });

  const startup = (): Record<string, unknown> => logged(sluice, 'sluice started')[0]!;

  it('writes one startup line naming its 2 workers, which share its ports, port 0 included', async () => {
    expect(logged(sluice, 'sluice started')).toHaveLength(1);
    const line = startup();
    expect(line.workers).toBe(2);
    expect(line.primaryPid).toBe(sluice.child.pid);
    const pids = line.pids as number[];
    expect(new Set(pids).size).toBe(2);
    expect(pids).not.toContain(sluice.child.pid);
    const workerLines = logged(sluice, 'sluice worker started');
    expect(workerLines.map((w) => w.worker).sort()).toEqual([1, 2]);
    expect(workerLines.map((w) => w.pid).sort()).toEqual([...pids].sort());
    for (const worker of workerLines) {
      expect([worker.grpcPort, worker.httpPort, worker.debugPort]).toEqual([sluice.grpcPort, sluice.httpPort, sluice.debugPort]);
    }
    expect(sluice.grpcPort).toBeGreaterThan(0);
    const health = await fetch(`http://127.0.0.1:${sluice.httpPort}/healthcheck`);
    expect(health.status).toBe(200);
  });

  it('admits exactly 100 of 1,000 concurrent calls on a limit of 100 over 8 connections, and /metrics counts all 1,000', async () => {
    const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => decide(clients[i % CONNECTIONS]!, 'burst')));
    expect(count(answers)).toEqual({ OK: 100, OVER_LIMIT: 900 });
    const values = await metrics(sluice);
    expect(metricValue(values, 'sluice_requests_total{result="ok"}')).toBe(100);
    expect(metricValue(values, 'sluice_requests_total{result="over_limit"}')).toBe(900);
    expect(metricValue(values, 'ratelimit_service_total_requests{grpc_method="ShouldRateLimit"}')).toBe(1000);
    expect(metricValue(values, 'sluice_workers')).toBe(2);
    expect(metricValue(values, 'sluice_worker_restarts_total')).toBe(0);
    // Gauges of the one config every worker loads are not summed.
    expect(metricValue(values, 'sluice_config_rules')).toBe(1);
  }, 30_000);

  it('replaces a killed worker while the other keeps answering, and its replacement answers too', async () => {
    const [victim, survivor] = startup().pids as number[];
    const before = await metrics(sluice);
    const decidedBefore = metricValue(before, 'ratelimit_service_total_requests{grpc_method="ShouldRateLimit"}');
    process.kill(victim!, 'SIGKILL');
    await until('the primary to see the death', () => logged(sluice, 'worker died; replacing it').length === 1);
    // Calls keep being answered while the worker is gone: the connections it held are gone, so
    // new ones go to the survivor (fresh connections, so none waits on a dead one's reconnect).
    const during = Array.from({ length: CONNECTIONS }, () => ownConnection(sluice.grpcPort));
    const duringAnswers = await Promise.all(during.map((client, i) => decide(client, `during-${i}`)));
    during.forEach((client) => client.close());
    expect(count(duringAnswers)).toEqual({ OK: CONNECTIONS });

    await until('the replacement', () => logged(sluice, 'worker replaced').length === 1);
    const died = logged(sluice, 'worker died; replacing it');
    expect(died).toHaveLength(1);
    expect(died[0]).toMatchObject({ pid: victim, signal: 'SIGKILL', restarts: 1 });
    const replacement = logged(sluice, 'worker replaced')[0]!;
    expect(replacement.pid).not.toBe(victim);
    expect(alive(survivor!)).toBe(true);

    // New connections alternate between the survivor and the replacement: all answered, and the
    // shared counters still hold (the burst's key stays over its limit on either worker).
    const after = Array.from({ length: CONNECTIONS }, () => ownConnection(sluice.grpcPort));
    const afterAnswers = await Promise.all(after.map((client) => decide(client, 'burst')));
    after.forEach((client) => client.close());
    expect(count(afterAnswers)).toEqual({ OVER_LIMIT: CONNECTIONS });

    const values = await metrics(sluice);
    expect(metricValue(values, 'sluice_worker_restarts_total')).toBe(1);
    expect(metricValue(values, 'sluice_workers')).toBe(2);
    // The killed worker's counts died with it: what remains is less than all calls so far, so it
    // had answered part of the burst, and the 1,000 before were the sum of both workers.
    const decidedNow = metricValue(values, 'ratelimit_service_total_requests{grpc_method="ShouldRateLimit"}');
    expect(decidedBefore).toBe(1000);
    expect(decidedNow).toBeLessThan(1000 + 2 * CONNECTIONS);
    expect(decidedNow).toBeGreaterThanOrEqual(2 * CONNECTIONS);
  }, 30_000);

  it('reloads the config in every worker: a rule added to the file is enforced across both', async () => {
    fs.writeFileSync(
      path.join(configDir, 'api.yaml'),
      `${CONFIG}  - key: route\n    rate_limit: { unit: hour, requests_per_unit: 3 }\n`,
    );
    await until('both workers to reload', () => new Set(logged(sluice, 'config reloaded').map((line) => line.worker)).size === 2);
    const fresh = Array.from({ length: CONNECTIONS }, () => ownConnection(sluice.grpcPort));
    const answers = await Promise.all(
      fresh.map((client) =>
        unaryCall(client, shouldRateLimitMethod, { domain: 'api', descriptors: [{ entries: [{ key: 'route', value: 'r' }] }] }, 5000).then(
          (res) => String(res.overall_code),
          (err: { details?: string }) => `error: ${err.details ?? String(err)}`,
        ),
      ),
    );
    fresh.forEach((client) => client.close());
    expect(count(answers)).toEqual({ OK: 3, OVER_LIMIT: CONNECTIONS - 3 });
    const values = await metrics(sluice);
    expect(metricValue(values, 'sluice_config_rules')).toBe(2);
    // Each worker counts its own loads: its start and the reload.
    expect(metricValue(values, 'ratelimit_service_config_load_success')).toBe(4);
  }, 30_000);

  it('fails the start, exit 1, when the workers cannot start (a bad config), leaving no worker behind', async () => {
    const badDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-workers-bad-'));
    fs.writeFileSync(path.join(badDir, 'api.yaml'), 'domain: api\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n');
    try {
      const child = spawn(process.execPath, [SLUICE_BIN, 'serve', '--config', badDir, '--grpc-host', '127.0.0.1', '--host', '127.0.0.1', '--debug-host', '127.0.0.1', '--grpc-port', '0', '--port', '0', '--debug-port', '0'], {
        env: { PATH: process.env.PATH, WORKERS: '2', REDIS_URL: redis.url },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
      expect(code).toBe(1);
      expect(stdout).toMatch(/invalid rate limit config; not starting/);
      expect(stdout).toMatch(/a worker failed to start; stopping the others/);
      expect(stdout).not.toMatch(/"msg":"sluice started"/);
      const workerPids = [...stdout.matchAll(/"pid":(\d+)/g)].map((m) => Number(m[1])).filter((pid) => pid !== child.pid);
      expect(workerPids.length).toBeGreaterThan(0);
      for (const pid of workerPids) expect(alive(pid)).toBe(false);
    } finally {
      fs.rmSync(badDir, { recursive: true, force: true });
    }
  }, 30_000);

  it('drains on SIGTERM: calls in flight on both workers are answered, every worker stops, the primary exits 0', async () => {
    const pids = logged(sluice, 'sluice worker started').map((w) => w.pid as number);
    const fresh = Array.from({ length: CONNECTIONS }, () => ownConnection(sluice.grpcPort));
    // Connected first (to both workers, alternately): after SIGTERM no new connection is taken.
    expect(count(await Promise.all(fresh.map((client, i) => decide(client, `warm-${i}`))))).toEqual({ OK: CONNECTIONS });
    // Redis held still, so the calls are still being decided when SIGTERM arrives.
    redis.kill('SIGSTOP');
    const inFlight = Promise.all(fresh.map((client, i) => decide(client, `drain-${i}`)));
    await new Promise((resolve) => setTimeout(resolve, 150));
    const exited = new Promise<number | null>((resolve) => sluice.child.once('exit', (code) => resolve(code)));
    sluice.child.kill('SIGTERM');
    await until('both workers to drain', () => logged(sluice, 'sluice draining').length === 2);
    redis.kill('SIGCONT');
    expect(count(await inFlight)).toEqual({ OK: CONNECTIONS });
    fresh.forEach((client) => client.close());
    expect(await exited).toBe(0);
    expect(logged(sluice, 'sluice stopped')).toHaveLength(2);
    expect(logged(sluice, 'sluice stopped: all workers exited')).toHaveLength(1);
    for (const pid of pids) expect(alive(pid)).toBe(false);
  }, 30_000);
});

describe('WORKERS=2 with gRPC TLS', () => {
  let redis: RedisServer;
  let sluice: SluiceProcess;
  let pki: string;
  const openssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: pki, stdio: 'pipe' });
  const leaf = (name: string): void => {
    openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    fs.writeFileSync(path.join(pki, `${name}.ext`), 'subjectAltName=IP:127.0.0.1\n');
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  };
  const install = (name: string): void => {
    // Key first, then certificate: a reload caught between them keeps the last good pair.
    fs.copyFileSync(path.join(pki, `${name}.key`), path.join(pki, 'serving.key'));
    fs.copyFileSync(path.join(pki, `${name}.crt`), path.join(pki, 'serving.crt'));
  };
  const fingerprint = (name: string): string => new crypto.X509Certificate(fs.readFileSync(path.join(pki, `${name}.crt`))).fingerprint256;
  /** The certificate the worker that takes a new connection serves. */
  const served = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = tls.connect({ host: '127.0.0.1', port: sluice.grpcPort, ca: fs.readFileSync(path.join(pki, 'ca.crt')), ALPNProtocols: ['h2'] }, () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.destroy();
      });
      socket.once('error', reject);
    });
  const servedByNewConnections = async (): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < CONNECTIONS; i++) out.push(await served());
    return out;
  };

  beforeAll(async () => {
    pki = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-workers-pki-'));
    openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=ca');
    leaf('first');
    leaf('renewed');
    install('first');
    redis = await startRedisServer();
    sluice = await startSluiceProcess(configDir, {
      REDIS_URL: redis.url,
      WORKERS: '2',
      GRPC_SERVER_USE_TLS: 'true',
      GRPC_SERVER_TLS_CERT: path.join(pki, 'serving.crt'),
      GRPC_SERVER_TLS_KEY: path.join(pki, 'serving.key'),
      GRPC_SERVER_TLS_RELOAD_INTERVAL: '200ms',
    });
  }, 30_000);

  afterAll(async () => {
    await sluice.stop();
    await redis.stop();
    fs.rmSync(pki, { recursive: true, force: true });
  });

  it('answers over TLS, and every worker reloads a renewed certificate by itself', async () => {
    const client = new grpc.Client(`127.0.0.1:${sluice.grpcPort}`, grpc.credentials.createSsl(fs.readFileSync(path.join(pki, 'ca.crt'))), {
      'grpc.use_local_subchannel_pool': 1,
    });
    expect(await decide(client, 'tls')).toBe('OK');
    client.close();
    expect(new Set(await servedByNewConnections())).toEqual(new Set([fingerprint('first')]));

    install('renewed');
    const renewed = fingerprint('renewed');
    // New connections alternate between the workers: once all of a round show the renewed
    // certificate, both workers' reloaders have picked it up.
    const end = Date.now() + 10_000;
    let seen = await servedByNewConnections();
    while (!seen.every((f) => f === renewed) && Date.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      seen = await servedByNewConnections();
    }
    expect(seen.map((f) => (f === renewed ? 'renewed' : 'first'))).toEqual(Array(CONNECTIONS).fill('renewed'));
  }, 30_000);
});

describe('WORKERS on the memory store', () => {
  it('refuses WORKERS=2 at start with exit 2, saying why', async () => {
    const child = spawn(process.execPath, [SLUICE_BIN, 'serve', '--config', configDir, '--grpc-port', '0', '--port', '0', '--debug-port', '0'], {
      env: { PATH: process.env.PATH, WORKERS: '2' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(2);
    expect(stderr).toMatch(/WORKERS: 2 workers need REDIS_URL: the memory store keeps counters in one process/);
    expect(stdout).not.toMatch(/sluice started/);
  }, 30_000);

  it('runs one process by default (auto), with no cluster primary', async () => {
    const sluice = await startSluiceProcess(configDir, { WORKERS: 'auto' });
    try {
      const line = logged(sluice, 'sluice started')[0]!;
      expect(line.pid).toBe(sluice.child.pid);
      expect(line.workers).toBeUndefined();
      expect(logged(sluice, 'sluice worker started')).toHaveLength(0);
      const client = ownConnection(sluice.grpcPort);
      expect(await decide(client, 'memory')).toBe('OK');
      client.close();
    } finally {
      await sluice.stop();
    }
  }, 30_000);
});
