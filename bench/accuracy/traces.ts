import { SUB_WINDOWS } from '../../src/limiter/algorithms/sliding-window';
import { Random } from './prng';

/** One limit, as every trace is replayed against it: `limit` hits per `windowMs`. */
export interface TraceLimit {
  readonly limit: number;
  readonly windowMs: number;
}

/** Requests in time order: request i is `hits[i]` hits from identity `ids[i]` at `times[i]` (epoch ms). */
export interface Trace {
  readonly name: string;
  /** What the trace models, for the report. */
  readonly description: string;
  readonly identities: number;
  readonly times: Float64Array;
  readonly ids: Int32Array;
  readonly hits: Int32Array;
  /** Each identity's offered rate as a multiple of the limit, where the trace draws one. */
  readonly rates?: Float64Array;
}

/** A window-aligned start far from 0, so epoch-aligned windows behave as in production. */
export const START_MS = 28_000_000 * 60_000;

interface Arrival {
  readonly t: number;
  readonly id: number;
}

/** Whole milliseconds, as the service sees them (Date.now and Redis TIME are integer ms). */
function build(name: string, description: string, identities: number, arrivals: Arrival[], rates?: Float64Array): Trace {
  const sorted = arrivals.map((a) => ({ t: Math.floor(a.t), id: a.id })).sort((a, b) => a.t - b.t || a.id - b.id);
  const times = new Float64Array(sorted.length);
  const ids = new Int32Array(sorted.length);
  const hits = new Int32Array(sorted.length).fill(1);
  sorted.forEach((a, i) => {
    times[i] = a.t;
    ids[i] = a.id;
  });
  return { name, description, identities, times, ids, hits, ...(rates && { rates }) };
}

/**
 * steady: each identity sends at a constant rate between 1.1 and 2 times the limit (a fixed
 * period, random phase), for 30 windows. Clients that poll or retry on a timer.
 */
export function steadyTrace({ limit, windowMs }: TraceLimit, seed: number): Trace {
  const random = new Random(seed);
  const identities = 20;
  const end = START_MS + 30 * windowMs;
  const arrivals: Arrival[] = [];
  for (let id = 0; id < identities; id++) {
    const period = windowMs / (limit * random.uniform(1.1, 2));
    for (let t = START_MS + random.uniform(0, period); t < end; t += period) arrivals.push({ t, id });
  }
  return build('steady', '20 identities, each at a constant 1.1–2× the limit, 30 windows', identities, arrivals);
}

/**
 * bursty: each identity alternates bursts of ½–2× the limit (one request every 10 ms) with idle
 * gaps of 45 s on average (exponential), for 30 windows. Batch jobs, page loads, retries storms.
 */
export function burstyTrace({ limit, windowMs }: TraceLimit, seed: number): Trace {
  const random = new Random(seed);
  const identities = 20;
  const end = START_MS + 30 * windowMs;
  const arrivals: Arrival[] = [];
  for (let id = 0; id < identities; id++) {
    let t = START_MS + random.uniform(0, windowMs);
    while (t < end) {
      const size = random.int(Math.ceil(limit / 2), 2 * limit);
      for (let i = 0; i < size && t < end; i++, t += 10) arrivals.push({ t, id });
      t += random.exponential(45_000);
    }
  }
  return build('bursty', '20 identities, bursts of ½–2× the limit 10 ms apart, idle 45 s on average, 30 windows', identities, arrivals);
}

/**
 * boundary-adversarial: the worst case for window counters (peers.md §2.2). Each cycle of three
 * windows, an identity sends the whole limit in the last millisecond before a window boundary,
 * then a stream at 4× the limit through the next window, then nothing for a window. 10 cycles.
 */
export function adversarialTrace({ limit, windowMs }: TraceLimit, seed: number): Trace {
  const random = new Random(seed);
  const identities = 10;
  const arrivals: Arrival[] = [];
  for (let id = 0; id < identities; id++) {
    // Identities start on different boundaries, all aligned.
    const offset = random.int(0, 2) * windowMs;
    for (let cycle = 0; cycle < 10; cycle++) {
      const boundary = START_MS + offset + (3 * cycle + 1) * windowMs;
      for (let i = 0; i < limit; i++) arrivals.push({ t: boundary - 1, id });
      const period = windowMs / (4 * limit);
      for (let t = boundary; t < boundary + windowMs; t += period) arrivals.push({ t, id });
    }
  }
  return build(
    'boundary-adversarial',
    '10 identities: the whole limit 1 ms before a window boundary, then 4× the limit for a window, then idle; 10 cycles',
    identities,
    arrivals,
  );
}

/**
 * sub-window-adversarial: the worst case for sliding_window, built from its own grid. Each cycle
 * of three windows, an identity sends 1 hit at the start of a sub-window and the rest of the
 * limit in that sub-window's last millisecond, so the sub-window's span is as wide as it can be
 * while nearly all of its hits sit at its end; then, as the window's start passes through that
 * span, one request every 10 ms. The estimate spreads the hits evenly over the span, so it lets
 * the stream in while they are all still inside. 10 cycles.
 */
export function subWindowAdversarialTrace({ limit, windowMs }: TraceLimit, seed: number): Trace {
  const random = new Random(seed);
  const identities = 10;
  const subMs = windowMs / SUB_WINDOWS;
  const arrivals: Arrival[] = [];
  for (let id = 0; id < identities; id++) {
    // A sub-window start somewhere inside the first window.
    const offset = random.int(0, SUB_WINDOWS - 1) * subMs;
    for (let cycle = 0; cycle < 10; cycle++) {
      const start = START_MS + offset + 3 * cycle * windowMs;
      arrivals.push({ t: start, id });
      for (let i = 1; i < limit; i++) arrivals.push({ t: start + subMs - 1, id });
      for (let t = start + windowMs; t < start + windowMs + subMs; t += 10) arrivals.push({ t, id });
    }
  }
  return build(
    'sub-window-adversarial',
    `10 identities: 1 hit at a sub-window start (1/${SUB_WINDOWS} of the window) and the rest of the limit at its last millisecond, then a request every 10 ms as the window's start passes that sub-window; 10 cycles`,
    identities,
    arrivals,
  );
}

/**
 * Poisson: many independent identities, each a Poisson process at a rate drawn log-uniformly
 * between 0.1 and 3 times the limit, for 10 windows. A population of clients and users, most
 * under their limit and some well over it.
 */
export function poissonTrace({ limit, windowMs }: TraceLimit, seed: number): Trace {
  const random = new Random(seed);
  const identities = 1_000;
  const end = START_MS + 10 * windowMs;
  const arrivals: Arrival[] = [];
  const rates = new Float64Array(identities);
  for (let id = 0; id < identities; id++) {
    rates[id] = random.logUniform(0.1, 3);
    const mean = windowMs / (limit * rates[id]!);
    for (let t = START_MS + random.exponential(mean); t < end; t += random.exponential(mean)) arrivals.push({ t, id });
  }
  return build('poisson', '1,000 identities, Poisson at 0.1–3× the limit (log-uniform), 10 windows', identities, arrivals, rates);
}

export function allTraces(limit: TraceLimit, seed: number): Trace[] {
  return [
    steadyTrace(limit, seed + 1),
    burstyTrace(limit, seed + 2),
    adversarialTrace(limit, seed + 3),
    subWindowAdversarialTrace(limit, seed + 5),
    poissonTrace(limit, seed + 4),
  ];
}
