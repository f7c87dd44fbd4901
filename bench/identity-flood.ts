import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createGrpcClient, shouldRateLimitMethod } from '../src/server/proto';
import { parseMetrics } from '../test/support/prometheus';
import { type SluiceInstance, startSluice, stopSluice } from './sluice-instance';
import { median } from './build-ab';

/**
 * `npm run bench:flood`: call latency of an identity-rotation flood on the memory store, with the
 * store empty and with it full (issue 12: "with the store full and a flood of new identities, p99
 * stays within 2x of the p99 at an empty store under the same load").
 *
 * `sluice serve` runs on the memory store under `node --max-old-space-size=FLOOD_HEAP_MB` (192),
 * MEMORY_STORE_MAX_BYTES at its default (a share of that heap), one hourly limit per `user_id`.
 * The client keeps FLOOD_IN_FLIGHT (8) calls in flight, each with FLOOD_PER_CALL (64) new
 * `user_id`s; requests are encoded before each measured phase, so the client's own work stays out
 * of the latencies as far as it can on a shared machine.
 *
 * Each round, one fresh process:
 * 1. `empty`: FLOOD_PHASE_CALLS (2,000) calls on a fresh store (after 200 warm-up calls);
 * 2. the flood goes on until the store evicts, then 1,000 calls more;
 * 3. `full`: FLOOD_PHASE_CALLS calls, every one of them evicting.
 * Printed per phase: p50, p99, max, the store's counters and evictions, and sluice's garbage
 * collection (prom-client's `nodejs_gc_duration_seconds`: all kinds, and major) and its longest
 * event-loop delay (`nodejs_eventloop_lag_max_seconds`, which tells sluice's own stalls from the
 * machine's). The
 * ratio full/empty of p99 is the figure; medians over FLOOD_ROUNDS (3) rounds.
 */

const HEAP_MB = Number(process.env.FLOOD_HEAP_MB ?? 192);
const IN_FLIGHT = Number(process.env.FLOOD_IN_FLIGHT ?? 8);
const PER_CALL = Number(process.env.FLOOD_PER_CALL ?? 64);
const PHASE_CALLS = Number(process.env.FLOOD_PHASE_CALLS ?? 2_000);
const ROUNDS = Number(process.env.FLOOD_ROUNDS ?? 3);
const DEADLINE_MS = 20_000;

const CONFIG = `
domain: flood
descriptors:
  - key: user_id
    rate_limit: { unit: hour, requests_per_unit: 100 }
`;

async function metrics(instance: SluiceInstance): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${instance.debugPort}/metrics`);
  return parseMetrics(await res.text());
}

/** The encoded request of flood call `call`: PER_CALL user_ids no other call uses. */
function encodedCall(call: number): Buffer {
  const descriptors = [];
  for (let i = 0; i < PER_CALL; i++) descriptors.push({ entries: [{ key: 'user_id', value: `u${call * PER_CALL + i}` }] });
  return shouldRateLimitMethod.serialize({ domain: 'flood', descriptors });
}

/** Sends the calls `first`..`first + count - 1`, IN_FLIGHT at a time; returns each call's latency in ms. */
async function flood(client: grpc.Client, bodies: (call: number) => Buffer, first: number, count: number): Promise<number[]> {
  const latencies: number[] = [];
  let next = first;
  const end = first + count;
  const worker = async (): Promise<void> => {
    while (next < end) {
      const body = bodies(next++);
      const started = performance.now();
      await new Promise<void>((resolve, reject) => {
        client.makeUnaryRequest(
          shouldRateLimitMethod.path,
          (b: Buffer) => b,
          (b: Buffer) => b,
          body,
          new grpc.Metadata(),
          { deadline: Date.now() + DEADLINE_MS },
          (error) => (error ? reject(error) : resolve()),
        );
      });
      latencies.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return latencies;
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface PhaseResult {
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
  readonly counters: number;
  readonly evictions: number;
  readonly gcSeconds: number;
  readonly gcMajorSeconds: number;
  readonly ok: number;
  /** sluice's longest event-loop delay in the phase (prom-client resets it at each scrape). */
  readonly loopMaxMs: number;
}

function gcSeconds(m: Map<string, number>, kind?: string): number {
  let total = 0;
  for (const [series, value] of m) {
    if (!series.startsWith('nodejs_gc_duration_seconds_sum{')) continue;
    if (kind === undefined || series.includes(`kind="${kind}"`)) total += value;
  }
  return total;
}

async function phase(instance: SluiceInstance, client: grpc.Client, first: number, count: number): Promise<PhaseResult> {
  const encoded = Array.from({ length: count }, (_, i) => encodedCall(first + i));
  const before = await metrics(instance);
  const latencies = await flood(client, (call) => encoded[call - first]!, first, count);
  const after = await metrics(instance);
  const sorted = [...latencies].sort((a, b) => a - b);
  const delta = (series: string): number => (after.get(series) ?? 0) - (before.get(series) ?? 0);
  return {
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    max: sorted[sorted.length - 1]!,
    counters: after.get('sluice_memory_store_counters') ?? 0,
    evictions: delta('sluice_memory_store_evictions_total'),
    gcSeconds: gcSeconds(after) - gcSeconds(before),
    gcMajorSeconds: gcSeconds(after, 'major') - gcSeconds(before, 'major'),
    ok: delta('sluice_requests_total{result="ok"}'),
    loopMaxMs: (after.get('nodejs_eventloop_lag_max_seconds') ?? 0) * 1000,
  };
}

async function round(configDir: string): Promise<{ empty: PhaseResult; full: PhaseResult; fillSeconds: number }> {
  const env = process.env.FLOOD_MEMORY_STORE_MAX_BYTES === undefined ? {} : { MEMORY_STORE_MAX_BYTES: process.env.FLOOD_MEMORY_STORE_MAX_BYTES };
  const instance = await startSluice(configDir, env, [`--max-old-space-size=${HEAP_MB}`]);
  const client = createGrpcClient(`127.0.0.1:${instance.port}`);
  try {
    let call = 0;
    await flood(client, encodedCall, call, 200);
    call += 200;
    const empty = await phase(instance, client, call, PHASE_CALLS);
    call += PHASE_CALLS;
    const fillStarted = Date.now();
    for (;;) {
      await flood(client, encodedCall, call, 500);
      call += 500;
      const m = await metrics(instance);
      if ((m.get('sluice_memory_store_evictions_total') ?? 0) > 0) break;
      if (instance.child.exitCode !== null) throw new Error('sluice exited during the flood');
    }
    await flood(client, encodedCall, call, 1_000);
    call += 1_000;
    const fillSeconds = (Date.now() - fillStarted) / 1000;
    const full = await phase(instance, client, call, PHASE_CALLS);
    if (full.evictions === 0) throw new Error('the store did not evict during the full phase');
    return { empty, full, fillSeconds };
  } finally {
    client.close();
    await stopSluice(instance);
  }
}

function row(label: string, p: PhaseResult): string {
  return `| ${label} | ${p.p50.toFixed(1)} | ${p.p99.toFixed(1)} | ${p.max.toFixed(1)} | ${p.counters} | ${p.evictions} | ${p.gcSeconds.toFixed(2)} | ${p.gcMajorSeconds.toFixed(2)} | ${p.loopMaxMs.toFixed(1)} |`;
}

async function main(): Promise<void> {
  const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-flood-bench-'));
  fs.writeFileSync(path.join(configDir, 'flood.yaml'), CONFIG);
  console.log(`identity flood: heap ${HEAP_MB} MB, ${IN_FLIGHT} calls in flight x ${PER_CALL} new user_ids, ${PHASE_CALLS} calls per phase, ${ROUNDS} rounds`);
  console.log('| round / phase | p50 ms | p99 ms | max ms | counters after | evictions | GC s | major GC s | sluice loop max ms |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  const ratios: number[] = [];
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      const { empty, full, fillSeconds } = await round(configDir);
      const expected = PHASE_CALLS;
      if (empty.ok !== expected || full.ok !== expected) throw new Error(`calls not all OK: empty ${empty.ok}, full ${full.ok} of ${expected}`);
      console.log(row(`${r} empty`, empty));
      console.log(row(`${r} full (filled in ${fillSeconds.toFixed(0)} s)`, full));
      ratios.push(full.p99 / empty.p99);
    }
  } finally {
    fs.rmSync(configDir, { recursive: true, force: true });
  }
  console.log(`p99 full / p99 empty: ${ratios.map((x) => x.toFixed(2)).join(', ')}; median ${median(ratios).toFixed(2)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
