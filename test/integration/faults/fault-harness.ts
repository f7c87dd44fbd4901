import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import type { RlsClient, WireRequestShape } from '../../support/rls-client';
import type { StallLog } from '../../support/stall-log';

/**
 * Shared pieces of the fault tests: a config with one rule per failure policy, a load generator
 * that records every call's answer and latency, and waits on health.
 */

export type Policy = 'error' | 'allow' | 'deny' | 'local';
export const POLICIES: readonly Policy[] = ['error', 'allow', 'deny', 'local'];

/** Limits no test reaches (a year-long fixed window: no boundary inside a test) except `local`'s. */
export const BIG_LIMIT = 1_000_000;
export const LOCAL_LIMIT = 5;

/** `policy=<p>` → `id=<any>`: one counter per id, the rule's `store_failure` is the policy. */
export const FAULT_CONFIG: Record<string, string> = {
  'faults.yaml': [
    'domain: faults',
    'descriptors:',
    ...POLICIES.flatMap((policy) => [
      '  - key: policy',
      `    value: ${policy}`,
      '    descriptors:',
      '      - key: id',
      policy === 'local'
        ? `        rate_limit: {unit: minute, requests_per_unit: ${LOCAL_LIMIT}, store_failure: local}`
        : `        rate_limit: {unit: year, algorithm: fixed_window, requests_per_unit: ${BIG_LIMIT}, store_failure: ${policy}}`,
    ]),
  ].join('\n'),
};

export function request(policy: Policy, id: string, hits?: number): WireRequestShape {
  return {
    domain: 'faults',
    descriptors: [
      {
        entries: [
          { key: 'policy', value: policy },
          { key: 'id', value: id },
        ],
        ...(hits !== undefined && { hits_addend: { value: hits } }),
      },
    ],
    hits_addend: 0,
  };
}

/**
 * What a call got. DEADLINE_EXCEEDED is sluice's own answer at the call's deadline (the `error`
 * policy when the store had not answered in time); CLIENT_DEADLINE is the client giving up
 * because no answer came at all.
 */
export type Answer = 'OK' | 'OVER_LIMIT' | 'UNAVAILABLE' | 'DEADLINE_EXCEEDED' | 'CLIENT_DEADLINE' | 'OTHER';

export interface CallRecord {
  readonly policy: Policy;
  readonly id: string;
  /** performance.now() when sent. */
  readonly startedAt: number;
  readonly latencyMs: number;
  readonly answer: Answer;
  /** The gRPC error message, for failures. */
  readonly details?: string;
}

/** The messages of sluice's own DEADLINE_EXCEEDED answers (the client's own says "Deadline exceeded after …"). */
const SERVER_DEADLINE_DETAILS = /^(deadline exceeded: the store had not answered|deadline exceeded before the store was asked|the store was still connecting)/;

/** Sends one request and records what came back; never rejects. */
export async function call(
  client: RlsClient,
  policy: Policy,
  id: string,
  deadlineMs: number,
  hits?: number,
): Promise<CallRecord> {
  const startedAt = performance.now();
  try {
    const response = await client.shouldRateLimit(request(policy, id, hits), { deadlineMs });
    const answer: Answer = response.overall_code === 'OK' ? 'OK' : response.overall_code === 'OVER_LIMIT' ? 'OVER_LIMIT' : 'OTHER';
    return { policy, id, startedAt, latencyMs: performance.now() - startedAt, answer };
  } catch (err) {
    const error = err as ServiceError;
    const answer: Answer =
      error.code === status.UNAVAILABLE
        ? 'UNAVAILABLE'
        : error.code === status.DEADLINE_EXCEEDED
          ? SERVER_DEADLINE_DETAILS.test(error.details) ? 'DEADLINE_EXCEEDED' : 'CLIENT_DEADLINE'
          : 'OTHER';
    return { policy, id, startedAt, latencyMs: performance.now() - startedAt, answer, details: `${error.code}: ${error.details}` };
  }
}

export interface Load {
  /** Stops sending, waits for the calls in flight, returns every record in send order. */
  stop(): Promise<CallRecord[]>;
  /** Records so far. */
  readonly records: readonly CallRecord[];
}

/**
 * `concurrency` workers, each sending one call at a time (a short pause between calls keeps the
 * CPU for the server under test), cycling through `policies`. Worker w uses id `<prefix>-w`.
 */
export function startLoad(
  client: RlsClient,
  options: { policies: readonly Policy[]; concurrency: number; deadlineMs: number; idPrefix: string; pauseMs?: number },
): Load {
  const records: CallRecord[] = [];
  let running = true;
  const workers = Array.from({ length: options.concurrency }, async (_, w) => {
    for (let i = w; running; i++) {
      const policy = options.policies[i % options.policies.length]!;
      records.push(await call(client, policy, `${options.idPrefix}-${w}`, options.deadlineMs));
      await sleep(options.pauseMs ?? 2);
    }
  });
  return {
    records,
    stop: async () => {
      running = false;
      await Promise.all(workers);
      return [...records].sort((a, b) => a.startedAt - b.startedAt);
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls gRPC health until it reports `want`, or fails after `timeoutMs`. */
export async function waitForHealth(client: RlsClient, want: 'SERVING' | 'NOT_SERVING', timeoutMs: number): Promise<number> {
  const started = performance.now();
  let last = '';
  while (performance.now() - started < timeoutMs) {
    last = await client.health('');
    if (last === want) return performance.now() - started;
    await sleep(20);
  }
  throw new Error(`health still ${last} after ${timeoutMs} ms (wanted ${want})`);
}

/** Counts of answers per policy, for readable failure messages. */
export function summary(records: readonly CallRecord[]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const r of records) {
    const byAnswer = (out[r.policy] ??= {});
    const key = r.details !== undefined ? `${r.answer} (${r.details.replace(/^\d+: /, '').replace(/\d+ ms/g, 'N ms').replace(/:\d+/g, ':P')})` : r.answer;
    byAnswer[key] = (byAnswer[key] ?? 0) + 1;
  }
  return out;
}

/**
 * The answers each policy may give while the store cannot answer: `error` fails the call
 * (UNAVAILABLE once the store is known to be down, DEADLINE_EXCEEDED when its own deadline came
 * first), the others decide.
 */
export function degradedAnswers(policy: Policy): readonly Answer[] {
  switch (policy) {
    case 'error':
      return ['UNAVAILABLE', 'DEADLINE_EXCEEDED'];
    case 'allow':
      return ['OK'];
    case 'deny':
      return ['OVER_LIMIT'];
    case 'local':
      return ['OK', 'OVER_LIMIT'];
  }
}

export function matchesDegraded(record: CallRecord): boolean {
  return degradedAnswers(record.policy).includes(record.answer);
}

/**
 * A call's latency less the stalls of this process during it: the time sluice, which runs in this
 * process, was free to answer. See test/support/stall-log.ts.
 */
export function netLatencyMs(record: CallRecord, stalls: StallLog): number {
  return record.latencyMs - stalls.stalledMs(record.startedAt, record.startedAt + record.latencyMs);
}

/** Percentile (0–100) of `latency` over `records`. */
export function percentile(records: readonly CallRecord[], p: number, latency: (r: CallRecord) => number): number {
  if (records.length === 0) return 0;
  const sorted = records.map(latency).sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
