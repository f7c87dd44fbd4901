import * as fs from 'node:fs';
import * as path from 'node:path';
import type { RedisServer } from '../test/support/redis-server';
import { compareBuilds, median } from './build-ab';
import { runH2load } from './h2load-run';
import { startSluice, stopSluice } from './sluice-instance';

/**
 * `npm run bench:alloc -- <tree> [<tree>…]`: the bytes sluice allocates per call, and where, for
 * builds (checkouts with `dist/` built) in alternation. What the young-generation GC costs
 * follows from it: every scavenge copies what is alive, and a call's objects are alive while it
 * waits on Redis. Each round: `sluice serve` from that tree on its bench/config/sliding_window
 * with `bench/alloc-preload.ts` preloaded, 2 s of h2load to warm up, then V8's sampling heap
 * profiler (collected objects included) over ALLOC_SECONDS (4) of h2load, 4 connections × 16
 * streams, 4 descriptors. Sampled, so a site's bytes are estimates; the total is stable to a few
 * per cent. Knobs: ALLOC_ROUNDS (3), ALLOC_STORE (redis | memory), ALLOC_TOP (15 sites).
 */

const ROUNDS = Number(process.env.ALLOC_ROUNDS ?? 3);
const SECONDS = Number(process.env.ALLOC_SECONDS ?? 4);
const TOP = Number(process.env.ALLOC_TOP ?? 15);
const STORE = process.env.ALLOC_STORE === 'memory' ? 'memory' : 'redis';
const PRELOAD = path.join(__dirname, 'alloc-preload.js');

interface ProfileNode {
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly selfSize: number;
  readonly children: readonly ProfileNode[];
}

interface Allocations {
  readonly bytesPerCall: number;
  /** Bytes per call by allocating function (`name file:line`). */
  readonly sites: Map<string, number>;
}

async function measure(tree: string, frame: string, redis: RedisServer | undefined, dir: string): Promise<Allocations> {
  const profile = path.join(dir, 'allocations.json');
  fs.rmSync(profile, { force: true });
  const sluice = await startSluice(
    path.join(tree, 'bench/config/sliding_window'),
    { WORKERS: '1', ALLOC_PROFILE: profile, ...(redis !== undefined && { REDIS_URL: redis.url }) },
    ['-r', PRELOAD],
    tree,
  );
  try {
    await runH2load(sluice.port, frame, 2);
    sluice.child.kill('SIGUSR2');
    const { succeeded } = await runH2load(sluice.port, frame, SECONDS);
    sluice.child.kill('SIGUSR2');
    for (let waited = 0; !fs.existsSync(profile); waited += 50) {
      if (waited > 10_000) throw new Error('no allocation profile written');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const sites = new Map<string, number>();
    let total = 0;
    const walk = (node: ProfileNode): void => {
      const { functionName, url, lineNumber } = node.callFrame;
      const site = `${functionName === '' ? '(anonymous)' : functionName} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
      sites.set(site, (sites.get(site) ?? 0) + node.selfSize / succeeded);
      total += node.selfSize;
      node.children.forEach(walk);
    };
    walk((JSON.parse(fs.readFileSync(profile, 'utf8')) as { head: ProfileNode }).head);
    return { bytesPerCall: total / succeeded, sites };
  } finally {
    await stopSluice(sluice);
  }
}

async function main(): Promise<void> {
  const results = await compareBuilds({
    command: 'bench:alloc',
    descriptors: 4,
    redis: STORE === 'redis',
    rounds: ROUNDS,
    measure: (tree, fixture) => measure(tree, fixture.frame, fixture.redis, fixture.dir),
    describe: (a) => `${a.bytesPerCall.toFixed(0)} bytes per call`,
  });
  for (const [tree, runs] of results) {
    console.log(`\n${tree} (${STORE}, 4 descriptors): ${median(runs.map((a) => a.bytesPerCall)).toFixed(0)} bytes per call, median of ${ROUNDS}; top sites, bytes per call:`);
    const last = runs[runs.length - 1]!;
    for (const [site, bytes] of [...last.sites].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
      console.log(`${bytes.toFixed(0).padStart(7)}  ${site}`);
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
