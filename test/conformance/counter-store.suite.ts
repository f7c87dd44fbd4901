import type { AlgorithmName } from '../../src/config/types';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../../src/store/counter-store';
import { ManualClock } from '../../src/util/clock';

/**
 * The contract every CounterStore keeps, with exact numbers at exact instants. Each store runs
 * this one suite: `describeCounterStore('memory', (clock) => new MemoryStore(clock))`.
 * A store built by the factory must read time from the given clock.
 */
export function describeCounterStore(
  name: string,
  createStore: (clock: ManualClock) => CounterStore | Promise<CounterStore>,
): void {
  const MINUTE = 60_000;
  // A window start far from zero, so epoch alignment is exercised.
  const T0 = 1_000 * MINUTE;
  const ALL_OR_NOTHING: DecideOptions = { chargeRejectedHits: false };
  const CHARGE_REJECTED: DecideOptions = { chargeRejectedHits: true };

  describe(`CounterStore conformance: ${name}`, () => {
    let clock: ManualClock;
    let store: CounterStore;
    let seq = 0;

    beforeEach(async () => {
      clock = new ManualClock(T0);
      store = await createStore(clock);
      seq++;
    });

    afterEach(async () => {
      await store.close();
    });

    const check = (
      key: string,
      algorithm: AlgorithmName,
      limit: number,
      hits: number,
      extra: Partial<LimitCheck> = {},
    ): LimitCheck => ({ key: `${name}-${seq}-${key}`, algorithm, limit, windowMs: MINUTE, hits, enforced: true, ...extra });

    const decide = async (checks: LimitCheck[], options = ALL_OR_NOTHING): Promise<LimitOutcome[]> => [
      ...(await store.decide(checks, options)),
    ];
    const one = async (c: LimitCheck, options = ALL_OR_NOTHING): Promise<LimitOutcome> => (await decide([c], options))[0]!;
    const at = (offsetMs: number): void => clock.set(T0 + offsetMs);

    const ALL_ALGORITHMS: AlgorithmName[] = ['sliding_window', 'fixed_window', 'sliding_log', 'token_bucket'];

    describe.each<AlgorithmName>(ALL_ALGORITHMS)('%s', (algorithm) => {
      it('admits up to the limit, counting remaining down, then rejects without charging', async () => {
        const remaining: number[] = [];
        for (let i = 0; i < 3; i++) remaining.push((await one(check('a', algorithm, 3, 1))).remaining);
        expect(remaining).toEqual([2, 1, 0]);
        const rejected = await one(check('a', algorithm, 3, 1));
        // Fixed: the window ends. Log and sliding window: the three hits (one instant) leave the
        // window together. Bucket: one token refills every 20 s.
        const retry = { fixed_window: MINUTE, sliding_window: MINUTE, sliding_log: MINUTE, token_bucket: 20_000 }[algorithm];
        expect(rejected).toEqual({ admitted: false, remaining: 0, resetMs: retry });
      });

      it('rejects a multi-hit request that would cross the limit, charges nothing, and says what is left', async () => {
        await one(check('a', algorithm, 10, 8));
        const rejected = await one(check('a', algorithm, 10, 5));
        expect(rejected.admitted).toBe(false);
        expect(rejected.remaining).toBe(2);
        const fits = await one(check('a', algorithm, 10, 2));
        expect(fits).toMatchObject({ admitted: true, remaining: 0 });
      });

      it('charges nothing for a check-only call (0 hits) and rejects it once the limit is used up', async () => {
        expect(await one(check('a', algorithm, 2, 0))).toEqual({ admitted: true, remaining: 2, resetMs: 0 });
        await one(check('a', algorithm, 2, 1));
        expect(await one(check('a', algorithm, 2, 0))).toMatchObject({ admitted: true, remaining: 1 });
        await one(check('a', algorithm, 2, 1));
        expect(await one(check('a', algorithm, 2, 0))).toMatchObject({ admitted: false, remaining: 0 });
      });

      it('rejects everything under a limit of 0', async () => {
        expect(await one(check('a', algorithm, 0, 1))).toEqual({ admitted: false, remaining: 0, resetMs: MINUTE });
      });

      it('rejects a cost above the limit with a one-window retry, and charges nothing', async () => {
        expect(await one(check('a', algorithm, 5, 6))).toEqual({ admitted: false, remaining: 5, resetMs: MINUTE });
        expect(await one(check('a', algorithm, 5, 5))).toMatchObject({ admitted: true, remaining: 0 });
      });

      it('decides all checks of a request together: one rejection charges none of them', async () => {
        await one(check('b', algorithm, 1, 1));
        const outcomes = await decide([check('a', algorithm, 5, 1), check('b', algorithm, 1, 1)]);
        expect(outcomes.map((o) => o.admitted)).toEqual([true, false]);
        expect(outcomes[0]!.remaining).toBe(5);
        expect(await one(check('a', algorithm, 5, 0))).toMatchObject({ remaining: 5 });
      });

      it('lets a shadow (not enforced) check fail without blocking, and does not charge it', async () => {
        await one(check('s', algorithm, 1, 1));
        const outcomes = await decide([check('a', algorithm, 5, 1), check('s', algorithm, 1, 1, { enforced: false })]);
        expect(outcomes.map((o) => o.admitted)).toEqual([true, false]);
        expect(outcomes[0]!.remaining).toBe(4);
        expect(await one(check('s', algorithm, 1, 0))).toMatchObject({ admitted: false, remaining: 0 });
      });

      it('counts two checks on one counter in the same request against each other', async () => {
        await one(check('a', algorithm, 3, 2));
        const outcomes = await decide([check('a', algorithm, 3, 1), check('a', algorithm, 3, 1)]);
        expect(outcomes.map((o) => o.admitted)).toEqual([true, false]);
        expect(await one(check('a', algorithm, 3, 0))).toMatchObject({ admitted: true, remaining: 1 });
      });

      it('counts repeated counters against each other in a request of many checks, and charges each once per check', async () => {
        // 40 checks (more than a store finds by scanning pairs) over 3 counters, in turn.
        const keys = ['a', 'b', 'c'];
        const outcomes = await decide(Array.from({ length: 40 }, (_, i) => check(keys[i % 3]!, algorithm, 100, 1)));
        expect(outcomes.map((o) => [o.admitted, o.remaining])).toEqual(outcomes.map((_, i) => [true, 100 - (Math.floor(i / 3) + 1)]));
        const left = await decide(keys.map((k) => check(k, algorithm, 100, 0)));
        expect(left.map((o) => o.remaining)).toEqual([86, 87, 87]);
      });

      it('with chargeRejectedHits counts every hit, over-limit ones too, as the reference does', async () => {
        await one(check('b', algorithm, 1, 1), CHARGE_REJECTED);
        const outcomes = await decide([check('a', algorithm, 5, 1), check('b', algorithm, 1, 1)], CHARGE_REJECTED);
        expect(outcomes.map((o) => [o.admitted, o.remaining])).toEqual([
          [true, 4],
          [false, 0],
        ]);
        // b now holds 2 hits against a limit of 1; a check-only call is over, as in the reference.
        expect(await one(check('b', algorithm, 1, 0), CHARGE_REJECTED)).toMatchObject({ admitted: false });
        expect(await one(check('a', algorithm, 5, 0), CHARGE_REJECTED)).toMatchObject({ admitted: true, remaining: 4 });
      });

      it('never forgets hits when the clock steps backwards', async () => {
        at(MINUTE + 1_000);
        await one(check('a', algorithm, 2, 2));
        at(MINUTE - 1_000);
        expect(await one(check('a', algorithm, 2, 1))).toMatchObject({ admitted: false, remaining: 0 });
      });

      it('keeps separate counters for separate keys', async () => {
        await one(check('a', algorithm, 1, 1));
        expect(await one(check('b', algorithm, 1, 1))).toMatchObject({ admitted: true });
      });

      it('reports what each admitting check would leave when a later check rejects the request', async () => {
        await one(check('c', algorithm, 1, 1));
        const outcomes = await decide([check('a', algorithm, 5, 2), check('b', algorithm, 3, 1), check('c', algorithm, 1, 1)]);
        expect(outcomes).toEqual([
          { admitted: true, remaining: 5, resetMs: 0 },
          { admitted: true, remaining: 3, resetMs: 0 },
          { admitted: false, remaining: 0, resetMs: MINUTE },
        ]);
        expect(await one(check('a', algorithm, 5, 0))).toEqual({ admitted: true, remaining: 5, resetMs: 0 });
        expect(await one(check('b', algorithm, 3, 0))).toEqual({ admitted: true, remaining: 3, resetMs: 0 });
      });

      it('never lets repeated rejected requests consume the quota of their other checks', async () => {
        await one(check('b', algorithm, 1, 1));
        for (let i = 0; i < 5; i++) {
          const outcomes = await decide([check('a', algorithm, 3, 1), check('b', algorithm, 1, 1)]);
          expect(outcomes.map((o) => o.admitted)).toEqual([true, false]);
        }
        expect(await one(check('a', algorithm, 3, 3))).toMatchObject({ admitted: true, remaining: 0 });
      });

      it('admits a request over many counters together, then rejects it together', async () => {
        const many = (hits: number): LimitCheck[] => ['a', 'b', 'c', 'd', 'e', 'f'].map((k) => check(k, algorithm, 1, hits));
        expect((await decide(many(1))).map((o) => [o.admitted, o.remaining])).toEqual(many(1).map(() => [true, 0]));
        expect((await decide(many(1))).map((o) => o.admitted)).toEqual(many(1).map(() => false));
        expect((await decide(many(0))).map((o) => o.admitted)).toEqual(many(0).map(() => false));
      });
    });

    describe('fixed_window', () => {
      it('resets at the epoch-aligned window boundary and reports the time to it', async () => {
        at(10_000);
        expect(await one(check('a', 'fixed_window', 2, 2))).toEqual({ admitted: true, remaining: 0, resetMs: 50_000 });
        at(59_999);
        expect(await one(check('a', 'fixed_window', 2, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1 });
        at(MINUTE);
        expect(await one(check('a', 'fixed_window', 2, 1))).toEqual({ admitted: true, remaining: 1, resetMs: MINUTE });
      });

      it('reports the time to the window end even with chargeRejectedHits', async () => {
        at(34_000);
        expect(await one(check('a', 'fixed_window', 1, 2), CHARGE_REJECTED)).toEqual({
          admitted: false,
          remaining: 0,
          resetMs: 26_000,
        });
      });
    });

    describe('sliding_window', () => {
      // A minute cut into 20 sub-windows of 3 s; T0 is a sub-window start.
      const SW = 'sliding_window';

      it('spreads the hits of the sub-window the window starts in evenly between its first and last hit', async () => {
        await one(check('a', SW, 10, 1));
        at(2_000);
        expect(await one(check('a', SW, 10, 9))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        // The window now starts 1 s into that sub-window: 1 + 9 × (2 − 1)/2 = 5.5 hits still count.
        at(MINUTE + 1_000);
        expect(await one(check('a', SW, 10, 4))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        // 9.5 used; one more fits at 9: 5.5 must fall to 5, i.e. 1 + 9 × (2000 − c)/2000 ≤ 5 ⇒ c ≥ 1112 ms.
        expect(await one(check('a', SW, 10, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 112 });
        at(MINUTE + 1_111);
        expect(await one(check('a', SW, 10, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1 });
        at(MINUTE + 1_112);
        expect(await one(check('a', SW, 10, 1))).toMatchObject({ admitted: true, remaining: 0 });
      });

      it('charges hits into the sub-window now falls in, and opens a new one past its end', async () => {
        await one(check('a', SW, 3, 1));
        at(2_999);
        await one(check('a', SW, 3, 1));
        at(3_000);
        await one(check('a', SW, 3, 1));
        // The first sub-window holds 2 hits spread over 0–2999 ms, the second 1 hit at 3000 ms.
        // 1.5 s in: 1 + 1 × 1499/2999 + 1 ≈ 2.5 used; its last hit keeps it above 1 until it leaves.
        at(MINUTE + 1_500);
        expect(await one(check('a', SW, 3, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1_499 });
        at(MINUTE + 2_998);
        expect(await one(check('a', SW, 3, 1))).toMatchObject({ admitted: false });
        at(MINUTE + 2_999);
        expect(await one(check('a', SW, 3, 1))).toEqual({ admitted: true, remaining: 1, resetMs: MINUTE });
      });

      it('does not let a burst at a window boundary pass twice the limit: hits of one instant leave together', async () => {
        at(MINUTE - 1);
        expect(await one(check('a', SW, 10, 10))).toMatchObject({ admitted: true });
        at(MINUTE);
        expect(await one(check('a', SW, 10, 1))).toEqual({ admitted: false, remaining: 0, resetMs: MINUTE - 1 });
        at(2 * MINUTE - 2);
        expect(await one(check('a', SW, 10, 1))).toMatchObject({ admitted: false });
        at(2 * MINUTE - 1);
        expect(await one(check('a', SW, 10, 10))).toMatchObject({ admitted: true, remaining: 0 });
      });

      it('makes a request of several hits wait for the sub-windows ahead of the one it can fit in', async () => {
        await one(check('a', SW, 10, 4));
        at(10_000);
        await one(check('a', SW, 10, 6));
        // 7 hits need the 4 of 0 s and 3 of the 6 of 10 s gone: the 6 leave together at 70 s.
        at(MINUTE);
        expect(await one(check('a', SW, 10, 7))).toEqual({ admitted: false, remaining: 4, resetMs: 10_000 });
        at(MINUTE + 10_000);
        expect(await one(check('a', SW, 10, 7))).toMatchObject({ admitted: true, remaining: 3 });
      });

      it('with chargeRejectedHits counts rejected hits until they leave the window', async () => {
        expect(await one(check('a', SW, 2, 3), CHARGE_REJECTED)).toEqual({ admitted: false, remaining: 0, resetMs: MINUTE });
        at(MINUTE - 1);
        expect(await one(check('a', SW, 2, 1), CHARGE_REJECTED)).toMatchObject({ admitted: false, remaining: 0 });
        at(2 * MINUTE);
        expect(await one(check('a', SW, 2, 1), CHARGE_REJECTED)).toEqual({ admitted: true, remaining: 1, resetMs: MINUTE });
      });
    });
    it('decides limits of every algorithm in one request, all or nothing', async () => {
      await one(check('tb', 'token_bucket', 1, 1));
      const request = (hits: number): LimitCheck[] => [
        check('sw', 'sliding_window', 5, hits),
        check('fw', 'fixed_window', 5, hits),
        check('sl', 'sliding_log', 5, hits),
        check('tb', 'token_bucket', 1, hits),
      ];
      const rejected = await decide(request(1));
      expect(rejected.map((o) => [o.admitted, o.remaining])).toEqual([
        [true, 5],
        [true, 5],
        [true, 5],
        [false, 0],
      ]);
      // Nothing was charged: the three that admitted still have all 5.
      const peek = await decide(request(0).slice(0, 3));
      expect(peek.map((o) => o.remaining)).toEqual([5, 5, 5]);
      const admitted = await decide(request(1).slice(0, 3));
      expect(admitted.map((o) => [o.admitted, o.remaining])).toEqual([
        [true, 4],
        [true, 4],
        [true, 4],
      ]);
    });

    describe('sliding_log', () => {
      const L = 'sliding_log';

      it('counts exactly the hits of the last window, entry by entry', async () => {
        expect(await one(check('a', L, 3, 2))).toEqual({ admitted: true, remaining: 1, resetMs: MINUTE });
        at(30_000);
        expect(await one(check('a', L, 3, 1))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        at(MINUTE - 1);
        // The two hits of t = 0 leave the window at 60 s: one millisecond to go.
        expect(await one(check('a', L, 3, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1 });
        at(MINUTE);
        expect(await one(check('a', L, 3, 2))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        // Left: 1 hit of 30 s and 2 of 60 s. One more fits when the 30 s hit leaves, at 90 s.
        expect(await one(check('a', L, 3, 0))).toEqual({ admitted: false, remaining: 0, resetMs: 30_000 });
      });

      it('makes a request of several hits wait until enough of the oldest hits have left', async () => {
        await one(check('a', L, 5, 2));
        at(10_000);
        await one(check('a', L, 5, 3));
        at(30_000);
        // 3 hits need 3 to leave: the 2 of t = 0 (at 60 s) are not enough, the 3 of 10 s (at 70 s) are.
        expect(await one(check('a', L, 5, 3))).toEqual({ admitted: false, remaining: 0, resetMs: 40_000 });
        at(MINUTE);
        expect(await one(check('a', L, 5, 3))).toEqual({ admitted: false, remaining: 2, resetMs: 10_000 });
        at(MINUTE + 10_000);
        expect(await one(check('a', L, 5, 3))).toEqual({ admitted: true, remaining: 2, resetMs: MINUTE });
      });

      it('never passes more than the limit in any window, across a window boundary too', async () => {
        at(MINUTE - 1);
        expect(await one(check('a', L, 10, 10))).toMatchObject({ admitted: true, remaining: 0 });
        at(MINUTE);
        expect(await one(check('a', L, 10, 1))).toEqual({ admitted: false, remaining: 0, resetMs: MINUTE - 1 });
        at(2 * MINUTE - 2);
        expect(await one(check('a', L, 10, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1 });
        at(2 * MINUTE - 1);
        expect(await one(check('a', L, 10, 10))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
      });

      it('logs hits at the newest instant when the clock steps back, and keeps them a full window', async () => {
        at(MINUTE + 1_000);
        await one(check('a', L, 3, 1));
        at(MINUTE - 1_000);
        // Counted as if at 61 s: both hits leave at 121 s, 62 s from this clock's now.
        expect(await one(check('a', L, 3, 1))).toEqual({ admitted: true, remaining: 1, resetMs: 62_000 });
        at(2 * MINUTE + 999);
        expect(await one(check('a', L, 3, 0))).toEqual({ admitted: true, remaining: 1, resetMs: 1 });
        at(2 * MINUTE + 1_000);
        expect(await one(check('a', L, 3, 0))).toEqual({ admitted: true, remaining: 3, resetMs: 0 });
      });

      it('with chargeRejectedHits logs rejected hits too, deciding as if it kept all of them', async () => {
        expect(await one(check('a', L, 2, 3), CHARGE_REJECTED)).toEqual({ admitted: false, remaining: 0, resetMs: MINUTE });
        at(30_000);
        // 3 hits logged against a limit of 2: a check-only call is over, as in the reference.
        expect(await one(check('a', L, 2, 0), CHARGE_REJECTED)).toEqual({ admitted: false, remaining: 0, resetMs: 30_000 });
        expect(await one(check('a', L, 2, 1), CHARGE_REJECTED)).toEqual({ admitted: false, remaining: 0, resetMs: 30_000 });
        at(MINUTE);
        // The hits of t = 0 have left; the one of 30 s is still in.
        expect(await one(check('a', L, 2, 1), CHARGE_REJECTED)).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        expect(await one(check('a', L, 2, 0), CHARGE_REJECTED)).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
      });
    });

    describe('token_bucket', () => {
      const B = 'token_bucket';

      it('refills one token every window / limit, and says exactly when', async () => {
        expect(await one(check('a', B, 6, 6))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        expect(await one(check('a', B, 6, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 10_000 });
        at(9_999);
        expect(await one(check('a', B, 6, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1 });
        at(10_000);
        expect(await one(check('a', B, 6, 1))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        at(35_000);
        // 2.5 tokens back: 2 whole ones; full again 35 s later.
        expect(await one(check('a', B, 6, 0))).toEqual({ admitted: true, remaining: 2, resetMs: 35_000 });
      });

      it('after a reload changes the limit, counts the lesser of the hits owed and the time they had left to drain', async () => {
        // 6 a minute, all 6 taken at 0 s: full again at 60 s.
        await one(check('a', B, 6, 6));
        await one(check('b', B, 6, 6));
        at(10_000);
        // Lowered to 2 a minute: the 50 s the bucket still needed, at the new rate (not 6 hits at 2 a
        // minute, 3 minutes), so one hit fits at 30 s, within the time the counter lives anyway.
        expect(await one(check('a', B, 2, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 20_000 });
        // Raised to 60 a minute: the 6 hits owed drained in 6 s; the bucket is full.
        expect(await one(check('b', B, 60, 0))).toEqual({ admitted: true, remaining: 60, resetMs: 0 });
        at(29_999);
        expect(await one(check('a', B, 2, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1 });
        at(30_000);
        expect(await one(check('a', B, 2, 1))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
      });

      it('holds at most burst hits, smaller or larger than the limit', async () => {
        const small = { burst: 2 };
        expect(await one(check('a', B, 6, 2, small))).toEqual({ admitted: true, remaining: 0, resetMs: 20_000 });
        expect(await one(check('a', B, 6, 1, small))).toEqual({ admitted: false, remaining: 0, resetMs: 10_000 });
        at(10_000);
        expect(await one(check('a', B, 6, 1, small))).toEqual({ admitted: true, remaining: 0, resetMs: 20_000 });
        at(10 * MINUTE);
        expect(await one(check('a', B, 6, 0, small))).toEqual({ admitted: true, remaining: 2, resetMs: 0 });
        // 5 at once from a bucket of 5 refilled at 2 a minute: full again in 2.5 minutes.
        expect(await one(check('b', B, 2, 5, { burst: 5 }))).toEqual({ admitted: true, remaining: 0, resetMs: 150_000 });
      });

      it('makes a request of several hits wait until all of them fit', async () => {
        expect(await one(check('a', B, 6, 4))).toMatchObject({ admitted: true, remaining: 2 });
        expect(await one(check('a', B, 6, 3))).toEqual({ admitted: false, remaining: 2, resetMs: 10_000 });
        at(10_000);
        expect(await one(check('a', B, 6, 3))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
      });

      it('rejects a cost above the burst with a one-window retry, and charges nothing', async () => {
        expect(await one(check('a', B, 10, 4, { burst: 3 }))).toEqual({ admitted: false, remaining: 3, resetMs: MINUTE });
        expect(await one(check('a', B, 10, 3, { burst: 3 }))).toMatchObject({ admitted: true, remaining: 0 });
      });

      it('rounds a fractional refill interval up to the next whole millisecond', async () => {
        // 7 a minute: a token every 8571.43 ms.
        await one(check('a', B, 7, 7));
        expect(await one(check('a', B, 7, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 8_572 });
        at(8_571);
        expect(await one(check('a', B, 7, 1))).toEqual({ admitted: false, remaining: 0, resetMs: 1 });
        at(8_572);
        expect(await one(check('a', B, 7, 1))).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
      });

      it('stands still at the newest instant seen when the clock steps back', async () => {
        at(MINUTE);
        await one(check('a', B, 3, 3));
        at(0);
        // A token is back 20 s after 60 s: 80 s from this clock's now.
        expect(await one(check('a', B, 3, 0))).toEqual({ admitted: false, remaining: 0, resetMs: 80_000 });
      });

      it('with chargeRejectedHits charges rejected hits too, one hit past the bucket at most', async () => {
        expect(await one(check('a', B, 1, 1), CHARGE_REJECTED)).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        // Over: the debt is now 2 hits, and a hit fits once it is 0.
        expect(await one(check('a', B, 1, 1), CHARGE_REJECTED)).toEqual({ admitted: false, remaining: 0, resetMs: 2 * MINUTE });
        expect(await one(check('a', B, 1, 5), CHARGE_REJECTED)).toEqual({ admitted: false, remaining: 0, resetMs: 2 * MINUTE });
        expect(await one(check('a', B, 1, 0), CHARGE_REJECTED)).toMatchObject({ admitted: false });
        at(MINUTE);
        expect(await one(check('a', B, 1, 0), CHARGE_REJECTED)).toEqual({ admitted: true, remaining: 0, resetMs: MINUTE });
        expect(await one(check('a', B, 1, 1), CHARGE_REJECTED)).toEqual({ admitted: false, remaining: 0, resetMs: 2 * MINUTE });
      });
    });
  });
}
