import { type Contender, replay } from '../../../bench/accuracy/replay';
import { allTraces, START_MS, type Trace, type TraceLimit } from '../../../bench/accuracy/traces';

/**
 * The accuracy harness (`npm run accuracy`) at a small limit: its ground truth, its determinism,
 * and the guarantees the published table relies on.
 */

const SMALL: TraceLimit = { limit: 10, windowMs: 60_000 };
const traces = allTraces(SMALL, 7);

const contender = (algorithm: Contender['algorithm'], burst?: number): Contender => ({
  label: algorithm,
  algorithm,
  ...(burst !== undefined && { burst }),
});

/** A hand-made trace of one identity. */
function trace(times: number[]): Trace {
  return {
    name: 'hand',
    description: '',
    identities: 1,
    times: Float64Array.from(times),
    ids: new Int32Array(times.length),
    hits: new Int32Array(times.length).fill(1),
  };
}

describe('accuracy harness', () => {
  it('generates the same traces from the same seed', () => {
    const again = allTraces(SMALL, 7);
    for (let i = 0; i < traces.length; i++) {
      expect(again[i]!.times).toEqual(traces[i]!.times);
      expect(again[i]!.ids).toEqual(traces[i]!.ids);
    }
    const poisson = (all: Trace[]): Trace => all.find((t) => t.name === 'poisson')!;
    expect(poisson(allTraces(SMALL, 8)).times).not.toEqual(poisson(traces).times);
  });

  it('counts an admission that puts more than the limit in the trailing window as an over-admission', () => {
    // Fixed window of 2 per minute: 2 just before a boundary, 2 just after: 4 in one trailing minute.
    const w = SMALL.windowMs;
    const t = trace([START_MS + w - 2, START_MS + w - 1, START_MS + w, START_MS + w + 1]);
    const result = replay(t, { limit: 2, windowMs: w }, contender('fixed_window'));
    expect(result).toMatchObject({ admitted: 4, overAdmitted: 2, worstWindow: 4, underAdmitted: 0, exactAdmitted: 2 });
  });

  it('counts a rejection that would have fit as an under-admission, with the room it had', () => {
    // A bucket of 1 refilled at 2 a minute rejects the second hit 1 ms later; the window had room for it.
    const t = trace([START_MS, START_MS + 1]);
    const result = replay(t, { limit: 2, windowMs: SMALL.windowMs }, contender('token_bucket', 1));
    expect(result).toMatchObject({ admitted: 1, overAdmitted: 0, underAdmitted: 1, worstRoom: 1, exactAdmitted: 2 });
  });

  it.each(traces.map((t) => [t.name, t] as const))('sliding_log is exact on the %s trace', (_name, t) => {
    const result = replay(t, SMALL, contender('sliding_log'));
    expect(result).toMatchObject({ overAdmitted: 0, underAdmitted: 0, admitted: result.exactAdmitted });
    expect(result.worstWindow).toBeLessThanOrEqual(SMALL.limit);
  });

  it.each(traces.map((t) => [t.name, t] as const))('token_bucket with burst 1 never over-admits on the %s trace', (_name, t) => {
    expect(replay(t, SMALL, contender('token_bucket', 1)).overAdmitted).toBe(0);
  });

  it('shows the worst cases: 2× for fixed_window at a boundary; for sliding_window, none there but almost 2× on its own grid', () => {
    const boundary = traces.find((t) => t.name === 'boundary-adversarial')!;
    expect(replay(boundary, SMALL, contender('fixed_window')).worstWindow).toBe(2 * SMALL.limit);
    expect(replay(boundary, SMALL, contender('sliding_window')).worstWindow).toBe(SMALL.limit);
    const grid = traces.find((t) => t.name === 'sub-window-adversarial')!;
    // The limit − 1 late hits stay in while the stream takes all but the one the span's last hit holds.
    expect(replay(grid, SMALL, contender('sliding_window')).worstWindow).toBe(2 * SMALL.limit - 3);
    expect(replay(grid, SMALL, contender('sliding_log')).worstWindow).toBe(SMALL.limit);
  });
});
