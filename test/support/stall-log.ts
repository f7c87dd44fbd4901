/**
 * Records when this process could not run JavaScript: a blocked event loop (a major GC, a long
 * synchronous stretch) or a process the OS did not schedule (other jest workers and redis-servers
 * competing for the cores). A timer is due every TICK_MS; a gap of more than STALL_MIN_MS between
 * two ticks is a stall, from the tick that was due to the one that ran.
 *
 * Tests that time calls in the process that also serves them subtract these stalls from the
 * calls' latencies: what remains is the time the process was free to answer and did not. Waiting
 * on a socket or a timer (the fault a latency check looks for) leaves the loop free and the ticks
 * on time, so such a wait is never taken for a stall. What is taken for one is any stretch of
 * more than STALL_MIN_MS without a free loop, whoever caused it: sluice's own synchronous work
 * included, so this is no measure of sluice's CPU cost, only of its waiting.
 */

/** How often the watching timer is due. */
const TICK_MS = 1;
/** Gaps up to this long are ordinary timer and scheduling jitter, not stalls. */
const STALL_MIN_MS = 5;

export interface StallLog {
  /** Milliseconds of [from, to] (performance.now() instants) during which this process was stalled. */
  stalledMs(from: number, to: number): number;
  stop(): void;
}

/** Starts recording this process's stalls until stop(). */
export function watchStalls(): StallLog {
  const stalls: { from: number; to: number }[] = [];
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    if (now - last > STALL_MIN_MS) stalls.push({ from: last + TICK_MS, to: now });
    last = now;
  }, TICK_MS);
  timer.unref();
  // A stall still going on (the reader runs before the late tick could) counts up to now.
  const all = (): { from: number; to: number }[] => {
    const now = performance.now();
    return now - last > STALL_MIN_MS ? [...stalls, { from: last + TICK_MS, to: now }] : stalls;
  };
  return {
    stalledMs: (from, to) => {
      let total = 0;
      for (const stall of all()) total += Math.max(0, Math.min(to, stall.to) - Math.max(from, stall.from));
      return total;
    },
    stop: () => clearInterval(timer),
  };
}
