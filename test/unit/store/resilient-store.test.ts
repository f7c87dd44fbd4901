import { DeadlineExceededError, StoreError } from '../../../src/errors';
import type {
  CounterStore,
  DecideOptions,
  LimitCheck,
  LimitOutcome,
  StoreFailureMode,
} from '../../../src/store/counter-store';
import { MemoryStore } from '../../../src/store/memory/memory-store';
import { ResilientStore, type ResilientStoreOptions, type StoreAvailability, type StoreState } from '../../../src/store/resilient-store';
import { type Clock, ManualClock } from '../../../src/util/clock';
import { describeCounterStore } from '../../conformance/counter-store.suite';

// Healthy, the wrapper must be invisible: the whole store contract holds through it.
describeCounterStore(
  'resilient(memory)',
  (clock) =>
    new ResilientStore({
      primary: new MemoryStore(clock),
      local: new MemoryStore(clock),
      defaultFailureMode: 'error',
      breaker: { failureThreshold: 5, cooldownMs: 1_000 },
      clock,
    }),
);

type Behaviour = 'ok' | 'hang' | 'transient' | 'fatal' | 'bug';

/** A primary store whose behaviour the test sets, that records what it was asked. */
class ScriptedStore implements CounterStore {
  behaviour: Behaviour = 'ok';
  readonly calls: { checks: readonly LimitCheck[]; options: DecideOptions }[] = [];
  private readonly hanging: ((outcomes: readonly LimitOutcome[]) => void)[] = [];
  private readonly hangingRejects: ((err: unknown) => void)[] = [];
  closed = false;

  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    this.calls.push({ checks, options });
    switch (this.behaviour) {
      case 'ok':
        return Promise.resolve(checks.map((c) => ({ admitted: true, remaining: c.limit - c.hits, resetMs: 1234 })));
      case 'hang':
        return new Promise((resolve, reject) => {
          this.hanging.push(resolve);
          this.hangingRejects.push(reject);
        });
      case 'transient':
        return Promise.reject(new StoreError('connection refused', true));
      case 'fatal':
        return Promise.reject(new StoreError('WRONGTYPE in script', false));
      case 'bug':
        return Promise.reject(new TypeError('undefined is not a function'));
    }
  }

  /** Answers every hanging call now (late, after the wrapper has given up on them). */
  releaseHanging(): void {
    this.releaseSome(this.hanging.length);
  }

  /** Answers the `n` oldest hanging calls. */
  releaseSome(n: number): void {
    this.hangingRejects.splice(0, n);
    for (const resolve of this.hanging.splice(0, n)) resolve([]);
  }

  hangingCount(): number {
    return this.hanging.length;
  }

  failHanging(): void {
    for (const reject of this.hangingRejects.splice(0)) reject(new StoreError('late failure', true));
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

/** A store state the test flips, like the Redis store's. */
class FakeAvailability implements StoreAvailability {
  private current: StoreState;
  private readonly listeners: ((state: StoreState) => void)[] = [];

  constructor(initial: StoreState = 'up') {
    this.current = initial;
  }

  state(): StoreState {
    return this.current;
  }

  downReason(): string {
    return 'not connected';
  }

  onStateChange(listener: (state: StoreState) => void): void {
    this.listeners.push(listener);
  }

  set(state: StoreState): void {
    this.current = state;
    for (const listener of this.listeners) listener(state);
  }
}

const T0 = 1_000_000_000;
const WINDOW = 60_000;
const OPTS: DecideOptions = { chargeRejectedHits: false };

function check(key: string, limit: number, extra: Partial<LimitCheck> = {}): LimitCheck {
  return { key, algorithm: 'fixed_window', limit, windowMs: WINDOW, hits: 1, enforced: true, ...extra };
}

function policy(mode: StoreFailureMode): Partial<LimitCheck> {
  return { onStoreFailure: mode };
}

let clock: ManualClock;
let primary: ScriptedStore;
let local: MemoryStore;
let store: ResilientStore;

function build(overrides: Partial<ResilientStoreOptions> = {}): ResilientStore {
  store = new ResilientStore({
    primary,
    local,
    defaultFailureMode: 'error',
    breaker: { failureThreshold: 3, cooldownMs: 1_000 },
    clock,
    ...overrides,
  });
  return store;
}

async function rejection(promise: Promise<unknown>): Promise<StoreError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof StoreError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

async function deadlineRejection(promise: Promise<unknown>): Promise<DeadlineExceededError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof DeadlineExceededError) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** Real time, as in production: deadlines fire from a real timer. */
const realClock: Clock = { nowMs: () => Date.now() };

describe('ResilientStore', () => {
  beforeEach(() => {
    clock = new ManualClock(T0);
    primary = new ScriptedStore();
    local = new MemoryStore(clock);
  });

  afterEach(async () => {
    await store.close();
  });

  describe('healthy primary', () => {
    it('returns the primary outcomes and passes the options on, with a ticket it has not abandoned', async () => {
      build();
      const outcomes = await store.decide([check('a', 10)], { chargeRejectedHits: true, deadlineMs: T0 + 20 });
      expect(outcomes).toEqual([{ admitted: true, remaining: 9, resetMs: 1234 }]);
      const options = primary.calls[0]!.options;
      expect(options).toMatchObject({ chargeRejectedHits: true, deadlineMs: T0 + 20 });
      expect(options.ticket?.abandoned).toBe(false);
      expect(store.breakerState()).toBe('closed');
    });

    it('answers an empty request without asking anyone', async () => {
      build();
      await expect(store.decide([], OPTS)).resolves.toEqual([]);
      expect(primary.calls).toHaveLength(0);
    });

    it('closes the primary and the local limiter', async () => {
      build();
      await store.close();
      expect(primary.closed).toBe(true);
    });
  });

  describe('deadlines', () => {
    it('waits for a slow primary until the call deadline less the margin, then answers by the policy', async () => {
      build({ clock: realClock });
      primary.behaviour = 'hang';
      const started = performance.now();
      const err = await deadlineRejection(store.decide([check('a', 10)], { ...OPTS, deadlineMs: Date.now() + 42 }));
      const elapsed = performance.now() - started;
      expect(err.message).toBe("deadline exceeded: the store had not answered within the call's deadline");
      expect(err.kind).toBe('deadline_exceeded');
      // 42 ms to the deadline, less the margin (10% of it: 4.2 ms).
      expect(elapsed).toBeGreaterThanOrEqual(37);
      expect(primary.calls[0]!.options.ticket?.abandoned).toBe(true);
    });

    it('never blames the store for a call that ran out of time: the breaker stays closed', async () => {
      build({ clock: realClock });
      primary.behaviour = 'hang';
      await Promise.all(
        Array.from({ length: 20 }, () => deadlineRejection(store.decide([check('a', 10)], { ...OPTS, deadlineMs: Date.now() + 5 }))),
      );
      expect(store.breakerState()).toBe('closed');
      expect(store.isAvailable()).toBe(true);
    });

    it('answers a permissive policy at the deadline', async () => {
      build({ clock: realClock, defaultFailureMode: 'allow' });
      primary.behaviour = 'hang';
      await expect(store.decide([check('a', 10)], { ...OPTS, deadlineMs: Date.now() + 10 })).resolves.toEqual([
        { admitted: true, remaining: 10, resetMs: 0 },
      ]);
    });

    it('without a deadline, waits as long as the primary takes', async () => {
      build({ clock: realClock });
      primary.behaviour = 'hang';
      const answer = store.decide([check('a', 10)], OPTS);
      await new Promise((resolve) => setTimeout(resolve, 60));
      primary.releaseHanging();
      await expect(answer).resolves.toEqual([]);
      expect(primary.calls[0]!.options.ticket?.abandoned).toBe(false);
    });

    it('does not ask the primary when the deadline has passed, whatever the policy (DEADLINE_EXCEEDED)', async () => {
      build({ defaultFailureMode: 'allow' });
      const err = await deadlineRejection(store.decide([check('a', 10)], { ...OPTS, deadlineMs: T0 }));
      expect(err.message).toBe('deadline exceeded before the store was asked');
      expect(primary.calls).toHaveLength(0);
    });

    it('does not send a call the store cannot answer within its deadline: RESOURCE_EXHAUSTED, or its policy', async () => {
      build({ clock: realClock });
      primary.behaviour = 'hang';
      // 400 checks queued in a store that answers 40 of them every 5 ms: it is saturated, at about 8 checks a ms.
      const queued = Array.from({ length: 100 }, (_, i) => store.decide([check(`q${i}`, 10), check(`r${i}`, 10), check(`s${i}`, 10), check(`t${i}`, 10)], OPTS));
      while (primary.hangingCount() > 0) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        primary.releaseSome(10);
      }
      await Promise.all(queued);
      // The rate it learnt makes 400 more checks queued a wait of far more than 20 ms.
      const more = Array.from({ length: 100 }, (_, i) => store.decide([check(`u${i}`, 10), check(`v${i}`, 10), check(`w${i}`, 10), check(`x${i}`, 10)], OPTS));
      const sentBefore = primary.calls.length;
      const err = await store.decide([check('late', 10)], { ...OPTS, deadlineMs: Date.now() + 20 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ kind: 'resource_exhausted', message: expect.stringMatching(/^overloaded: about \d+ ms of store work is queued ahead of this call, which has \d+ ms left$/) });
      const allowed = await store.decide([check('late', 10, policy('allow'))], { ...OPTS, deadlineMs: Date.now() + 20 });
      expect(allowed).toEqual([{ admitted: true, remaining: 10, resetMs: 0 }]);
      expect(primary.calls.length).toBe(sentBefore);
      // A call with time to wait is still sent.
      const patient = store.decide([check('patient', 10)], { ...OPTS, deadlineMs: Date.now() + 60_000 });
      expect(primary.calls.length).toBe(sentBefore + 1);
      primary.releaseHanging();
      await Promise.all([...more, patient]);
      expect(store.breakerState()).toBe('closed');
    });

    it('swallows a late answer or late failure of a call it gave up on', async () => {
      build({ clock: realClock });
      primary.behaviour = 'hang';
      await deadlineRejection(store.decide([check('a', 10)], { ...OPTS, deadlineMs: Date.now() + 5 }));
      await deadlineRejection(store.decide([check('b', 10)], { ...OPTS, deadlineMs: Date.now() + 5 }));
      primary.releaseHanging();
      await deadlineRejection(store.decide([check('c', 10)], { ...OPTS, deadlineMs: Date.now() + 5 }));
      primary.failHanging();
      // An unhandled rejection would fail the test run; give it a turn to surface.
      await new Promise((resolve) => setImmediate(resolve));
      expect(store.breakerState()).toBe('closed');
    });
  });

  describe('circuit breaker', () => {
    it('opens after consecutive transient failures, then fails fast without touching the primary', async () => {
      build();
      const states: string[] = [];
      store.onStateChange((state) => states.push(state));
      primary.behaviour = 'transient';
      for (let i = 0; i < 3; i++) {
        const err = await rejection(store.decide([check('a', 10)], OPTS));
        expect(err.message).toBe('store unavailable: connection refused');
      }
      expect(store.breakerState()).toBe('open');
      expect(states).toEqual(['open']);

      primary.behaviour = 'hang';
      const started = performance.now();
      const err = await rejection(store.decide([check('a', 10)], OPTS));
      expect(performance.now() - started).toBeLessThan(20);
      expect(err.message).toBe('store unavailable: circuit breaker open (last failure: connection refused)');
      expect(primary.calls).toHaveLength(3);
    });

    it('stays closed on a run of failures while the store answered within the last 100 ms', async () => {
      build();
      primary.behaviour = 'ok';
      await store.decide([check('a', 10)], OPTS);
      clock.advance(99);
      primary.behaviour = 'transient';
      for (let i = 0; i < 10; i++) await rejection(store.decide([check('a', 10)], OPTS));
      expect(store.breakerState()).toBe('closed');
      clock.advance(1);
      await rejection(store.decide([check('a', 10)], OPTS));
      expect(store.breakerState()).toBe('open');
    });

    it('resets the count on a success: only consecutive failures open it', async () => {
      build();
      for (let i = 0; i < 5; i++) {
        primary.behaviour = 'transient';
        await rejection(store.decide([check('a', 10)], OPTS));
        await rejection(store.decide([check('a', 10)], OPTS));
        primary.behaviour = 'ok';
        await store.decide([check('a', 10)], OPTS);
      }
      expect(store.breakerState()).toBe('closed');
    });

    it('half-opens after the cooldown and lets exactly one probe through; its success closes it', async () => {
      build();
      const states: string[] = [];
      store.onStateChange((state) => states.push(state));
      primary.behaviour = 'transient';
      for (let i = 0; i < 3; i++) await rejection(store.decide([check('a', 10)], OPTS));
      clock.advance(999);
      expect(store.breakerState()).toBe('open');
      clock.advance(1);
      expect(store.breakerState()).toBe('half_open');

      primary.behaviour = 'hang';
      const probe = store.decide([check('a', 10)], OPTS);
      // While the probe is out, everyone else fails fast.
      const other = await rejection(store.decide([check('b', 10)], OPTS));
      expect(other.message).toMatch(/^store unavailable: circuit breaker open/);
      expect(primary.calls).toHaveLength(4);
      primary.releaseHanging();
      await expect(probe).resolves.toEqual([]);
      expect(store.breakerState()).toBe('closed');
      expect(states).toEqual(['open', 'half_open', 'closed']);

      primary.behaviour = 'ok';
      await store.decide([check('a', 10)], OPTS);
      expect(primary.calls).toHaveLength(5);
    });

    it('reopens for another cooldown when the probe fails', async () => {
      build();
      primary.behaviour = 'transient';
      for (let i = 0; i < 3; i++) await rejection(store.decide([check('a', 10)], OPTS));
      clock.advance(1_000);
      await rejection(store.decide([check('a', 10)], OPTS));
      expect(primary.calls).toHaveLength(4);
      expect(store.breakerState()).toBe('open');
      clock.advance(500);
      await rejection(store.decide([check('a', 10)], OPTS));
      expect(primary.calls).toHaveLength(4);
      clock.advance(500);
      expect(store.breakerState()).toBe('half_open');
    });

    it('half-opens from a timer too, without traffic, so health can recover', async () => {
      // The breaker measures the cooldown on its clock; here a real one, as in production.
      build({ breaker: { failureThreshold: 1, cooldownMs: 40 }, clock: { nowMs: () => Date.now() } });
      const available: boolean[] = [];
      store.onAvailabilityChange((ok) => available.push(ok));
      primary.behaviour = 'transient';
      await rejection(store.decide([check('a', 10)], OPTS));
      expect(store.isAvailable()).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 120));
      expect(available).toEqual([false, true]);
      expect(store.breakerState()).toBe('half_open');
    });

    it('does not count a non-transient store error: the store answered', async () => {
      build({ defaultFailureMode: 'allow' });
      primary.behaviour = 'fatal';
      for (let i = 0; i < 5; i++) {
        await expect(store.decide([check('a', 10)], OPTS)).resolves.toEqual([{ admitted: true, remaining: 10, resetMs: 0 }]);
      }
      expect(store.breakerState()).toBe('closed');
      expect(primary.calls).toHaveLength(5);
    });

    it('rethrows a bug unchanged, whatever the policy, and does not count it', async () => {
      build({ defaultFailureMode: 'allow' });
      primary.behaviour = 'bug';
      for (let i = 0; i < 5; i++) {
        await expect(store.decide([check('a', 10)], OPTS)).rejects.toThrow(TypeError);
      }
      expect(store.breakerState()).toBe('closed');
    });
  });

  describe('failure policy per check', () => {
    beforeEach(() => {
      primary.behaviour = 'transient';
    });

    it('error (the default) fails the whole call, naming the cause', async () => {
      build();
      const err = await rejection(store.decide([check('a', 10, policy('allow')), check('b', 10)], OPTS));
      expect(err.message).toBe('store unavailable: connection refused');
      expect(err.cause).toBeInstanceOf(StoreError);
    });

    it('a single check with error fails the call even when the default is permissive', async () => {
      build({ defaultFailureMode: 'allow' });
      const err = await rejection(store.decide([check('a', 10), check('b', 10, policy('error'))], OPTS));
      expect(err.message).toBe('store unavailable: connection refused');
    });

    it('allow admits with the whole limit left; deny rejects for a window', async () => {
      build({ defaultFailureMode: 'deny' });
      const outcomes = await store.decide([check('a', 10, policy('allow')), check('b', 7)], OPTS);
      expect(outcomes).toEqual([
        { admitted: true, remaining: 10, resetMs: 0 },
        { admitted: false, remaining: 0, resetMs: WINDOW },
      ]);
    });

    it('local decides with the in-process limiter, and keeps counting across calls', async () => {
      build({ defaultFailureMode: 'local' });
      const results: boolean[] = [];
      for (let i = 0; i < 4; i++) {
        const [outcome] = await store.decide([check('a', 3)], OPTS);
        results.push(outcome!.admitted);
      }
      expect(results).toEqual([true, true, true, false]);
    });

    it('keeps all-or-nothing among the local checks', async () => {
      build({ defaultFailureMode: 'local' });
      await store.decide([check('tight', 1)], OPTS);
      // `tight` rejects, so `loose` must not be charged.
      const outcomes = await store.decide([check('loose', 2), check('tight', 1)], OPTS);
      expect(outcomes.map((o) => o.admitted)).toEqual([true, false]);
      const [loose] = await store.decide([check('loose', 2, { hits: 0 })], OPTS);
      expect(loose!.remaining).toBe(2);
    });

    it('does not charge local checks when a deny check rejects the request', async () => {
      build();
      const outcomes = await store.decide([check('l', 5, policy('local')), check('d', 5, policy('deny'))], OPTS);
      expect(outcomes[0]).toEqual({ admitted: true, remaining: 5, resetMs: 0 });
      expect(outcomes[1]).toEqual({ admitted: false, remaining: 0, resetMs: WINDOW });
      const [after] = await store.decide([check('l', 5, { ...policy('local'), hits: 0 })], OPTS);
      expect(after!.remaining).toBe(5);
    });

    it('charges local checks when the only deny check is not enforced (shadow), or with chargeRejectedHits', async () => {
      build();
      await store.decide([check('l', 5, policy('local')), check('d', 5, { ...policy('deny'), enforced: false })], OPTS);
      const [afterShadow] = await store.decide([check('l', 5, { ...policy('local'), hits: 0 })], OPTS);
      expect(afterShadow!.remaining).toBe(4);
      await store.decide([check('l', 5, policy('local')), check('d', 5, policy('deny'))], { chargeRejectedHits: true });
      const [afterCharge] = await store.decide([check('l', 5, { ...policy('local'), hits: 0 })], OPTS);
      expect(afterCharge!.remaining).toBe(3);
    });

    it('keeps every outcome in check order with mixed policies', async () => {
      build({ defaultFailureMode: 'allow' });
      const outcomes = await store.decide(
        [check('x', 4, policy('local')), check('y', 9), check('z', 2, { ...policy('deny'), enforced: false })],
        OPTS,
      );
      expect(outcomes).toEqual([
        { admitted: true, remaining: 3, resetMs: expect.any(Number) as number },
        { admitted: true, remaining: 9, resetMs: 0 },
        { admitted: false, remaining: 0, resetMs: WINDOW },
      ]);
    });

    it('applies the policy while the breaker is open, and uses the primary again once it is back', async () => {
      build({ defaultFailureMode: 'local' });
      for (let i = 0; i < 3; i++) await store.decide([check('a', 100)], OPTS);
      expect(store.breakerState()).toBe('open');
      primary.behaviour = 'hang';
      const [fast] = await store.decide([check('a', 100)], OPTS);
      expect(fast).toEqual({ admitted: true, remaining: 96, resetMs: expect.any(Number) as number });
      primary.behaviour = 'ok';
      clock.advance(1_000);
      const [back] = await store.decide([check('a', 100)], OPTS);
      expect(back).toEqual({ admitted: true, remaining: 99, resetMs: 1234 });
      expect(store.breakerState()).toBe('closed');
    });
  });

  describe('store state', () => {
    it('fails fast while the primary reports it is down, and recovers at once when it is up', async () => {
      const availability = new FakeAvailability();
      build({ availability });
      const changes: boolean[] = [];
      store.onAvailabilityChange((ok) => changes.push(ok));
      expect(store.isAvailable()).toBe(true);

      availability.set('down');
      expect(store.isAvailable()).toBe(false);
      expect(store.breakerState()).toBe('open');
      const err = await rejection(store.decide([check('a', 10)], OPTS));
      expect(err.message).toBe('store unavailable: not connected');
      expect(primary.calls).toHaveLength(0);

      // Back before the cooldown: no reason to keep failing.
      availability.set('up');
      expect(store.isAvailable()).toBe(true);
      expect(store.breakerState()).toBe('closed');
      await store.decide([check('a', 10)], OPTS);
      expect(primary.calls).toHaveLength(1);
      expect(changes).toEqual([false, true]);
    });

    it('answers every call waiting on the primary by its policy the moment it goes down, abandoning them', async () => {
      const availability = new FakeAvailability();
      build({ availability, clock: realClock });
      primary.behaviour = 'hang';
      const waiting = [
        rejection(store.decide([check('a', 10)], OPTS)),
        rejection(store.decide([check('b', 10)], { ...OPTS, deadlineMs: Date.now() + 60_000 })),
        store.decide([check('c', 10, policy('allow'))], OPTS),
      ];
      await new Promise((resolve) => setImmediate(resolve));
      availability.set('down');
      const [a, b, c] = await Promise.all(waiting);
      expect((a as StoreError).message).toBe('store unavailable: not connected');
      expect((b as StoreError).message).toBe('store unavailable: not connected');
      expect(c).toEqual([{ admitted: true, remaining: 10, resetMs: 0 }]);
      expect(primary.calls.map((call) => call.options.ticket?.abandoned)).toEqual([true, true, true]);
    });

    it('while starting, calls wait for the first verdict instead of failing', async () => {
      const availability = new FakeAvailability('starting');
      build({ availability, clock: realClock });
      expect(store.isAvailable()).toBe(false);
      const answer = store.decide([check('a', 10)], { ...OPTS, deadlineMs: Date.now() + 5_000 });
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(primary.calls).toHaveLength(0);
      availability.set('up');
      await expect(answer).resolves.toEqual([{ admitted: true, remaining: 9, resetMs: 1234 }]);
    });

    it('while starting, a call whose deadline comes first is answered by its policy (DEADLINE_EXCEEDED for error)', async () => {
      const availability = new FakeAvailability('starting');
      build({ availability, clock: realClock });
      const err = await deadlineRejection(store.decide([check('a', 10)], { ...OPTS, deadlineMs: Date.now() + 15 }));
      expect(err.message).toBe('the store was still connecting at the deadline');
      expect(primary.calls).toHaveLength(0);
    });

    it('a start whose verdict is down answers waiting calls by the policy at once', async () => {
      const availability = new FakeAvailability('starting');
      build({ availability, clock: realClock });
      const answer = rejection(store.decide([check('a', 10)], OPTS));
      availability.set('down');
      expect((await answer).message).toBe('store unavailable: not connected');
    });
  });
});
