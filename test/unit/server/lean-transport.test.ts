import * as http2 from 'node:http2';
import * as zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { createLogger } from '../../../src/logging/logger';
import { ConnectionCallShares, shareCallsAmongConnections } from '../../../src/server/call-budget';
import { percentEncode, routeShouldRateLimit, SHOULD_RATE_LIMIT_PATH } from '../../../src/server/lean-transport';
import { shouldRateLimitMethod } from '../../../src/server/proto';
import type { RateLimitResponse } from '../../../src/service/types';
import { ManualClock } from '../../../src/util/clock';
import { createRlsClient } from '../../support/rls-client';
import { startTestServer, type TestServer } from './fake-service';

/**
 * The lean transport's reading and answering of one call, seen from a raw HTTP/2 client: the
 * framing edge cases a gRPC library never sends (the conformance suite in grpc-server.test.ts
 * runs the same calls as a gRPC client sees them over both transports).
 */

const MAX = 1024;
const REQUEST = { domain: 'd', descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] };

/** A gRPC frame: compressed-flag byte, 4-byte length, message. */
function frame(message: Buffer, flag = 0, length = message.length): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flag;
  out.writeUInt32BE(length, 1);
  message.copy(out, 5);
  return out;
}

const MESSAGE = shouldRateLimitMethod.serialize(REQUEST);

interface RawAnswer {
  readonly headers: http2.IncomingHttpHeaders;
  readonly trailers: http2.IncomingHttpHeaders | undefined;
  readonly body: Buffer;
  /** grpc-status and grpc-message, from the trailers or a trailers-only response. */
  readonly status: number | undefined;
  readonly message: string | undefined;
}

const GRPC_HEADERS = { ':method': 'POST', ':path': SHOULD_RATE_LIMIT_PATH, 'content-type': 'application/grpc', te: 'trailers' };

describe('lean transport over raw HTTP/2', () => {
  let t: TestServer;
  let session: http2.ClientHttp2Session;
  const logs: Record<string, unknown>[] = [];

  beforeEach(async () => {
    logs.length = 0;
    const logger = createLogger('debug', { write: (line: string) => logs.push(JSON.parse(line) as Record<string, unknown>) });
    t = await startTestServer({ transport: 'lean', maxReceiveMessageLength: MAX, logger });
    expect(t.server.transport).toBe('lean');
    session = http2.connect(`http://${t.address}`);
  });

  afterEach(async () => {
    session.destroy();
    await t.server.shutdown(100);
  });

  /** Sends `chunks` as separate DATA frames (a turn of the event loop apart), then ends the stream unless `end` is false. */
  function call(chunks: Buffer[], headers: http2.OutgoingHttpHeaders = {}, end = true): Promise<RawAnswer> {
    const stream = session.request({ ...GRPC_HEADERS, ...headers });
    return new Promise<RawAnswer>((resolve, reject) => {
      let responseHeaders: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders | undefined;
      const body: Buffer[] = [];
      stream.on('response', (h) => (responseHeaders = h));
      stream.on('trailers', (h) => (trailers = h));
      stream.on('data', (chunk: Buffer) => body.push(chunk));
      stream.on('error', reject);
      stream.on('close', () => {
        const last = trailers ?? responseHeaders;
        const status = last['grpc-status'];
        const message = last['grpc-message'];
        resolve({
          headers: responseHeaders,
          trailers,
          body: Buffer.concat(body),
          status: status === undefined ? undefined : Number(status),
          message: typeof message === 'string' ? decodeURIComponent(message) : undefined,
        });
      });
      void (async () => {
        for (const chunk of chunks) {
          if (stream.closed) return;
          stream.write(chunk);
          await new Promise((r) => setImmediate(r));
        }
        if (end && !stream.closed) stream.end();
      })();
    });
  }

  function decodedBody(answer: RawAnswer): unknown {
    expect(answer.body.readUInt8(0)).toBe(0);
    expect(answer.body.readUInt32BE(1)).toBe(answer.body.length - 5);
    return shouldRateLimitMethod.deserialize(answer.body.subarray(5));
  }

  test('answers :status 200, application/grpc, one framed message, then grpc-status 0 and grpc-message OK trailers', async () => {
    const answer = await call([frame(MESSAGE)]);
    expect(answer.headers[':status']).toBe(200);
    expect(answer.headers['content-type']).toBe('application/grpc');
    expect(answer.headers['grpc-status']).toBeUndefined();
    expect(decodedBody(answer)).toEqual({ overall_code: 'OK', statuses: [{ code: 'OK', limit_remaining: 0 }] });
    expect(answer.trailers).toMatchObject({ 'grpc-status': '0', 'grpc-message': 'OK' });
    expect(t.service.requests).toEqual([{ domain: 'd', hitsAddend: 0, descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] }]);
  });

  test('reads a message split over several DATA frames, the prefix itself cut in three', async () => {
    const whole = frame(MESSAGE);
    const cuts = [1, 3, 5, 7, whole.length - 1];
    const chunks = cuts.map((at, i) => whole.subarray(i === 0 ? 0 : cuts[i - 1], at)).concat([whole.subarray(whole.length - 1)]);
    expect(Buffer.concat(chunks)).toEqual(whole);
    const answer = await call(chunks);
    expect(answer.status).toBe(0);
    expect(decodedBody(answer)).toEqual({ overall_code: 'OK', statuses: [{ code: 'OK', limit_remaining: 0 }] });
  });

  test('refuses two messages in one unary call with UNIMPLEMENTED, deciding neither', async () => {
    const answer = await call([frame(MESSAGE), frame(MESSAGE)]);
    expect(answer).toMatchObject({ status: grpc.status.UNIMPLEMENTED, message: `received a second request message for unary method ${SHOULD_RATE_LIMIT_PATH}` });
    expect(answer.headers[':status']).toBe(200);
    expect(answer.body.length).toBe(0);
    expect(t.service.requests).toEqual([]);
  });

  test('refuses a call with no message (END_STREAM on the headers, or an empty DATA frame) with UNIMPLEMENTED', async () => {
    for (const chunks of [[], [Buffer.alloc(0)]]) {
      const answer = await call(chunks);
      expect(answer).toMatchObject({ status: grpc.status.UNIMPLEMENTED, message: `received no request message for unary method ${SHOULD_RATE_LIMIT_PATH}` });
    }
    expect(t.service.requests).toEqual([]);
  });

  test('refuses a message cut off by the end of the stream, naming how much came', async () => {
    const answer = await call([frame(MESSAGE).subarray(0, 9)]);
    expect(answer).toMatchObject({ status: grpc.status.INTERNAL, message: `request message cut off: the stream ended after 9 of ${MESSAGE.length + 5} bytes` });
    const prefix = await call([Buffer.from([0, 0])]);
    expect(prefix).toMatchObject({ status: grpc.status.INTERNAL, message: 'request message cut off: the stream ended after 2 of a 5-byte prefix' });
  });

  test('refuses an oversized message from its prefix alone, without waiting for (or keeping) its bytes', async () => {
    // The stream is never ended and the announced bytes never sent: the answer comes from the prefix.
    const answer = await call([frame(Buffer.alloc(0), 0, MAX + 1)], {}, false);
    expect(answer).toMatchObject({ status: grpc.status.RESOURCE_EXHAUSTED, message: `request message of ${MAX + 1} bytes is larger than the limit of ${MAX} (GRPC_MAX_RECV_MSG_SIZE)` });
    // At the limit it is read.
    const atLimit = await call([frame(Buffer.alloc(MAX, 0x20), 0)]);
    expect(atLimit.status).not.toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  test('reads gzip and deflate messages by grpc-encoding, and refuses one that decompresses past the limit', async () => {
    const gzip = await call([frame(zlib.gzipSync(MESSAGE), 1)], { 'grpc-encoding': 'gzip' });
    expect(gzip.status).toBe(0);
    const deflate = await call([frame(zlib.deflateSync(MESSAGE), 1)], { 'grpc-encoding': 'deflate' });
    expect(deflate.status).toBe(0);
    // The flag, not the header, says whether this message is compressed.
    const plain = await call([frame(MESSAGE, 0)], { 'grpc-encoding': 'gzip' });
    expect(plain.status).toBe(0);
    expect(t.service.requests).toHaveLength(3);
    const bomb = await call([frame(zlib.gzipSync(Buffer.alloc(100 * MAX)), 1)], { 'grpc-encoding': 'gzip' });
    expect(bomb).toMatchObject({ status: grpc.status.RESOURCE_EXHAUSTED, message: `request message decompresses to more than the limit of ${MAX} bytes (GRPC_MAX_RECV_MSG_SIZE)` });
    const garbage = await call([frame(Buffer.from('not gzip'), 1)], { 'grpc-encoding': 'gzip' });
    expect(garbage.status).toBe(grpc.status.INTERNAL);
    expect(garbage.message).toMatch(/^request message does not decompress as gzip: /);
  });

  test('refuses a compressed message in an encoding it does not know with UNIMPLEMENTED and grpc-accept-encoding', async () => {
    const answer = await call([frame(MESSAGE, 1)], { 'grpc-encoding': 'snappy' });
    expect(answer).toMatchObject({
      status: grpc.status.UNIMPLEMENTED,
      message: 'request message compressed with unsupported grpc-encoding "snappy"; this server accepts identity,deflate,gzip',
    });
    expect(answer.headers['grpc-accept-encoding']).toBe('identity,deflate,gzip');
    const flag = await call([frame(MESSAGE, 2)]);
    expect(flag).toMatchObject({ status: grpc.status.INTERNAL, message: "the request message's compressed-flag byte is 2, not 0 or 1" });
  });

  test('answers a wrong content-type HTTP 415 and a method other than POST HTTP 405, as grpc-js does, with a message', async () => {
    for (const contentType of ['application/json', 'text/plain', 'application/grpc+json']) {
      const answer = await call([frame(MESSAGE)], { 'content-type': contentType });
      expect(answer.headers[':status']).toBe(415);
      expect(answer.message).toBe(`content-type "${contentType}" is not application/grpc or application/grpc+proto`);
    }
    for (const contentType of ['application/grpc+proto', 'application/grpc; charset=utf-8']) {
      expect((await call([frame(MESSAGE)], { 'content-type': contentType })).status).toBe(0);
    }
    // A long value is quoted back cut short.
    const long = await call([frame(MESSAGE)], { 'content-type': `text/${'x'.repeat(10_000)}` });
    expect(long.message).toBe(`content-type "text/${'x'.repeat(59)}…" is not application/grpc or application/grpc+proto`);
    const get = await call([], { ':method': 'GET' });
    expect(get.headers[':status']).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect(get.message).toBe('ShouldRateLimit is called with POST, not GET');
    expect(t.service.requests).toHaveLength(2);
  });

  test('hands the service the deadline of grpc-timeout, and refuses a malformed one', async () => {
    const before = Date.now();
    expect((await call([frame(MESSAGE)], { 'grpc-timeout': '2S' })).status).toBe(0);
    const deadline = t.service.deadlines[0];
    expect(deadline).toBeGreaterThanOrEqual(before + 2000);
    expect(deadline).toBeLessThanOrEqual(Date.now() + 2000);
    const bad = await call([frame(MESSAGE)], { 'grpc-timeout': 'soon' });
    expect(bad).toMatchObject({ status: grpc.status.INTERNAL, message: 'malformed grpc-timeout "soon": up to 8 digits and a unit (H, M, S, m, u, n) expected' });
  });

  test('answers DEADLINE_EXCEEDED when the answer is ready only after the deadline', async () => {
    t.service.answer = (request) =>
      new Promise<RateLimitResponse>((resolve) =>
        setTimeout(() => resolve({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 1 })), responseHeadersToAdd: [] }), 80),
      );
    const answer = await call([frame(MESSAGE)], { 'grpc-timeout': '20m' });
    expect(answer.status).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(answer.message).toMatch(/^deadline exceeded: the answer was ready \d+ ms after the call's grpc-timeout$/);
    expect(answer.body.length).toBe(0);
  });

  test('a call reset by its client before the answer is not written to, and nothing throws or is logged as failed', async () => {
    let release!: () => void;
    const decided = new Promise<void>((resolveDecided) => {
      t.service.answer = (request) =>
        new Promise<RateLimitResponse>((resolve) => {
          release = () => {
            resolve({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 1 })), responseHeadersToAdd: [] });
            resolveDecided();
          };
        });
    });
    const stream = session.request(GRPC_HEADERS);
    stream.on('error', () => undefined);
    let responded = false;
    stream.on('response', () => (responded = true));
    stream.end(frame(MESSAGE));
    while (t.service.requests.length === 0) await new Promise((r) => setTimeout(r, 5));
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await new Promise((r) => setTimeout(r, 20));
    release();
    await decided;
    await new Promise((r) => setTimeout(r, 20));
    expect(responded).toBe(false);
    expect(logs.filter((l) => Number(l['level']) >= 40)).toEqual([]);
    // The connection and the server carry on.
    t.service.answer = (request) => ({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 0 })), responseHeadersToAdd: [] });
    expect((await call([frame(MESSAGE)])).status).toBe(0);
  });

  test('percent-encodes grpc-message as the gRPC spec says, so that every client reads the message back', () => {
    expect(percentEncode('plain ASCII, "quoted" #1')).toBe('plain ASCII, "quoted" #1');
    expect(percentEncode('100% über\n')).toBe('100%25 %C3%BCber%0A');
  });
});

describe('lean transport: grpc-js internals', () => {
  // If a grpc-js upgrade moves its HTTP/2 servers or its 'stream' listener, these fail instead of
  // the lean transport silently falling back to grpc-js (the startup line would say so too).
  test('routes ShouldRateLimit on grpc-js 1.14 servers, and keeps the call budget seeing every stream', async () => {
    const server = new grpc.Server();
    const clock = new ManualClock(0);
    const shares = new ConnectionCallShares({ total: 64, minPerConnection: 4 }, clock);
    let opened = 0;
    const streamOpened = shares.streamOpened.bind(shares);
    shares.streamOpened = () => {
      opened++;
      streamOpened();
    };
    const served: string[] = [];
    let stopChecks: (() => void) | undefined;
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => {
        if (err) return reject(err);
        expect(
          routeShouldRateLimit(server, (stream, headers) => {
            served.push(String(headers[':path']));
            stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'lean' }, { endStream: true });
          }),
        ).toBe(true);
        stopChecks = shareCallsAmongConnections(server, shares, clock);
        resolve(bound);
      });
    });
    const client = createRlsClient(`127.0.0.1:${port}`);
    try {
      await expect(client.shouldRateLimit(REQUEST)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND, details: 'lean' });
      // Any other path is grpc-js's: it has no service here, so UNIMPLEMENTED.
      await expect(client.health('')).rejects.toMatchObject({ code: grpc.status.UNIMPLEMENTED });
      expect(served).toEqual([SHOULD_RATE_LIMIT_PATH]);
      expect(opened).toBe(2);
    } finally {
      client.close();
      stopChecks?.();
      server.forceShutdown();
    }
  });

  test('changes nothing and says so when grpc-js has no servers where it reads them', () => {
    expect(routeShouldRateLimit(new grpc.Server(), () => undefined)).toBe(false);
    expect(routeShouldRateLimit({} as grpc.Server, () => undefined)).toBe(false);
  });
});
