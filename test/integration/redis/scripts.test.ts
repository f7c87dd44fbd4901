import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import { ALGORITHMS } from '../../../src/limiter/algorithms/registry';
import { assembleScript, findLuaDir, loadScripts } from '../../../src/store/redis/scripts';
import { ManualClock } from '../../../src/util/clock';
import { type RedisServer, startRedisServer } from '../../support/redis-server';
import { availableStore, singleOptions, uniquePrefix } from './helpers';

/**
 * The Lua scripts on a real redis-server, table-driven: each case writes `setup`, runs the script
 * with `keys` and `argv`, and compares the whole reply and the stored state.
 */

const W = 60_000;
/** Window 1000 of a one-minute window starts here. */
const T0 = 1_000 * W;
const S = 'sliding_window';
const F = 'fixed_window';

type Hash = Record<string, string>;

interface ScriptCase {
  readonly name: string;
  /** Counter hashes to write first, by key name. */
  readonly setup?: Record<string, Hash>;
  readonly keys: readonly string[];
  readonly argv: ReadonlyArray<string | number>;
  /** The whole reply, or `{ error }` matching the error message. */
  readonly expected: ReadonlyArray<number> | number | { readonly error: RegExp };
  /** State afterwards, by key name (null: the key must not exist). Keys not listed are not checked. */
  readonly state?: Record<string, Hash | null>;
  /** PTTL afterwards (ms, allowing for the time the test takes), by key name. */
  readonly pttl?: Record<string, number>;
}

/** ARGV of one check: algorithm, limit, window, hits, enforced. */
const chk = (algorithm: string, limit: number, hits: number, enforced = 1, windowMs = W): Array<string | number> => [
  algorithm,
  limit,
  windowMs,
  hits,
  enforced,
];

const decideCases: ScriptCase[] = [
  {
    name: 'sliding: a first hit on an empty counter is admitted and stored with the window index',
    keys: ['a'],
    argv: [T0 + 10_000, 0, ...chk(S, 3, 1)],
    //        now          charged admitted remaining reset    uncharged: remaining reset window
    expected: [T0 + 10_000, 1, 1, 2, 110_000, 3, 0, 1000],
    state: { a: { w: '1000', c: '1', p: '0' } },
    pttl: { a: 110_000 },
  },
  {
    name: 'sliding: at the limit one more hit is rejected, with the retry in the next window, and nothing is written',
    setup: { a: { w: '1000', c: '3', p: '0' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 3, 1)],
    expected: [T0, 0, 0, 0, 80_000, 0, 80_000, 1000],
    state: { a: { w: '1000', c: '3', p: '0' } },
  },
  {
    name: 'sliding: hits > 1 that would cross the limit are rejected and report what is left',
    setup: { a: { w: '1000', c: '8', p: '0' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 10, 5)],
    expected: [T0, 0, 0, 2, 82_500, 2, 82_500, 1000],
    state: { a: { w: '1000', c: '8', p: '0' } },
  },
  {
    name: 'sliding: hits that exactly reach the limit are admitted',
    setup: { a: { w: '1000', c: '8', p: '0' } },
    keys: ['a'],
    argv: [T0 + 1_000, 0, ...chk(S, 10, 2)],
    expected: [T0 + 1_000, 1, 1, 0, 119_000, 2, 119_000, 1000],
    state: { a: { w: '1000', c: '10', p: '0' } },
  },
  {
    name: 'sliding: a check-only call (0 hits) charges nothing',
    setup: { a: { w: '1000', c: '1', p: '0' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 2, 0)],
    expected: [T0, 1, 1, 1, 120_000, 1, 120_000, 1000],
    state: { a: { w: '1000', c: '1', p: '0' } },
  },
  {
    name: 'sliding: a check-only call is rejected once the limit is used up',
    setup: { a: { w: '1000', c: '2', p: '0' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 2, 0)],
    expected: [T0, 0, 0, 0, 90_000, 0, 90_000, 1000],
  },
  {
    name: 'sliding: the previous window weighs by the part of it still inside the sliding window',
    setup: { a: { w: '999', c: '10', p: '0' } },
    keys: ['a'],
    argv: [T0 + 15_000, 0, ...chk(S, 10, 1)],
    expected: [T0 + 15_000, 1, 1, 1, 105_000, 2, 45_000, 1000],
    state: { a: { w: '1000', c: '1', p: '10' } },
    pttl: { a: 105_000 },
  },
  {
    name: 'sliding: a window two back is forgotten',
    setup: { a: { w: '998', c: '10', p: '5' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 10, 10)],
    expected: [T0, 1, 1, 0, 120_000, 10, 0, 1000],
    state: { a: { w: '1000', c: '10', p: '0' } },
  },
  {
    name: 'sliding: when the clock steps back the newer window is kept, not forgotten',
    setup: { a: { w: '1001', c: '2', p: '0' } },
    keys: ['a'],
    argv: [T0 + 59_000, 0, ...chk(S, 2, 1)],
    expected: [T0 + 59_000, 0, 0, 0, 90_000, 0, 90_000, 1001],
    state: { a: { w: '1001', c: '2', p: '0' } },
  },
  {
    name: 'sliding: a limit of 0 rejects with a one-window retry',
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 0, 1)],
    expected: [T0, 0, 0, 0, W, 0, W, 1000],
    state: { a: null },
  },
  {
    name: 'two checks on one key in one request see each other: the second rejects, nothing is written',
    setup: { a: { w: '1000', c: '2', p: '0' } },
    keys: ['a', 'a'],
    argv: [T0, 0, ...chk(S, 3, 1), ...chk(S, 3, 1)],
    expected: [T0, 0, 1, 1, 120_000, 1, 120_000, 1000, 0, 0, 80_000, 0, 80_000, 1000],
    state: { a: { w: '1000', c: '2', p: '0' } },
  },
  {
    name: 'two checks on one key that both fit are charged together',
    keys: ['a', 'a'],
    argv: [T0, 0, ...chk(F, 3, 1), ...chk(F, 3, 2)],
    expected: [T0, 1, 1, 2, W, 3, 0, 1000, 1, 0, W, 2, W, 1000],
    state: { a: { w: '1000', c: '3' } },
  },
  {
    name: 'one enforced rejection charges none of the checks',
    setup: { b: { w: '1000', c: '1' } },
    keys: ['a', 'b'],
    argv: [T0, 0, ...chk(F, 5, 1), ...chk(F, 1, 1)],
    expected: [T0, 0, 1, 5, 0, 5, 0, 1000, 0, 0, W, 0, W, 1000],
    state: { a: null, b: { w: '1000', c: '1' } },
  },
  {
    name: 'a shadow (not enforced) rejection does not block the others and is not charged',
    setup: { b: { w: '1000', c: '1' } },
    keys: ['a', 'b'],
    argv: [T0, 0, ...chk(F, 5, 1), ...chk(F, 1, 1, 0)],
    expected: [T0, 1, 1, 4, W, 5, 0, 1000, 0, 0, W, 0, W, 1000],
    state: { a: { w: '1000', c: '1' }, b: { w: '1000', c: '1' } },
  },
  {
    name: 'chargeRejectedHits charges every check, over-limit ones too',
    setup: { b: { w: '1000', c: '1' } },
    keys: ['a', 'b'],
    argv: [T0 + 34_000, 1, ...chk(F, 5, 1), ...chk(F, 1, 1)],
    expected: [T0 + 34_000, 1, 1, 4, 26_000, 4, 26_000, 1000, 0, 0, 26_000, 0, 26_000, 1000],
    state: { a: { w: '1000', c: '1' }, b: { w: '1000', c: '2' } },
  },
  {
    name: 'chargeRejectedHits on a sliding window reports the retry for one more hit',
    keys: ['a'],
    argv: [T0, 1, ...chk(S, 2, 3)],
    expected: [T0, 1, 0, 0, 100_000, 0, 100_000, 1000],
    state: { a: { w: '1000', c: '3', p: '0' } },
  },
  {
    name: 'fixed: the first hits of a window are stored with expiry at the window end',
    keys: ['a'],
    argv: [T0 + 10_000, 0, ...chk(F, 2, 2)],
    expected: [T0 + 10_000, 1, 1, 0, 50_000, 2, 0, 1000],
    state: { a: { w: '1000', c: '2' } },
    pttl: { a: 50_000 },
  },
  {
    name: 'fixed: one millisecond before the window end it still rejects',
    setup: { a: { w: '1000', c: '2' } },
    keys: ['a'],
    argv: [T0 + 59_999, 0, ...chk(F, 2, 1)],
    expected: [T0 + 59_999, 0, 0, 0, 1, 0, 1, 1000],
  },
  {
    name: 'fixed: a new window starts from zero',
    setup: { a: { w: '999', c: '5' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(F, 5, 1)],
    expected: [T0, 1, 1, 4, W, 5, 0, 1000],
    state: { a: { w: '1000', c: '1' } },
  },
  {
    name: 'fixed: a cost above the limit is rejected with a one-window retry',
    keys: ['a'],
    argv: [T0 + 5_000, 0, ...chk(F, 5, 6)],
    expected: [T0 + 5_000, 0, 0, 5, W, 5, W, 1000],
    state: { a: null },
  },
  {
    name: 'fixed: when the clock steps back the newer window is kept',
    setup: { a: { w: '1001', c: '2' } },
    keys: ['a'],
    argv: [T0 + 59_000, 0, ...chk(F, 2, 1)],
    expected: [T0 + 59_000, 0, 0, 0, 61_000, 0, 61_000, 1001],
  },
  {
    name: 'large counts are stored with every digit (no %.14g rounding)',
    setup: { a: { w: '1000', c: '1234567890123456' } },
    keys: ['a'],
    argv: [T0, 1, ...chk(F, 1, 1)],
    expected: [T0, 1, 0, 0, W, 0, W, 1000],
    state: { a: { w: '1000', c: '1234567890123457' } },
  },
  {
    name: 'windows of any length index from the epoch (5 minutes)',
    keys: ['a'],
    argv: [T0 + 10_000, 0, ...chk(F, 2, 1, 1, 300_000)],
    expected: [T0 + 10_000, 1, 1, 1, 290_000, 2, 0, 200],
    state: { a: { w: '200', c: '1' } },
  },
  {
    name: 'no checks: nothing to decide (the availability probe)',
    keys: [],
    argv: [T0, 0],
    expected: [T0, 1],
  },
  { name: 'a wrong argument count is an error', keys: ['a'], argv: [T0, 0, S, 1], expected: { error: /sluice decide: 1 keys need 7 arguments, got 4/ } },
  { name: 'an unknown algorithm is an error', keys: ['a'], argv: [T0, 0, ...chk('leaky', 1, 1)], expected: { error: /unknown algorithm leaky/ } },
  { name: 'a zero window is an error', keys: ['a'], argv: [T0, 0, ...chk(F, 1, 1, 1, 0)], expected: { error: /bad limit, window or hits/ } },
];

const refundCases: ScriptCase[] = [
  {
    name: 'takes back hits from the window they were charged to',
    setup: { a: { w: '1000', c: '5', p: '2' } },
    keys: ['a'],
    argv: [S, 1000, 3],
    expected: 1,
    state: { a: { w: '1000', c: '2', p: '2' } },
  },
  {
    name: 'after the window rolled, takes them from the previous window',
    setup: { a: { w: '1001', c: '1', p: '5' } },
    keys: ['a'],
    argv: [S, 1000, 3],
    expected: 1,
    state: { a: { w: '1001', c: '1', p: '2' } },
  },
  {
    name: 'two windows later there is nothing to take back',
    setup: { a: { w: '1002', c: '1', p: '5' } },
    keys: ['a'],
    argv: [S, 1000, 3],
    expected: 0,
    state: { a: { w: '1002', c: '1', p: '5' } },
  },
  {
    name: 'never goes below zero',
    setup: { a: { w: '1000', c: '1', p: '0' } },
    keys: ['a'],
    argv: [S, 1000, 3],
    expected: 1,
    state: { a: { w: '1000', c: '0', p: '0' } },
  },
  {
    name: 'fixed: takes back from the same window',
    setup: { a: { w: '1000', c: '4' } },
    keys: ['a', 'a'],
    argv: [F, 1000, 1, F, 1000, 2],
    expected: 2,
    state: { a: { w: '1000', c: '1' } },
  },
  {
    name: 'fixed: a rolled window is left alone',
    setup: { a: { w: '1001', c: '4' } },
    keys: ['a'],
    argv: [F, 1000, 2],
    expected: 0,
    state: { a: { w: '1001', c: '4' } },
  },
  { name: 'a missing counter is not created', keys: ['a'], argv: [F, 1000, 2], expected: 0, state: { a: null } },
  {
    name: 'zero hits change nothing',
    setup: { a: { w: '1000', c: '4' } },
    keys: ['a'],
    argv: [F, 1000, 0],
    expected: 0,
    state: { a: { w: '1000', c: '4' } },
  },
];

describe('Lua scripts on a real Redis', () => {
  let server: RedisServer;
  let redis: Redis;
  const scripts = loadScripts();

  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis({ host: server.host, port: server.port });
  });

  afterAll(async () => {
    await redis?.quit();
    await server?.stop();
  });

  const runCase = async (text: string, c: ScriptCase): Promise<void> => {
    const prefix = uniquePrefix();
    const key = (name: string): string => `${prefix}${name}`;
    for (const [name, hash] of Object.entries(c.setup ?? {})) await redis.hset(key(name), hash);
    const call = redis.eval(text, c.keys.length, ...c.keys.map(key), ...c.argv);
    if (typeof c.expected === 'object' && 'error' in c.expected) {
      await expect(call).rejects.toThrow(c.expected.error);
      return;
    }
    expect(await call).toEqual(c.expected);
    for (const [name, hash] of Object.entries(c.state ?? {})) {
      if (hash === null) expect(await redis.exists(key(name))).toBe(0);
      else expect(await redis.hgetall(key(name))).toEqual(hash);
    }
    for (const [name, ttl] of Object.entries(c.pttl ?? {})) {
      const pttl = await redis.pttl(key(name));
      expect(pttl).toBeLessThanOrEqual(ttl);
      expect(pttl).toBeGreaterThan(ttl - 1_000);
    }
  };

  describe('decide.lua', () => {
    it.each(decideCases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      await runCase(scripts.decide.text, c);
    });

    it('reads Redis TIME when no now is passed, and expires at the exact instant the algorithm gives', async () => {
      const key = `${uniquePrefix()}a`;
      const before = Date.now();
      const reply = (await redis.eval(scripts.decide.text, 1, key, '', 0, ...chk(S, 5, 1))) as number[];
      const now = reply[0]!;
      expect(now).toBeGreaterThanOrEqual(before - 1_000);
      expect(now).toBeLessThanOrEqual(Date.now() + 1_000);
      const windowStart = Math.floor(now / W) * W;
      expect(reply.slice(1)).toEqual([1, 1, 4, windowStart + 2 * W - now, 5, 0, windowStart / W]);
      expect(await redis.call('PEXPIRETIME', key)).toBe(windowStart + 2 * W);

      const fixedKey = `${uniquePrefix()}f`;
      const fixed = (await redis.eval(scripts.decide.text, 1, fixedKey, '', 0, ...chk(F, 5, 1))) as number[];
      expect(await redis.call('PEXPIRETIME', fixedKey)).toBe((Math.floor(fixed[0]! / W) + 1) * W);
    });

    it('has a Lua twin for every algorithm of the TypeScript registry', async () => {
      for (const name of Object.keys(ALGORITHMS)) {
        const reply = (await redis.eval(scripts.decide.text, 1, `${uniquePrefix()}a`, T0, 0, ...chk(name, 1, 1))) as number[];
        expect(reply.slice(0, 3)).toEqual([T0, 1, 1]);
      }
    });
  });

  describe('refund.lua', () => {
    it.each(refundCases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      await runCase(scripts.refund.text, c);
    });

    it('keeps the expiry the charge set', async () => {
      const key = `${uniquePrefix()}a`;
      await redis.eval(scripts.decide.text, 1, key, T0, 0, ...chk(F, 5, 3));
      await redis.eval(scripts.refund.text, 1, key, F, 1000, 3);
      expect(await redis.hgetall(key)).toEqual({ w: '1000', c: '0' });
      expect(await redis.pttl(key)).toBeGreaterThan(W - 1_000);
    });
  });

  describe('script text', () => {
    // Pinned so that any change to the Lua is deliberate: update these with the edit, and bump
    // the key version in counter-key.ts if the stored state changes shape.
    it('pins the SHA1 of each assembled script', () => {
      expect({ decide: scripts.decide.sha1, refund: scripts.refund.sha1 }).toEqual({
        decide: '31de60ccda63a84a6846363664f9728f05285193',
        refund: '88395532946251e759e2e8cd6f159a70a481ffe3',
      });
      expect(createHash('sha1').update(scripts.decide.text).digest('hex')).toBe(scripts.decide.sha1);
    });

    it('resolves every include, once each', () => {
      for (const script of [scripts.decide, scripts.refund]) {
        expect(script.text).not.toMatch(/^--@include/m);
        expect(script.text.match(/^local function load_state/gm)).toHaveLength(1);
        expect(script.text.match(/^local ALGORITHMS = \{\}/gm)).toHaveLength(1);
      }
      expect(assembleScript(findLuaDir(), 'decide.lua')).toBe(scripts.decide.text);
    });
  });

  describe('NOSCRIPT', () => {
    it('recovers after SCRIPT FLUSH without a failed call', async () => {
      const store = await availableStore(singleOptions(server), new ManualClock(T0));
      try {
        const check = { key: `${uniquePrefix()}a`, algorithm: 'fixed_window' as const, limit: 5, windowMs: W, hits: 1, enforced: true };
        await store.decide([check], { chargeRejectedHits: false });
        await redis.script('FLUSH');
        const errorsBefore = noscriptErrors(await redis.info('errorstats'));
        const outcomes = await store.decide([check], { chargeRejectedHits: false });
        expect(outcomes).toEqual([{ admitted: true, remaining: 3, resetMs: W }]);
        // The path was really taken: Redis answered NOSCRIPT once and ioredis resent the script.
        expect(noscriptErrors(await redis.info('errorstats'))).toBe(errorsBefore + 1);
      } finally {
        await store.close();
      }
    });
  });
});

function noscriptErrors(info: string): number {
  const match = /^errorstat_NOSCRIPT:count=(\d+)/m.exec(info);
  return match ? Number(match[1]) : 0;
}
