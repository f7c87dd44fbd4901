import type { AlgorithmName } from '../../config/types';
import type { FixedWindowState } from '../../limiter/algorithms/fixed-window';
import type { SlidingLogState } from '../../limiter/algorithms/sliding-log';
import { type SlidingWindowState, SUB_WINDOW_FIELDS } from '../../limiter/algorithms/sliding-window';
import type { TokenBucketState } from '../../limiter/algorithms/token-bucket';
import { PackedReader, PackedWriter } from './packed-numbers';

/**
 * How one algorithm's counter state is laid out in the memory store: a fixed number of doubles
 * in the store's Float64Array columns, plus, for states whose length varies, packed bytes.
 * Every layout gives back exactly the doubles it was given, so decisions are the same as on the
 * algorithm's own objects (and the Lua's).
 */
export interface StateLayout {
  /** Doubles kept inline per counter. */
  readonly fields: number;
  /** Whether the state needs packed bytes (variable length). */
  readonly packed: boolean;
  /** The state from its doubles at `at` and (packed layouts) its bytes [start, end) of `bytes`. */
  read(fields: Float64Array, at: number, bytes: Uint8Array, start: number, end: number): unknown;
  /**
   * Writes `state`'s doubles at `at`. A packed layout writes its bytes to `PackedWriter.bytes` and
   * returns how many; the others return 0.
   */
  write(state: unknown, fields: Float64Array, at: number): number;
}

const fixedWindow: StateLayout = {
  fields: 2,
  packed: false,
  read: (f, at): FixedWindowState => ({ window: f[at]!, count: f[at + 1]! }),
  write(state, f, at) {
    const s = state as FixedWindowState;
    f[at] = s.window;
    f[at + 1] = s.count;
    return 0;
  },
};

const tokenBucket: StateLayout = {
  fields: 3,
  packed: false,
  read: (f, at): TokenBucketState => ({ t: f[at]!, d: f[at + 1]!, l: f[at + 2]! }),
  write(state, f, at) {
    const s = state as TokenBucketState;
    f[at] = s.t;
    f[at + 1] = s.d;
    f[at + 2] = s.l;
    return 0;
  },
};

/** Sub-windows as (hits, first − previous last, last − first): mostly a few bytes each. */
const slidingWindow: StateLayout = {
  fields: 0,
  packed: true,
  read(_f, _at, bytes, start, end): SlidingWindowState {
    const windows: number[] = [];
    const reader = new PackedReader(bytes, start, end);
    let previous = 0;
    while (!reader.done) {
      const hits = reader.next(0);
      const first = reader.next(previous);
      const last = reader.next(first);
      windows.push(hits, first, last);
      previous = last;
    }
    return windows;
  },
  write(state) {
    const windows = state as SlidingWindowState;
    const writer = new PackedWriter();
    let previous = 0;
    for (let i = 0; i < windows.length; i += SUB_WINDOW_FIELDS) {
      const first = windows[i + 1]!;
      const last = windows[i + 2]!;
      writer.put(windows[i]!, 0);
      writer.put(first, previous);
      writer.put(last, first);
      previous = last;
    }
    return writer.finish();
  },
};

/** Instants, each after the one before it. */
const slidingLog: StateLayout = {
  fields: 0,
  packed: true,
  read(_f, _at, bytes, start, end): SlidingLogState {
    const log: number[] = [];
    const reader = new PackedReader(bytes, start, end);
    let previous = 0;
    while (!reader.done) {
      previous = reader.next(previous);
      log.push(previous);
    }
    return log;
  },
  write(state) {
    const writer = new PackedWriter();
    let previous = 0;
    for (const instant of state as SlidingLogState) {
      writer.put(instant, previous);
      previous = instant;
    }
    return writer.finish();
  },
};

/** In a fixed order: a counter's layout index is part of its id in the store. */
export const LAYOUT_ORDER: readonly AlgorithmName[] = ['fixed_window', 'token_bucket', 'sliding_window', 'sliding_log'];

export const LAYOUTS: Readonly<Record<AlgorithmName, StateLayout>> = {
  fixed_window: fixedWindow,
  token_bucket: tokenBucket,
  sliding_window: slidingWindow,
  sliding_log: slidingLog,
};
