import * as path from 'node:path';
import type { RedisServer } from '../test/support/redis-server';
import { compareBuilds, median } from './build-ab';
import { collectGcLines, type GcFigures, gcFigures } from './gc-trace';
import { runH2load } from './h2load-run';
import { cpuSeconds } from './process-cpu';
import { startSluice, stopSluice } from './sluice-instance';

/**
 * `npm run bench:cpu-ab -- <tree> <tree>…`: sluice's CPU per call of several builds (each a
 * checkout with `dist/` built), run in alternation so that a shared machine's load falls on all of
 * them alike; prints each round and the medians. How the per-change figures in bench/README.md
 * were measured. Each round: `sluice serve` from that tree on its bench/config/sliding_window,
 * one second of h2load to warm up, then AB_SECONDS (4) of h2load, 4 connections × 16 streams,
 * the same request as `npm run bench`. Knobs: AB_ROUNDS (5), AB_DESCRIPTORS (4), AB_STORE
 * (memory | redis: a redis-server this script starts), GRPC_TRANSPORT (lean), WORKERS (1), AB_GC
 * (1: sluice runs under `--trace-gc-nvp`, and each build also gets the bytes promoted to the old
 * generation and the main thread's collection pauses per call, as `npm run bench:gc` reads them).
 */

const ROUNDS = Number(process.env.AB_ROUNDS ?? 5);
const SECONDS = Number(process.env.AB_SECONDS ?? 4);
const DESCRIPTORS = process.env.AB_DESCRIPTORS === '1' ? 1 : 4;
const STORE = process.env.AB_STORE === 'redis' ? 'redis' : 'memory';
const GC = process.env.AB_GC === '1';

interface Measured {
  readonly us: number;
  readonly rps: number;
  /** With AB_GC=1. */
  readonly gc?: GcFigures;
}

async function measure(tree: string, frame: string, redis: RedisServer | undefined): Promise<Measured> {
  const sluice = await startSluice(path.join(tree, 'bench/config/sliding_window'), {
    GRPC_TRANSPORT: process.env.GRPC_TRANSPORT ?? 'lean',
    WORKERS: process.env.WORKERS ?? '1',
    ...(redis !== undefined && { REDIS_URL: redis.url }),
  }, GC ? ['--trace-gc-nvp'] : [], tree);
  const { child, port } = sluice;
  await runH2load(port, frame, 1); // warm-up
  const gc = GC ? collectGcLines(child.stdout!) : undefined;
  const before = cpuSeconds(child.pid!);
  const { succeeded } = await runH2load(port, frame, SECONDS);
  const cpu = cpuSeconds(child.pid!) - before;
  await stopSluice(sluice);
  return {
    us: (cpu * 1e6) / succeeded,
    rps: succeeded / SECONDS,
    ...(gc !== undefined && { gc: gcFigures(gc.take(), succeeded, SECONDS) }),
  };
}

/** With AB_GC=1: promoted bytes and collection pauses per call. */
function gcText(ms: readonly Measured[]): string {
  if (!GC) return '';
  const m = (pick: (g: GcFigures) => number): number => median(ms.map((x) => pick(x.gc!)));
  return `, promoted ${m((g) => g.promoted).toFixed(0)} B, collection pauses ${m((g) => g.scavengePause + g.markCompactPause).toFixed(1)} µs`;
}

async function main(): Promise<void> {
  const results = await compareBuilds({
    command: 'bench:cpu-ab',
    descriptors: DESCRIPTORS,
    redis: STORE === 'redis',
    rounds: ROUNDS,
    measure: (tree, fixture) => measure(tree, fixture.frame, fixture.redis),
    describe: (m) => `${m.us.toFixed(1)} µs per call, ${m.rps.toFixed(0)} calls/s${gcText([m])}`,
  });
  console.log(`\n${STORE}, ${DESCRIPTORS} descriptor(s), medians of ${ROUNDS}:`);
  for (const [tree, ms] of results) {
    console.log(`${tree}: ${median(ms.map((m) => m.us)).toFixed(1)} µs per call, ${median(ms.map((m) => m.rps)).toFixed(0)} calls/s${gcText(ms)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
