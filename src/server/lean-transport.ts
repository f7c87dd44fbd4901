import * as http2 from 'node:http2';
import * as zlib from 'node:zlib';
import type * as grpc from '@grpc/grpc-js';
import { TLSSocket } from 'node:tls';
import { DeadlineExceededError, MessageTooLargeError, ProtocolError, UnauthenticatedError, UnimplementedError } from '../errors';
import type { Logger } from '../logging/logger';
import type { RateLimitResponse, RateLimitService } from '../service/types';
import { grpcTimeoutMs } from './call-budget';
import { http2ServersOf } from './grpc-internals';
import { RLS_SERVICE_NAME } from './proto';
import { encodeRateLimitResponse } from './response-encoder';
import { decide, decodeRequest, failureStatus, logDecided } from './rls-call';
import { clientSanProblem } from './tls';

/**
 * The lean transport (GRPC_TRANSPORT=lean): ShouldRateLimit served straight on the HTTP/2 streams
 * of grpc-js's own servers, everything else left to grpc-js.
 *
 * Why: grpc-js's per-call machinery (its call object, interceptors, metadata, a deadline timer,
 * a decoder and read queue, trailers by callback) costs about half of what a call costs sluice in
 * all (a do-nothing grpc-js server answers ~1.6x fewer calls than node:http2 answering the same
 * bytes). The hot method is one unary call with one small message, so reading it and answering it
 * takes a few lines over node:http2. grpc-js keeps the connections: TLS and its reload, keepalive,
 * max connection age, GOAWAY and drain on shutdown, health, reflection, and the call budget's
 * listeners (they sit on the same servers and see these streams too).
 */

export const SHOULD_RATE_LIMIT_PATH = `/${RLS_SERVICE_NAME}/ShouldRateLimit`;

/** grpc-js's own default receive limit (4 MiB), for a server built without one. */
const GRPC_JS_DEFAULT_MAX_RECEIVE = 4 * 1024 * 1024;
/** What grpc-js decompresses, and so what this transport accepts, in its order. */
const ACCEPTED_ENCODINGS = 'identity,deflate,gzip';
const PREFIX_BYTES = 5;
/** The most of a client's header value a message quotes back. */
const ECHO_CHARS = 64;

export interface LeanTransportOptions {
  readonly service: RateLimitService;
  readonly logger: Logger;
  /** GRPC_MAX_RECV_MSG_SIZE: the largest request message, as sent and once decompressed; grpc-js's 4 MiB when unset. */
  readonly maxReceiveMessageLength?: number;
  /**
   * GRPC_CLIENT_TLS_SAN: the name a client certificate must carry. grpc-js checks it in an
   * interceptor, which this transport does not run: it checks it here, once per connection.
   */
  readonly clientSan?: string | undefined;
}

// Pre-built once: every answer sends these same header blocks (Node copies them when it sends).
const OK_HEADERS: http2.OutgoingHttpHeaders = { ':status': 200, 'content-type': 'application/grpc' };
const OK_TRAILERS: http2.OutgoingHttpHeaders = { 'grpc-status': '0', 'grpc-message': 'OK' };
const RESPOND_WITH_TRAILERS: http2.ServerStreamResponseOptions = { waitForTrailers: true };
const END_STREAM: http2.ServerStreamResponseOptions = { endStream: true };

/**
 * Replaces the 'stream' listener grpc-js put on each of its HTTP/2 servers with one that hands
 * ShouldRateLimit to `serve` and every other path to grpc-js's listener unchanged. Call in
 * `bindAsync`'s callback, before the event loop can accept a connection, and before other
 * 'stream' listeners are added (the call budget's): the dispatcher then runs first, where
 * grpc-js's listener ran. Returns false, changing nothing, when grpc-js's servers or its one
 * listener on each are not where this reads them (a grpc-js upgrade): grpc-js then serves all.
 */
export function routeShouldRateLimit(
  server: grpc.Server,
  serve: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void,
): boolean {
  const servers = http2ServersOf(server);
  if (servers === undefined) return false;
  const found = servers.map((http2Server) => ({ http2Server, listeners: http2Server.listeners('stream') }));
  if (found.some(({ listeners }) => listeners.length !== 1)) return false;
  for (const { http2Server, listeners } of found) {
    const grpcJs = listeners[0] as (this: unknown, ...args: unknown[]) => void;
    http2Server.removeListener('stream', grpcJs);
    http2Server.on('stream', function dispatch(this: unknown, stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) {
      if (headers[':path'] === SHOULD_RATE_LIMIT_PATH) serve(stream, headers);
      else grpcJs.call(this, stream, headers, ...rest);
    });
  }
  return true;
}

/** Serves one ShouldRateLimit stream, start to end; never throws, whatever the stream holds. */
export function leanShouldRateLimit(options: LeanTransportOptions): (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void {
  const max = options.maxReceiveMessageLength ?? GRPC_JS_DEFAULT_MAX_RECEIVE;
  const san = options.clientSan;
  // Per connection: its certificate does not change, and reading it builds a new object each time.
  const sanProblems = new WeakMap<http2.Http2Session, string | null>();
  const sanProblem = (stream: http2.ServerHttp2Stream): string | undefined => {
    if (san === undefined) return undefined;
    const session = stream.session;
    if (session === undefined) return 'the connection is gone';
    let problem = sanProblems.get(session);
    if (problem === undefined) {
      const socket = session.socket;
      problem = clientSanProblem(san, socket instanceof TLSSocket ? socket.getPeerCertificate() : undefined) ?? null;
      sanProblems.set(session, problem);
    }
    return problem ?? undefined;
  };
  return (stream, headers) => {
    try {
      new LeanCall(stream, headers, options, max, sanProblem(stream));
    } catch (err) {
      // Nothing above throws for a request; this is for a bug, which must not end the process.
      options.logger.error({ err }, 'ShouldRateLimit (lean transport) failed');
      try {
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      } catch {
        // The session is gone: so is the stream.
      }
    }
  };
}

/** A reset or broken stream: its 'close' follows, and nothing is written to it after that. */
function ignore(): void {}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  try {
    this.sendTrailers(OK_TRAILERS);
  } catch {
    // Reset by the client between the message and its trailers: nothing left to tell it.
  }
}

const CALL = Symbol('leanCall');
type CallStream = http2.ServerHttp2Stream & { [CALL]?: LeanCall };

/**
 * One call: reads exactly one gRPC-framed message (the 5-byte prefix and the bytes it announces,
 * however the DATA frames split them), refusing it as soon as it cannot be served, then decides it.
 */
class LeanCall {
  private readonly started = performance.now();
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  /** The message's bytes with its prefix, once the prefix is read; -1 before. */
  private frameLength = -1;
  private compressed = false;
  /** Answered (or refused): what still arrives is read and dropped. */
  private done = false;
  /** The client has sent all of its request (END_STREAM). */
  private ended = false;
  private readonly deadline: number | undefined;
  private readonly encoding: string;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    private readonly options: LeanTransportOptions,
    private readonly max: number,
    sanProblem: string | undefined,
  ) {
    stream.on('error', ignore);
    (stream as CallStream)[CALL] = this;
    stream.on('data', LeanCall.onData);
    stream.on('end', LeanCall.onEnd);
    const encoding = headers['grpc-encoding'];
    this.encoding = typeof encoding === 'string' ? encoding : 'identity';
    const timeout = headers['grpc-timeout'];
    const timeoutMs = grpcTimeoutMs(timeout);
    this.deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;

    const method = headers[':method'];
    if (method !== 'POST') {
      this.refuseHttp(405, `ShouldRateLimit is called with POST, not ${echo(method)}`, { allow: 'POST' });
      return;
    }
    const contentType = headers['content-type'];
    if (!isGrpcProto(contentType)) {
      // As grpc-js: HTTP 415 for anything that is not gRPC; gRPC in another encoding than protobuf is not served either.
      this.refuseHttp(415, `content-type ${contentType === undefined ? '(none)' : `"${echo(contentType)}"`} is not application/grpc or application/grpc+proto`);
      return;
    }
    if (sanProblem !== undefined) {
      this.fail(new UnauthenticatedError(sanProblem));
      return;
    }
    if (timeout !== undefined && timeoutMs === undefined) {
      this.fail(new ProtocolError(`malformed grpc-timeout "${echo(timeout)}": up to 8 digits and a unit (H, M, S, m, u, n) expected`));
    }
  }

  // Listeners shared by every call (no closures per call): the stream leads to its call.
  private static onData(this: CallStream, chunk: Buffer): void {
    this[CALL]!.read(chunk);
  }

  private static onEnd(this: CallStream): void {
    this[CALL]!.end();
  }

  private read(chunk: Buffer): void {
    if (this.done) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.frameLength < 0) {
      if (this.buffered < PREFIX_BYTES) return;
      if (!this.readPrefix()) return;
    }
    if (this.buffered > this.frameLength) {
      this.fail(new UnimplementedError(`received a second request message for unary method ${SHOULD_RATE_LIMIT_PATH}`));
    }
  }

  /** Reads the 5-byte prefix: false when the call was refused for it. */
  private readPrefix(): boolean {
    const head = this.chunks[0]!.length >= PREFIX_BYTES ? this.chunks[0]! : Buffer.concat(this.chunks);
    const flag = head[0]!;
    const length = head.readUInt32BE(1);
    if (flag > 1) {
      this.fail(new ProtocolError(`the request message's compressed-flag byte is ${flag}, not 0 or 1`));
      return false;
    }
    if (length > this.max) {
      this.fail(new MessageTooLargeError(`request message of ${length} bytes is larger than the limit of ${this.max} (GRPC_MAX_RECV_MSG_SIZE)`));
      return false;
    }
    this.compressed = flag === 1;
    if (this.compressed && this.encoding !== 'identity' && this.encoding !== 'gzip' && this.encoding !== 'deflate') {
      this.fail(
        new UnimplementedError(`request message compressed with unsupported grpc-encoding "${echo(this.encoding)}"; this server accepts ${ACCEPTED_ENCODINGS}`),
        { 'grpc-accept-encoding': ACCEPTED_ENCODINGS },
      );
      return false;
    }
    this.frameLength = PREFIX_BYTES + length;
    return true;
  }

  private end(): void {
    this.ended = true;
    if (this.done) return;
    if (this.buffered === 0) {
      this.fail(new UnimplementedError(`received no request message for unary method ${SHOULD_RATE_LIMIT_PATH}`));
      return;
    }
    if (this.frameLength < 0 || this.buffered < this.frameLength) {
      const expected = this.frameLength < 0 ? 'a 5-byte prefix' : `${this.frameLength} bytes`;
      this.fail(new ProtocolError(`request message cut off: the stream ended after ${this.buffered} of ${expected}`));
      return;
    }
    const frame = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
    this.chunks.length = 0;
    const message = frame.subarray(PREFIX_BYTES);
    if (!this.compressed || this.encoding === 'identity') this.decide(message);
    else this.decompress(message);
  }

  private decompress(message: Buffer): void {
    const done = (err: Error | null, bytes: Buffer): void => {
      if (err === null) {
        this.decide(bytes);
      } else if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') {
        this.fail(new MessageTooLargeError(`request message decompresses to more than the limit of ${this.max} bytes (GRPC_MAX_RECV_MSG_SIZE)`));
      } else {
        this.fail(new ProtocolError(`request message does not decompress as ${this.encoding}: ${err.message}`));
      }
    };
    // maxOutputLength: zlib stops at the limit instead of inflating a bomb whole.
    const limit = { maxOutputLength: Math.max(1, this.max) };
    if (this.encoding === 'gzip') zlib.gunzip(message, limit, done);
    else zlib.inflate(message, limit, done);
  }

  private decide(bytes: Buffer): void {
    this.done = true;
    const { service, logger } = this.options;
    const request = decodeRequest(bytes);
    decide(service, request, this.deadline)
      .then(
        (response) => {
          if (this.late()) {
            this.fail(this.lateError());
            return;
          }
          logDecided(logger, request, response, this.started);
          this.answer(response);
        },
        (err: unknown) => this.fail(this.late() && !(err instanceof DeadlineExceededError) ? this.lateError() : err),
      )
      // Last line of defence: a throw from a logger must not become an unhandled rejection.
      .catch((err: unknown) => logger.error({ err }, 'ShouldRateLimit handler failed'));
  }

  /** Whether the answer is ready only after the call's deadline: grpc-js would have answered DEADLINE_EXCEEDED at the deadline. */
  private late(): boolean {
    return this.deadline !== undefined && Date.now() >= this.deadline;
  }

  private lateError(): DeadlineExceededError {
    return new DeadlineExceededError(`deadline exceeded: the answer was ready ${Date.now() - this.deadline!} ms after the call's grpc-timeout`);
  }

  /** Whether anything may still be written: not reset or closed by the client, not yet answered. */
  private writable(): boolean {
    const { stream } = this;
    return !stream.destroyed && !stream.closed && !stream.headersSent;
  }

  private answer(response: RateLimitResponse): void {
    if (!this.writable()) return;
    // The message is encoded after the prefix's bytes, in the frame it is sent in.
    const frame = encodeRateLimitResponse(response, PREFIX_BYTES);
    frame[0] = 0;
    frame.writeUInt32BE(frame.length - PREFIX_BYTES, 1);
    try {
      this.stream.respond(OK_HEADERS, RESPOND_WITH_TRAILERS);
      // `on`, not `once` (which wraps the listener per call): a stream asks for trailers once.
      this.stream.on('wantTrailers', sendOkTrailers);
      this.stream.end(frame);
    } catch (err) {
      // The session went away between the check and the write.
      this.options.logger.debug({ err }, 'ShouldRateLimit answer not sent');
    }
  }

  /** Refuses or fails the call with a trailers-only response (status mapped by toGrpcStatus), and drops what is still sent. */
  private fail(err: unknown, extra?: http2.OutgoingHttpHeaders): void {
    const status = failureStatus(this.options.logger, err, this.started);
    this.finish();
    this.respondOnly({ ...OK_HEADERS, 'grpc-status': String(status.code), 'grpc-message': percentEncode(status.details), ...extra });
  }

  /** Not gRPC at all: an HTTP status, as grpc-js answers a wrong content-type; the message for a human with curl. */
  private refuseHttp(httpStatus: number, details: string, extra?: http2.OutgoingHttpHeaders): void {
    this.options.logger.debug({ httpStatus, details }, 'ShouldRateLimit refused');
    this.finish();
    this.respondOnly({ ':status': httpStatus, 'grpc-message': percentEncode(details), ...extra });
  }

  private finish(): void {
    this.done = true;
    this.chunks.length = 0;
  }

  private respondOnly(headers: http2.OutgoingHttpHeaders): void {
    if (!this.writable()) return;
    try {
      this.stream.respond(headers, END_STREAM);
      // Refused before the client sent all of it (an oversized message): the answer is complete,
      // so ask the client to stop sending the rest (RST_STREAM NO_ERROR after the response, as
      // RFC 9113 §8.1 allows) instead of reading bytes that will be dropped.
      if (!this.ended) this.stream.close(http2.constants.NGHTTP2_NO_ERROR);
    } catch (err) {
      this.options.logger.debug({ err }, 'ShouldRateLimit answer not sent');
    }
  }
}

/** A header value quoted back in a message, cut short: a client's 16 KB header must not come back in our answer's headers. */
function echo(value: string | string[] | undefined): string {
  const text = String(value);
  return text.length <= ECHO_CHARS ? text : `${text.slice(0, ECHO_CHARS)}…`;
}

/** `application/grpc` or `application/grpc+proto`, parameters allowed (`; charset=...`), any case. */
function isGrpcProto(contentType: string | undefined): boolean {
  if (typeof contentType !== 'string') return false;
  const semicolon = contentType.indexOf(';');
  const type = (semicolon < 0 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return type === 'application/grpc' || type === 'application/grpc+proto';
}

/**
 * `grpc-message` as the gRPC spec encodes it: bytes outside printable ASCII (0x20-0x7E), and '%',
 * as %XX of their UTF-8. (grpc-js's encodeURI also escapes spaces and quotes; both decode alike.)
 */
export function percentEncode(details: string): string {
  let plain = true;
  for (let i = 0; i < details.length; i++) {
    const c = details.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return details;
  let out = '';
  for (const byte of Buffer.from(details, 'utf8')) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}
