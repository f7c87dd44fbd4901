import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { startRedisServer, type RedisServer } from '../test/support/redis-server';
import { median } from './build-ab';
import { runH2load, writeRequestFrame } from './h2load-run';
import { type BenchServer, startBenchServer, startSluice, stopSluice } from './sluice-instance';

/**
 * `npm run bench:gc`: what V8's garbage collector costs a call, and how much of it Node's HTTP/2
 * costs by itself. Each target runs under `node --trace-gc-nvp` (one line per collection) with
 * the bench's h2load load (4 connections, 4 descriptors) at 1 and at 16 streams per connection:
 *
 * - `http2`: a plain node:http2 server answering a pre-encoded response (bench/plain-http2-server.ts);
 * - `noop`: the do-nothing grpc-js server;
 * - `sluice-memory`, `sluice-redis`: `sluice serve`, one worker, default settings otherwise.
 *
 * Per call: bytes allocated, bytes promoted to the old generation (what outlived two young-
 * generation scavenges; a call lasts a few ms and scavenges come tens of ms apart, so a call's own
 * objects should not get there), and the main thread's pause time in scavenges and in
 * mark-compacts (the old generation's collections, which promoted garbage brings on). Medians
 * over rounds, targets in alternation. Knobs: GC_ROUNDS (3), GC_SECONDS (4), GC_STREAMS (`1,16`),
 * GC_TARGETS (`http2,noop,sluice-memory,sluice-redis`).
 */

const ROUNDS = Number(process.env.GC_ROUNDS ?? 3);
const SECONDS = Number(process.env.GC_SECONDS ?? 4);
const STREAMS = (process.env.GC_STREAMS ?? '1,16').split(',').map(Number);
const TARGETS = (process.env.GC_TARGETS ?? 'http2,noop,sluice-memory,sluice-redis').split(',');
const ROOT = path.resolve(__dirname, '../..');

interface GcShare {
  readonly rps: number;
  /** Bytes per call. */
  readonly allocated: number;
  readonly promoted: number;
  /** Main-thread pause, µs per call. */
  readonly scavengePause: number;
  readonly markCompactPause: number;
  /** Mark-compacts per second. */
  readonly markCompacts: number;
  /** Of the run's wall time, the share the main thread spent paused in collections. */
  readonly pauseShare: number;
}

/** The `--trace-gc-nvp` lines a process prints from now until `take()`. */
function collectGcLines(stdout: Readable): { take(): string[] } {
  let text = '';
  const onData = (chunk: Buffer): void => {
    text += chunk.toString();
  };
  stdout.on('data', onData);
  return {
    take: () => {
      stdout.removeListener('data', onData);
      return text.split('\n').filter((line) => / gc=\w+ /.test(line));
    },
  };
}

/** A numeric field of a `--trace-gc-nvp` line (`pause=1.5`, `promoted=765528`); 0 when absent. */
function field(line: string, name: string): number {
  const match = new RegExp(`\\b${name}=([\\d.]+)`).exec(line);
  return match === null ? 0 : Number(match[1]);
}

function share(lines: readonly string[], calls: number): GcShare {
  const scavenges = lines.filter((line) => line.includes(' gc=s '));
  const markCompacts = lines.filter((line) => line.includes(' gc=mc '));
  const sum = (of: readonly string[], name: string): number => of.reduce((total, line) => total + field(line, name), 0);
  const perCall = (value: number): number => (calls === 0 ? NaN : value / calls);
  return {
    rps: calls / SECONDS,
    allocated: perCall(sum(lines, 'allocated')),
    promoted: perCall(sum(scavenges, 'promoted')),
    scavengePause: perCall(sum(scavenges, 'pause') * 1000),
    markCompactPause: perCall(sum(markCompacts, 'pause') * 1000),
    markCompacts: markCompacts.length / SECONDS,
    pauseShare: (sum(scavenges, 'pause') + sum(markCompacts, 'pause')) / (SECONDS * 1000),
  };
}

async function startTarget(target: string, redis: RedisServer): Promise<BenchServer> {
  const flags = ['--trace-gc-nvp'];
  switch (target) {
    case 'http2':
      return startBenchServer('plain-http2-server.js', {}, flags);
    case 'noop':
      return startBenchServer('noop-server.js', {}, flags);
    case 'sluice-memory':
    case 'sluice-redis': {
      const env = target === 'sluice-redis' ? { REDIS_URL: redis.url, WORKERS: '1' } : { WORKERS: '1' };
      const sluice = await startSluice(path.join(ROOT, 'bench/config/sliding_window'), env, flags);
      return { child: sluice.child, port: sluice.port, stop: () => stopSluice(sluice) };
    }
    default:
      throw new Error(`unknown target ${target} (http2, noop, sluice-memory, sluice-redis)`);
  }
}

async function measure(target: string, streams: number, frame: string, redis: RedisServer): Promise<GcShare> {
  const server = await startTarget(target, redis);
  try {
    await runH2load(server.port, frame, 1, { streams }); // warm-up
    const gc = collectGcLines(server.child.stdout!);
    const h2load = await runH2load(server.port, frame, SECONDS, { streams });
    if (h2load.failed > 0) console.log(`  ${target}: ${h2load.failed} calls failed or errored`);
    return share(gc.take(), h2load.succeeded);
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-gc-'));
  const frame = writeRequestFrame(dir, 4);
  const redis = await startRedisServer();
  const runs = STREAMS.flatMap((streams) => TARGETS.map((target) => ({ target, streams, results: [] as GcShare[] })));
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const run of runs) {
        const s = await measure(run.target, run.streams, frame, redis);
        run.results.push(s);
        console.log(`round ${round}/${ROUNDS} ${run.target} ×${run.streams} streams: ${s.rps.toFixed(0)} calls/s, ` +
          `promoted ${s.promoted.toFixed(0)} B/call, pauses ${(100 * s.pauseShare).toFixed(1)}% of the run`);
      }
    }
    console.log(`\nMedians of ${ROUNDS} rounds, ${SECONDS} s each, 4 connections, 4 descriptors:\n`);
    console.log('| target | streams per connection | calls/s | allocated B/call | promoted B/call | scavenge pause µs/call | mark-compacts/s | mark-compact pause µs/call | main thread paused |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const run of runs) {
      const m = (pick: (s: GcShare) => number): number => median(run.results.map(pick));
      console.log(`| ${run.target} | ${run.streams} | ${m((s) => s.rps).toFixed(0)} | ${m((s) => s.allocated).toFixed(0)} | ${m((s) => s.promoted).toFixed(0)} | ` +
        `${m((s) => s.scavengePause).toFixed(1)} | ${m((s) => s.markCompacts).toFixed(2)} | ${m((s) => s.markCompactPause).toFixed(1)} | ${(100 * m((s) => s.pauseShare)).toFixed(1)}% |`);
    }
  } finally {
    await redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
