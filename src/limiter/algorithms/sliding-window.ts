import { type Algorithm, type Evaluation, hitsToAdmit, remainingAfter } from './algorithm';

/** Two consecutive epoch-aligned window counts. */
export interface SlidingWindowState {
  /** floor(now / windowMs) of the window `current` belongs to. */
  readonly window: number;
  readonly current: number;
  /** Hits of window `window - 1`. */
  readonly previous: number;
}

/**
 * Sliding window counter (the weighted two-window estimate Cloudflare describes): the usage at
 * time t is `current + previous × (time left in the current window / window)`, i.e. the previous
 * window's hits are assumed spread evenly and age out linearly. O(1) state, no boundary burst of
 * 2× the limit as with fixed windows. Over-admission is bounded and measured in docs/algorithms.md.
 *
 * The Lua twin must compute `previous * (windowMs - elapsed) / windowMs` in this exact order so
 * that both stores round identically (both use IEEE doubles).
 */
export const slidingWindow: Algorithm<SlidingWindowState> = {
  name: 'sliding_window',

  evaluate(state, check, nowMs, chargeRejectedHits): Evaluation<SlidingWindowState> {
    const { limit, windowMs } = check;
    let window = Math.floor(nowMs / windowMs);
    let current = 0;
    let previous = 0;
    if (state !== undefined) {
      if (state.window === window) {
        current = state.current;
        previous = state.previous;
      } else if (state.window === window - 1) {
        previous = state.current;
      } else if (state.window > window) {
        // The clock stepped back: keep the newer windows rather than forget their hits.
        window = state.window;
        current = state.current;
        previous = state.previous;
      }
    }
    const windowStartMs = window * windowMs;
    const elapsed = Math.max(0, nowMs - windowStartMs);
    const weightedPrevious = (previous * (windowMs - elapsed)) / windowMs;
    const used = current + weightedPrevious;
    const afterCurrent = current + check.hits;
    const next = { window, current: afterCurrent, previous };
    // The current window's hits weigh on decisions until the end of the following window.
    const nextExpiresAtMs = windowStartMs + 2 * windowMs;

    const drainMs = (cur: number): number =>
      cur > 0 ? windowStartMs + 2 * windowMs - nowMs : previous > 0 ? windowStartMs + windowMs - nowMs : 0;

    if (chargeRejectedHits) {
      const usedAfter = afterCurrent + weightedPrevious;
      const admitted = usedAfter <= limit;
      const outcome = {
        admitted,
        remaining: remainingAfter(limit, usedAfter),
        resetMs: admitted ? drainMs(afterCurrent) : retryMs(limit - 1, afterCurrent, previous, elapsed, windowMs),
      };
      return { admitted, next, nextExpiresAtMs, charged: outcome, uncharged: outcome };
    }

    const need = hitsToAdmit(check);
    const admitted = used + need <= limit;
    return {
      admitted,
      next,
      nextExpiresAtMs,
      charged: { admitted, remaining: remainingAfter(limit, afterCurrent + weightedPrevious), resetMs: drainMs(afterCurrent) },
      uncharged: {
        admitted,
        remaining: remainingAfter(limit, used),
        resetMs: admitted ? drainMs(current) : retryMs(limit - need, current, previous, elapsed, windowMs),
      },
    };
  },
};

/**
 * Milliseconds from `elapsed` (into the current window) until usage has fallen to `room` or
 * below, so that a request needing `limit - room` hits fits. Rounded up to a whole millisecond,
 * so the estimate at the returned instant is never above `room`.
 */
function retryMs(room: number, current: number, previous: number, elapsed: number, windowMs: number): number {
  if (room < 0) {
    // The cost exceeds the limit: it can never pass. One window is the honest "not soon".
    return windowMs;
  }
  if (current <= room) {
    // Inside this window, once enough of the previous window's weight has aged out.
    if (previous === 0) return 0;
    const at = Math.ceil(windowMs - ((room - current) * windowMs) / previous);
    return Math.max(0, at - elapsed);
  }
  // Only in the next window, where today's count becomes the decaying previous one.
  const at = Math.ceil(windowMs - (room * windowMs) / current);
  return windowMs - elapsed + at;
}
