import { StoreError } from '../errors';
import type { Logger } from '../logging/logger';
import type { Clock } from '../util/clock';
import { setIoFairTimeout } from '../util/io-fair-timer';
import { type BreakerPermit, type BreakerState, CircuitBreaker } from './circuit-breaker';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome, StoreFailureMode } from './counter-store';

export type { BreakerState };

/** The part of the Redis store that reports its connection, so health and the breaker can follow it. */
export interface StoreAvailability {
  isAvailable(): boolean;
  onAvailabilityChange(listener: (available: boolean) => void): void;
}

/** An in-process limiter that decides synchronously: the memory store's `decideNow`. */
export interface LocalDecider {
  decideNow(checks: readonly LimitCheck[], options: DecideOptions): readonly LimitOutcome[];
  close(): Promise<void>;
}

export interface ResilientStoreOptions {
  /** The store that holds the real counters (Redis). */
  readonly primary: CounterStore;
  /** When given, its connection state feeds the breaker and `isAvailable()`. */
  readonly availability?: StoreAvailability;
  /** Decides the `local` checks while the primary cannot. */
  readonly local: LocalDecider;
  /** STORE_FAILURE_MODE: the policy of a check whose rule sets none. */
  readonly defaultFailureMode: StoreFailureMode;
  /** REDIS_TIMEOUT: the longest a call waits for the primary. */
  readonly timeoutMs: number;
  /**
   * Kept free before the caller's deadline for answering after the store gave up (encode, write,
   * network). Default 2 ms.
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

/** Why the primary gave no answer, and whether that tells the breaker the primary is unwell. */
interface Failure {
  readonly reason: string;
  /** False when the store is not to blame (the caller left no time), so the breaker ignores it. */
  readonly countsAgainstStore: boolean;
  readonly cause?: unknown;
}

type PrimaryResult =
  | { readonly ok: true; readonly outcomes: readonly LimitOutcome[] }
  | { readonly ok: false; readonly failure: Failure };

function fail(failure: Failure): PrimaryResult {
  return { ok: false, failure };
}

/**
 * Wraps the primary store with what a rate limiter in Envoy's path needs when Redis misbehaves
 * (DESIGN.md §2 "Degrades on purpose"):
 *
 * 1. A timeout per call: min(timeoutMs, deadline − now − margin). A slow store is worse than a dead
 *    one; sluice answers before Envoy gives up on it.
 * 2. A circuit breaker: once transient failures in the last second reach `failureThreshold` and
 *    are at least half of the calls, the primary is not called at all for `cooldownMs`, then one
 *    probe decides. A dead Redis then costs nothing per
 *    request instead of a timeout per request.
 * 3. The failure policy per check (`onStoreFailure ?? defaultFailureMode`): if any check says
 *    `error`, the call fails (UNAVAILABLE: Envoy's failure_mode_deny decides); otherwise `allow`
 *    checks admit, `deny` checks reject, and `local` checks are decided together by the in-process
 *    limiter, all-or-nothing among themselves as in the primary.
 */
export class ResilientStore implements CounterStore {
  private readonly breaker: CircuitBreaker;
  private readonly margin: number;
  private lastFailure = '';
  private readonly availabilityListeners: ((available: boolean) => void)[] = [];
  private lastAvailable: boolean;

  constructor(private readonly options: ResilientStoreOptions) {
    this.margin = options.deadlineMarginMs ?? DEFAULT_DEADLINE_MARGIN_MS;
    this.breaker = new CircuitBreaker({ ...options.breaker, clock: options.clock });
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
    options.availability?.onAvailabilityChange((available) => {
      // The connection is the best evidence there is: a lost one needs no timeouts to be believed,
      // and a re-established one should be used at once rather than after the cooldown.
      if (available) {
        this.breaker.reset();
      } else {
        this.lastFailure = 'connection lost';
        this.breaker.forceOpen();
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
   * Whether the primary is expected to answer: connected (when that is known) and the breaker not
   * open. Half-open counts as available, so that a replica that health checks took out of
   * rotation gets the traffic whose first call probes the store.
   */
  isAvailable(): boolean {
    return this.computeAvailable();
  }

  onAvailabilityChange(listener: (available: boolean) => void): void {
    this.availabilityListeners.push(listener);
  }

  async decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    if (checks.length === 0) return [];
    const result = await this.tryPrimary(checks, options);
    return result.ok ? result.outcomes : this.applyPolicy(checks, options, result.failure);
  }

  async close(): Promise<void> {
    this.breaker.close();
    await Promise.all([this.options.primary.close(), this.options.local.close()]);
  }

  /** The primary's outcomes, or why there are none. Never rejects with a StoreError. */
  private async tryPrimary(checks: readonly LimitCheck[], options: DecideOptions): Promise<PrimaryResult> {
    const now = this.options.clock.nowMs();
    const budget =
      options.deadlineMs === undefined ? Infinity : options.deadlineMs - now - this.margin;
    if (budget <= 0) {
      // The caller will not read the answer; charging the primary for it would count hits nobody
      // was told about.
      return fail({ reason: 'deadline exceeded before the store was asked', countsAgainstStore: false });
    }
    if (this.options.availability !== undefined && !this.options.availability.isAvailable()) {
      return fail({ reason: 'not connected', countsAgainstStore: false });
    }
    const permit = this.breaker.acquire();
    if (permit === undefined) {
      return fail({
        reason: `circuit breaker open (last failure: ${this.lastFailure || 'unknown'})`,
        countsAgainstStore: false,
      });
    }

    const cappedByDeadline = budget < this.options.timeoutMs;
    const waitMs = Math.max(1, Math.floor(Math.min(this.options.timeoutMs, budget)));
    const timedOut: Failure = {
      reason: cappedByDeadline ? `deadline reached after ${waitMs} ms` : `timed out after ${waitMs} ms`,
      // A deadline shorter than our timeout is the caller's choice, not a sign of a sick store.
      countsAgainstStore: !cappedByDeadline,
    };
    // The primary gets our give-up instant as its deadline, so that a charge which lands after we
    // answered from the policy is taken back there: nobody was told about those hits.
    const giveUpAtMs = now + waitMs;
    try {
      const outcomes = await withTimeout(this.options.primary.decide(checks, { ...options, deadlineMs: giveUpAtMs }), waitMs);
      if (outcomes === TIMED_OUT) return this.failed(permit, timedOut);
      this.breaker.recordSuccess(permit);
      return { ok: true, outcomes };
    } catch (err) {
      if (!(err instanceof StoreError)) {
        // A bug, not an outage: no policy hides it, and it says nothing about the store's health.
        this.breaker.release(permit);
        throw err;
      }
      if (!err.transient) {
        // The store answered, with an error (a script or data problem): it is reachable, so the
        // breaker stays closed, but this call still has no decision and the policy applies.
        this.breaker.recordSuccess(permit);
        return fail({ reason: err.message, countsAgainstStore: false, cause: err });
      }
      // The primary may enforce the same instant itself and lose the race to our timer by a hair:
      // that is our timeout, reported as such.
      if (this.options.clock.nowMs() >= giveUpAtMs - 1) return this.failed(permit, { ...timedOut, cause: err });
      return this.failed(permit, { reason: err.message, countsAgainstStore: true, cause: err });
    }
  }

  private failed(permit: BreakerPermit, failure: Failure): PrimaryResult {
    if (failure.countsAgainstStore) {
      this.lastFailure = failure.reason;
      this.breaker.recordFailure(permit);
    } else {
      this.breaker.release(permit);
    }
    return fail(failure);
  }

  private applyPolicy(checks: readonly LimitCheck[], options: DecideOptions, failure: Failure): readonly LimitOutcome[] {
    const modes = checks.map((check) => check.onStoreFailure ?? this.options.defaultFailureMode);
    if (modes.includes('error')) {
      throw new StoreError(`store unavailable: ${failure.reason}`, true, { cause: failure.cause });
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
    const connected = this.options.availability?.isAvailable() ?? true;
    return connected && this.breaker.state() !== 'open';
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
 * (real keys, from counterKey, hold `sluice:v2:` after a prefix without NUL). It is never charged: it rejects the request it is part of.
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

const TIMED_OUT: unique symbol = Symbol('timed out');

/**
 * Races `promise` against a timer. The loser is not cancelled (a Redis command cannot be): a late
 * rejection is swallowed here so it never becomes an unhandled rejection.
 */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  return new Promise<T | typeof TIMED_OUT>((resolve, reject) => {
    const cancel = setIoFairTimeout(() => resolve(TIMED_OUT), ms);
    promise.then(
      (value) => {
        cancel();
        resolve(value);
      },
      (err: unknown) => {
        cancel();
        reject(err);
      },
    );
  });
}
