import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { AlgorithmName } from '../../../src/config/types';
import { ALGORITHMS } from '../../../src/limiter/algorithms/registry';
import type { LimitCheck } from '../../../src/store/counter-store';
import { MemoryStore } from '../../../src/store/memory/memory-store';
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
const L = 'sliding_log';
const G = 'token_bucket';

type Hash = Record<string, string>;
/** What a counter key holds, as a case writes it: fields of packed doubles, or the raw string. */
type Stored = Hash | Buffer;

interface ScriptCase {
  readonly name: string;
  /** Counter hashes (or sliding_log strings) to write first, by key name. */
  readonly setup?: Record<string, Stored>;
  readonly keys: readonly string[];
  readonly argv: ReadonlyArray<string | number>;
  /** decide.lua: `argv` is already in the script's layout (specs first), not translated by `specLayout`. */
  readonly raw?: boolean;
  /** The whole reply, or `{ error }` matching the error message. */
  readonly expected: ReadonlyArray<number> | number | { readonly error: RegExp };
  /** State afterwards, by key name (null: the key must not exist). Keys not listed are not checked. */
  readonly state?: Record<string, Stored | null>;
  /** PTTL afterwards (ms, allowing for the time the test takes), by key name. */
  readonly pttl?: Record<string, number>;
}

/** ARGV of one check: algorithm, limit, window, hits, enforced, burst ('' = the limit). */
const chk = (
  algorithm: string,
  limit: number,
  hits: number,
  enforced = 1,
  windowMs = W,
  burst: number | '' = '',
): Array<string | number> => [algorithm, limit, windowMs, hits, enforced, burst];

/**
 * decide.lua's ARGV from the layout the cases are written in (`now`, then per request its charge
 * flag, its check count and 6 fields per check): `now`, the distinct specs (6 fields each, in
 * order of first use), then per request its charge flag, its check count and its checks' spec
 * indexes (1-based), as DecideBatcher sends them.
 */
const specLayout = (argv: ReadonlyArray<string | number>): Array<string | number> => {
  const specs: Array<Array<string | number>> = [];
  const requests: Array<string | number> = [];
  let at = 1;
  while (at < argv.length) {
    const count = Number(argv[at + 1]);
    requests.push(argv[at]!, count);
    at += 2;
    for (let i = 0; i < count; i++, at += 6) {
      const fields = argv.slice(at, at + 6);
      if (fields.length !== 6) throw new Error(`specLayout: check ${i + 1} has ${fields.length} fields`);
      let index = specs.findIndex((spec) => spec.every((field, f) => String(field) === String(fields[f])));
      if (index < 0) index = specs.push(fields) - 1;
      requests.push(index + 1);
    }
  }
  return [argv[0]!, specs.length, ...specs.flat(), ...requests];
};

/** ARGV of one refund: algorithm, the window decide returned, hits, limit, window ms. */
const ref = (algorithm: string, window: number, hits: number, limit = 10, windowMs = W): Array<string | number> => [
  algorithm,
  window,
  hits,
  limit,
  windowMs,
];

/** A sliding_log string: the instant of every hit, 8-byte big-endian doubles, ascending. */
const log = (...entries: Array<[number, number]>): Buffer => {
  const instants = entries.flatMap(([at, hits]) => new Array<number>(hits).fill(at));
  const buffer = Buffer.alloc(8 * instants.length);
  instants.forEach((at, i) => buffer.writeDoubleBE(at, 8 * i));
  return buffer;
};

/**
 * A sliding_window string: the total of its hits, then per sub-window [hits, first, last], 8-byte
 * big-endian doubles, oldest first.
 */
const sw = (...windows: Array<[number, number, number]>): Buffer => {
  const buffer = Buffer.alloc(8 + 24 * windows.length);
  buffer.writeDoubleBE(
    windows.reduce((total, [hits]) => total + hits, 0),
    0,
  );
  windows.forEach(([hits, first, last], i) => {
    buffer.writeDoubleBE(hits, 8 + 24 * i);
    buffer.writeDoubleBE(first, 8 + 24 * i + 8);
    buffer.writeDoubleBE(last, 8 + 24 * i + 16);
  });
  return buffer;
};

/**
 * fixed_window ({w, c}) and token_bucket ({t, d, l}) states are packed doubles; the cases write
 * them as fields for readability. A token_bucket state without `l` is stored with l = 0 (taken
 * as the current limit).
 */
const FIELDS = { fixed: ['w', 'c'], bucket: ['t', 'd', 'l'] } as const;
function fieldsOf(hash: Hash): readonly string[] {
  return 'w' in hash ? FIELDS.fixed : FIELDS.bucket;
}
function encodeFields(hash: Hash): Buffer {
  const fields = fieldsOf(hash);
  const buffer = Buffer.alloc(8 * fields.length);
  fields.forEach((field, i) => buffer.writeDoubleBE(Number(hash[field] ?? '0'), 8 * i));
  return buffer;
}
/** The stored doubles as the fields `like` names (only those), for comparing with a case's state. */
function decodeFields(stored: Buffer | null, like: Hash): Hash | null {
  if (stored === null) return null;
  const fields = fieldsOf(like);
  const out: Hash = {};
  fields.forEach((field, i) => {
    if (field in like) out[field] = String(stored.readDoubleBE(8 * i));
  });
  return out;
}

const decideCases: ScriptCase[] = [
  {
    name: 'sliding: a first hit on an empty counter opens a sub-window and expires a window after it',
    keys: ['a'],
    argv: [T0 + 10_000, 0, ...chk(S, 3, 1)],
    //        now          charged admitted remaining reset    uncharged: remaining reset window
    expected: [T0 + 10_000, 1, 1, 2, W, 3, 0, T0 + 10_000],
    state: { a: sw([1, T0 + 10_000, T0 + 10_000]) },
    pttl: { a: W },
  },
  {
    name: 'sliding: at the limit one more hit is rejected, with the retry when the spread estimate leaves room, and nothing is written',
    setup: { a: sw([3, T0 - 30_000, T0 - 28_000]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 3, 1)],
    // Room for 1 once 1 + 2 × (last − cut)/2000 ≤ 2: cut = T0 − 29000, so T0 + 31000.
    expected: [T0, 0, 0, 0, 31_000, 0, 31_000, T0],
    state: { a: sw([3, T0 - 30_000, T0 - 28_000]) },
  },
  {
    name: 'sliding: hits > 1 that would cross the limit are rejected and report what is left',
    setup: { a: sw([8, T0 - 30_000, T0 - 28_000]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 10, 5)],
    // 1 + 7 × (last − cut)/2000 ≤ 5 ⇒ last − cut ≤ 1142.86: cut = T0 − 29142.
    expected: [T0, 0, 0, 2, 30_858, 2, 30_858, T0],
    state: { a: sw([8, T0 - 30_000, T0 - 28_000]) },
  },
  {
    name: 'sliding: hits that exactly reach the limit are admitted, in a new sub-window',
    setup: { a: sw([8, T0 - 30_000, T0 - 28_000]) },
    keys: ['a'],
    argv: [T0 + 1_000, 0, ...chk(S, 10, 2)],
    expected: [T0 + 1_000, 1, 1, 0, W, 2, 31_000, T0 + 1_000],
    state: { a: sw([8, T0 - 30_000, T0 - 28_000], [2, T0 + 1_000, T0 + 1_000]) },
  },
  {
    name: 'sliding: hits in the newest sub-window join it',
    setup: { a: sw([2, T0 - 30_000, T0 - 30_000], [1, T0, T0]) },
    keys: ['a'],
    argv: [T0 + 2_999, 0, ...chk(S, 10, 2)],
    expected: [T0 + 2_999, 1, 1, 5, W, 7, W - 2_999, T0 + 2_999],
    state: { a: sw([2, T0 - 30_000, T0 - 30_000], [3, T0, T0 + 2_999]) },
  },
  {
    name: 'sliding: a check-only call (0 hits) charges nothing and writes nothing',
    setup: { a: sw([1, T0 - 30_000, T0 - 30_000]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 2, 0)],
    expected: [T0, 1, 1, 1, 30_000, 1, 30_000, T0],
    state: { a: sw([1, T0 - 30_000, T0 - 30_000]) },
  },
  {
    name: 'sliding: a check-only call is rejected once the limit is used up, until the last hit of the span leaves',
    setup: { a: sw([2, T0 - 30_000, T0 - 28_000]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 2, 0)],
    expected: [T0, 0, 0, 0, 32_000, 0, 32_000, T0],
  },
  {
    name: 'sliding: the sub-window the window starts in counts the part of its span still inside',
    setup: { a: sw([10, T0 - W, T0 - W + 2_000]) },
    keys: ['a'],
    argv: [T0 + 1_000, 0, ...chk(S, 10, 1)],
    // cut = T0 − 59000: 1 + 9 × 1000/2000 = 5.5 of its 10 hits still count.
    expected: [T0 + 1_000, 1, 1, 3, W, 4, 1_000, T0 + 1_000],
    state: { a: sw([10, T0 - W, T0 - W + 2_000], [1, T0 + 1_000, T0 + 1_000]) },
    pttl: { a: W },
  },
  {
    name: 'sliding: sub-windows that left the window are dropped as the new state is written',
    setup: { a: sw([5, T0 - W - 3_000, T0 - W - 1_000], [3, T0 - 30_000, T0 - 30_000]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 10, 2)],
    expected: [T0, 1, 1, 5, W, 7, 30_000, T0],
    state: { a: sw([3, T0 - 30_000, T0 - 30_000], [2, T0, T0]) },
  },
  {
    name: 'sliding: when the clock steps back it stands still at the newest hit: nothing is forgotten',
    setup: { a: sw([2, T0 + 5_000, T0 + 5_000]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 2, 1)],
    expected: [T0, 0, 0, 0, 65_000, 0, 65_000, T0 + 5_000],
    state: { a: sw([2, T0 + 5_000, T0 + 5_000]) },
  },
  {
    name: 'sliding: when the clock steps back hits are charged at the newest instant',
    setup: { a: sw([1, T0 + 5_000, T0 + 5_000]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 3, 1)],
    expected: [T0, 1, 1, 1, 65_000, 2, 65_000, T0 + 5_000],
    state: { a: sw([2, T0 + 5_000, T0 + 5_000]) },
  },
  {
    name: 'sliding: a limit of 0 rejects with a one-window retry',
    keys: ['a'],
    argv: [T0, 0, ...chk(S, 0, 1)],
    expected: [T0, 0, 0, 0, W, 0, W, T0],
    state: { a: null },
  },
  {
    name: 'two checks on one key in one request see each other: the second rejects, nothing is written',
    setup: { a: sw([2, T0 - 30_000, T0 - 30_000]) },
    keys: ['a', 'a'],
    argv: [T0, 0, ...chk(S, 3, 1), ...chk(S, 3, 1)],
    expected: [T0, 0, 1, 1, 30_000, 1, 30_000, T0, 0, 0, 30_000, 0, 30_000, T0],
    state: { a: sw([2, T0 - 30_000, T0 - 30_000]) },
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
    expected: [T0, 1, 0, 0, W, 0, W, T0],
    state: { a: sw([3, T0, T0]) },
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
  {
    name: 'log: a first request is one 8-byte instant per hit, expiring a window after it',
    keys: ['a'],
    argv: [T0 + 10_000, 0, ...chk(L, 3, 2)],
    expected: [T0 + 10_000, 1, 1, 1, W, 3, 0, T0 + 10_000],
    state: { a: log([T0 + 10_000, 2]) },
    pttl: { a: W },
  },
  {
    name: 'log: hits that left the window are dropped as the new one is written',
    setup: { a: log([T0 - W, 2], [T0 - 30_000, 1]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(L, 3, 1)],
    expected: [T0, 1, 1, 1, W, 2, 30_000, T0],
    state: { a: log([T0 - 30_000, 1], [T0, 1]) },
  },
  {
    name: 'log: at the limit a request is rejected with the time enough of the oldest hits leave, and nothing is written',
    setup: { a: log([T0 - 50_000, 1], [T0 - 20_000, 2]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(L, 3, 2)],
    expected: [T0, 0, 0, 0, 40_000, 0, 40_000, T0],
    state: { a: log([T0 - 50_000, 1], [T0 - 20_000, 2]) },
  },
  {
    name: 'log: hits of one millisecond are one entry each',
    setup: { a: log([T0, 1]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(L, 5, 2)],
    expected: [T0, 1, 1, 2, W, 4, W, T0],
    state: { a: log([T0, 3]) },
  },
  {
    name: 'log: a clock that steps back logs at the newest instant',
    setup: { a: log([T0 + 5_000, 1]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(L, 3, 1)],
    expected: [T0, 1, 1, 1, 65_000, 2, 65_000, T0 + 5_000],
    state: { a: log([T0 + 5_000, 2]) },
  },
  {
    name: 'log: chargeRejectedHits keeps the newest limit + 1 hits',
    setup: { a: log([T0 - 10_000, 2], [T0 - 5_000, 1]) },
    keys: ['a'],
    argv: [T0, 1, ...chk(L, 2, 2)],
    expected: [T0, 1, 0, 0, W, 0, W, T0],
    state: { a: log([T0 - 5_000, 1], [T0, 2]) },
  },
  {
    name: 'log: a check-only call that finds nothing to drop leaves the log as it is',
    setup: { a: log([T0 - 1_000, 2]) },
    keys: ['a'],
    argv: [T0, 0, ...chk(L, 5, 0)],
    expected: [T0, 1, 1, 3, 59_000, 3, 59_000, T0],
    state: { a: log([T0 - 1_000, 2]) },
  },
  {
    name: 'log: a limit above the cap is refused, not run',
    keys: ['a'],
    argv: [T0, 0, ...chk(L, 129, 1)],
    expected: { error: /spec 1: sliding_log limits are capped at 128/ },
  },
  {
    name: 'bucket: a first hit stores the debt and the instant, expiring when the bucket is full again',
    keys: ['a'],
    argv: [T0, 0, ...chk(G, 6, 1)],
    //        now charged admitted remaining reset  uncharged: remaining reset window (the instant)
    expected: [T0, 1, 1, 5, 10_000, 6, 0, T0],
    state: { a: { t: String(T0), d: '60000', l: '6' } },
    pttl: { a: 10_000 },
  },
  {
    name: 'bucket: the debt drains by the limit per millisecond; a rejection says when a token is back',
    setup: { a: { t: String(T0 - 5_000), d: '360000' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(G, 6, 1)],
    expected: [T0, 0, 0, 0, 5_000, 0, 5_000, T0],
    state: { a: { t: String(T0 - 5_000), d: '360000' } },
  },
  {
    name: 'bucket: after a reload lowered the limit, the debt owes only the time it had left to drain',
    setup: { a: { t: String(T0 - 10_000), d: '360000', l: '6' } },
    keys: ['a'],
    // 6 hits charged at 6 a minute, full at T0 + 50 s; now 2 a minute: 50 s × 2 = 100000 units owed,
    // so one hit (60000 of a 120000 bucket) fits in 20 s, not after 6 hits at 2 a minute.
    argv: [T0, 0, ...chk(G, 2, 1)],
    expected: [T0, 0, 0, 0, 20_000, 0, 20_000, T0],
    state: { a: { t: String(T0 - 10_000), d: '360000', l: '6' } },
  },
  {
    name: 'bucket: the burst comes from the sixth argument',
    keys: ['a'],
    argv: [T0, 0, ...chk(G, 6, 2, 1, W, 2)],
    expected: [T0, 1, 1, 0, 20_000, 2, 0, T0],
    state: { a: { t: String(T0), d: '120000', l: '6' } },
  },
  {
    name: 'bucket: a cost above the burst is rejected with a one-window retry',
    keys: ['a'],
    argv: [T0, 0, ...chk(G, 6, 3, 1, W, 2)],
    expected: [T0, 0, 0, 2, W, 2, W, T0],
    state: { a: null },
  },
  {
    name: 'bucket: a clock that steps back never shrinks the debt',
    setup: { a: { t: String(T0 + 1_000), d: '360000' } },
    keys: ['a'],
    argv: [T0, 0, ...chk(G, 6, 0)],
    expected: [T0, 0, 0, 0, 11_000, 0, 11_000, T0 + 1_000],
    state: { a: { t: String(T0 + 1_000), d: '360000' } },
  },
  {
    name: 'bucket: chargeRejectedHits charges an over request, one hit past the bucket at most',
    setup: { a: { t: String(T0), d: '60000' } },
    keys: ['a'],
    argv: [T0, 1, ...chk(G, 1, 3)],
    expected: [T0, 1, 0, 0, 2 * W, 0, 2 * W, T0],
    state: { a: { t: String(T0), d: '120000', l: '1' } },
  },
  {
    name: 'bucket: a limit of 0 rejects everything, whatever the burst',
    keys: ['a'],
    argv: [T0, 0, ...chk(G, 0, 1, 1, W, 5)],
    expected: [T0, 0, 0, 0, W, 0, W, T0],
    state: { a: null },
  },
  {
    name: 'checks of four algorithms in one call: one rejection charges none of them',
    setup: { d: { t: String(T0), d: '60000' } },
    keys: ['a', 'b', 'c', 'd'],
    argv: [T0, 0, ...chk(S, 5, 1), ...chk(F, 5, 1), ...chk(L, 5, 1), ...chk(G, 1, 1)],
    expected: [T0, 0, 1, 5, 0, 5, 0, T0, 1, 5, 0, 5, 0, 1000, 1, 5, 0, 5, 0, T0, 0, 0, W, 0, W, T0],
    state: { a: null, b: null, c: null, d: { t: String(T0), d: '60000' } },
  },
  { name: 'a wrong argument count is an error', keys: ['a'], argv: [T0, 0, 0, 2, 1], raw: true, expected: { error: /sluice decide: request 1: bad check count or too few arguments/ } },
  { name: 'a wrong spec count is an error', keys: ['a'], argv: [T0, 1, S, 1], raw: true, expected: { error: /sluice decide: bad spec count or too few arguments/ } },
  { name: 'a check without a spec is an error', keys: ['a'], argv: [T0, 1, ...chk(S, 1, 1), 0, 1, 2], raw: true, expected: { error: /sluice decide: request 1: check 1 has no spec 2/ } },
  { name: 'an unknown algorithm is an error', keys: ['a'], argv: [T0, 0, ...chk('leaky', 1, 1)], expected: { error: /unknown algorithm leaky/ } },
  { name: 'a zero window is an error', keys: ['a'], argv: [T0, 0, ...chk(F, 1, 1, 1, 0)], expected: { error: /bad limit, window or hits/ } },
];

/** ARGV of one request in a batch: its charge flag, its check count, its checks. */
const req = (chargeRejected: 0 | 1, ...checks: Array<Array<string | number>>): Array<string | number> => [chargeRejected, checks.length, ...checks.flat()];

const batchCases: ScriptCase[] = [
  {
    name: 'requests are decided in order, each seeing the charges of those before it',
    keys: ['a', 'a', 'a'],
    argv: [T0, ...req(0, chk(F, 2, 1)), ...req(0, chk(F, 2, 1)), ...req(0, chk(F, 2, 1))],
    //        now  charged admitted remaining reset    uncharged: remaining reset window
    expected: [T0, 1, 1, 1, W, 2, 0, 1000, 1, 1, 0, W, 1, W, 1000, 0, 0, 0, W, 0, W, 1000],
    state: { a: { w: '1000', c: '2' } },
    pttl: { a: W },
  },
  {
    name: 'a rejected request charges nothing, and the next one in the batch does not see it',
    setup: { b: { w: '1000', c: '1' } },
    keys: ['a', 'b', 'a'],
    argv: [T0, ...req(0, chk(F, 5, 1), chk(F, 1, 1)), ...req(0, chk(F, 5, 1))],
    expected: [T0, 0, 1, 5, 0, 5, 0, 1000, 0, 0, W, 0, W, 1000, 1, 1, 4, W, 5, 0, 1000],
    state: { a: { w: '1000', c: '1' }, b: { w: '1000', c: '1' } },
  },
  {
    name: 'requests of a batch keep their own counting (one all-or-nothing, one charging rejected hits)',
    setup: { a: { w: '1000', c: '2' } },
    keys: ['a', 'a'],
    argv: [T0, ...req(1, chk(F, 2, 1)), ...req(0, chk(F, 5, 1))],
    expected: [T0, 1, 0, 0, W, 0, W, 1000, 1, 1, 1, W, 2, W, 1000],
    state: { a: { w: '1000', c: '4' } },
  },
  {
    name: 'a sliding window charged by several requests is written once, with every hit',
    keys: ['a', 'a'],
    argv: [T0 + 10_000, ...req(0, chk(S, 3, 1)), ...req(0, chk(S, 3, 2))],
    expected: [T0 + 10_000, 1, 1, 2, W, 3, 0, T0 + 10_000, 1, 1, 0, W, 2, W, T0 + 10_000],
    state: { a: sw([3, T0 + 10_000, T0 + 10_000]) },
    pttl: { a: W },
  },
  { name: 'an empty batch (the probe) answers the time only', keys: [], argv: [T0], expected: [T0] },
  {
    name: 'keys left over after the last request are an error',
    keys: ['a', 'b'],
    argv: [T0, ...req(0, chk(F, 5, 1))],
    expected: { error: /sluice decide: 2 keys given, the requests have 1 checks/ },
  },
];

const refundCases: ScriptCase[] = [
  {
    name: 'sliding: takes back hits from the sub-window the instant they were charged at falls in',
    setup: { a: sw([2, T0 - 30_000, T0 - 30_000], [5, T0, T0 + 2_000]) },
    keys: ['a'],
    argv: ref(S, T0 + 1_000, 3),
    expected: 1,
    state: { a: sw([2, T0 - 30_000, T0 - 30_000], [2, T0, T0 + 2_000]) },
  },
  {
    name: 'sliding: an emptied sub-window is dropped',
    setup: { a: sw([2, T0 - 30_000, T0 - 30_000], [3, T0, T0]) },
    keys: ['a'],
    argv: ref(S, T0, 3),
    expected: 1,
    state: { a: sw([2, T0 - 30_000, T0 - 30_000]) },
  },
  {
    name: 'sliding: once their sub-window has left the state there is nothing to take back',
    setup: { a: sw([1, T0 + W, T0 + W]) },
    keys: ['a'],
    argv: ref(S, T0, 3),
    expected: 0,
    state: { a: sw([1, T0 + W, T0 + W]) },
  },
  {
    name: 'sliding: never goes below zero, and an emptied state is deleted',
    setup: { a: sw([1, T0, T0]) },
    keys: ['a'],
    argv: ref(S, T0, 3),
    expected: 1,
    state: { a: null },
  },
  {
    name: 'fixed: takes back from the same window',
    setup: { a: { w: '1000', c: '4' } },
    keys: ['a', 'a'],
    argv: [...ref(F, 1000, 1), ...ref(F, 1000, 2)],
    expected: 2,
    state: { a: { w: '1000', c: '1' } },
  },
  {
    name: 'fixed: a rolled window is left alone',
    setup: { a: { w: '1001', c: '4' } },
    keys: ['a'],
    argv: ref(F, 1000, 2),
    expected: 0,
    state: { a: { w: '1001', c: '4' } },
  },
  { name: 'a missing counter is not created', keys: ['a'], argv: ref(F, 1000, 2), expected: 0, state: { a: null } },
  {
    name: 'zero hits change nothing',
    setup: { a: { w: '1000', c: '4' } },
    keys: ['a'],
    argv: ref(F, 1000, 0),
    expected: 0,
    state: { a: { w: '1000', c: '4' } },
  },
  {
    name: 'log: takes back hits from the instant they were logged at',
    setup: { a: log([T0 - 1_000, 1], [T0, 3]) },
    keys: ['a'],
    argv: ref(L, T0, 2, 5),
    expected: 1,
    state: { a: log([T0 - 1_000, 1], [T0, 1]) },
  },
  {
    name: 'log: an entry taken back to zero is deleted, and with it an emptied log',
    setup: { a: log([T0, 2]) },
    keys: ['a'],
    argv: ref(L, T0, 3, 5),
    expected: 1,
    state: { a: null },
  },
  {
    name: 'log: an instant no longer in the log is left alone',
    setup: { a: log([T0 + 1_000, 2]) },
    keys: ['a'],
    argv: ref(L, T0, 2, 5),
    expected: 0,
    state: { a: log([T0 + 1_000, 2]) },
  },
  {
    name: 'bucket: takes back the whole charge when nothing charged the bucket since',
    setup: { a: { t: String(T0), d: '180000', l: '6' } },
    keys: ['a'],
    argv: ref(G, T0, 2, 6),
    expected: 1,
    state: { a: { t: String(T0), d: '60000', l: '6' } },
  },
  {
    name: 'bucket: takes back only what of the charge has not drained when the bucket was charged later',
    setup: { a: { t: String(T0 + 5_000), d: '200000', l: '6' } },
    keys: ['a'],
    // 2 hits = 120000 units, of which 5000 ms × 6 = 30000 have drained since.
    argv: ref(G, T0, 2, 6),
    expected: 1,
    state: { a: { t: String(T0 + 5_000), d: '110000', l: '6' } },
  },
  {
    name: 'bucket: nothing once the charge has drained',
    setup: { a: { t: String(T0 + 20_000), d: '60000' } },
    keys: ['a'],
    argv: ref(G, T0, 2, 6),
    expected: 0,
    state: { a: { t: String(T0 + 20_000), d: '60000' } },
  },
  { name: 'a wrong argument count is an error', keys: ['a'], argv: [F, 1000, 2], expected: { error: /sluice refund: 1 keys need 5 arguments, got 3/ } },
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
    for (const [name, value] of Object.entries(c.setup ?? {})) {
      await redis.set(key(name), Buffer.isBuffer(value) ? value : encodeFields(value));
    }
    const call = redis.eval(text, c.keys.length, ...c.keys.map(key), ...c.argv);
    if (typeof c.expected === 'object' && 'error' in c.expected) {
      await expect(call).rejects.toThrow(c.expected.error);
      return;
    }
    expect(await call).toEqual(c.expected);
    for (const [name, value] of Object.entries(c.state ?? {})) {
      if (value === null) expect(await redis.exists(key(name))).toBe(0);
      else if (Buffer.isBuffer(value)) expect(await redis.getBuffer(key(name))).toEqual(value);
      else expect(decodeFields(await redis.getBuffer(key(name)), value)).toEqual(value);
    }
    for (const [name, ttl] of Object.entries(c.pttl ?? {})) {
      const pttl = await redis.pttl(key(name));
      expect(pttl).toBeLessThanOrEqual(ttl);
      expect(pttl).toBeGreaterThan(ttl - 1_000);
    }
  };

  describe('decide.lua', () => {
    // Each case is one request: decide.lua's ARGV is `now`, then per request its charge flag, its
    // check count and its checks; the cases above write `now, charge flag, checks`.
    it.each(decideCases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
      const argv = c.raw === true ? c.argv : specLayout([c.argv[0]!, c.argv[1]!, c.keys.length, ...c.argv.slice(2)]);
      await runCase(scripts.decide.text, { ...c, argv });
    });

    it.each(batchCases.map((c) => [c.name, c] as const))('batch: %s', async (_name, c) => {
      await runCase(scripts.decide.text, c.raw === true ? c : { ...c, argv: specLayout(c.argv) });
    });

    it('reads Redis TIME when no now is passed, and expires at the exact instant the algorithm gives', async () => {
      const key = `${uniquePrefix()}a`;
      const before = Date.now();
      const reply = (await redis.eval(scripts.decide.text, 1, key, ...specLayout(['', 0, 1, ...chk(S, 5, 1)]))) as number[];
      const now = reply[0]!;
      expect(now).toBeGreaterThanOrEqual(before - 1_000);
      expect(now).toBeLessThanOrEqual(Date.now() + 1_000);
      expect(reply.slice(1)).toEqual([1, 1, 4, W, 5, 0, now]);
      expect(await redis.call('PEXPIRETIME', key)).toBe(now + W);
      expect(await redis.getBuffer(key)).toEqual(sw([1, now, now]));

      const fixedKey = `${uniquePrefix()}f`;
      const fixed = (await redis.eval(scripts.decide.text, 1, fixedKey, ...specLayout(['', 0, 1, ...chk(F, 5, 1)]))) as number[];
      expect(await redis.call('PEXPIRETIME', fixedKey)).toBe((Math.floor(fixed[0]! / W) + 1) * W);

      const logKey = `${uniquePrefix()}l`;
      const logged = (await redis.eval(scripts.decide.text, 1, logKey, ...specLayout(['', 0, 1, ...chk(L, 5, 1)]))) as number[];
      expect(await redis.call('PEXPIRETIME', logKey)).toBe(logged[0]! + W);
      expect(await redis.getBuffer(logKey)).toEqual(log([logged[0]!, 1]));

      const bucketKey = `${uniquePrefix()}g`;
      const bucket = (await redis.eval(scripts.decide.text, 1, bucketKey, ...specLayout(['', 0, 1, ...chk(G, 7, 1)]))) as number[];
      // Full again once 60000 units drain at 7 a millisecond: ⌈8571.4⌉ ms.
      expect(await redis.call('PEXPIRETIME', bucketKey)).toBe(bucket[0]! + 8_572);
    });

    it('has a Lua twin for every algorithm of the TypeScript registry', async () => {
      for (const name of Object.keys(ALGORITHMS)) {
        const reply = (await redis.eval(scripts.decide.text, 1, `${uniquePrefix()}a`, ...specLayout([T0, 0, 1, ...chk(name, 1, 1)]))) as number[];
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
      await redis.eval(scripts.decide.text, 1, key, ...specLayout([T0, 0, 1, ...chk(F, 5, 3)]));
      await redis.eval(scripts.refund.text, 1, key, ...ref(F, 1000, 3, 5));
      expect(decodeFields(await redis.getBuffer(key), { w: '', c: '' })).toEqual({ w: '1000', c: '0' });
      expect(await redis.pttl(key)).toBeGreaterThan(W - 1_000);

      const logKey = `${uniquePrefix()}l`;
      await redis.eval(scripts.decide.text, 1, logKey, ...specLayout([T0, 0, 1, ...chk(L, 5, 3)]));
      await redis.eval(scripts.refund.text, 1, logKey, ...ref(L, T0, 1, 5));
      expect(await redis.getBuffer(logKey)).toEqual(log([T0, 2]));
      expect(await redis.pttl(logKey)).toBeGreaterThan(W - 1_000);
    });
  });

  describe('script text', () => {
    // Pinned so that any change to the Lua is deliberate: update these with the edit, and bump
    // the key version in counter-key.ts if the stored state changes shape.
    it('pins the SHA1 of each assembled script', () => {
      expect({ decide: scripts.decide.sha1, refund: scripts.refund.sha1 }).toEqual({
        decide: 'ba6e60b2506ceff034d10222c874b6dd30a92500',
        refund: '634c8fbe7ba7070c976eee0abbc63011bdd84a75',
      });
      expect(createHash('sha1').update(scripts.decide.text).digest('hex')).toBe(scripts.decide.sha1);
    });

    it('resolves every include, once each', () => {
      for (const script of [scripts.decide, scripts.refund]) {
        expect(script.text).not.toMatch(/^--@include/m);
        expect(script.text.match(/^local function format_number/gm)).toHaveLength(1);
        expect(script.text.match(/^local ALGORITHMS = setmetatable/gm)).toHaveLength(1);
      }
      expect(assembleScript(findLuaDir(), 'decide.lua')).toBe(scripts.decide.text);
    });
  });

  describe('the Lua twins decide exactly as the TypeScript algorithms', () => {
    // Random requests at random instants (the clock also steps back now and then), each decided by
    // a MemoryStore and by decide.lua on the same clock; every outcome must be identical.
    const ALGORITHM_NAMES = Object.keys(ALGORITHMS) as AlgorithmName[];

    it.each(ALGORITHM_NAMES.flatMap((a) => [[a, false] as const, [a, true] as const]))(
      '%s (chargeRejectedHits: %s)',
      async (algorithm, chargeRejectedHits) => {
        const clock = new ManualClock(T0);
        const memory = new MemoryStore(clock);
        const store = await availableStore(singleOptions(server), clock);
        const random = mulberry32(algorithm.length * 7919 + (chargeRejectedHits ? 1 : 0));
        const pick = (n: number): number => Math.floor(random() * n);
        const prefix = uniquePrefix();
        const seen = { admitted: 0, rejected: 0 };
        try {
          for (let i = 0; i < 400; i++) {
            const step = random() < 0.05 ? -pick(3_000) : pick(random() < 0.2 ? 30_000 : 2_000);
            clock.set(Math.max(0, clock.nowMs() + step));
            const checks: LimitCheck[] = Array.from({ length: 1 + pick(3) }, () => {
              const limit = [0, 1, 3, 7, 10][pick(5)]!;
              const windowMs = [1_000, 7_000, W][pick(3)]!;
              return {
                // Few keys, so requests meet on counters; a key's window and limit stay fixed.
                key: `${prefix}${algorithm}:${limit}:${windowMs}:${pick(2)}`,
                algorithm,
                limit,
                windowMs,
                hits: pick(5) === 0 ? 0 : 1 + pick(limit + 2),
                enforced: pick(6) !== 0,
                ...(algorithm === 'token_bucket' && pick(2) === 0 ? { burst: 1 + pick(12) } : {}),
              };
            });
            // A bucket's burst is part of its limit: one value per key.
            const bursts = new Map<string, number | undefined>();
            const fixed = checks.map((c) => {
              if (!bursts.has(c.key)) bursts.set(c.key, c.burst);
              const burst = bursts.get(c.key);
              const { burst: _drop, ...rest } = c;
              return burst === undefined ? rest : { ...rest, burst };
            });
            const options = { chargeRejectedHits };
            const expected = await memory.decide(fixed, options);
            const actual = await store.decide(fixed, options);
            expect([i, actual]).toEqual([i, expected]);
            for (const outcome of expected) seen[outcome.admitted ? 'admitted' : 'rejected']++;
          }
          // The sequence really exercised both answers.
          expect(seen.admitted).toBeGreaterThan(100);
          expect(seen.rejected).toBeGreaterThan(100);
        } finally {
          await memory.close();
          await store.close();
        }
      },
    );
  });

  describe('a batch decides exactly as the same requests one after the other', () => {
    // Requests sent together in one event-loop turn share one decide.lua call. Random requests of
    // every algorithm on few counters, in turns of 1 to 30: each turn is decided by the Redis store
    // (one script call) and by a MemoryStore one request after the other, in the same order.
    it('for random turns of requests on shared counters', async () => {
      const clock = new ManualClock(T0);
      const memory = new MemoryStore(clock);
      const store = await availableStore(singleOptions(server), clock);
      const random = mulberry32(424242);
      const pick = (n: number): number => Math.floor(random() * n);
      const prefix = uniquePrefix();
      const algorithms = Object.keys(ALGORITHMS) as AlgorithmName[];
      const calls = await scriptCallsOf(redis);
      let requests = 0;
      try {
        for (let turn = 0; turn < 60; turn++) {
          clock.set(clock.nowMs() + pick(random() < 0.2 ? 20_000 : 1_500));
          const batch = Array.from({ length: 1 + pick(30) }, () =>
            Array.from({ length: 1 + pick(3) }, (): LimitCheck => {
              const algorithm = algorithms[pick(algorithms.length)]!;
              const limit = [1, 3, 7][pick(3)]!;
              return {
                key: `${prefix}${algorithm}:${limit}:${pick(3)}`,
                algorithm,
                limit,
                windowMs: 7_000,
                hits: pick(5) === 0 ? 0 : 1 + pick(3),
                enforced: pick(6) !== 0,
              };
            }),
          );
          const chargeRejectedHits = pick(4) === 0;
          const expected = [];
          for (const checks of batch) expected.push(await memory.decide(checks, { chargeRejectedHits }));
          const actual = await Promise.all(batch.map((checks) => store.decide(checks, { chargeRejectedHits })));
          expect([turn, actual]).toEqual([turn, expected]);
          requests += batch.length;
        }
        // One script call per turn, not per request.
        expect((await scriptCallsOf(redis)) - calls).toBe(60);
        expect(requests).toBeGreaterThan(500);
      } finally {
        await memory.close();
        await store.close();
      }
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

/** A small seeded PRNG (mulberry32): the same sequence on every run. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** EVALSHA and EVAL calls Redis has run so far. */
async function scriptCallsOf(redis: Redis): Promise<number> {
  const info = await redis.info('commandstats');
  let total = 0;
  for (const name of ['eval', 'evalsha']) {
    const match = new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(info);
    if (match) total += Number(match[1]);
  }
  return total;
}

function noscriptErrors(info: string): number {
  const match = /^errorstat_NOSCRIPT:count=(\d+)/m.exec(info);
  return match ? Number(match[1]) : 0;
}
