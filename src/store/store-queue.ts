import type { Clock } from '../util/clock';
import { type LoopUtilization, systemLoopUtilization } from '../util/loop-utilization';

/** Below this many checks waiting, nothing is shed: a short queue drains within any deadline. */
const MIN_QUEUE_TO_SHED = 64;
/** Throughput is measured over windows at least this long... */
const WINDOW_MS = 20;
/**
 * ...and at most this long, with at least MIN_DONE checks answered: a longer or emptier window
 * had a stall in it (Redis frozen, or sluice's own event loop blocked), which says nothing about
 * the store's throughput, and would make every call after it look hopeless.
 */
const MAX_WINDOW_MS = 100;
const MIN_DONE = 32;
/**
 * ...in which at least this many checks were always waiting: the store was saturated, so what it
 * got through is its capacity. (With a short queue it gets through only what arrives, which says
 * nothing about how fast it could go, and would make a burst look hopeless.)
 */
const SATURATED_QUEUE = 16;
/** Weight of the newest window in the moving average. */
const ALPHA = 0.3;
/**
 * Event-loop utilization at or above which a window says sluice, not the store, was the
 * bottleneck: answers were read late because sluice had no time to read them.
 */
const SLUICE_BOUND_UTILIZATION = 0.9;

/**
 * The work sent to the store and not yet answered, and how fast the store gets through it, so
 * that a call that cannot be answered within its deadline is not sent at all.
 *
 * Why: under overload, every call sent joins the store's queue (Redis runs one command at a time).
 * If calls keep being sent whatever the queue, the queue grows until each call waits longer than
 * its deadline: the store then spends all its time on answers nobody will read (and on refunding
 * their charges), and decisions per second collapse. Not sending a call whose predicted wait
 * exceeds its time left keeps the queue at the length the deadlines allow, so what is sent is
 * answered in time and the store's throughput goes to decisions.
 *
 * The wait is predicted from the checks waiting ahead and the store's measured throughput
 * (checks answered per ms, over windows in which it always had work: an idle store's rate says
 * nothing about its capacity).
 *
 * Nothing is shed while sluice's own event loop is the bottleneck (busy SLUICE_BOUND_UTILIZATION
 * of the last window). Then answers wait in sluice, not in the store, and the measured rate is
 * sluice's: shedding on it would refuse calls the store could answer, each refusal still costs
 * sluice the reading and answering of a call, and a client whose refused call frees a slot sends
 * the next one at once, so refusing faster leaves less time for decisions. On 2026-12-04 (h2load,
 * 2 times the sustainable rate, 4 connections of at most 32 calls each), shedding on that rate
 * decided 7 % of the sustainable rate, not shedding 90 %.
 */
export class StoreQueue {
  private pending = 0;
  private windowStart = 0;
  private windowDone = 0;
  private windowMinPending = 0;
  /** Checks per ms; 0 until a busy window was measured. */
  private rate = 0;
  /** The last window found sluice, not the store, to be the bottleneck. */
  private sluiceBound = false;

  constructor(
    private readonly clock: Clock,
    private readonly loop: LoopUtilization = systemLoopUtilization(),
  ) {}

  /** Checks sent and not yet answered. */
  waiting(): number {
    return this.pending;
  }

  /**
   * The predicted wait, in ms, for a call of `checks` checks sent now; 0 while the queue is short
   * or the throughput is not yet known.
   */
  predictedWaitMs(checks: number): number {
    if (this.pending < MIN_QUEUE_TO_SHED || this.rate <= 0 || this.sluiceBound) return 0;
    return (this.pending + checks) / this.rate;
  }

  sent(checks: number): void {
    // A busy period starts: measure from here (the time the store sat idle says nothing).
    const idle = this.pending === 0;
    this.pending += checks;
    if (idle) this.startWindow(this.clock.nowMs());
  }

  /** The store answered (or failed) a call of `checks` checks. */
  answered(checks: number): void {
    this.pending = Math.max(0, this.pending - checks);
    this.windowDone += checks;
    if (this.pending < this.windowMinPending) this.windowMinPending = this.pending;
    const now = this.clock.nowMs();
    const elapsed = now - this.windowStart;
    if (elapsed >= WINDOW_MS) {
      this.sluiceBound = this.loop.sinceLastSample() >= SLUICE_BOUND_UTILIZATION;
      if (!this.sluiceBound && this.windowMinPending >= SATURATED_QUEUE && elapsed <= MAX_WINDOW_MS && this.windowDone >= MIN_DONE) {
        const sample = this.windowDone / elapsed;
        this.rate = this.rate === 0 ? sample : ALPHA * sample + (1 - ALPHA) * this.rate;
      }
      this.startWindow(now);
    }
  }

  private startWindow(now: number): void {
    this.windowStart = now;
    this.loop.sinceLastSample();
    this.windowDone = 0;
    // Lowered by each answer in the window (sends only lengthen the queue).
    this.windowMinPending = Number.POSITIVE_INFINITY;
  }
}
