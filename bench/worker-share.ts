import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { startRedisServer, type RedisServer } from '../test/support/redis-server';
import { runH2load, writeRequestFrame } from './h2load-run';
import { childPids, cpuSeconds, procStatFields, statSeconds } from './process-cpu';
import { type BenchServer, startBenchServer, startSluice } from './sluice-instance';
import { median } from './build-ab';

/**
 * `npm run bench:workers`: where the 2 cores go when sluice (Redis, sliding_window) and the
 * do-nothing grpc-js server each run with one worker and with two, under the bench's h2load load
 * (4 connections × 16 streams, 4 descriptors). Per target: calls/s, and the CPU per call of the
 * servers' main threads, of their other threads (V8's GC and compiler helpers, libuv), of
 * redis-server and of h2load, and the calls per script call. What `npm run bench`'s `×2 workers`
 * row is made of, and why it is where it is: two workers can at best reach the calls/s at which
 * the machine's cores are all spent (`ceiling` below), against one worker bounded by its one main
 * thread. Rounds alternate the targets so that a shared machine's load falls on all alike.
 * Knobs: SHARE_ROUNDS (5), SHARE_SECONDS (4), SHARE_WORKERS (`1,2`), SHARE_TARGETS (`sluice,noop`),
 * SHARE_RPS (unset: closed loop; else h2load's --rps per connection), GRPC_TRANSPORT (lean).
 */

const ROUNDS = Number(process.env.SHARE_ROUNDS ?? 5);
const SECONDS = Number(process.env.SHARE_SECONDS ?? 4);
const WORKER_COUNTS = (process.env.SHARE_WORKERS ?? '1,2').split(',').map(Number);
const TARGETS = (process.env.SHARE_TARGETS ?? 'sluice,noop').split(',');
const RPS = process.env.SHARE_RPS;
const ROOT = path.resolve(__dirname, '../..');

/** CPU seconds per second (cores) of each part, over the measured h2load run. */
interface Share {
  readonly rps: number;
  readonly mainThreads: number;
  readonly otherThreads: number;
  readonly redis: number;
  readonly h2load: number;
  /** Of the machine's CPU time, the share no process used (/proc/stat idle + iowait). */
  readonly idle: number;
  /** Calls per decide script call (sluice only). */
  readonly callsPerScriptCall: number;
}

/** CPU seconds of the main threads and of the other threads of `pids` (a thread's id is its process's for the main one). */
function threadSeconds(pids: readonly number[]): { main: number; other: number } {
  let main = 0;
  let other = 0;
  for (const pid of pids) {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      const seconds = statSeconds(procStatFields(`/proc/${pid}/task/${tid}/stat`));
      if (Number(tid) === pid) main += seconds;
      else other += seconds;
    }
  }
  return { main, other };
}

/** The machine's idle and total CPU ticks since boot (/proc/stat's first line). */
function machineTicks(): { idle: number; total: number } {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  return { idle: fields[3]! + fields[4]!, total: fields.reduce((a, b) => a + b, 0) };
}

async function scriptCalls(redis: Redis): Promise<number> {
  const stats = await redis.info('commandstats');
  return [...stats.matchAll(/cmdstat_(?:evalsha|eval|fcall):calls=(\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
}

/** `noop`, `sluice`, or `sluice` with node flags for it and its workers after a colon (`sluice:--single-threaded-gc`). */
async function startTarget(target: string, workers: number, redis: RedisServer): Promise<BenchServer> {
  if (target === 'noop') return startBenchServer('noop-server.js', { NOOP_WORKERS: String(workers) });
  const [, ...nodeArgs] = target.split(/[: ]/).filter((part) => part !== '');
  return startSluice(
    path.join(ROOT, 'bench/config/sliding_window'),
    { REDIS_URL: redis.url, WORKERS: String(workers), GRPC_TRANSPORT: process.env.GRPC_TRANSPORT ?? 'lean' },
    nodeArgs,
  );
}

async function measure(target: string, workers: number, frame: string, redis: RedisServer, admin: Redis): Promise<Share> {
  const server = await startTarget(target, workers, redis);
  try {
    await runH2load(server.port, frame, 1, { rps: RPS }); // warm-up
    const pids = [server.child.pid!, ...childPids(server.child.pid!)];
    const before = threadSeconds(pids);
    const redisBefore = cpuSeconds(redis.pid);
    const scriptsBefore = await scriptCalls(admin);
    const machineBefore = machineTicks();
    const h2load = await runH2load(server.port, frame, SECONDS, { rps: RPS });
    const machineAfter = machineTicks();
    const after = threadSeconds(pids);
    const redisCpu = cpuSeconds(redis.pid) - redisBefore;
    const scripts = (await scriptCalls(admin)) - scriptsBefore;
    const done = h2load.succeeded;
    if (h2load.failed > 0) console.log(`  ${target} ×${workers}: ${h2load.failed} calls failed or errored`);
    return {
      rps: done / SECONDS,
      mainThreads: (after.main - before.main) / SECONDS,
      otherThreads: (after.other - before.other) / SECONDS,
      redis: redisCpu / SECONDS,
      h2load: h2load.cpuSeconds / SECONDS,
      idle: (machineAfter.idle - machineBefore.idle) / Math.max(1, machineAfter.total - machineBefore.total),
      callsPerScriptCall: scripts === 0 ? NaN : done / scripts,
    };
  } finally {
    await server.stop();
  }
}

/** µs per call of a part of `s`. */
const perCall = (cores: number, s: Share): number => (cores * 1e6) / s.rps;
const total = (s: Share): number => s.mainThreads + s.otherThreads + s.redis + s.h2load;

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-share-'));
  const frame = writeRequestFrame(dir, 4);
  const redis = await startRedisServer();
  const admin = new Redis(redis.url);
  const cores = os.availableParallelism();
  try {
    const runs = TARGETS.flatMap((target) => WORKER_COUNTS.map((workers) => ({ target, workers, name: `${target} ×${workers}` })));
    const results = new Map<string, Share[]>(runs.map((r) => [r.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const run of runs) {
        const s = await measure(run.target, run.workers, frame, redis, admin);
        results.get(run.name)!.push(s);
        console.log(`round ${round}, ${run.name}: ${s.rps.toFixed(0)} calls/s; cores: main ${s.mainThreads.toFixed(2)}, other threads ` +
          `${s.otherThreads.toFixed(2)}, redis ${s.redis.toFixed(2)}, h2load ${s.h2load.toFixed(2)}, all ${total(s).toFixed(2)} of ${cores}; machine idle ${(100 * s.idle).toFixed(0)}%`);
      }
    }
    const m = (name: string, f: (s: Share) => number): number => median(results.get(name)!.map(f));
    console.log(`\nmedians of ${ROUNDS}${RPS !== undefined ? `, h2load --rps ${RPS} per connection` : ', closed loop'}, 4 descriptors; µs of CPU per call:`);
    console.log('| target | calls/s | × one worker | main threads | other threads | redis-server | h2load | all | cores used | machine idle | calls per script call |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const run of runs) {
      const one = `${run.target} ×1`;
      const ratio = results.has(one) ? (m(run.name, (s) => s.rps) / m(one, (s) => s.rps)).toFixed(2) : 'n/a';
      console.log(`| ${run.name} | ${m(run.name, (s) => s.rps).toFixed(0)} | ${ratio} | ${m(run.name, (s) => perCall(s.mainThreads, s)).toFixed(1)} | ` +
        `${m(run.name, (s) => perCall(s.otherThreads, s)).toFixed(1)} | ${m(run.name, (s) => perCall(s.redis, s)).toFixed(1)} | ` +
        `${m(run.name, (s) => perCall(s.h2load, s)).toFixed(1)} | ${m(run.name, (s) => perCall(total(s), s)).toFixed(1)} | ${m(run.name, total).toFixed(2)} | ${(100 * m(run.name, (s) => s.idle)).toFixed(0)}% | ` +
        `${run.target.startsWith('sluice') ? m(run.name, (s) => s.callsPerScriptCall).toFixed(1) : '-'} |`);
    }
    // One worker is bounded by its main thread (one core); N workers by all cores. At the per-call
    // costs N workers were measured at, the cores allow cores / (all µs per call) calls per second.
    console.log(`\nceiling (${cores} cores ÷ all µs per call) against one worker's calls/s:`);
    for (const run of runs) {
      if (run.workers === 1 || !results.has(`${run.target} ×1`)) continue;
      const ceiling = cores / (m(run.name, (s) => perCall(total(s), s)) / 1e6);
      console.log(`${run.name}: ${ceiling.toFixed(0)} calls/s = ${(ceiling / m(`${run.target} ×1`, (s) => s.rps)).toFixed(2)}× one worker`);
    }
  } finally {
    admin.disconnect();
    await redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
