import { type Algorithm, type Evaluation, hitsToAdmit, remainingAfter } from './algorithm';

/**
 * How many epoch-aligned sub-windows a window is cut into. Chosen by `npm run accuracy`: with 20,
 * over-admission on the Poisson trace is about 0.5 % of decisions (10 gave 1.5 %, 16 gave 0.75 %),
 * and the state stays bounded at 21 sub-windows (504 bytes in Redis).
 */
export const SUB_WINDOWS = 20;

/** The hits charged in one sub-window: how many, and the instants of the first and last. */
export interface SubWindow {
  readonly hits: number;
  readonly first: number;
  readonly last: number;
}

/**
 * The sub-windows that still hold hits inside the window, oldest first. Their spans never
 * overlap (each lies inside its own epoch-aligned sub-window), and at most SUB_WINDOWS + 1 of
 * them can reach into a window.
 */
export type SlidingWindowState = readonly SubWindow[];

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
    const stored = state ?? [];
    let now = nowMs;
    const newest = stored[stored.length - 1];
    if (newest !== undefined && newest.last > now) now = newest.last;
    const cut = now - windowMs;
    // Sub-windows leave oldest first; keep the state itself when none has (nothing to rewrite).
    let gone = 0;
    while (gone < stored.length && stored[gone]!.last <= cut) gone++;
    const live = gone > 0 ? stored.slice(gone) : stored;
    const used = usage(live, cut);
    const untilEmpty = (windows: SlidingWindowState): number => {
      const last = windows[windows.length - 1];
      return last !== undefined ? last.last + windowMs - nowMs : 0;
    };
    // Until the estimate is at most `room`, or one window for a cost that never fits.
    const untilRoom = (windows: SlidingWindowState, room: number): number =>
      room < 0 ? windowMs : fitsAtCut(windows, room, cut) + windowMs - nowMs;

    if (chargeRejectedHits) {
      const next = charge(live, now, check.hits, windowMs);
      const usedAfter = usage(next, cut);
      const admitted = usedAfter <= limit;
      const outcome = {
        admitted,
        remaining: remainingAfter(limit, usedAfter),
        // Over: until one more hit fits.
        resetMs: admitted ? untilEmpty(next) : untilRoom(next, limit - 1),
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
      charged: { admitted, remaining: remainingAfter(limit, used + check.hits), resetMs: untilEmpty(next) },
      uncharged: {
        admitted,
        remaining: remainingAfter(limit, used),
        resetMs: admitted ? untilEmpty(live) : untilRoom(live, limit - need),
      },
    };
  },
};

/** The hits of one sub-window still counted at `cut` (hits at or before the cut have left). */
function weight(w: SubWindow, cut: number): number {
  if (cut < w.first) return w.hits;
  if (cut >= w.last) return 0;
  return 1 + ((w.hits - 1) * (w.last - cut)) / (w.last - w.first);
}

/**
 * The estimated hits in the window that starts after `cut`: the first sub-window still in it,
 * weighted, plus every hit after it (whole: those sub-windows lie inside the window). The whole
 * hits sum exactly (integers), so the estimate is rounded once, as the Lua twin rounds it (it keeps
 * the total in its state's header and subtracts).
 */
function usage(windows: SlidingWindowState, cut: number): number {
  let rest = 0;
  for (const w of windows) rest += w.hits;
  for (const w of windows) {
    rest -= w.hits;
    if (w.last > cut) return weight(w, cut) + rest;
  }
  return 0;
}

/** `windows` with `hits` charged at `now`: into the newest sub-window if `now` falls in it. */
function charge(windows: SlidingWindowState, now: number, hits: number, windowMs: number): SlidingWindowState {
  if (hits === 0) return windows;
  const subMs = windowMs / SUB_WINDOWS;
  const newest = windows[windows.length - 1];
  if (newest !== undefined && Math.floor(newest.first / subMs) === Math.floor(now / subMs)) {
    return [...windows.slice(0, -1), { hits: newest.hits + hits, first: newest.first, last: now }];
  }
  return [...windows, { hits, first: now, last: now }];
}

/** When a state can no longer affect a decision: its newest hit leaves the window. */
function expiresAt(windows: SlidingWindowState, now: number, windowMs: number): number {
  const newest = windows[windows.length - 1];
  return newest !== undefined ? newest.last + windowMs : now;
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
  for (const w of windows) after += w.hits;
  let lower = from;
  for (const w of windows) {
    after -= w.hits;
    const target = room - after;
    if (target < 0) {
      // This sub-window must leave whole before the rest can fit.
      lower = Math.max(lower, w.last);
      continue;
    }
    let cut: number;
    if (target >= w.hits) cut = lower;
    else if (target < 1) cut = w.last;
    else cut = Math.ceil(w.last - ((target - 1) * (w.last - w.first)) / (w.hits - 1));
    cut = Math.min(Math.max(cut, lower), w.last);
    while (cut < w.last && usage(windows, cut) > room) cut++;
    while (cut > lower && usage(windows, cut - 1) <= room) cut--;
    return cut;
  }
  return lower;
}
