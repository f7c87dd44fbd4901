import { SUB_WINDOW_FIELDS, SUB_WINDOWS, type SlidingWindowState, slidingWindow } from '../../../src/limiter/algorithms/sliding-window';
import type { LimitCheck } from '../../../src/store/counter-store';

/**
 * Properties of sliding_window's own maths, over random histories (the conformance suite pins
 * exact numbers; the Lua differential test holds the twin to the same answers).
 */

const WINDOW = 60_000;
const T0 = 1_000 * WINDOW;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A state's sub-windows as objects, to read. */
function subWindows(state: SlidingWindowState | undefined): { hits: number; first: number; last: number }[] {
  const windows = state ?? [];
  expect(windows.length % SUB_WINDOW_FIELDS).toBe(0);
  const out = [];
  for (let i = 0; i < windows.length; i += SUB_WINDOW_FIELDS) out.push({ hits: windows[i]!, first: windows[i + 1]!, last: windows[i + 2]! });
  return out;
}

const check = (limit: number, hits: number): LimitCheck => ({ key: 'k', algorithm: 'sliding_window', limit, windowMs: WINDOW, hits, enforced: true });

/** A random history: requests at random gaps, charged when admitted, as a store would. */
function history(random: () => number, limit: number): { state: SlidingWindowState | undefined; now: number } {
  let state: SlidingWindowState | undefined;
  let now = T0 + Math.floor(random() * WINDOW);
  const steps = 5 + Math.floor(random() * 200);
  for (let i = 0; i < steps; i++) {
    now += Math.floor(random() * (random() < 0.1 ? 20_000 : 1_500));
    const hits = 1 + Math.floor(random() * 3);
    const ev = slidingWindow.evaluate(state, check(limit, hits), now, false);
    if (ev.admitted) state = ev.next;
  }
  return { state, now };
}

describe('sliding_window', () => {
  it('reports a retry time that is exact: rejected 1 ms before it, admitted at it', () => {
    const random = mulberry32(42);
    let rejections = 0;
    for (let run = 0; run < 400; run++) {
      const limit = 2 + Math.floor(random() * 30);
      const { state, now } = history(random, limit);
      const hits = 1 + Math.floor(random() * Math.min(limit, 8));
      const ev = slidingWindow.evaluate(state, check(limit, hits), now, false);
      if (ev.admitted) continue;
      rejections++;
      const reset = ev.uncharged.resetMs;
      expect(reset).toBeGreaterThan(0);
      expect(Number.isInteger(reset)).toBe(true);
      expect(slidingWindow.evaluate(state, check(limit, hits), now + reset, false).admitted).toBe(true);
      expect(slidingWindow.evaluate(state, check(limit, hits), now + reset - 1, false).admitted).toBe(false);
    }
    expect(rejections).toBeGreaterThan(100);
  });

  it('never stores more than SUB_WINDOWS + 1 sub-windows, disjoint and in order, each inside its own sub-window', () => {
    const random = mulberry32(7);
    const subMs = WINDOW / SUB_WINDOWS;
    for (let run = 0; run < 200; run++) {
      const { state } = history(random, 1_000);
      const windows = subWindows(state);
      expect(windows.length).toBeLessThanOrEqual(SUB_WINDOWS + 1);
      windows.forEach((w, i) => {
        expect(w.first).toBeLessThanOrEqual(w.last);
        expect(Math.floor(w.first / subMs)).toBe(Math.floor(w.last / subMs));
        if (i > 0) expect(Math.floor(windows[i - 1]!.last / subMs)).toBeLessThan(Math.floor(w.first / subMs));
      });
    }
  });

  it('counts exactly like a log when every sub-window holds hits of one instant', () => {
    // One hit every 3 s, 10 per minute: each sub-window holds one instant, so the estimate is exact.
    let state: SlidingWindowState | undefined;
    for (let i = 0; i < 10; i++) state = slidingWindow.evaluate(state, check(10, 1), T0 + 3_000 * i, false).next;
    // At T0 + 60 s the first hit (T0) has left: 9 in the window, room for exactly 1.
    const at = (t: number, hits: number) => slidingWindow.evaluate(state, check(10, hits), t, false);
    expect(at(T0 + WINDOW - 1, 1).admitted).toBe(false);
    expect(at(T0 + WINDOW, 1)).toMatchObject({ admitted: true, uncharged: { remaining: 1 } });
    expect(at(T0 + WINDOW, 2).uncharged.resetMs).toBe(3_000);
  });

  it('never lowers its count when the clock steps back', () => {
    const first = slidingWindow.evaluate(undefined, check(5, 3), T0 + 10_000, false);
    const back = slidingWindow.evaluate(first.next, check(5, 2), T0, false);
    expect(back.admitted).toBe(true);
    expect(subWindows(back.next)).toEqual([{ hits: 5, first: T0 + 10_000, last: T0 + 10_000 }]);
    expect(slidingWindow.evaluate(back.next, check(5, 1), T0 + 5_000, false)).toMatchObject({
      admitted: false,
      uncharged: { resetMs: 10_000 + WINDOW - 5_000 },
    });
  });
});
