import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createGrpcClient, shouldRateLimitMethod, unaryCall, type WireRequestShape } from '../src/server/proto';
import { startRedisServer } from '../test/support/redis-server';
import { type SluiceInstance, startSluice, stopSluice } from './sluice-instance';

/**
 * `npm run bench:load`: what a client sees from `sluice serve` at its DEFAULT settings on a
 * healthy Redis when it is busy — the answers counted from the client side, per scenario:
 *
 *   burst       1,000 concurrent calls (2 descriptors, limit 100/hour) from one grpc-js client,
 *               three bursts 2 s apart; then the same split over two `sluice serve` processes
 *   sustained   256 calls in flight for SUSTAIN_MS, 4 descriptors each (grpc-js clients over 4
 *               connections)
 *   bystander   a caller keeping 8 calls of 64 descriptors in flight, beside a bystander sending
 *               1-descriptor calls one at a time
 *   start       fresh `sluice serve` starts, one call sent the moment the gRPC port accepts
 *   overload    h2load (4 connections unless told, 4 descriptors, Envoy's `grpc-timeout: 20m` on every
 *               call): the sustainable rate (closed loop, 64 in flight), then open loop at twice it; decisions per second (OK + OVER_LIMIT, from sluice's metrics)
 *               under overload as a share of the sustainable rate
 *
 * Not a pass/fail test (test/e2e/under-load.e2e.test.ts is): a table of answers, rerunnable
 * before and after a change. Knobs: LOAD_SUSTAIN_MS (10000), LOAD_STARTS (20), LOAD_DEADLINE_MS
 * (5000, the client deadline of every call), LOAD_OVERLOAD_S (5), LOAD_OVERLOAD_FACTOR (2), LOAD_OVERLOAD_CONNECTIONS (4).
 */

const SUSTAIN_MS = Number(process.env.LOAD_SUSTAIN_MS ?? 10_000);
const STARTS = Number(process.env.LOAD_STARTS ?? 20);
const DEADLINE_MS = Number(process.env.LOAD_DEADLINE_MS ?? 5_000);
const OVERLOAD_S = Number(process.env.LOAD_OVERLOAD_S ?? 5);
/** Offered rate in the overload scenario, as a multiple of the sustainable one. */
const OVERLOAD_FACTOR = Number(process.env.LOAD_OVERLOAD_FACTOR ?? 2);
/** h2load connections in the overload scenario (Envoy opens one per worker thread, and more when they are full). */
const OVERLOAD_CONNECTIONS = Number(process.env.LOAD_OVERLOAD_CONNECTIONS ?? 4);

const CONFIG = `
domain: load
descriptors:
  - key: client_id
    rate_limit: { unit: hour, requests_per_unit: 100 }
    descriptors:
      - key: user_id
        rate_limit: { unit: hour, requests_per_unit: 1000 }
  - key: tenant
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
    descriptors:
      - key: user_id
        rate_limit: { unit: hour, requests_per_unit: 1000000000 }
  - key: route
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
  - key: bystander
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
`;

type Counts = Record<string, number>;

function req(descriptors: [string, string][][]): WireRequestShape {
  return { domain: 'load', descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })) };
}

type Client = ReturnType<typeof createGrpcClient>;

async function answer(client: Client, request: WireRequestShape): Promise<string> {
  try {
    const res = await unaryCall(client, shouldRateLimitMethod, request, DEADLINE_MS);
    return String(res.overall_code);
  } catch (err) {
    const e = err as { code?: number; details?: string };
    return `error ${e.code}: ${(e.details ?? String(err)).replace(/\d+(\.\d+)? ?ms/g, 'N ms')}`;
  }
}

function tally(answers: readonly string[], into: Counts = {}): Counts {
  for (const a of answers) into[a] = (into[a] ?? 0) + 1;
  return into;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function burst(instances: readonly SluiceInstance[], tag: string): Promise<Counts[]> {
  const clients = instances.map((i) => createGrpcClient(`127.0.0.1:${i.port}`));
  const out: Counts[] = [];
  for (let round = 0; round < 3; round++) {
    const id = `${tag}-${round}`;
    const request = req([[['client_id', id]], [['client_id', id], ['user_id', 'u1']]]);
    const answers = await Promise.all(Array.from({ length: 1000 }, (_, i) => answer(clients[i % clients.length]!, request)));
    out.push(tally(answers));
    await sleep(2_000);
  }
  for (const c of clients) c.close();
  return out;
}

async function sustained(instance: SluiceInstance): Promise<Counts> {
  const clients = Array.from({ length: 4 }, () => createGrpcClient(`127.0.0.1:${instance.port}`));
  const counts: Counts = {};
  const until = Date.now() + SUSTAIN_MS;
  await Promise.all(
    Array.from({ length: 256 }, async (_, w) => {
      for (let i = 0; Date.now() < until; i++) {
        const user = `u${(w * 7919 + i) % 50_000}`;
        const request = req([[['tenant', 't1']], [['tenant', 't1'], ['user_id', user]], [['route', 'orders']], [['bystander', user]]]);
        tally([await answer(clients[w % clients.length]!, request)], counts);
      }
    }),
  );
  for (const c of clients) c.close();
  return counts;
}

async function bystander(instance: SluiceInstance): Promise<{ big: Counts; bystander: Counts }> {
  const bigClient = createGrpcClient(`127.0.0.1:${instance.port}`);
  const smallClient = createGrpcClient(`127.0.0.1:${instance.port}`);
  const big: Counts = {};
  const small: Counts = {};
  const until = Date.now() + SUSTAIN_MS / 2;
  const sixtyFour = req(Array.from({ length: 64 }, (_, d) => [['tenant', `t${d}`], ['user_id', `u${d}`]] as [string, string][]));
  await Promise.all([
    ...Array.from({ length: 8 }, async () => {
      while (Date.now() < until) tally([await answer(bigClient, sixtyFour)], big);
    }),
    (async () => {
      for (let i = 0; Date.now() < until; i++) tally([await answer(smallClient, req([[['bystander', `b${i % 100}`]]]))], small);
    })(),
  ]);
  bigClient.close();
  smallClient.close();
  return { big, bystander: small };
}

/** sluice's `sluice_requests_total{result}` and its CPU seconds (`cpu`), from its debug port. */
async function results(debugPort: number): Promise<Counts> {
  const text = await (await fetch(`http://127.0.0.1:${debugPort}/metrics`)).text();
  const out: Counts = {};
  for (const m of text.matchAll(/^sluice_requests_total\{result="(\w+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  const cpu = /^process_cpu_seconds_total ([\d.e+-]+)/m.exec(text);
  if (cpu !== null) out.cpu = Number(cpu[1]);
  return out;
}

function delta(after: Counts, before: Counts): Counts {
  const out: Counts = {};
  for (const [k, v] of Object.entries(after)) if (v - (before[k] ?? 0) > 0) out[k] = v - (before[k] ?? 0);
  return out;
}

/** One h2load run: OVERLOAD_CONNECTIONS connections, the 4-descriptor request with Envoy's 20 ms grpc-timeout; closed loop (64 in flight) or at `rps`. */
function h2load(port: number, seconds: number, rps?: number): void {
  const message = shouldRateLimitMethod.serialize(req([[['tenant', 't1']], [['tenant', 't1'], ['user_id', 'u1']], [['route', 'orders']], [['bystander', 'u1']]]));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-overload-'));
  fs.writeFileSync(path.join(dir, 'body.bin'), frame);
  try {
    execFileSync('h2load', [
      '-D', String(seconds), '-c', String(OVERLOAD_CONNECTIONS),
      // Open loop: room for every call the rate sends while earlier ones wait.
      '-m', rps === undefined ? String(Math.max(1, Math.round(64 / OVERLOAD_CONNECTIONS))) : '1000',
      ...(rps === undefined ? [] : ['--rps', String(Math.ceil(rps / OVERLOAD_CONNECTIONS))]),
      '-d', path.join(dir, 'body.bin'), '-H', 'content-type: application/grpc', '-H', 'te: trailers',
      // Both phases send Envoy's deadline: it costs sluice (a timer per call in grpc-js and in the
      // store's wait) 13-16 % of its closed-loop rate, which belongs to the sustainable rate too.
      '-H', 'grpc-timeout: 20m',
      `http://127.0.0.1:${port}/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`,
    ], { encoding: 'utf8' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface Phase {
  /** Answers by result (from sluice's metrics). */
  readonly answers: Counts;
  /** OK + OVER_LIMIT per second. */
  readonly decidedPerSecond: number;
  /** sluice's CPU over the phase, in cores: tells a sluice that wasted its CPU from one that got less of it (h2load shares the machine). */
  readonly cores: number;
}

async function phase(instance: SluiceInstance, seconds: number, rps?: number): Promise<Phase> {
  const before = await results(instance.debugPort);
  h2load(instance.port, seconds, rps);
  const after = await results(instance.debugPort);
  const { cpu = 0, ...answers } = delta(after, before);
  return { answers, decidedPerSecond: ((answers.ok ?? 0) + (answers.over_limit ?? 0)) / seconds, cores: cpu / seconds };
}

/** Sustainable decisions/s closed-loop, then what is decided per second when OVERLOAD_FACTOR times that is offered. */
async function overload(instance: SluiceInstance, seconds: number): Promise<{ sustainable: Phase; overloaded: Phase }> {
  h2load(instance.port, 1);
  const sustainable = await phase(instance, seconds);
  const overloaded = await phase(instance, seconds, OVERLOAD_FACTOR * sustainable.decidedPerSecond);
  return { sustainable, overloaded };
}

/** Starts sluice, and the moment its gRPC port is announced sends one call. */
async function freshStarts(configDir: string, env: NodeJS.ProcessEnv): Promise<Counts> {
  const counts: Counts = {};
  for (let i = 0; i < STARTS; i++) {
    const instance = await startSluice(configDir, env);
    const client = createGrpcClient(`127.0.0.1:${instance.port}`);
    tally([await answer(client, req([[['route', `start-${i}`]]]))], counts);
    client.close();
    await stopSluice(instance);
  }
  return counts;
}

async function main(): Promise<void> {
  const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-load-'));
  fs.writeFileSync(path.join(configDir, 'load.yaml'), CONFIG);
  const redis = await startRedisServer();
  const env = { REDIS_URL: `127.0.0.1:${redis.port}`, ...(process.env.LOAD_ENV !== undefined ? Object.fromEntries(process.env.LOAD_ENV.split(',').map((kv) => kv.split('=') as [string, string])) : {}) };
  const lines: string[] = [`sluice under load (default settings${process.env.LOAD_ENV ? ` + ${process.env.LOAD_ENV}` : ''}), client deadline ${DEADLINE_MS} ms, answers counted by the client`, ''];
  const show = (name: string, counts: Counts): void => {
    process.stderr.write(`${name}: ${JSON.stringify(counts)}\n`);
    lines.push(`| ${name} | ${Object.entries(counts).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(', ')} |`);
  };
  lines.push('| scenario | answers |', '|---|---|');
  // LOAD_ONLY=burst,overload (…) runs those scenarios only.
  const only = process.env.LOAD_ONLY?.split(',');
  const want = (name: string): boolean => only === undefined || only.includes(name);
  try {
    if (want('burst') || want('sustained') || want('bystander')) {
      const one = await startSluice(configDir, env);
      await sleep(500);
      if (want('burst')) (await burst([one], 'one')).forEach((c, i) => show(`burst ${i + 1}, 1 process, 1000 calls`, c));
      if (want('sustained')) show(`sustained, 256 in flight × 4 descriptors, ${SUSTAIN_MS} ms`, await sustained(one));
      if (want('bystander')) {
        const b = await bystander(one);
        show('bystander beside 8 × 64-descriptor calls: the 64-descriptor caller', b.big);
        show('bystander beside 8 × 64-descriptor calls: the bystander', b.bystander);
      }
      await stopSluice(one);
    }
    if (want('burst')) {
      const two = [await startSluice(configDir, env), await startSluice(configDir, env)];
      await sleep(500);
      (await burst(two, 'two')).forEach((c, i) => show(`burst ${i + 1}, 2 processes, 1000 calls`, c));
      await Promise.all(two.map(stopSluice));
    }
    if (want('start')) show(`${STARTS} fresh starts, a call at once`, await freshStarts(configDir, env));
    if (want('overload')) {
      const three = await startSluice(configDir, env);
      await sleep(500);
      const o = await overload(three, OVERLOAD_S);
      await stopSluice(three);
      const perCore = (p: Phase): string => (p.cores > 0 ? `, ${(p.decidedPerSecond / p.cores).toFixed(0)} per sluice core-second at ${p.cores.toFixed(2)} cores` : '');
      show(`overload (${OVERLOAD_CONNECTIONS} connections): sustainable, closed loop ${OVERLOAD_S} s (${o.sustainable.decidedPerSecond.toFixed(0)} decisions/s${perCore(o.sustainable)})`, o.sustainable.answers);
      show(
        `overload (${OVERLOAD_CONNECTIONS} connections): offered ${OVERLOAD_FACTOR} × sustainable for ${OVERLOAD_S} s (${o.overloaded.decidedPerSecond.toFixed(0)} decisions/s, ` +
          `${((100 * o.overloaded.decidedPerSecond) / Math.max(1, o.sustainable.decidedPerSecond)).toFixed(0)} % of sustainable${perCore(o.overloaded)})`,
        o.overloaded.answers,
      );
    }
  } finally {
    await redis.stop();
    fs.rmSync(configDir, { recursive: true, force: true });
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:load failed: ${String(err)}\n`);
  process.exitCode = 1;
});
