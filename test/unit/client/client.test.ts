import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { RateLimitClient, RateLimitError } from '../../../src/client';
import { UnavailableError } from '../../../src/errors';
import { ManualClock } from '../../../src/util/clock';
import { type StartedSluice, startTestSluice } from '../../support/start-sluice';
import { type TestServer, startTestServer } from '../server/fake-service';

const EXAMPLE = fs.readFileSync(path.resolve(__dirname, '../../../examples/oauth2/ratelimit.yaml'), 'utf8');
// 10 s into a minute.
const T0 = Date.UTC(2026, 0, 5, 12, 0, 10);

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('RateLimitClient against a real sluice', () => {
  let sluice: StartedSluice;
  let client: RateLimitClient;

  beforeAll(async () => {
    sluice = await startTestSluice({ files: { 'ratelimit.yaml': EXAMPLE }, clock: new ManualClock(T0) });
    client = new RateLimitClient({ address: `127.0.0.1:${sluice.app.grpcPort}`, deadlineMs: 2000 });
    await client.waitForReady(5000);
  });

  afterAll(async () => {
    client.close();
    await sluice.stop();
  });

  it('answers typed statuses, one per descriptor, in order', async () => {
    const decision = await client.shouldRateLimit({
      domain: 'oauth2',
      descriptors: [{ entries: { client_id: 'typed' } }, { entries: [{ key: 'client_id', value: 'typed' }, { key: 'user_id', value: 'u1' }] }, { entries: { nothing: 'here' } }],
      hitsAddend: 5,
    });
    expect(decision).toEqual({
      allowed: true,
      overallCode: 'OK',
      statuses: [
        { code: 'OK', currentLimit: { requestsPerUnit: 1000, unit: 'MINUTE', name: 'api_per_client' }, limitRemaining: 995, durationUntilResetSeconds: expect.any(Number) },
        { code: 'OK', currentLimit: { requestsPerUnit: 100, unit: 'MINUTE', name: 'api_per_client_user' }, limitRemaining: 95, durationUntilResetSeconds: expect.any(Number) },
        { code: 'OK', limitRemaining: 0 },
      ],
      responseHeadersToAdd: [],
      requestHeadersToAdd: [],
    });
  });

  it('reports OVER_LIMIT as not allowed, with the time until the request would fit', async () => {
    const attempt = { domain: 'oauth2', descriptors: [{ entries: { endpoint: 'token', client_id: 'c1', username: 'alice' } }] };
    const answers = [];
    for (let i = 0; i < 11; i++) answers.push(await client.shouldRateLimit(attempt));
    expect(answers.slice(0, 10).every((d) => d.allowed)).toBe(true);
    const last = answers[10]!;
    expect(last).toMatchObject({ allowed: false, overallCode: 'OVER_LIMIT' });
    expect(last.statuses[0]).toMatchObject({ code: 'OVER_LIMIT', currentLimit: { requestsPerUnit: 10, name: 'token_per_client_user' }, limitRemaining: 0 });
    expect(last.statuses[0]!.durationUntilResetSeconds).toBeGreaterThan(0);
    expect(last.error).toBeUndefined();
  });

  it('sends per-descriptor hits (0 checks without charging) and limit overrides', async () => {
    const peek = await client.shouldRateLimit({ domain: 'oauth2', descriptors: [{ entries: { client_id: 'peek' }, hitsAddend: 0 }] });
    expect(peek.statuses[0]!.limitRemaining).toBe(1000);
    const charged = await client.shouldRateLimit({ domain: 'oauth2', descriptors: [{ entries: { client_id: 'peek' }, hitsAddend: 7 }], hitsAddend: 1 });
    expect(charged.statuses[0]!.limitRemaining).toBe(993);
    const override = await client.shouldRateLimit({
      domain: 'oauth2',
      descriptors: [{ entries: { anything: 'x' }, limit: { requestsPerUnit: 2, unit: 'HOUR' } }],
      hitsAddend: 3,
    });
    expect(override).toMatchObject({ allowed: false, statuses: [{ code: 'OVER_LIMIT', currentLimit: { requestsPerUnit: 2, unit: 'HOUR' } }] });
  });

  it('rejects a malformed request with a TypeError before calling, whatever failOpen says', async () => {
    await expect(client.shouldRateLimit({ domain: '', descriptors: [] })).rejects.toThrow(TypeError);
    await expect(client.shouldRateLimit({ domain: 'oauth2', descriptors: [{ entries: { '': 'x' } }] })).rejects.toThrow(/entries\[0\]/);
    await expect(client.shouldRateLimit({ domain: 'oauth2', descriptors: [], hitsAddend: -1 })).rejects.toThrow(/hitsAddend/);
    await expect(client.shouldRateLimit({ domain: 'oauth2', descriptors: [{ entries: { a: 'b' }, hitsAddend: 1.5 }] })).rejects.toThrow(/descriptors\[0\]\.hitsAddend/);
  });

  it('passes sluice refusing a request (INVALID_ARGUMENT) to failOpen like any other failure', async () => {
    const errors: RateLimitError[] = [];
    const strict = new RateLimitClient({ address: `127.0.0.1:${sluice.app.grpcPort}`, deadlineMs: 2000, failOpen: false, onError: (e) => errors.push(e) });
    try {
      const tooLong = { domain: 'oauth2', descriptors: [{ entries: { client_id: 'x'.repeat(5000) } }] };
      await expect(strict.shouldRateLimit(tooLong)).rejects.toMatchObject({ name: 'RateLimitError', code: status.INVALID_ARGUMENT });
      expect(errors.map((e) => e.code)).toEqual([status.INVALID_ARGUMENT]);
      const open = await client.shouldRateLimit(tooLong);
      expect(open).toMatchObject({ allowed: true, overallCode: 'UNKNOWN', statuses: [] });
      expect(open.error?.code).toBe(status.INVALID_ARGUMENT);
    } finally {
      strict.close();
    }
  });
});

describe('RateLimitClient when sluice cannot answer', () => {
  it('fails open by default when nothing listens, and says why', async () => {
    const errors: RateLimitError[] = [];
    const client = new RateLimitClient({ address: `127.0.0.1:${await closedPort()}`, onError: (e) => errors.push(e) });
    try {
      const decision = await client.shouldRateLimit({ domain: 'oauth2', descriptors: [{ entries: { client_id: 'a' } }] });
      expect(decision).toMatchObject({ allowed: true, overallCode: 'UNKNOWN', statuses: [] });
      expect(decision.error).toBeInstanceOf(RateLimitError);
      expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(decision.error!.code);
      expect(errors).toHaveLength(1);
    } finally {
      client.close();
    }
  });

  it('rejects with failOpen: false', async () => {
    const client = new RateLimitClient({ address: `127.0.0.1:${await closedPort()}`, failOpen: false, deadlineMs: 500 });
    try {
      await expect(client.shouldRateLimit({ domain: 'oauth2', descriptors: [{ entries: { client_id: 'a' } }] })).rejects.toBeInstanceOf(RateLimitError);
    } finally {
      client.close();
    }
  });

  it('fails open or closed when a real sluice has lost its store (UNAVAILABLE)', async () => {
    const sluice = await startTestSluice({
      files: { 'ratelimit.yaml': EXAMPLE },
      env: { REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, STORE_FAILURE_MODE: 'error', REDIS_TIMEOUT: '50ms' },
    });
    const open = new RateLimitClient({ address: `127.0.0.1:${sluice.app.grpcPort}`, deadlineMs: 2000 });
    const closed = new RateLimitClient({ address: `127.0.0.1:${sluice.app.grpcPort}`, deadlineMs: 2000, failOpen: false });
    try {
      const request = { domain: 'oauth2', descriptors: [{ entries: { client_id: 'a' } }] };
      const decision = await open.shouldRateLimit(request);
      expect(decision).toMatchObject({ allowed: true, overallCode: 'UNKNOWN' });
      expect(decision.error?.code).toBe(status.UNAVAILABLE);
      await expect(closed.shouldRateLimit(request)).rejects.toMatchObject({ code: status.UNAVAILABLE });
    } finally {
      open.close();
      closed.close();
      await sluice.stop();
    }
  });

  describe('against a server that hangs or is unavailable once', () => {
    let t: TestServer;

    beforeEach(async () => {
      t = await startTestServer();
    });

    afterEach(async () => {
      await t.server.shutdown(100);
    });

    it('gives up at the deadline (20 ms by default) and never retries a timed-out call', async () => {
      t.service.answer = () => new Promise(() => undefined);
      const client = new RateLimitClient({ address: t.address, retries: 3 });
      try {
        await client.waitForReady(5000);
        const started = Date.now();
        const decision = await client.shouldRateLimit({ domain: 'd', descriptors: [{ entries: { k: 'v' } }] });
        const elapsed = Date.now() - started;
        expect(decision.error?.code).toBe(status.DEADLINE_EXCEEDED);
        expect(elapsed).toBeGreaterThanOrEqual(15);
        expect(elapsed).toBeLessThan(1000);
        expect(t.service.requests).toHaveLength(1);
      } finally {
        client.close();
      }
    });

    it('retries UNAVAILABLE only when asked', async () => {
      let calls = 0;
      t.service.answer = (request) => {
        calls++;
        if (calls === 1) throw new UnavailableError('store down');
        return { overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 0 })), responseHeadersToAdd: [] };
      };
      const once = new RateLimitClient({ address: t.address, deadlineMs: 2000 });
      const twice = new RateLimitClient({ address: t.address, deadlineMs: 2000, retries: 1 });
      try {
        const first = await once.shouldRateLimit({ domain: 'd', descriptors: [{ entries: { k: 'v' } }] });
        expect(first.error?.code).toBe(status.UNAVAILABLE);
        calls = 0;
        const retried = await twice.shouldRateLimit({ domain: 'd', descriptors: [{ entries: { k: 'v' } }] });
        expect(retried).toMatchObject({ allowed: true, overallCode: 'OK' });
        expect(retried.error).toBeUndefined();
        expect(calls).toBe(2);
      } finally {
        once.close();
        twice.close();
      }
    });
  });

  it('refuses nonsense options', () => {
    expect(() => new RateLimitClient({ address: 'x:1', deadlineMs: 0 })).toThrow(TypeError);
    expect(() => new RateLimitClient({ address: 'x:1', retries: -1 })).toThrow(TypeError);
  });
});
