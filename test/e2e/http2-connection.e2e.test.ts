import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { RLS_SERVICE_NAME, shouldRateLimitMethod } from '../../src/server/proto';
import { streamResetLimitSupported } from '../../src/server/stream-reset-limit';
import { nodeWithStreamResetLimit } from '../support/modern-node';
import { type RedisServer, startRedisServer } from '../support/redis-server';
import { type SluiceProcess, startSluiceProcess } from '../support/sluice-process';

/**
 * Envoy cancels every ratelimit call it stops waiting for (at its `timeout`, 20 ms by default), so
 * when sluice is slow for a moment one Envoy connection carries a storm of RST_STREAMs. Node's
 * HTTP/2 server answers more than 1,000 of them (refilled at 33/s) with GOAWAY INTERNAL_ERROR,
 * failing every other call on the connection. The client here is node:http2 itself, so that it
 * sees the connection as it is: one session, no reconnects, every GOAWAY reported.
 */

const CONFIG = `
domain: storm
descriptors:
  - key: client_id
    rate_limit: { unit: hour, requests_per_unit: 1000000 }
`;

const CANCELLED = 2000;
const STORM_MS = 2000;
const OTHERS = 50;

jest.setTimeout(60_000);

let configDir: string;

beforeAll(() => {
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-storm-'));
  fs.writeFileSync(path.join(configDir, 'storm.yaml'), CONFIG);
});

afterAll(() => {
  fs.rmSync(configDir, { recursive: true, force: true });
});

/** A gRPC message frame: uncompressed flag, 4-byte length, the message. */
function grpcFrame(message: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

const BODY = grpcFrame(shouldRateLimitMethod.serialize({ domain: 'storm', descriptors: [{ entries: [{ key: 'client_id', value: 'envoy' }] }] }));

interface StormResult {
  /** The answers of the calls that were not cancelled: an overall code or `error ...`. */
  readonly answers: Record<string, number>;
  /** The error code of a GOAWAY the server sent, if any. */
  readonly goaway: number | undefined;
  /** Whether the session was still open after the storm. */
  readonly open: boolean;
}

/** One call on `session`: the overall code, or what went wrong. */
function call(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders = {}): Promise<string> {
  return new Promise((resolve) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': `/${RLS_SERVICE_NAME}/ShouldRateLimit`,
      'content-type': 'application/grpc',
      te: 'trailers',
      ...headers,
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let message = '';
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    const readStatus = (fields: http2.IncomingHttpHeaders): void => {
      if (fields['grpc-status'] === undefined) return;
      status = String(fields['grpc-status']);
      message = String(fields['grpc-message'] ?? '');
    };
    // An error may come as a trailers-only response: its status is in the headers.
    stream.on('response', readStatus);
    stream.on('trailers', readStatus);
    stream.on('error', () => undefined);
    stream.on('close', () => {
      if (status === '0') {
        const body = Buffer.concat(chunks);
        resolve(String(shouldRateLimitMethod.deserialize(body.subarray(5)).overall_code));
      } else if (status !== undefined) {
        resolve(`error ${status}: ${decodeURIComponent(message)}`);
      } else {
        resolve(`reset ${stream.rstCode}`);
      }
    });
    stream.end(BODY);
  });
}

/** Starts a call and cancels it at once, as Envoy does to a call it stopped waiting for. */
function cancelledCall(session: http2.ClientHttp2Session): void {
  const stream = session.request({
    ':method': 'POST',
    ':path': `/${RLS_SERVICE_NAME}/ShouldRateLimit`,
    'content-type': 'application/grpc',
    te: 'trailers',
  });
  stream.on('error', () => undefined);
  stream.write(BODY);
  stream.close(http2.constants.NGHTTP2_CANCEL);
}

/**
 * On one connection: CANCELLED calls cancelled by the client, spread evenly over STORM_MS, while
 * OTHERS calls are sent among them and awaited; then one more call once the storm is over.
 */
async function storm(port: number): Promise<StormResult> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  let goaway: number | undefined;
  session.on('goaway', (code: number) => {
    goaway ??= code;
  });
  session.on('error', () => undefined);
  await once(session, 'connect');

  const ticks = 100;
  const pending: Promise<string>[] = [];
  for (let tick = 0; tick < ticks && !session.closed && !session.destroyed; tick++) {
    for (let i = 0; i < CANCELLED / ticks; i++) cancelledCall(session);
    if (tick % (ticks / OTHERS) === 0) pending.push(call(session));
    await new Promise((resolve) => setTimeout(resolve, STORM_MS / ticks));
  }
  const answers: Record<string, number> = {};
  const after = session.closed || session.destroyed ? 'connection closed' : await call(session);
  for (const a of [...(await Promise.all(pending)), after]) answers[a] = (answers[a] ?? 0) + 1;
  const open = !session.closed && !session.destroyed;
  session.destroy();
  return { answers, goaway, open };
}

/** A client connection and the SETTINGS_MAX_CONCURRENT_STREAMS values sluice sent it, in order. */
function connectRecordingShares(port: number): { session: http2.ClientHttp2Session; shares: number[] } {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => undefined);
  const shares: number[] = [];
  session.on('remoteSettings', (settings: http2.Settings) => {
    if (settings.maxConcurrentStreams !== undefined && shares.at(-1) !== settings.maxConcurrentStreams) shares.push(settings.maxConcurrentStreams);
  });
  return { session, shares };
}

async function eventually(check: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(check()).toBe(true);
}

const FLOOD = 3000;
/**
 * How a flood's calls may be answered: decided, or refused for want of time. A call sent as a new
 * stream just as the limit fell (before the client heard of it) is reset: 7 REFUSED_STREAM (gRPC
 * clients retry those) or 11 ENHANCE_YOUR_CALM (Node counts a stream closed in the same read).
 */
const ANSWERED = ['OK', 'deadline exceeded', 'overloaded', 'reset 7', 'reset 11'];

/** FLOOD calls with Envoy's 20 ms deadline, all at once on `session`: how each was answered. */
async function flood(session: http2.ClientHttp2Session): Promise<Record<string, number>> {
  const answers: Record<string, number> = {};
  for (const a of await Promise.all(Array.from({ length: FLOOD }, () => call(session, { 'grpc-timeout': '20m' })))) {
    const kind = a === 'OK' ? 'OK' : a.startsWith('error 4:') ? 'deadline exceeded' : a.startsWith('error 8:') ? 'overloaded' : a;
    answers[kind] = (answers[kind] ?? 0) + 1;
  }
  return answers;
}

function startedLine(sluice: SluiceProcess): Record<string, unknown> {
  return JSON.parse(sluice.log.find((line) => line.includes('"sluice started"'))!) as Record<string, unknown>;
}

describe('the calls open at once (MAX_CALLS_IN_FLIGHT, GRPC_MAX_CONCURRENT_STREAMS)', () => {
  let sluice: SluiceProcess | undefined;
  let redis: RedisServer | undefined;
  const sessions: http2.ClientHttp2Session[] = [];

  afterEach(async () => {
    for (const session of sessions.splice(0)) session.destroy();
    await sluice?.stop();
    sluice = undefined;
    await redis?.stop();
    redis = undefined;
  });

  // Both transports: the budget's listener sits on grpc-js's servers and sees the lean transport's streams too.
  test.each(['grpc-js', 'lean'] as const)(
    'at the default, a flood of calls with Envoy\'s 20 ms deadline on one connection gets it held to the budget of 64, ' +
      'every call answered and the connection kept; once the flood is over the limit is lifted (GRPC_TRANSPORT=%s)',
    async (transport) => {
      redis = await startRedisServer();
      sluice = await startSluiceProcess(configDir, { REDIS_URL: `127.0.0.1:${redis.port}`, GRPC_TRANSPORT: transport });
      expect(startedLine(sluice).grpcTransport).toBe(transport);
      expect(startedLine(sluice).maxCallsInFlight).toBe(64);
      const client = connectRecordingShares(sluice.grpcPort);
      sessions.push(client.session);
      let goaway: number | undefined;
      client.session.on('goaway', (code: number) => {
        goaway ??= code;
      });
      await once(client.session, 'connect');
      // Outside overload the connection is not held to a share.
      expect(await call(client.session)).toBe('OK');
      expect(client.shares.every((limit) => limit > 64)).toBe(true);

      // Far more calls than sluice decides in 20 ms, all at once, on one connection: read before
      // any limit, they are answered past their deadline (or refused); the connection is held.
      const first = await flood(client.session);
      expect(client.shares).toContain(64);
      await eventually(() => sluice!.log.some((line) => line.includes('each connection is held to its share')));
      // The same flood again, the connection held to its share: the client sends each call as
      // another ends, so sluice reads no more than it decides in time.
      const second = await flood(client.session);
      for (const answers of [first, second]) {
        expect(Object.keys(answers).filter((k) => !ANSWERED.includes(k))).toEqual([]);
      }
      expect(second.OK ?? 0).toBeGreaterThanOrEqual(FLOOD / 2);
      expect(goaway).toBeUndefined();
      expect(client.session.closed || client.session.destroyed).toBe(false);

      // Quiet again: the limit is lifted and calls are decided.
      await eventually(() => sluice!.log.some((line) => line.includes('connection shares lifted')));
      await eventually(() => (client.shares.at(-1) ?? 0) > 64);
      expect(await call(client.session, { 'grpc-timeout': '20m' })).toBe('OK');
    },
  );

  test('GRPC_MAX_CONCURRENT_STREAMS caps each connection; MAX_CALLS_IN_FLIGHT=0 turns the budget off', async () => {
    sluice = await startSluiceProcess(configDir, { GRPC_MAX_CONCURRENT_STREAMS: '32', MAX_CALLS_IN_FLIGHT: '0' });
    const client = connectRecordingShares(sluice.grpcPort);
    sessions.push(client.session);
    await eventually(() => client.shares.length > 0);
    expect(client.shares).toEqual([32]);
    expect(startedLine(sluice).maxCallsInFlight).toBe('no limit');
  });
});

describe('a client cancelling 2,000 calls within 2 s on one connection', () => {
  let sluice: SluiceProcess | undefined;

  afterEach(async () => {
    await sluice?.stop();
    sluice = undefined;
  });

  test('at the default settings, on a Node that can raise the reset limit: the other calls are decided and the connection stays up', async () => {
    sluice = await startSluiceProcess(configDir, {}, { node: nodeWithStreamResetLimit() });
    const result = await storm(sluice.grpcPort);
    expect(result).toEqual({ answers: { OK: OTHERS + 1 }, goaway: undefined, open: true });
  });

  test("the test bites: with Node's own limit (1000, then 33/s) the same storm gets the connection closed", async () => {
    sluice = await startSluiceProcess(configDir, { GRPC_STREAM_RESET_BURST: '1000', GRPC_STREAM_RESET_RATE: '33' }, { node: nodeWithStreamResetLimit() });
    const result = await storm(sluice.grpcPort);
    expect(result.goaway).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
    expect(result.open).toBe(false);
  });

  test('on this Node, the startup line says whether sluice could raise the limit', async () => {
    sluice = await startSluiceProcess(configDir);
    const started = JSON.parse(sluice.log.find((line) => line.includes('"sluice started"'))!) as { streamResetLimit: unknown };
    expect(started.streamResetLimit).toEqual(
      streamResetLimitSupported() ? { burst: 10_000, ratePerSecond: 10_000 } : 'node default (1000, then 33/s): needs Node >= 22.10',
    );
  });
});
