import type { LimitCheck } from '../../../src/store/counter-store';
import { DecideBatcher } from '../../../src/store/redis/decide-batcher';

type Arg = string | number;

/** One check as decide.lua reads it back from a batch: its key and its spec's 6 fields. */
interface SentCheck {
  readonly key: string;
  readonly fields: readonly Arg[];
}

/** Reads a batch the way lua/decide.lua does: the keys, `now`, the specs, then per request its flag, count and spec indexes. */
function readBatch(numKeys: number, keysThenArgs: readonly Arg[]): { specs: number; requests: Array<{ charge: Arg; checks: SentCheck[] }> } {
  const keys = keysThenArgs.slice(0, numKeys) as string[];
  const argv = keysThenArgs.slice(numKeys);
  const specCount = Number(argv[1]);
  const specs = Array.from({ length: specCount }, (_, s) => argv.slice(2 + 6 * s, 8 + 6 * s));
  const requests: Array<{ charge: Arg; checks: SentCheck[] }> = [];
  let at = 2 + 6 * specCount;
  let k = 0;
  while (at < argv.length) {
    const charge = argv[at]!;
    const count = Number(argv[at + 1]);
    const checks: SentCheck[] = [];
    for (let i = 0; i < count; i++) {
      const index = Number(argv[at + 2 + i]);
      expect(index).toBeGreaterThanOrEqual(1);
      expect(index).toBeLessThanOrEqual(specCount);
      checks.push({ key: keys[k++]!, fields: specs[index - 1]! });
    }
    requests.push({ charge, checks });
    at += 2 + count;
  }
  expect(k).toBe(numKeys);
  return { specs: specCount, requests };
}

const fieldsOf = (c: LimitCheck): Arg[] => [c.algorithm, c.limit, c.windowMs, c.hits, c.enforced ? '1' : '0', c.burst ?? ''];

function check(i: number, overrides: Partial<LimitCheck> = {}): LimitCheck {
  return { key: `k${i}`, algorithm: 'fixed_window', limit: 10, windowMs: 60_000, hits: 1, enforced: true, ...overrides };
}

describe('DecideBatcher', () => {
  it('sends each distinct spec once and every check as its key and spec index, in arrival order', async () => {
    const sent: Array<[number, readonly Arg[]]> = [];
    const batcher = new DecideBatcher(
      (numKeys, keysThenArgs) => {
        sent.push([numKeys, keysThenArgs]);
        const reply = [0];
        for (const request of readBatch(numKeys, keysThenArgs).requests) reply.push(1, ...request.checks.flatMap(() => [1, 9, 0, 10, 0, 7]));
        return Promise.resolve(reply);
      },
      () => '',
    );
    const requests: LimitCheck[][] = [
      [check(1), check(2, { enforced: false }), check(3, { algorithm: 'token_bucket', burst: 20 })],
      [check(4), check(5, { hits: 0 }), check(6, { algorithm: 'token_bucket', burst: 20 })],
      [check(7, { algorithm: 'token_bucket' }), check(8, { windowMs: 1_000 })],
    ];
    const replies = await Promise.all(requests.map((checks, r) => batcher.submit(undefined, checks, r === 1)));
    expect(sent).toHaveLength(1);
    const batch = readBatch(...sent[0]!);
    // fixed, fixed shadow, bucket 20, fixed 0 hits, bucket (no burst), fixed 1 s: 6 specs for 8 checks.
    expect(batch.specs).toBe(6);
    expect(batch.requests.map((r) => r.charge)).toEqual(['0', '1', '0']);
    expect(batch.requests.map((r) => r.checks)).toEqual(requests.map((checks) => checks.map((c) => ({ key: c.key, fields: fieldsOf(c) }))));
    expect(replies.map((r) => r.at)).toEqual([1, 1 + 19, 1 + 19 + 19]);
  });

  it('keeps every check with its own spec when a batch has more distinct specs than it scans', async () => {
    let batch: ReturnType<typeof readBatch> | undefined;
    const batcher = new DecideBatcher(
      (numKeys, keysThenArgs) => {
        batch = readBatch(numKeys, keysThenArgs);
        return Promise.resolve([0, ...batch.requests.flatMap((r) => [1, ...r.checks.flatMap(() => [1, 0, 0, 0, 0, 0])])]);
      },
      () => '',
    );
    // 40 distinct limits, each used by two requests: 40 specs for 80 checks.
    const requests = Array.from({ length: 80 }, (_, i) => [check(i, { limit: 1 + (i % 40) })]);
    await Promise.all(requests.map((checks) => batcher.submit(undefined, checks, false)));
    expect(batch?.specs).toBe(40);
    expect(batch?.requests.map((r) => r.checks)).toEqual(requests.map((checks) => checks.map((c) => ({ key: c.key, fields: fieldsOf(c) }))));
  });
});
