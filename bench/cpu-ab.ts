import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { shouldRateLimitMethod } from '../src/server/proto';
import { startRedisServer, type RedisServer } from '../test/support/redis-server';
import { benchRequest } from './bench-request';
import { cpuSeconds } from './process-cpu';

/**
 * `npm run bench:cpu-ab -- <tree> <tree>…`: sluice's CPU per call of several builds (each a
 * checkout with `dist/` built), run in alternation so that a shared machine's load falls on all of
 * them alike; prints each round and the medians. How the per-change figures in bench/README.md
 * were measured. Each round: `sluice serve` from that tree on its bench/config/sliding_window,
 * one second of h2load to warm up, then AB_SECONDS (4) of h2load, 4 connections × 16 streams,
 * the same request as `npm run bench`. Knobs: AB_ROUNDS (5), AB_DESCRIPTORS (4), AB_STORE
 * (memory | redis: a redis-server this script starts), GRPC_TRANSPORT (lean), WORKERS (1).
 */

const ROUNDS = Number(process.env.AB_ROUNDS ?? 5);
const SECONDS = Number(process.env.AB_SECONDS ?? 4);
const DESCRIPTORS = process.env.AB_DESCRIPTORS === '1' ? 1 : 4;
const STORE = process.env.AB_STORE === 'redis' ? 'redis' : 'memory';

async function measure(tree: string, body: string, redis: RedisServer | undefined): Promise<{ us: number; rps: number }> {
  const child = spawn(
    process.execPath,
    [path.join(tree, 'dist/src/cli/main.js'), 'serve', '--config', path.join(tree, 'bench/config/sliding_window'), '--grpc-host', '127.0.0.1',
      '--host', '127.0.0.1', '--debug-host', '127.0.0.1', '--grpc-port', '0', '--port', '0', '--debug-port', '0'],
    {
      cwd: tree,
      env: {
        PATH: process.env.PATH,
        GRPC_TRANSPORT: process.env.GRPC_TRANSPORT ?? 'lean',
        WORKERS: process.env.WORKERS ?? '1',
        ...(redis !== undefined && { REDIS_URL: redis.url }),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const port = await new Promise<number>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { msg?: string; grpcPort?: number };
        if (parsed.grpcPort !== undefined && parsed.msg !== 'sluice worker started') resolve(parsed.grpcPort);
      } catch {
        // not a log line
      }
    });
    child.on('exit', (code) => reject(new Error(`sluice from ${tree} exited with ${code}`)));
  });
  const h2load = (seconds: number): string =>
    execFileSync('h2load', ['-D', String(seconds), '-c', '4', '-m', '16', '-d', body, '-H', 'content-type: application/grpc', '-H', 'te: trailers',
      `http://127.0.0.1:${port}/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`], { encoding: 'utf8' });
  h2load(1);
  const before = cpuSeconds(child.pid!);
  const out = h2load(SECONDS);
  const cpu = cpuSeconds(child.pid!) - before;
  const done = Number(/(\d+) succeeded/.exec(out)?.[1] ?? NaN);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  return { us: (cpu * 1e6) / done, rps: done / SECONDS };
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const trees = process.argv.slice(2).map((tree) => path.resolve(tree));
  if (trees.length === 0) throw new Error('usage: npm run bench:cpu-ab -- <tree> [<tree>…] (each with dist/ built)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-ab-'));
  const message = shouldRateLimitMethod.serialize(benchRequest(DESCRIPTORS, 1));
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  const body = path.join(dir, 'body.bin');
  fs.writeFileSync(body, frame);
  const redis = STORE === 'redis' ? await startRedisServer() : undefined;
  try {
    const results = new Map<string, { us: number; rps: number }[]>(trees.map((tree) => [tree, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const tree of trees) {
        const m = await measure(tree, body, redis);
        results.get(tree)!.push(m);
        console.log(`round ${round} ${tree}: ${m.us.toFixed(1)} µs per call, ${m.rps.toFixed(0)} calls/s`);
      }
    }
    console.log(`\n${STORE}, ${DESCRIPTORS} descriptor(s), medians of ${ROUNDS}:`);
    for (const [tree, ms] of results) {
      console.log(`${tree}: ${median(ms.map((m) => m.us)).toFixed(1)} µs per call, ${median(ms.map((m) => m.rps)).toFixed(0)} calls/s`);
    }
  } finally {
    await redis?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
