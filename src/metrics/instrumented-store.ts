import { StoreError } from '../errors';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../store/counter-store';
import type { StoreErrorKind } from './metrics';

export interface StoreCallRecorder {
  storeCall(seconds: number, error: StoreErrorKind | undefined): void;
}

/**
 * Times every call to the store it wraps and sorts failures by kind. Placed around the Redis store
 * *inside* the resilient layer, so it sees the real calls (not the answers the failure policy
 * gives while the breaker is open) and every late reply:
 * - `timeout`: the reply came after the caller stopped waiting (its deadline passed, or the store
 *   was declared down meanwhile) — the resilient layer had already answered from its policy;
 * - `unavailable`: a transient failure before it (connection refused, closed, cluster down);
 * - `error`: the store answered with an error (a script or permission problem), or a bug.
 */
export class InstrumentedStore implements CounterStore {
  constructor(
    private readonly inner: CounterStore,
    private readonly recorder: StoreCallRecorder,
  ) {}

  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    const started = performance.now();
    let answer: Promise<readonly LimitOutcome[]>;
    try {
      answer = this.inner.decide(checks, options);
    } catch (err) {
      answer = Promise.reject(err);
    }
    // `then` rather than an async frame: one promise per call instead of three.
    return answer.then(
      (outcomes) => {
        this.recorder.storeCall((performance.now() - started) / 1000, options.ticket?.abandoned === true ? 'timeout' : undefined);
        return outcomes;
      },
      (err: unknown) => {
        const late = options.ticket?.abandoned === true;
        const kind: StoreErrorKind = err instanceof StoreError && err.transient ? (late ? 'timeout' : 'unavailable') : 'error';
        this.recorder.storeCall((performance.now() - started) / 1000, kind);
        throw err;
      },
    );
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
