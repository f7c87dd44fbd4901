import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startRedisServer, type RedisServer } from '../test/support/redis-server';
import { median } from './build-ab';
import { collectGcLines, type GcFigures, gcFigures } from './gc-trace';
import { runH2load, writeRequestFrame } from './h2load-run';
import { type BenchServer, startBenchServer, startSluice } from './sluice-instance';

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

interface GcShare extends GcFigures {
  readonly rps: number;
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
      return startSluice(path.join(ROOT, 'bench/config/sliding_window'), env, flags);
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
    return { rps: h2load.succeeded / SECONDS, ...gcFigures(gc.take(), h2load.succeeded, SECONDS) };
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
