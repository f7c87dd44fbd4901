import { status } from '@grpc/grpc-js';
import { createGrpcClient, shouldRateLimitMethod, unaryCall } from '../../../src/server/proto';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../../../src/store/counter-store';
import { type StartedSluice, startTestSluice } from '../../support/start-sluice';

/** Records what the limiter asked of the store. */
class RecordingStore implements CounterStore {
  readonly options: DecideOptions[] = [];

  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    this.options.push(options);
    return Promise.resolve(checks.map((c) => ({ admitted: true, remaining: c.limit - c.hits, resetMs: 0 })));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const CONFIG = {
  'ratelimit.yaml': [
    'domain: auth',
    'descriptors:',
    '  - key: client_id',
    '    rate_limit: {unit: minute, requests_per_unit: 100}',
  ].join('\n'),
};
const REQUEST = { domain: 'auth', descriptors: [{ entries: [{ key: 'client_id', value: 'c1' }] }], hits_addend: 0 };

describe('the gRPC deadline reaches the store', () => {
  let sluice: StartedSluice;
  let store: RecordingStore;

  beforeEach(async () => {
    store = new RecordingStore();
    sluice = await startTestSluice({ files: CONFIG, store });
  });

  afterEach(async () => {
    await sluice.stop();
  });

  it('as epoch milliseconds, when the caller sets one', async () => {
    const before = Date.now();
    await sluice.client.shouldRateLimit(REQUEST, { deadlineMs: 700 });
    const after = Date.now();
    const deadline = store.options[0]?.deadlineMs;
    expect(deadline).toBeDefined();
    // grpc-timeout travels with millisecond (or coarser) precision: allow a little slack.
    expect(deadline!).toBeGreaterThanOrEqual(before + 700 - 50);
    expect(deadline!).toBeLessThanOrEqual(after + 700 + 50);
  });

  it('as nothing, when the caller sets none', async () => {
    const client = createGrpcClient(`127.0.0.1:${sluice.app.grpcPort}`);
    try {
      // Date.now() + Infinity: grpc-js sends no grpc-timeout at all.
      await unaryCall(client, shouldRateLimitMethod, REQUEST, Infinity);
    } finally {
      client.close();
    }
    expect(store.options[0]).toEqual({ chargeRejectedHits: false });
  });
});

describe('with Redis unreachable, the failure policy answers within the deadline', () => {
  // Nothing listens on port 1: the Redis store is never available, so no Redis server is needed.
  const policies: [mode: string, expectation: (run: () => Promise<unknown>) => Promise<void>][] = [
    ['error', async (run) => void (await expect(run()).rejects.toMatchObject({ code: status.UNAVAILABLE }))],
    ['allow', async (run) => void (await expect(run()).resolves.toMatchObject({ overall_code: 'OK' }))],
    ['deny', async (run) => void (await expect(run()).resolves.toMatchObject({ overall_code: 'OVER_LIMIT' }))],
    ['local', async (run) => void (await expect(run()).resolves.toMatchObject({ overall_code: 'OK' }))],
  ];

  it.each(policies)('STORE_FAILURE_MODE=%s', async (mode, expectation) => {
    const sluice = await startTestSluice({
      files: CONFIG,
      env: { REDIS_URL: '127.0.0.1:1', STORE_FAILURE_MODE: mode },
    });
    try {
      expect(await sluice.client.health('')).toBe('NOT_SERVING');
      const started = performance.now();
      await expectation(() => sluice.client.shouldRateLimit(REQUEST, { deadlineMs: 100 }));
      expect(performance.now() - started).toBeLessThan(100);
    } finally {
      await sluice.stop();
    }
  });

  it('names the cause in the UNAVAILABLE message', async () => {
    const sluice = await startTestSluice({ files: CONFIG, env: { REDIS_URL: '127.0.0.1:1' } });
    try {
      await expect(sluice.client.shouldRateLimit(REQUEST, { deadlineMs: 100 })).rejects.toMatchObject({
        code: status.UNAVAILABLE,
        details: 'store unavailable: not connected',
      });
    } finally {
      await sluice.stop();
    }
  });
});
