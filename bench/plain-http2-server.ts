import * as http2 from 'node:http2';
import { encodeRateLimitResponse } from '../src/server/response-encoder';

/**
 * The transport alone: a `node:http2` server answering every stream with the same pre-encoded
 * gRPC OK response (4 descriptor statuses), after reading the request. No grpc-js, no decoding,
 * no decision: what Node's HTTP/2 costs a call by itself (`npm run bench:gc` compares the others
 * with it). Prints `{"grpcPort": N}` once listening on 127.0.0.1.
 */

const PREFIX_BYTES = 5;
const frame = encodeRateLimitResponse(
  { overallCode: 'OK', statuses: Array.from({ length: 4 }, () => ({ code: 'OK' as const, limitRemaining: 0 })), responseHeadersToAdd: [] },
  PREFIX_BYTES,
);
frame.writeUInt32BE(frame.length - PREFIX_BYTES, 1);
const HEADERS = { ':status': 200, 'content-type': 'application/grpc' };
const TRAILERS = { 'grpc-status': '0' };

function sendTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(TRAILERS);
}

function answer(this: http2.ServerHttp2Stream): void {
  if (this.destroyed) return;
  this.respond(HEADERS, { waitForTrailers: true });
  this.on('wantTrailers', sendTrailers);
  this.end(frame);
}

const server = http2.createServer();
server.on('stream', (stream) => {
  stream.on('error', () => {});
  stream.resume();
  stream.on('end', answer);
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ grpcPort: (server.address() as { port: number }).port })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
