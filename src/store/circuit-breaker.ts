import type { Clock } from '../util/clock';

/**
 * `closed`: calls go to the store. `open`: calls fail fast without touching it, for the cooldown.
 * `half_open`: the cooldown is over; the next call is a probe, and its result closes or reopens.
 */
export type BreakerState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /**
   * Consecutive failures that open the breaker, provided no call has succeeded for
   * `SILENCE_MS` either.
   */
  readonly failureThreshold: number;
  /** How long the breaker stays open before it lets one probe through. */
  readonly cooldownMs: number;
  /** Cooldowns are measured on this clock (a ManualClock in tests). */
  readonly clock: Clock;
}

/**
 * What `acquire` hands out: whether the call may go to the store, and whether it is the probe.
 * Results are reported with the permit, so a call that started before the breaker opened cannot
 * close it later, and only the probe decides a half-open breaker.
 */
export interface BreakerPermit {
  readonly probe: boolean;
  /** Breaker generation the permit was issued in; results from an older generation are ignored. */
  readonly generation: number;
}

/**
 * How long without a single success before consecutive failures may open the breaker.
 *
 * Under heavy load a live store answers most calls while a tail of them times out in runs (every
 * call in flight behind a GC pause or a queue ends together). Measured with `npm run bench`, opening
 * on 5 consecutive timeouts alone tripped the breaker again and again and turned a timeout tail into
 * about half of all calls failing. A live store keeps answering some calls every few milliseconds;
 * a frozen or dead one answers none.
 */
export const SILENCE_MS = 100;

/**
 * A consecutive-failure circuit breaker that also waits for silence (see SILENCE_MS). Its point is
 * that a dead or frozen store costs a few timeouts and then nothing, instead of one timeout per
 * request: Envoy's 20 ms deadline has no room for waiting on a store that will not answer.
 *
 * Open → half-open happens lazily on the next `acquire` once the cooldown has passed on the clock,
 * and also from a timer, so that health reporting sees half-open without traffic: a replica taken
 * out of rotation because its breaker opened would otherwise never be probed again.
 */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private lastSuccessAtMs = Number.NEGATIVE_INFINITY;
  private openedAtMs = 0;
  private probeInFlight = false;
  private generation = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: ((state: BreakerState) => void)[] = [];

  constructor(private readonly options: CircuitBreakerOptions) {
    if (!(options.failureThreshold >= 1)) throw new RangeError('failureThreshold must be at least 1');
    if (!(options.cooldownMs >= 0)) throw new RangeError('cooldownMs must not be negative');
  }

  state(): BreakerState {
    this.refresh();
    return this.current;
  }

  /** Consecutive failures counted so far in the closed state. */
  consecutiveFailures(): number {
    return this.failures;
  }

  onStateChange(listener: (state: BreakerState) => void): void {
    this.listeners.push(listener);
  }

  /** A permit to call the store, or undefined when the call must fail fast. */
  acquire(): BreakerPermit | undefined {
    this.refresh();
    switch (this.current) {
      case 'closed':
        return { probe: false, generation: this.generation };
      case 'open':
        return undefined;
      case 'half_open':
        // One probe at a time: while it is out, everyone else fails fast as if still open.
        if (this.probeInFlight) return undefined;
        this.probeInFlight = true;
        return { probe: true, generation: this.generation };
    }
  }

  /** The store answered (or failed in a way that proves it is reachable). */
  recordSuccess(permit: BreakerPermit): void {
    if (permit.generation !== this.generation) return;
    if (permit.probe) {
      this.probeInFlight = false;
      this.transition('closed');
      return;
    }
    if (this.current === 'closed') this.failures = 0;
    this.lastSuccessAtMs = this.options.clock.nowMs();
  }

  /** The store did not answer: a timeout, a refused or dropped connection. */
  recordFailure(permit: BreakerPermit): void {
    if (permit.generation !== this.generation) return;
    if (permit.probe) {
      this.probeInFlight = false;
      this.open();
      return;
    }
    if (this.current !== 'closed') return;
    this.failures += 1;
    const silent = this.options.clock.nowMs() - this.lastSuccessAtMs >= SILENCE_MS;
    if (this.failures >= this.options.failureThreshold && silent) this.open();
  }

  /** The call ended without telling anything about the store (e.g. the caller's deadline was too short). */
  release(permit: BreakerPermit): void {
    if (permit.generation !== this.generation) return;
    // A probe that proved nothing must not leave the breaker waiting forever for its result.
    if (permit.probe) this.probeInFlight = false;
  }

  /** Opens now, whatever the count: the store told us it is gone (connection lost). */
  forceOpen(): void {
    if (this.current !== 'open') this.open();
  }

  /** Closes now: the store told us it is back (connection re-established). */
  reset(): void {
    if (this.current !== 'closed') this.transition('closed');
    this.failures = 0;
  }

  /** Stops the half-open timer. */
  close(): void {
    this.clearTimer();
  }

  private open(): void {
    this.openedAtMs = this.options.clock.nowMs();
    this.transition('open');
    this.scheduleHalfOpen(this.options.cooldownMs);
  }

  private refresh(): void {
    if (this.current === 'open' && this.options.clock.nowMs() - this.openedAtMs >= this.options.cooldownMs) {
      this.transition('half_open');
    }
  }

  private scheduleHalfOpen(delayMs: number): void {
    this.clearTimer();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refresh();
      if (this.current === 'open') {
        // The clock is not the timer's (a ManualClock in tests): wait for what it says is left.
        const left = this.openedAtMs + this.options.cooldownMs - this.options.clock.nowMs();
        this.scheduleHalfOpen(Math.max(1, Math.min(left, this.options.cooldownMs)));
      }
    }, Math.max(1, delayMs));
    // Never keeps the process alive on its own.
    this.timer.unref();
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private transition(next: BreakerState): void {
    if (next === this.current) return;
    this.current = next;
    // Each transition starts a generation: results of calls issued before it no longer count.
    this.generation += 1;
    this.failures = 0;
    this.probeInFlight = false;
    if (next !== 'open') this.clearTimer();
    for (const listener of this.listeners) listener(next);
  }
}
