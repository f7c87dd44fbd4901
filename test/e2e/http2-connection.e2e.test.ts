import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import { RLS_SERVICE_NAME, shouldRateLimitMethod } from '../../src/server/proto';
import { streamResetLimitSupported } from '../../src/server/stream-reset-limit';
import { nodeWithStreamResetLimit } from '../support/modern-node';
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
function call(session: http2.ClientHttp2Session): Promise<string> {
  return new Promise((resolve) => {
    const stream = session.request({
      ':method': 'POST',
      ':path': `/${RLS_SERVICE_NAME}/ShouldRateLimit`,
      'content-type': 'application/grpc',
      te: 'trailers',
    });
    const chunks: Buffer[] = [];
    let status: string | undefined;
    let message = '';
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('trailers', (trailers) => {
      status = String(trailers['grpc-status']);
      message = String(trailers['grpc-message'] ?? '');
    });
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

describe('GRPC_MAX_CONCURRENT_STREAMS', () => {
  test('is announced to the client as SETTINGS_MAX_CONCURRENT_STREAMS, so that it queues the rest', async () => {
    const sluice = await startSluiceProcess(configDir, { GRPC_MAX_CONCURRENT_STREAMS: '32' });
    const session = http2.connect(`http://127.0.0.1:${sluice.grpcPort}`);
    session.on('error', () => undefined);
    try {
      const [settings] = (await once(session, 'remoteSettings')) as [http2.Settings];
      expect(settings.maxConcurrentStreams).toBe(32);
    } finally {
      session.destroy();
      await sluice.stop();
    }
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
