import { type Algorithm, type Evaluation, hitsToAdmit, remainingAfter } from './algorithm';

/**
 * How many epoch-aligned sub-windows a window is cut into. Chosen by `npm run accuracy`: with 20,
 * over-admission on the Poisson trace is about 0.5 % of decisions (10 gave 1.5 %, 16 gave 0.75 %),
 * and the state stays bounded at 21 sub-windows (504 bytes in Redis).
 */
export const SUB_WINDOWS = 20;

/**
 * The sub-windows that still hold hits inside the window, oldest first, as three numbers each:
 * the hits charged in it and the instants of its first and last hit (so sub-window i is at
 * 3i, 3i + 1, 3i + 2). Their spans never overlap (each lies inside its own epoch-aligned
 * sub-window), and at most SUB_WINDOWS + 1 of them can reach into a window.
 *
 * Flat rather than an object per sub-window: every decision on the memory store reads a state
 * and builds the next, and an array of numbers is one allocation of unboxed doubles where objects
 * were one each plus a boxed double per instant (about 0.9 KB per 21-sub-window read).
 */
export type SlidingWindowState = readonly number[];

/** Numbers per sub-window in a `SlidingWindowState`. */
export const SUB_WINDOW_FIELDS = 3;
const HITS = 0;
const FIRST = 1;
const LAST = 2;

/** Nothing stored. Never written to: every state built here is a new array. */
const EMPTY: SlidingWindowState = Object.freeze([]);

/**
 * sliding_window: the window is cut into SUB_WINDOWS sub-windows, each remembering its hit count
 * and the instants of its first and last hit. A hit charged at s counts at time t while
 * t − window < s, so at time t every sub-window lies wholly inside the window except the one the
 * window's start (the cut, t − window) falls in; that one's hits are assumed spread evenly between
 * its first and last hit:
 *
 *   cut < first          → all its hits count
 *   first ≤ cut < last   → 1 + (hits − 1) × (last − cut) / (last − first)   (its last hit is still in)
 *   last ≤ cut           → none (it is dropped)
 *
 * So the estimate is exact except within one sub-window's span at the window's start, and exact
 * there too for a burst at one instant. Measured error is in docs/algorithms.md.
 *
 * - reset: admitted, the time until the newest hit leaves the window; rejected, the first whole
 *   millisecond at which the estimate leaves room (solved per sub-window, then checked with the
 *   estimate itself so it is exact for the decision function); a cost above the limit reports
 *   one window;
 * - a clock that steps back is treated as standing still at the newest instant charged;
 * - with chargeRejectedHits every hit is charged; sub-window counts grow past the limit, the
 *   number of sub-windows does not.
 *
 * The Lua twin (lua/algorithms/sliding_window.lua) performs the same floating-point operations
 * in the same order, so both stores decide identically (both use IEEE doubles): the estimate is
 * the straddling sub-window's weight plus the whole hits after it, one rounding.
 */
export const slidingWindow: Algorithm<SlidingWindowState> = {
  name: 'sliding_window',

  evaluate(state, check, nowMs, chargeRejectedHits): Evaluation<SlidingWindowState> {
    const { limit, windowMs } = check;
    const stored = state ?? EMPTY;
    let now = nowMs;
    const newestLast = stored.length > 0 ? stored[stored.length - SUB_WINDOW_FIELDS + LAST]! : undefined;
    if (newestLast !== undefined && newestLast > now) now = newestLast;
    const cut = now - windowMs;
    // Sub-windows leave oldest first; keep the state itself when none has (nothing to rewrite).
    let gone = 0;
    while (gone < stored.length && stored[gone + LAST]! <= cut) gone += SUB_WINDOW_FIELDS;
    const live = gone > 0 ? stored.slice(gone) : stored;
    const used = usage(live, cut);

    if (chargeRejectedHits) {
      const next = charge(live, now, check.hits, windowMs);
      const usedAfter = usage(next, cut);
      const admitted = usedAfter <= limit;
      const outcome = {
        admitted,
        remaining: remainingAfter(limit, usedAfter),
        // Over: until one more hit fits.
        resetMs: admitted ? untilEmpty(next, windowMs, nowMs) : untilRoom(next, limit - 1, cut, windowMs, nowMs),
      };
      return { admitted, next, nextExpiresAtMs: expiresAt(next, now, windowMs), charged: outcome, uncharged: outcome };
    }

    const need = hitsToAdmit(check);
    const admitted = used + need <= limit;
    // A rejected request's state is never stored: no need to build it.
    const next = admitted ? charge(live, now, check.hits, windowMs) : live;
    return {
      admitted,
      next,
      nextExpiresAtMs: expiresAt(next, now, windowMs),
      charged: { admitted, remaining: remainingAfter(limit, used + check.hits), resetMs: untilEmpty(next, windowMs, nowMs) },
      uncharged: {
        admitted,
        remaining: remainingAfter(limit, used),
        resetMs: admitted ? untilEmpty(live, windowMs, nowMs) : untilRoom(live, limit - need, cut, windowMs, nowMs),
      },
    };
  },
};

/** Until the newest hit of `windows` leaves the window (0 when nothing is stored). */
function untilEmpty(windows: SlidingWindowState, windowMs: number, nowMs: number): number {
  return windows.length > 0 ? windows[windows.length - SUB_WINDOW_FIELDS + LAST]! + windowMs - nowMs : 0;
}

/** Until the estimate at the window that starts after `cut` is at most `room`, or one window for a cost that never fits. */
function untilRoom(windows: SlidingWindowState, room: number, cut: number, windowMs: number, nowMs: number): number {
  return room < 0 ? windowMs : fitsAtCut(windows, room, cut) + windowMs - nowMs;
}

/** The hits of one sub-window still counted at `cut` (hits at or before the cut have left). */
function weight(hits: number, first: number, last: number, cut: number): number {
  if (cut < first) return hits;
  if (cut >= last) return 0;
  return 1 + ((hits - 1) * (last - cut)) / (last - first);
}

/**
 * The estimated hits in the window that starts after `cut`: the first sub-window still in it,
 * weighted, plus every hit after it (whole: those sub-windows lie inside the window). The whole
 * hits sum exactly (integers), so the estimate is rounded once, as the Lua twin rounds it (it keeps
 * the total in its state's header and subtracts).
 */
function usage(windows: SlidingWindowState, cut: number): number {
  let rest = 0;
  for (let i = 0; i < windows.length; i += SUB_WINDOW_FIELDS) rest += windows[i + HITS]!;
  for (let i = 0; i < windows.length; i += SUB_WINDOW_FIELDS) {
    const hits = windows[i + HITS]!;
    rest -= hits;
    const last = windows[i + LAST]!;
    if (last > cut) return weight(hits, windows[i + FIRST]!, last, cut) + rest;
  }
  return 0;
}

/** `windows` with `hits` charged at `now`: into the newest sub-window if `now` falls in it. */
function charge(windows: SlidingWindowState, now: number, hits: number, windowMs: number): SlidingWindowState {
  if (hits === 0) return windows;
  const subMs = windowMs / SUB_WINDOWS;
  const newest = windows.length - SUB_WINDOW_FIELDS;
  const next = windows.slice();
  if (newest >= 0 && Math.floor(windows[newest + FIRST]! / subMs) === Math.floor(now / subMs)) {
    next[newest + HITS] = windows[newest + HITS]! + hits;
    next[newest + LAST] = now;
  } else {
    next.push(hits, now, now);
  }
  return next;
}

/** When a state can no longer affect a decision: its newest hit leaves the window. */
function expiresAt(windows: SlidingWindowState, now: number, windowMs: number): number {
  return windows.length > 0 ? windows[windows.length - SUB_WINDOW_FIELDS + LAST]! + windowMs : now;
}

/**
 * The smallest whole-millisecond cut ≥ `from` at which `usage(windows, cut) ≤ room` (room ≥ 0).
 * Sub-windows leave in order, so the answer lies in the first one whose departure brings the
 * hits after it within reach: solve its linear piece, then step to the exact millisecond with
 * `usage` itself, which is non-increasing in the cut (IEEE rounding is monotonic), so the
 * reported retry time and the decision can never disagree.
 */
function fitsAtCut(windows: SlidingWindowState, room: number, from: number): number {
  let after = 0;
  for (let i = 0; i < windows.length; i += SUB_WINDOW_FIELDS) after += windows[i + HITS]!;
  let lower = from;
  for (let i = 0; i < windows.length; i += SUB_WINDOW_FIELDS) {
    const hits = windows[i + HITS]!;
    const first = windows[i + FIRST]!;
    const last = windows[i + LAST]!;
    after -= hits;
    const target = room - after;
    if (target < 0) {
      // This sub-window must leave whole before the rest can fit.
      lower = Math.max(lower, last);
      continue;
    }
    let cut: number;
    if (target >= hits) cut = lower;
    else if (target < 1) cut = last;
    else cut = Math.ceil(last - ((target - 1) * (last - first)) / (hits - 1));
    cut = Math.min(Math.max(cut, lower), last);
    while (cut < last && usage(windows, cut) > room) cut++;
    while (cut > lower && usage(windows, cut - 1) <= room) cut--;
    return cut;
  }
  return lower;
}
