import type * as grpc from '@grpc/grpc-js';

/**
 * Node's HTTP/2 server (nghttp2) limits how many RST_STREAM frames a client may send on one
 * connection — the guard against the "rapid reset" flood (CVE-2023-44487) — to a burst of 1,000
 * refilled at 33 per second, and past it sends GOAWAY INTERNAL_ERROR, failing every call still on
 * the connection. Envoy cancels each ratelimit call at its timeout (20 ms by default), so a slow
 * moment in sluice turns into one reset per request: more than a thousand in a second or two on a
 * busy Envoy, and the default guard then cuts the connection that carries all of Envoy's other
 * calls, which fail open. sluice raises the limit to what a legitimate client can send (about one
 * reset per request it could answer) while still bounding a flood.
 */
export interface StreamResetLimit {
  /** RST_STREAM frames a connection may send at once. */
  readonly burst: number;
  /** ... and per second after that. */
  readonly ratePerSecond: number;
}

/** The first Node releases whose http2 server takes `streamResetBurst`/`streamResetRate` (nodejs/node#54875). */
const FIRST_SUPPORTING = { major: 22, minor: 10 } as const;

/** Whether this runtime lets the limit be set; on older ones nghttp2's 1,000/33 per second stands. */
export function streamResetLimitSupported(nodeVersion: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = nodeVersion.split('.').map((part) => Number.parseInt(part, 10));
  return major > FIRST_SUPPORTING.major || (major === FIRST_SUPPORTING.major && minor >= FIRST_SUPPORTING.minor);
}

/** The node:http2 options grpc-js passes to `http2.createServer`/`createSecureServer` (a private field of grpc.Server). */
interface WithHttp2Options {
  commonServerOptions?: unknown;
}

/**
 * Sets the limit on the HTTP/2 servers `server` will create; call before `bindAsync`. grpc-js has
 * no channel option for it, so this adds Node's own options to the ones grpc-js hands to
 * `http2.createServer` (the version of grpc-js is pinned, and a test fails if the field goes away).
 * Returns false when it could not: the runtime is too old, or grpc-js no longer has the field.
 */
export function applyStreamResetLimit(server: grpc.Server, limit: StreamResetLimit, nodeVersion?: string): boolean {
  if (!streamResetLimitSupported(nodeVersion)) return false;
  const options = (server as unknown as WithHttp2Options).commonServerOptions;
  if (typeof options !== 'object' || options === null) return false;
  Object.assign(options, { streamResetBurst: limit.burst, streamResetRate: limit.ratePerSecond });
  return true;
}
