import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { createGrpcClient, healthCheckMethod, shouldRateLimitMethod, unaryCall } from '../src/server/proto';
import { startRedisServer } from '../test/support/redis-server';
import { benchRequest as request } from './bench-request';
import { cpuSeconds } from './process-cpu';
import { median } from './build-ab';

/**
 * `npm run bench`: requests/s and latency of sluice against a do-nothing grpc-js server measured
 * in the same run with the same load generator, reported as ratios and medians over rounds
 * (2-core machines are noisy; absolute numbers are not comparable between runs).
 *
 * Targets run in child processes so the load generator never shares their event loop:
 *   noop            bench/noop-server.ts — answers OK, decides nothing
 *   sluice memory   `sluice serve` on the embedded store
 *   sluice redis    `sluice serve` with REDIS_URL → a redis-server this script starts
 * each sluice target once per GRPC_TRANSPORT (grpc-js, lean), named e.g. `sluice memory (lean)`.
 * For Redis it also reads `INFO commandstats` to report Redis CPU per decision per algorithm.
 *
 * Load comes from h2load (Debian package nghttp2-client) — see `load`.
 * Knobs: BENCH_ROUNDS (3), BENCH_DURATION_MS (3000), BENCH_WARMUP_MS (1000),
 * BENCH_CONCURRENCY (64 calls in flight), BENCH_CONNECTIONS (4), BENCH_TRANSPORTS (grpc-js,lean).
 */

const ROOT = path.resolve(__dirname, '../..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const WARMUP_MS = Number(process.env.BENCH_WARMUP_MS ?? 1000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
/** HTTP/2 connections, like an Envoy with a few workers. */
const CLIENTS = Number(process.env.BENCH_CONNECTIONS ?? 4);
/** The open-loop rate (req/s) for the latency table: well below every target's capacity here. */
const RATE = Number(process.env.BENCH_RATE ?? 2000);
/** GRPC_TRANSPORT values each sluice target runs with (BENCH_TRANSPORTS=lean: one of them). */
const TRANSPORTS = (process.env.BENCH_TRANSPORTS ?? 'grpc-js,lean').split(',').filter((t) => t !== '');

interface Target {
  readonly name: string;
  readonly command: string[];
  readonly env?: NodeJS.ProcessEnv;
}

interface Measurement {
  /** Calls answered with a gRPC error (read from sluice's own metrics; h2load sees only HTTP 200). */
  readonly grpcErrors?: number;
  /** The target's CPU (its process and its workers, user + system) per call answered, in µs. */
  readonly cpuUsPerCall?: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  readonly calls: number;
}

/** Starts a target and resolves with its gRPC and debug ports, read from its startup log line. */
async function start(target: Target): Promise<{ child: ChildProcess; port: number; debugPort: number | undefined }> {
  const [command, ...args] = target.command;
  const child = spawn(command!, args, { cwd: ROOT, env: { ...process.env, ...target.env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const rl = readline.createInterface({ input: child.stdout! });
  const ports = await new Promise<{ port: number; debugPort: number | undefined }>((resolve, reject) => {
    rl.on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { msg?: string; grpcPort?: number; debugPort?: number };
        // With WORKERS > 1 each worker names the ports first; the primary's line says all serve.
        if (parsed.grpcPort !== undefined && parsed.msg !== 'sluice worker started') resolve({ port: parsed.grpcPort, debugPort: parsed.debugPort });
      } catch {
        // Not a JSON line: ignore.
      }
    });
    child.on('exit', (code) => reject(new Error(`${target.name} exited with ${code}`)));
  });
  return { child, ...ports };
}

/** sluice's `sluice_requests_total{result}` counters, from its debug port. */
async function requestResults(debugPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${debugPort}/metrics`)).text();
  const results: Record<string, number> = {};
  for (const m of text.matchAll(/^sluice_requests_total\{result="(\w+)"\} (\d+)/gm)) results[m[1]!] = Number(m[2]);
  return results;
}

/**
 * How h2load drives a target: as fast as it answers (closed loop, CONCURRENCY calls in flight), at
 * a fixed rate (open loop), or one call at a time (a call's own cost, nothing queued anywhere).
 */
type LoadShape = { readonly kind: 'saturate' } | { readonly kind: 'rate'; readonly perSecond: number } | { readonly kind: 'serial' };

const SATURATE: LoadShape = { kind: 'saturate' };

/** sluice_requests_total results that are not a decision: each is an errored call. */
const NOT_DECIDED = ['invalid', 'unavailable', 'deadline_exceeded', 'overloaded', 'error'] as const;

/** Runs a load and, for sluice targets, counts the calls that got a gRPC error instead of a decision. */
async function measure(server: ChildProcess, port: number, debugPort: number | undefined, descriptors: 1 | 4, durationMs: number, shape: LoadShape = SATURATE): Promise<Measurement> {
  const cpuBefore = cpuSeconds(server.pid!);
  const before = debugPort === undefined ? undefined : await requestResults(debugPort);
  const m = await load(port, descriptors, durationMs, shape);
  const cpuUsPerCall = ((cpuSeconds(server.pid!) - cpuBefore) * 1e6) / Math.max(1, m.calls);
  if (debugPort === undefined || before === undefined) return { ...m, cpuUsPerCall };
  const after = await requestResults(debugPort);
  let grpcErrors = 0;
  for (const result of NOT_DECIDED) grpcErrors += (after[result] ?? 0) - (before[result] ?? 0);
  return { ...m, grpcErrors, cpuUsPerCall };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/**
 * Drives one target with h2load (nghttp2's HTTP/2 load generator, in C): a Node load generator
 * on a 2-core machine costs as much CPU as the server it drives, which would hide the server's
 * own cost. Every call carries the same gRPC-framed request; `--log-file` gives each call's
 * latency for the percentiles. h2load checks HTTP status only, so a gRPC error would count as
 * a success: `preflight` makes one real call first and fails the run if it errors.
 */
async function load(port: number, descriptors: 1 | 4, durationMs: number, shape: LoadShape = SATURATE): Promise<Measurement> {
  const message = shouldRateLimitMethod.serialize(request(descriptors, 1));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-'));
  const body = path.join(dir, 'body.bin');
  const log = path.join(dir, 'calls.log');
  fs.writeFileSync(body, frame);
  const out = execFileSync(
    'h2load',
    [
      '-D', String(Math.max(1, Math.round(durationMs / 1000))),
      ...(shape.kind === 'serial' ? ['-c', '1', '-m', '1'] : ['-c', String(CLIENTS), '-m', String(Math.ceil(CONCURRENCY / CLIENTS))]),
      ...(shape.kind === 'rate' ? ['--rps', String(Math.ceil(shape.perSecond / CLIENTS))] : []),
      '-d', body, '-H', 'content-type: application/grpc', '-H', 'te: trailers',
      '--log-file', log,
      `http://127.0.0.1:${port}/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`,
    ],
    { encoding: 'utf8' },
  );
  const rps = Number(/finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const failed = Number(/requests: .*?(\d+) failed/.exec(out)?.[1] ?? NaN);
  const errored = Number(/(\d+) errored/.exec(out)?.[1] ?? 0);
  // Log lines: start time (µs), HTTP status, elapsed (µs).
  const latencies = fs
    .readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((line) => Number(line.split('\t')[2]) / 1000)
    .filter((ms) => Number.isFinite(ms))
    .sort((a, b) => a - b);
  fs.rmSync(dir, { recursive: true, force: true });
  const pick = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return { rps, p50Ms: pick(0.5), p99Ms: pick(0.99), errors: failed + errored, calls: latencies.length };
}

/** Waits until the target's gRPC health says SERVING (sluice connects to Redis in the background). */
async function serving(port: number): Promise<void> {
  const client = createGrpcClient(`127.0.0.1:${port}`);
  try {
    for (let tries = 0; ; tries++) {
      const res = await unaryCall(client, healthCheckMethod, { service: '' }, 1000).catch(() => undefined);
      if (res === undefined || res.status === 'SERVING') return; // the noop server has no health service
      if (tries > 100) throw new Error('target never became SERVING');
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    client.close();
  }
}

/** One real gRPC call, so a target that answers with a gRPC error fails the run instead of looking fast. */
async function preflight(port: number, descriptors: 1 | 4): Promise<void> {
  const client = createGrpcClient(`127.0.0.1:${port}`);
  try {
    const res = await unaryCall(client, shouldRateLimitMethod, request(descriptors, 1), 5000);
    if (res.overall_code !== 'OK') throw new Error(`preflight answered ${String(res.overall_code)}`);
  } finally {
    client.close();
  }
}

function redisCli(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' });
}

/** `cmdstat_evalsha:calls=…,usec=…` → calls and usec of every script call. */
function scriptStats(port: number): { calls: number; usec: number } {
  let calls = 0;
  let usec = 0;
  for (const line of redisCli(port, 'INFO', 'commandstats').split('\n')) {
    const m = /^cmdstat_(evalsha|eval):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m) {
      calls += Number(m[2]);
      usec += Number(m[3]);
    }
  }
  return { calls, usec };
}

async function main(): Promise<void> {
  const node = process.execPath;
  const sluice = path.join(ROOT, 'dist/src/cli/main.js');
  const serveArgs = (alg: string): string[] => [
    node, sluice, 'serve', '--config', `bench/config/${alg}`, '--grpc-host', '127.0.0.1', '--host', '127.0.0.1',
    '--debug-host', '127.0.0.1', '--grpc-port', '0', '--port', '0', '--debug-port', '0',
  ];

  const redis = await startRedisServer();
  const redisPort = redis.port;

  const allTargets: Target[] = [
    { name: 'noop grpc-js', command: [node, path.join(ROOT, 'dist/bench/noop-server.js')] },
    // Each sluice target with both transports (GRPC_TRANSPORT), side by side in the same run.
    ...TRANSPORTS.flatMap((transport): Target[] => [
      { name: `sluice memory (${transport})`, command: serveArgs('sliding_window'), env: { GRPC_TRANSPORT: transport } },
      // Default settings but WORKERS: a healthy Redis that is only busy must not make a single call err.
      { name: `sluice redis (${transport})`, command: serveArgs('sliding_window'), env: { REDIS_URL: `127.0.0.1:${redisPort}`, WORKERS: '1', GRPC_TRANSPORT: transport } },
      // Two node:cluster workers (WORKERS=auto on a 2-core machine), against the row above, same run.
      {
        name: `sluice redis ×2 workers (${transport})`,
        command: serveArgs('sliding_window'),
        env: { REDIS_URL: `127.0.0.1:${redisPort}`, WORKERS: '2', GRPC_TRANSPORT: transport },
      },
    ]),
  ];

  // BENCH_TARGETS=noop,redis: only the targets whose names contain one of these (noop always runs:
  // every ratio is to it).
  const only = (process.env.BENCH_TARGETS ?? '').split(',').filter((t) => t !== '');
  const targets = allTargets.filter((t) => t.name.startsWith('noop') || only.length === 0 || only.some((o) => t.name.includes(o)));
  const results = new Map<string, Measurement[]>();
  // Every call of the run errs on nothing: the stores are healthy, so any error is a bug and fails the run.
  const erred: string[] = [];
  const noteErrors = (key: string, m: Measurement): void => {
    const n = m.errors + (m.grpcErrors ?? 0);
    if (n > 0) erred.push(`${key}: ${m.errors} HTTP errors, ${m.grpcErrors ?? 0} gRPC errors of ${m.calls} calls`);
  };
  const record = (key: string, m: Measurement): void => {
    noteErrors(key, m);
    results.set(key, [...(results.get(key) ?? []), m]);
  };

  for (let round = 1; round <= ROUNDS; round++) {
    for (const target of targets) {
      const { child, port, debugPort } = await start(target);
      await serving(port);
      await preflight(port, 4);
      await load(port, 1, WARMUP_MS);
      for (const d of [1, 4] as const) record(`${target.name}|${d}`, await measure(child, port, debugPort, d, DURATION_MS));
      for (const d of [1, 4] as const) record(`${target.name}|${d}|rate`, await measure(child, port, debugPort, d, DURATION_MS, { kind: 'rate', perSecond: RATE }));
      for (const d of [1, 4] as const) record(`${target.name}|${d}|serial`, await measure(child, port, debugPort, d, DURATION_MS, { kind: 'serial' }));
      await stop(child);
    }
    process.stderr.write(`round ${round}/${ROUNDS} done\n`);
  }

  const lines: string[] = [];
  lines.push(
    `sluice benchmark: h2load, ${ROUNDS} rounds × ${DURATION_MS} ms, ${CONCURRENCY} calls in flight over ${CLIENTS} connections; medians over rounds`,
  );
  lines.push('');
  lines.push('| target | descriptors | req/s | × noop | CPU µs per call | × noop | p50 ms | × noop | p99 ms | × noop | HTTP errors | gRPC errors |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const d of [1, 4] as const) {
    const base = results.get(`noop grpc-js|${d}`)!;
    const baseRps = median(base.map((m) => m.rps));
    const baseCpu = median(base.map((m) => m.cpuUsPerCall ?? NaN));
    const baseP50 = median(base.map((m) => m.p50Ms));
    const baseP99 = median(base.map((m) => m.p99Ms));
    for (const target of targets) {
      const ms = results.get(`${target.name}|${d}`)!;
      const rps = median(ms.map((m) => m.rps));
      const cpu = median(ms.map((m) => m.cpuUsPerCall ?? NaN));
      const p50 = median(ms.map((m) => m.p50Ms));
      const p99 = median(ms.map((m) => m.p99Ms));
      const errors = ms.reduce((sum, m) => sum + m.errors, 0);
      const grpcErrors = ms.every((m) => m.grpcErrors === undefined) ? 'n/a' : String(ms.reduce((sum, m) => sum + (m.grpcErrors ?? 0), 0));
      lines.push(
        `| ${target.name} | ${d} | ${rps.toFixed(0)} | ${(rps / baseRps).toFixed(2)} | ${cpu.toFixed(1)} | ${(cpu / baseCpu).toFixed(2)} | ${p50.toFixed(2)} | ${(p50 / baseP50).toFixed(2)} | ${p99.toFixed(2)} | ${(p99 / baseP99).toFixed(2)} | ${errors} | ${grpcErrors} |`,
      );
    }
  }

  // p50 / p99 of one load shape, as ratios to noop and (µs) on top of it, per target.
  const latencyTable = (title: string, shape: 'rate' | 'serial'): void => {
    lines.push('', title, '');
    lines.push('| target | descriptors | p50 ms | × noop | + noop µs | p99 ms | × noop | gRPC errors |');
    lines.push('|---|---|---|---|---|---|---|---|');
    for (const d of [1, 4] as const) {
      const base = results.get(`noop grpc-js|${d}|${shape}`)!;
      const baseP50 = median(base.map((m) => m.p50Ms));
      const baseP99 = median(base.map((m) => m.p99Ms));
      for (const target of targets) {
        const ms = results.get(`${target.name}|${d}|${shape}`)!;
        const p50 = median(ms.map((m) => m.p50Ms));
        const p99 = median(ms.map((m) => m.p99Ms));
        const grpcErrors = ms.every((m) => m.grpcErrors === undefined) ? 'n/a' : String(ms.reduce((sum, m) => sum + (m.grpcErrors ?? 0), 0));
        lines.push(
          `| ${target.name} | ${d} | ${p50.toFixed(3)} | ${(p50 / baseP50).toFixed(2)} | ${((p50 - baseP50) * 1000).toFixed(0)} | ` +
            `${p99.toFixed(3)} | ${(p99 / baseP99).toFixed(2)} | ${grpcErrors} |`,
        );
      }
    }
  };
  // A fixed rate every target sustains. h2load's --rps sends each tick's calls together, so calls
  // still queue behind their burst there, and per-call CPU shows up multiplied.
  latencyTable(`At a fixed ${RATE} req/s (open loop):`, 'rate');
  // One call at a time: what a call itself costs, nothing queued anywhere.
  latencyTable('One call at a time (h2load -c 1 -m 1):', 'serial');

  // Redis CPU per decision: server-side script time from INFO commandstats, per algorithm.
  lines.push('');
  lines.push('| algorithm | workers | descriptors | script calls | decisions | gRPC errors | Redis µs per call | Redis µs per decision |');
  lines.push('|---|---|---|---|---|---|---|---|');
  // Two workers split the calls of an event-loop turn between them: smaller batches, more script calls.
  for (const [alg, workers] of [['sliding_window', 1], ['sliding_window', 2], ['fixed_window', 1]] as const) {
    const { child, port, debugPort } = await start({
      name: `redis ${alg}`,
      command: serveArgs(alg),
      env: { REDIS_URL: `127.0.0.1:${redisPort}`, WORKERS: String(workers) },
    });
    await serving(port);
    await load(port, 1, WARMUP_MS);
    for (const d of [1, 4] as const) {
      redisCli(redisPort, 'CONFIG', 'RESETSTAT');
      const m = await measure(child, port, debugPort, d, DURATION_MS);
      noteErrors(`redis ${alg}|${workers} workers|${d}`, m);
      const stats = scriptStats(redisPort);
      const decided = m.calls - (m.grpcErrors ?? 0);
      lines.push(
        `| ${alg} | ${workers} | ${d} | ${stats.calls} | ${decided} | ${m.grpcErrors ?? 'n/a'} | ${(stats.usec / Math.max(1, stats.calls)).toFixed(2)} | ${(stats.usec / Math.max(1, decided)).toFixed(2)} |`,
      );
    }
    await stop(child);
  }
  await redis.stop();
  process.stdout.write(`${lines.join('\n')}\n`);
  if (erred.length > 0) {
    process.stderr.write(`bench failed: calls erred on a healthy store:\n  ${erred.join('\n  ')}\n`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${String(err)}\n`);
  process.exitCode = 1;
});
