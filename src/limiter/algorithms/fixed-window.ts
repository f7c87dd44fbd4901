import { type Algorithm, type Evaluation, hitsToAdmit, remainingAfter } from './algorithm';

/** One counter per epoch-aligned window, as envoyproxy/ratelimit counts. */
export interface FixedWindowState {
  /** floor(now / windowMs) of the window the count belongs to. */
  readonly window: number;
  readonly count: number;
}

/**
 * Fixed window: the count resets at every multiple of the window length since the Unix epoch
 * (a minute at :00, a week on Thursday 00:00 UTC, "month" every 30 days), so a burst straddling a
 * boundary can pass twice the limit. Kept for migration from the reference; see sliding_window.
 */
export const fixedWindow: Algorithm<FixedWindowState> = {
  name: 'fixed_window',

  evaluate(state, check, nowMs, chargeRejectedHits): Evaluation<FixedWindowState> {
    const { limit, windowMs } = check;
    let window = Math.floor(nowMs / windowMs);
    let count = 0;
    if (state !== undefined) {
      if (state.window === window) {
        count = state.count;
      } else if (state.window > window) {
        // The clock stepped back: keep the newer window rather than forget its hits.
        window = state.window;
        count = state.count;
      }
    }
    const windowEndMs = (window + 1) * windowMs;
    const untilWindowEnd = Math.max(0, windowEndMs - nowMs);
    const after = count + check.hits;
    const next = { window, count: after };
    const nextExpiresAtMs = windowEndMs;

    if (chargeRejectedHits) {
      const admitted = after <= limit;
      const outcome = { admitted, remaining: remainingAfter(limit, after), resetMs: untilWindowEnd };
      return { admitted, next, nextExpiresAtMs, charged: outcome, uncharged: outcome };
    }

    const need = hitsToAdmit(check);
    const admitted = count + need <= limit;
    // A cost above the limit never fits; one window is the honest "not soon" answer.
    const retryMs = need > limit ? windowMs : untilWindowEnd;
    return {
      admitted,
      next,
      nextExpiresAtMs,
      charged: { admitted, remaining: remainingAfter(limit, after), resetMs: after > 0 ? untilWindowEnd : 0 },
      uncharged: admitted
        ? { admitted, remaining: remainingAfter(limit, count), resetMs: count > 0 ? untilWindowEnd : 0 }
        : { admitted, remaining: remainingAfter(limit, count), resetMs: retryMs },
    };
  },
};

