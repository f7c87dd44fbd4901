/**
 * The only source of wall-clock time in sluice. Everything that needs "now" takes a Clock,
 * so window maths is tested at exact instants without sleeping.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  nowMs(): number;
}

export const systemClock: Clock = { nowMs: () => Date.now() };

/** A clock that moves only when told to: for tests and the accuracy harness. */
export class ManualClock implements Clock {
  constructor(private current = 0) {}

  nowMs(): number {
    return this.current;
  }

  set(ms: number): void {
    this.current = ms;
  }

  advance(ms: number): void {
    this.current += ms;
  }
}
