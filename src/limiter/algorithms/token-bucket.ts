import { type Algorithm, type Evaluation, hitsToAdmit } from './algorithm';

/**
 * A token bucket as GCRA keeps it: not a token count refilled by a timer, but the bucket's debt
 * at the last instant it changed.
 *
 * Units are chosen so that every quantity is an integer and every operation exact in doubles
 * (JS and Lua alike): one hit costs `windowMs` units and the bucket drains `limit` units per
 * millisecond, so `limit` hits per `windowMs` refill exactly; a bucket of `burst` hits holds
 * `burst × windowMs` units (the config keeps (burst + 1) × windowMs ≤ 2^53). Textbook GCRA's
 * theoretical arrival time is `t + d / limit`.
 */
export interface TokenBucketState {
  /** Epoch ms of the last charge: the latest instant this counter has seen (never decreases). */
  readonly t: number;
  /** Debt at `t`, in units (0 = a full bucket). */
  readonly d: number;
  /** The limit `d` was charged under (units drained per ms); 0 when not known (a state from before). */
  readonly l: number;
}

/**
 * token_bucket (GCRA): `requests_per_unit` per window is the refill rate, `burst` (default
 * `requests_per_unit`) the bucket. A request of h hits is admitted when the debt left after
 * draining, plus h × windowMs, still fits in the bucket; so over any interval of length t at most
 * `burst + requests_per_unit × t / window` hits pass, and a steady client is paced evenly instead
 * of being let through in per-window lumps.
 *
 * - remaining: whole tokens left in the bucket (it may exceed requests_per_unit when burst does);
 * - reset: admitted, the time until the bucket is full again; rejected, the exact time until the
 *   request's hits fit; a cost above the burst never fits and reports one window;
 * - a clock that steps back is treated as standing still at the newest instant seen, so the debt
 *   never shrinks;
 * - with chargeRejectedHits every hit is charged, over-limit ones too (so a client that keeps
 *   sending at the refill rate while over stays over), but the debt never goes more than one hit
 *   past the bucket: a client that stops is back within (1 + hits) refill intervals;
 * - after a reload changed requests_per_unit, the debt counts as the lesser of the hits it holds
 *   and the time it had left to drain, both at the new rate: a lowered limit never makes a client
 *   wait longer than its bucket needed under the old one (which is also when the stored counter
 *   expires), and a raised one never takes tokens the client already had.
 *
 * The Lua twin (lua/algorithms/token_bucket.lua) performs the same operations in the same order.
 */
export const tokenBucket: Algorithm<TokenBucketState> = {
  name: 'token_bucket',

  evaluate(state, check, nowMs, chargeRejectedHits): Evaluation<TokenBucketState> {
    const { limit, windowMs } = check;
    // A limit of 0 blocks everything, whatever the burst.
    const burst = limit === 0 ? 0 : (check.burst ?? limit);
    const capacity = burst * windowMs;
    let now = nowMs;
    let debt = 0;
    if (state !== undefined) {
      if (state.t > now) now = state.t;
      const owed = state.l > 0 && state.l !== limit ? Math.min(state.d, ceilDiv(state.d, state.l) * limit) : state.d;
      const drained = (now - state.t) * limit;
      debt = drained >= owed ? 0 : owed - drained;
    }
    // Until the bucket is full again, from the caller's clock.
    const untilFull = (d: number): number => (d > 0 ? now + ceilDiv(d, limit) - nowMs : 0);
    // Until the debt is down to `room` units.
    const untilRoom = (d: number, room: number): number => (d > room ? now + ceilDiv(d - room, limit) - nowMs : 0);
    const tokens = (d: number): number => wholeTokens(capacity - d, windowMs);

    if (chargeRejectedHits) {
      const after = debt + check.hits * windowMs;
      const admitted = after <= capacity;
      // Over: the debt goes one hit past the bucket at most (none when nothing ever drains).
      const ceiling = burst < 1 ? 0 : capacity + windowMs;
      const stored = admitted ? after : Math.min(after, ceiling);
      const outcome = {
        admitted,
        remaining: admitted ? tokens(stored) : 0,
        // Over: until one more hit fits.
        resetMs: admitted ? untilFull(stored) : burst < 1 ? windowMs : untilRoom(stored, capacity - windowMs),
      };
      return { admitted, next: { t: now, d: stored, l: limit }, nextExpiresAtMs: now + ceilDiv(stored, limit), charged: outcome, uncharged: outcome };
    }

    const need = hitsToAdmit(check);
    const admitted = need <= burst && debt + need * windowMs <= capacity;
    // Only used when admitted (then hits ≤ burst and the product is exact).
    const after = debt + check.hits * windowMs;
    return {
      admitted,
      next: { t: now, d: after, l: limit },
      nextExpiresAtMs: now + ceilDiv(after, limit),
      charged: { admitted, remaining: tokens(after), resetMs: untilFull(after) },
      uncharged: admitted
        ? { admitted, remaining: tokens(debt), resetMs: untilFull(debt) }
        : {
            admitted,
            remaining: tokens(debt),
            // A cost above the burst never fits; one window is the honest "not soon".
            resetMs: need > burst ? windowMs : untilRoom(debt, capacity - need * windowMs),
          },
    };
  },
};

/** ⌈x / divisor⌉ for integers x ≥ 0, divisor > 0, exact below 2^53 (0 when x is 0). */
export function ceilDiv(x: number, divisor: number): number {
  if (x <= 0) return 0;
  const rest = x % divisor;
  return (x - rest) / divisor + (rest > 0 ? 1 : 0);
}

/** ⌊x / unit⌋ for integers x ≥ 0 (0 for x < 0), exact below 2^53. */
function wholeTokens(x: number, unit: number): number {
  if (x <= 0) return 0;
  return (x - (x % unit)) / unit;
}
