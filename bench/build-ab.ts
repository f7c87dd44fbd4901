import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startRedisServer, type RedisServer } from '../test/support/redis-server';
import { writeRequestFrame } from './h2load-run';

/** The frame of the benches that compare builds (`bench:cpu-ab`, `bench:alloc`), and the benches' median. */

/** The middle value, or the mean of the middle two for an even count. */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** What a build's round is measured with. */
export interface BuildFixture {
  /** The bench's request as one gRPC frame, for h2load's -d. */
  readonly frame: string;
  /** The redis-server every build's sluice uses; undefined on the memory store. */
  readonly redis: RedisServer | undefined;
  /** A scratch directory, removed at the end. */
  readonly dir: string;
}

export interface BuildComparison<T> {
  /** The npm script, for the usage error. */
  readonly command: string;
  readonly descriptors: 1 | 4;
  readonly redis: boolean;
  readonly rounds: number;
  measure(tree: string, fixture: BuildFixture): Promise<T>;
  /** One round's line. */
  describe(result: T): string;
}

/**
 * Measures each build named on the command line (checkouts with `dist/` built) `rounds` times,
 * in alternation, so that a shared machine's load falls on all of them alike; prints each round
 * and returns every build's results in order.
 */
export async function compareBuilds<T>(comparison: BuildComparison<T>): Promise<Map<string, T[]>> {
  const trees = process.argv.slice(2).map((tree) => path.resolve(tree));
  if (trees.length === 0) throw new Error(`usage: npm run ${comparison.command} -- <tree> [<tree>…] (each with dist/ built)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-builds-'));
  const fixture: BuildFixture = {
    frame: writeRequestFrame(dir, comparison.descriptors),
    redis: comparison.redis ? await startRedisServer() : undefined,
    dir,
  };
  try {
    const results = new Map<string, T[]>(trees.map((tree) => [tree, []]));
    for (let round = 1; round <= comparison.rounds; round++) {
      for (const tree of trees) {
        const result = await comparison.measure(tree, fixture);
        results.get(tree)!.push(result);
        console.log(`round ${round} ${tree}: ${comparison.describe(result)}`);
      }
    }
    return results;
  } finally {
    await fixture.redis?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
