import { type Algorithm, type Evaluation, hitsToAdmit, remainingAfter } from './algorithm';

/**
 * The log of one counter: the instant (epoch ms) of every hit charged and still inside the
 * window, one entry per hit, ascending. It never holds more than `limit` entries (`limit + 1`
 * with chargeRejectedHits), and the config caps sliding_log limits at SLIDING_LOG_MAX_REQUESTS.
 */
export type SlidingLogState = readonly number[];

/**
 * sliding_log: exact. A hit charged at instant s counts at time t while t − window < s ≤ t, and a
 * request is admitted only when the hits in that window plus its own fit the limit, so no window
 * of that length ever holds more than `limit` admitted hits.
 *
 * - reset: admitted, the time until the newest hit leaves the window; rejected, the exact time
 *   until enough of the oldest hits have left for the request's hits to fit; a cost above the
 *   limit never fits and reports one window;
 * - a clock that steps back is treated as standing still at the newest instant in the log, so
 *   hits are never dropped early and the log stays sorted;
 * - with chargeRejectedHits every hit is logged, over-limit ones too, but only the newest
 *   `limit + 1` are kept: a log holding more than `limit` hits is over for any request either
 *   way, and the (limit − 1)-th newest hit still says when one more fits, so every decision and
 *   reported value is the same as with the whole log while the size stays capped.
 *
 * The Lua twin (lua/algorithms/sliding_log.lua) keeps the log as one string of 8-byte instants
 * and performs the same steps: find the first hit inside the window by binary search, count,
 * decide, append.
 */
export const slidingLog: Algorithm<SlidingLogState> = {
  name: 'sliding_log',

  evaluate(state, check, nowMs, chargeRejectedHits): Evaluation<SlidingLogState> {
    const { limit, windowMs } = check;
    const log = state ?? [];
    let now = nowMs;
    const newest = log[log.length - 1];
    if (newest !== undefined && newest > now) now = newest;

    // Hits at or before now − window have left it.
    const live = log.slice(firstAfter(log, now - windowMs));
    const count = live.length;
    // Until the newest hit has left the window (0 when the log is empty).
    const untilEmpty = (l: SlidingLogState): number => (l.length > 0 ? l[l.length - 1]! + windowMs - nowMs : 0);
    // Until at most `room` hits of the log are left in the window.
    const untilRoom = (l: SlidingLogState, room: number): number => {
      if (room < 0) return windowMs;
      const leave = l.length - room;
      return leave > 0 ? l[leave - 1]! + windowMs - nowMs : 0;
    };

    if (chargeRejectedHits) {
      const total = count + check.hits;
      const admitted = total <= limit;
      // Only the newest limit + 1 hits are kept.
      const added = Math.min(check.hits, limit + 1);
      const kept = Math.min(count, limit + 1 - added);
      const next = live.slice(count - kept).concat(repeat(now, added));
      const outcome = {
        admitted,
        remaining: remainingAfter(limit, total),
        // Over: until one more hit fits.
        resetMs: admitted ? untilEmpty(next) : untilRoom(next, limit - 1),
      };
      return { admitted, next, nextExpiresAtMs: expiresAt(next, now, windowMs), charged: outcome, uncharged: outcome };
    }

    const need = hitsToAdmit(check);
    const admitted = count + need <= limit;
    // A rejected request's log is never stored: no need to build it.
    const next = admitted && check.hits > 0 ? live.concat(repeat(now, check.hits)) : live;
    return {
      admitted,
      next,
      nextExpiresAtMs: expiresAt(next, now, windowMs),
      charged: { admitted, remaining: remainingAfter(limit, count + check.hits), resetMs: untilEmpty(next) },
      uncharged: {
        admitted,
        remaining: remainingAfter(limit, count),
        resetMs: admitted ? untilEmpty(live) : untilRoom(live, limit - need),
      },
    };
  },
};

/** Index of the first entry after `instant` (log.length when none): a binary search. */
function firstAfter(log: SlidingLogState, instant: number): number {
  let low = 0;
  let high = log.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (log[mid]! <= instant) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** When a log can no longer affect a decision: its newest hit leaves the window. */
function expiresAt(log: SlidingLogState, now: number, windowMs: number): number {
  return log.length > 0 ? log[log.length - 1]! + windowMs : now;
}

function repeat(instant: number, times: number): number[] {
  return new Array<number>(times).fill(instant);
}
