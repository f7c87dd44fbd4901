import { OverloadedError } from '../errors';

/** Told of every change of the work in flight (a metrics gauge). */
export type InFlightListener = (units: number) => void;

/**
 * The bound on work in flight, in descriptors (MAX_DESCRIPTORS_IN_FLIGHT).
 *
 * Work is counted by descriptors, not calls, because that is what a decision costs (one check per
 * descriptor in the store): a caller sending 64-descriptor requests uses 64 times the budget of a
 * 1-descriptor caller, and when the budget runs short its big calls are the ones that no longer
 * fit, while small ones still do. A call that does not fit is refused at once
 * (RESOURCE_EXHAUSTED, with a message): queueing it behind work it cannot overtake would only
 * make it, and everything behind it, miss its deadline. The bound is for overload, not for a
 * busy moment: the default takes a 1,000-call burst of 2 descriptors without refusing any.
 */
export class WorkBudget {
  private used = 0;

  constructor(
    private readonly capacity: number,
    private readonly listener?: InFlightListener,
  ) {
    if (!(capacity >= 1)) throw new RangeError('the work budget must be at least 1 descriptor');
  }

  /** Takes `units` of the budget, or throws OverloadedError. Give them back with `release`. */
  acquire(units: number): void {
    // A request larger than the whole budget still runs when nothing else does.
    if (this.used + units > this.capacity && this.used > 0) {
      throw new OverloadedError(
        `overloaded: ${this.used} descriptors are being decided and this call adds ${units}, over the bound of ` +
          `${this.capacity} (MAX_DESCRIPTORS_IN_FLIGHT); retry with backoff`,
      );
    }
    this.used += units;
    this.listener?.(this.used);
  }

  release(units: number): void {
    this.used = Math.max(0, this.used - units);
    this.listener?.(this.used);
  }

  inUse(): number {
    return this.used;
  }
}
