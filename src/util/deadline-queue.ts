import type { Clock } from './clock';

/** Something waiting with a deadline; `expire` runs once it has passed, unless removed first. */
export interface DeadlineEntry {
  /** Epoch ms on the queue's clock. */
  readonly atMs: number;
  expire(): void;
  /** The queue's links; owned by the queue. */
  prev?: DeadlineEntry | undefined;
  next?: DeadlineEntry | undefined;
  queued?: boolean;
}

/**
 * Deadlines of every call in flight, on ONE timer.
 *
 * A timer per call costs a timer-list insertion and a removal per call, and under load that is a
 * measurable share of a decision. Calls mostly carry the same timeout (Envoy's 20 ms), so their
 * deadlines arrive in order: a sorted, doubly-linked list gets O(1) inserts from the tail and
 * O(1) removals, and one timer armed for the earliest deadline serves them all.
 *
 * Expiry is I/O-fair: when the timer fires, entries are expired from a `setImmediate`, after the
 * event loop has read the sockets. A reply that already arrived (say, after the loop was busy for
 * a while) therefore settles its call before the deadline is declared missed.
 */
export class DeadlineQueue {
  private head: DeadlineEntry | undefined;
  private tail: DeadlineEntry | undefined;
  private timer: NodeJS.Timeout | undefined;
  private armedForMs = Number.POSITIVE_INFINITY;
  private immediate: NodeJS.Immediate | undefined;

  constructor(private readonly clock: Clock) {}

  add(entry: DeadlineEntry): void {
    let after = this.tail;
    while (after !== undefined && after.atMs > entry.atMs) after = after.prev;
    entry.prev = after;
    entry.next = after === undefined ? this.head : after.next;
    if (entry.next === undefined) this.tail = entry;
    else entry.next.prev = entry;
    if (after === undefined) this.head = entry;
    else after.next = entry;
    entry.queued = true;
    if (entry === this.head) this.arm();
  }

  remove(entry: DeadlineEntry): void {
    if (entry.queued !== true) return;
    entry.queued = false;
    if (entry.prev === undefined) this.head = entry.next;
    else entry.prev.next = entry.next;
    if (entry.next === undefined) this.tail = entry.prev;
    else entry.next.prev = entry.prev;
    entry.prev = undefined;
    entry.next = undefined;
    // The timer stays armed for a removed head: when it fires early it re-arms for the new head,
    // which is cheaper than re-arming on every removal (most calls finish before their deadline).
  }

  /** Stops the timer; entries still queued never expire. */
  close(): void {
    clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
    this.armedForMs = Number.POSITIVE_INFINITY;
  }

  private arm(): void {
    const head = this.head;
    if (head === undefined || this.immediate !== undefined || head.atMs >= this.armedForMs) return;
    clearTimeout(this.timer);
    this.armedForMs = head.atMs;
    this.timer = setTimeout(() => this.fire(), Math.max(0, head.atMs - this.clock.nowMs()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.armedForMs = Number.POSITIVE_INFINITY;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      const now = this.clock.nowMs();
      for (let entry = this.head; entry !== undefined && entry.atMs <= now; entry = this.head) {
        this.remove(entry);
        entry.expire();
      }
      this.arm();
    });
  }
}
