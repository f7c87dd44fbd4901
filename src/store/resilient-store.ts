import { DeadlineExceededError, OverloadedError, StoreError } from '../errors';
import type { Logger } from '../logging/logger';
import type { Clock } from '../util/clock';
import { type DeadlineEntry, DeadlineQueue } from '../util/deadline-queue';
import { type BreakerPermit, type BreakerState, CircuitBreaker } from './circuit-breaker';
import { StoreQueue } from './store-queue';
import type {
  CounterStore,
  DecideOptions,
  DecisionTicket,
  LimitCheck,
  LimitOutcome,
  StoreFailureMode,
} from './counter-store';

export type { BreakerState };

/**
 * Whether the primary can answer, as the primary itself sees it:
 * - `starting`: no verdict yet (the first connection is being made). Calls wait for one.
 * - `up`: connected and answering.
 * - `down`: not connected, or connected but sick (see the Redis store's stall watch); calls are
 *   answered by their failure policy at once.
 */
export type StoreState = 'starting' | 'up' | 'down';

/** The part of the Redis store that reports its health, so the breaker and health can follow it. */
export interface StoreAvailability {
  state(): StoreState;
  /** Why the store is down, for the failure's message (e.g. `not connected`). */
  downReason(): string;
  onStateChange(listener: (state: StoreState) => void): void;
}

/** An in-process limiter that decides synchronously: the memory store's `decideNow`. */
export interface LocalDecider {
  decideNow(checks: readonly LimitCheck[], options: DecideOptions): readonly LimitOutcome[];
  close(): Promise<void>;
}

export interface ResilientStoreOptions {
  /** The store that holds the real counters (Redis). */
  readonly primary: CounterStore;
  /** When given, its health feeds the breaker, `isAvailable()` and the calls in flight. */
  readonly availability?: StoreAvailability;
  /** Decides the `local` checks while the primary cannot. */
  readonly local: LocalDecider;
  /** STORE_FAILURE_MODE: the policy of a check whose rule sets none. */
  readonly defaultFailureMode: StoreFailureMode;
  /**
   * Kept free before the caller's deadline for answering from the policy once the store has not
   * answered (encode, write, network). Default 2 ms; a call with a long deadline keeps 10% of the
   * time it had left when it arrived, up to 20 ms (see `marginFor`).
   */
  readonly deadlineMarginMs?: number;
  readonly breaker: { readonly failureThreshold: number; readonly cooldownMs: number };
  /**
   * Real time: deadlines from gRPC are wall-clock epoch ms, and so are cooldowns. (The local
   * limiter keeps its own clock, which tests may make manual.)
   */
  readonly clock: Clock;
  readonly logger?: Logger;
}

const DEFAULT_DEADLINE_MARGIN_MS = 2;
const PROPORTIONAL_MARGIN = 0.1;
const MAX_PROPORTIONAL_MARGIN_MS = 20;

/**
 * Why the primary gave no answer: the store failed or is down (`store`), the call ran out of time
 * while the store looked healthy (`deadline`: its own deadline, not an outage), or the store's
 * queue is too long for the call's deadline (`overloaded`: not sent at all).
 */
interface Failure {
  readonly reason: string;
  readonly kind: 'store' | 'deadline' | 'overloaded';
  readonly cause?: unknown;
}

type PrimaryResult =
  | { readonly ok: true; readonly outcomes: readonly LimitOutcome[] }
  | { readonly ok: false; readonly failure: Failure }
  /** Not a store failure: a bug, rethrown as is. */
  | { readonly ok: false; readonly failure?: undefined; readonly bug: unknown };

function fail(reason: string, kind: Failure['kind'] = 'store', cause?: unknown): PrimaryResult {
  return { ok: false, failure: { reason, kind, ...(cause !== undefined && { cause }) } };
}

/** What a waiting call needs from its store (one object per store, not closures per call). */
interface PendingOwner {
  expire(call: PendingDecision): void;
  /** The call's outcomes from the primary's result: its outcomes, or its failure policy's. Throws as `decide` rejects. */
  conclude(checks: readonly LimitCheck[], options: DecideOptions, result: PrimaryResult): readonly LimitOutcome[];
}

/**
 * One call waiting for the primary. It is settled exactly once: by the primary's answer, by its
 * deadline (from the shared DeadlineQueue), or by the store being declared down. Whichever comes
 * second is ignored; a primary answer that comes after the call was abandoned is taken back by the
 * primary itself (it sees `abandoned` on the ticket). `answer` is what `decide` returns: settling
 * applies the failure policy itself, so a call costs one promise here.
 */
class PendingDecision implements DeadlineEntry, DecisionTicket {
  abandoned = false;
  prev: DeadlineEntry | undefined = undefined;
  next: DeadlineEntry | undefined = undefined;
  queued = false;
  /** Its links in the store's list of calls in flight. */
  before: PendingDecision | undefined = undefined;
  after: PendingDecision | undefined = undefined;
  readonly answer: Promise<readonly LimitOutcome[]>;
  private resolveWith!: (outcomes: readonly LimitOutcome[]) => void;
  private rejectWith!: (err: unknown) => void;
  private settled = false;

  constructor(
    readonly atMs: number,
    readonly permit: BreakerPermit,
    private readonly checks: readonly LimitCheck[],
    private readonly options: DecideOptions,
    private readonly owner: PendingOwner,
  ) {
    this.answer = new Promise<readonly LimitOutcome[]>((resolve, reject) => {
      this.resolveWith = resolve;
      this.rejectWith = reject;
    });
  }

  expire(): void {
    this.owner.expire(this);
  }

  /** False when already settled. */
  settle(result: PrimaryResult): boolean {
    if (this.settled) return false;
    this.settled = true;
    try {
      this.resolveWith(this.owner.conclude(this.checks, this.options, result));
    } catch (err) {
      this.rejectWith(err);
    }
    return true;
  }
}

/**
 * Wraps the primary store with what a rate limiter in Envoy's path needs when Redis misbehaves
 * (DESIGN.md §2 "Degrades on purpose"), and only then:
 *
 * 1. A call waits for the primary until its own deadline (less a small margin), however long it
 *    queued in sluice before or after. There is no per-call store timeout: time a call spends in
 *    sluice's event loop says nothing about the store. A call that runs out of time is answered
 *    by its failure policy (`error`: DEADLINE_EXCEEDED), and that alone never opens the breaker.
 *    A call whose deadline has passed before it is sent is not sent (DEADLINE_EXCEEDED).
 *    A call the store cannot answer in time, judged from the work queued ahead of it and the
 *    store's measured throughput (StoreQueue), is not sent either: it is answered by its policy
 *    at once (`error`: RESOURCE_EXHAUSTED), so that under overload the store's time goes to calls
 *    that can still be answered.
 * 2. The store is judged sick only by the store's own signals (`availability`): a lost
 *    connection, or a connection that holds replies back (the Redis store's stall watch), and
 *    by error replies (the circuit breaker). When it goes down, every call waiting on it is
 *    answered by its policy at once, and new calls are until it is back. A call never waits on a
 *    store known to be down.
 * 3. Until the store's first verdict at start (`starting`), calls wait for it (up to their
 *    deadline), so a healthy start answers no call from the policy.
 * 4. The failure policy per check (`onStoreFailure ?? defaultFailureMode`): if any check says
 *    `error`, the call fails (UNAVAILABLE, or DEADLINE_EXCEEDED when its time ran out: Envoy's
 *    failure_mode_deny decides); otherwise `allow` checks admit, `deny` checks reject, and
 *    `local` checks are decided together by the in-process limiter, all-or-nothing among
 *    themselves as in the primary.
 */
export class ResilientStore implements CounterStore {
  private readonly breaker: CircuitBreaker;
  private readonly margin: number;
  private readonly deadlines: DeadlineQueue;
  private readonly queue: StoreQueue;
  private lastFailure = '';
  private readonly availabilityListeners: ((available: boolean) => void)[] = [];
  private lastAvailable: boolean;
  /** Calls waiting on the primary, as a list so that a store going down can answer them all. */
  private inFlight: PendingDecision | undefined;
  /** Calls waiting for the store's first verdict. */
  private readonly startWaiters = new Set<() => void>();
  private readonly pendingOwner: PendingOwner = {
    expire: (call) => this.expire(call),
    conclude: (checks, options, result) => this.conclude(checks, options, result),
  };

  constructor(private readonly options: ResilientStoreOptions) {
    this.margin = options.deadlineMarginMs ?? DEFAULT_DEADLINE_MARGIN_MS;
    this.breaker = new CircuitBreaker({ ...options.breaker, clock: options.clock });
    this.deadlines = new DeadlineQueue(options.clock);
    this.queue = new StoreQueue(options.clock);
    this.lastAvailable = this.computeAvailable();
    let previous: BreakerState = 'closed';
    this.breaker.onStateChange((state) => {
      // One warning per outage and one line when it ends; the open/half-open cycling of a long
      // outage (one probe per cooldown) goes to debug.
      const logger = options.logger;
      if (state === 'open' && previous === 'closed') {
        logger?.warn({ breaker: state, lastFailure: this.lastFailure }, 'store circuit breaker opened; failure policy applies');
      } else if (state === 'closed') {
        logger?.info({ breaker: state }, 'store circuit breaker closed; store back in use');
      } else {
        logger?.debug({ breaker: state, lastFailure: this.lastFailure }, `store circuit breaker ${state}`);
      }
      previous = state;
      this.publishAvailability();
    });
    options.availability?.onStateChange((state) => {
      if (state !== 'starting') {
        for (const wake of [...this.startWaiters]) wake();
      }
      // The store's own word is the best evidence there is: a lost or stalled connection needs no
      // failed calls to be believed, and a recovered one is used at once rather than after the
      // cooldown.
      if (state === 'up') {
        this.breaker.reset();
      } else if (state === 'down') {
        this.lastFailure = options.availability?.downReason() ?? 'store down';
        this.breaker.forceOpen();
        this.abandonInFlight(`store unavailable: ${this.lastFailure}`);
      }
      this.publishAvailability();
    });
  }

  breakerState(): BreakerState {
    return this.breaker.state();
  }

  onStateChange(listener: (state: BreakerState) => void): void {
    this.breaker.onStateChange(listener);
  }

  /**
   * Whether the primary is expected to answer: up (when that is known) and the breaker not open.
   * Half-open counts as available, so that a replica that health checks took out of rotation
   * gets the traffic whose first call probes the store.
   */
  isAvailable(): boolean {
    return this.computeAvailable();
  }

  onAvailabilityChange(listener: (available: boolean) => void): void {
    this.availabilityListeners.push(listener);
  }

  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    if (checks.length === 0) return Promise.resolve([]);
    const deadline = options.deadlineMs;
    if (deadline !== undefined && deadline <= this.options.clock.nowMs()) {
      return Promise.reject(new DeadlineExceededError('deadline exceeded before the store was asked'));
    }
    if (this.options.availability?.state() === 'starting') return this.decideOnceStarted(checks, options);
    return this.answerOf(checks, options);
  }

  /** Until the store's first verdict, a call waits for it (up to its deadline). */
  private async decideOnceStarted(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    const deadline = options.deadlineMs;
    await this.firstVerdict(deadline === undefined ? undefined : deadline - this.margin);
    if (this.options.availability?.state() === 'starting') {
      return this.conclude(checks, options, fail('the store was still connecting at the deadline', 'deadline'));
    }
    return this.answerOf(checks, options);
  }

  /** The call's answer: the primary's (when it is asked) or its failure policy's. */
  private answerOf(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    try {
      const result = this.tryPrimary(checks, options);
      return result instanceof PendingDecision ? result.answer : Promise.resolve(this.conclude(checks, options, result));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  private conclude(checks: readonly LimitCheck[], options: DecideOptions, result: PrimaryResult): readonly LimitOutcome[] {
    if (!result.ok && result.failure === undefined) throw result.bug;
    if (result.ok) return result.outcomes;
    return this.applyPolicy(checks, options, result.failure);
  }

  async close(): Promise<void> {
    this.breaker.close();
    this.deadlines.close();
    for (const wake of [...this.startWaiters]) wake();
    await Promise.all([this.options.primary.close(), this.options.local.close()]);
  }

  /**
   * Sends the call to the primary (the call waiting for it), or says why it is not sent. Called
   * once the deadline was checked and the store has had its first verdict.
   */
  private tryPrimary(checks: readonly LimitCheck[], options: DecideOptions): PrimaryResult | PendingDecision {
    const deadline = options.deadlineMs;
    const clock = this.options.clock;
    const availability = this.options.availability;
    if (availability !== undefined && availability.state() === 'down') {
      return fail(`store unavailable: ${availability.downReason()}`);
    }
    const permit = this.breaker.acquire();
    if (permit === undefined) {
      return fail(`store unavailable: circuit breaker open (last failure: ${this.lastFailure || 'unknown'})`);
    }
    const giveUpAt = deadline === undefined ? Number.POSITIVE_INFINITY : deadline - this.marginFor(deadline - clock.nowMs());
    if (giveUpAt <= clock.nowMs()) {
      this.breaker.release(permit);
      return fail(`deadline too close to ask the store (${Math.max(0, Math.round(deadline! - clock.nowMs()))} ms left)`, 'deadline');
    }
    const wait = this.queue.predictedWaitMs(checks.length);
    if (wait > giveUpAt - clock.nowMs()) {
      this.breaker.release(permit);
      return fail(
        `overloaded: about ${Math.round(wait)} ms of store work is queued ahead of this call, which has ${Math.max(0, Math.round(giveUpAt - clock.nowMs()))} ms left`,
        'overloaded',
      );
    }

    const call = new PendingDecision(giveUpAt, permit, checks, options, this.pendingOwner);
    if (deadline !== undefined) this.deadlines.add(call);
    this.track(call);
    let answer: Promise<readonly LimitOutcome[]>;
    try {
      answer = this.options.primary.decide(checks, { ...options, ticket: call });
    } catch (err) {
      answer = Promise.reject(err);
    }
    const queue = this.queue;
    queue.sent(checks.length);
    answer.then(
      (outcomes) => {
        queue.answered(checks.length);
        if (this.finish(call)) {
          this.breaker.recordSuccess(permit);
          call.settle({ ok: true, outcomes });
        }
      },
      (err: unknown) => {
        queue.answered(checks.length);
        if (!this.finish(call)) return;
        call.settle(this.classify(err, permit));
      },
    );
    return call;
  }

  /**
   * How long before its deadline a call stops waiting for the store. The caller's clock started
   * when it sent the call, ours when we read it, and under load that read can be late: a call with
   * time to spare keeps a share of it (10%, up to 20 ms) so its policy answer still arrives first.
   * Envoy's 20 ms calls keep the plain margin. 10%, not 5%: with 32 calls in flight on a shared
   * 2-core machine and Redis frozen (the fault tests), 250 ms calls answered by their policy at
   * 237.5 ms reached the client at up to 249-250 ms (p90 241-249), a call now and then after it;
   * at 230 ms they arrive at up to 229-242 ms.
   */
  private marginFor(leftMs: number): number {
    return Math.max(this.margin, Math.min(MAX_PROPORTIONAL_MARGIN_MS, leftMs * PROPORTIONAL_MARGIN));
  }

  /** What a failed primary call says about the store; records it with the breaker. */
  private classify(err: unknown, permit: BreakerPermit): PrimaryResult {
    if (!(err instanceof StoreError)) {
      // A bug, not an outage: no policy hides it, and it says nothing about the store's health.
      this.breaker.release(permit);
      return { ok: false, bug: err };
    }
    if (!err.transient) {
      // The store answered, with an error (a script or data problem): it is reachable, so the
      // breaker stays closed, but this call still has no decision and the policy applies.
      this.breaker.recordSuccess(permit);
      return fail(err.message, 'store', err);
    }
    this.lastFailure = err.message;
    this.breaker.recordFailure(permit);
    return fail(`store unavailable: ${err.message}`, 'store', err);
  }

  /** The call's time ran out while the store looked healthy: the policy answers, the breaker is not told. */
  private expire(call: PendingDecision): void {
    if (!this.finish(call)) return;
    call.abandoned = true;
    this.breaker.release(call.permit);
    call.settle(fail("deadline exceeded: the store had not answered within the call's deadline", 'deadline'));
  }

  /** The store went down: every call waiting on it is answered by its policy now. */
  private abandonInFlight(reason: string): void {
    for (let call = this.inFlight; call !== undefined; call = this.inFlight) {
      this.finish(call);
      call.abandoned = true;
      this.breaker.release(call.permit);
      call.settle(fail(reason));
    }
  }

  private track(call: PendingDecision): void {
    call.after = this.inFlight;
    if (this.inFlight !== undefined) this.inFlight.before = call;
    this.inFlight = call;
  }

  /** Takes the call off the deadline queue and the in-flight list; false if it was already settled. */
  private finish(call: PendingDecision): boolean {
    if (call.abandoned) return false;
    this.deadlines.remove(call);
    if (call.before === undefined) {
      if (this.inFlight !== call) return false;
      this.inFlight = call.after;
    } else {
      call.before.after = call.after;
    }
    if (call.after !== undefined) call.after.before = call.before;
    call.before = undefined;
    call.after = undefined;
    return true;
  }

  /** Resolves when the store has its first verdict, or at `untilMs` (epoch ms), whichever is first. */
  private firstVerdict(untilMs: number | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const wake = (): void => {
        this.startWaiters.delete(wake);
        clearTimeout(timer);
        resolve();
      };
      this.startWaiters.add(wake);
      if (untilMs !== undefined) timer = setTimeout(wake, Math.max(0, untilMs - this.options.clock.nowMs()));
    });
  }

  private applyPolicy(checks: readonly LimitCheck[], options: DecideOptions, failure: Failure): readonly LimitOutcome[] {
    const modes = checks.map((check) => check.onStoreFailure ?? this.options.defaultFailureMode);
    if (modes.includes('error')) {
      switch (failure.kind) {
        case 'deadline':
          throw new DeadlineExceededError(failure.reason, { cause: failure.cause });
        case 'overloaded':
          throw new OverloadedError(failure.reason);
        case 'store':
          throw new StoreError(failure.reason, true, { cause: failure.cause });
      }
    }

    const outcomes: LimitOutcome[] = new Array<LimitOutcome>(checks.length);
    const localIndexes: number[] = [];
    let denied = false;
    checks.forEach((check, i) => {
      switch (modes[i]) {
        case 'allow':
          outcomes[i] = { admitted: true, remaining: check.limit, resetMs: 0 };
          break;
        case 'deny':
          outcomes[i] = { admitted: false, remaining: 0, resetMs: check.windowMs };
          if (check.enforced) denied = true;
          break;
        default:
          localIndexes.push(i);
      }
    });

    if (localIndexes.length > 0) {
      const localChecks = localIndexes.map((i) => checks[i]!);
      // All-or-nothing: when a `deny` check already rejects the request, the local checks must be
      // answered without being charged. A check that can never admit, decided in the same call,
      // makes the local limiter reject the request and report each check's uncharged outcome.
      if (denied && !options.chargeRejectedHits) localChecks.push(neverAdmits(localChecks[0]!));
      const local = this.options.local.decideNow(localChecks, {
        chargeRejectedHits: options.chargeRejectedHits,
      });
      localIndexes.forEach((index, j) => {
        outcomes[index] = local[j]!;
      });
    }
    return outcomes;
  }

  private computeAvailable(): boolean {
    const up = this.options.availability === undefined || this.options.availability.state() === 'up';
    return up && this.breaker.state() !== 'open';
  }

  private publishAvailability(): void {
    const available = this.computeAvailable();
    if (available === this.lastAvailable) return;
    this.lastAvailable = available;
    for (const listener of this.availabilityListeners) listener(available);
  }
}

/**
 * A check no request can pass (limit 0, one hit, enforced), on a key no real counter can have
 * (real keys, from counterKey, hold `sluice:v3:` after a prefix without NUL). It is never charged: it rejects the request it is part of.
 */
function neverAdmits(like: LimitCheck): LimitCheck {
  return {
    key: '\u0000sluice:store-failure-deny',
    // Fixed window: the plainest maths for a limit of 0 (count + 1 > 0, always).
    algorithm: 'fixed_window',
    limit: 0,
    windowMs: like.windowMs,
    hits: 1,
    enforced: true,
  };
}
