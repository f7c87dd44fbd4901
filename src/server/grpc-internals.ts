import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

/** grpc-js's HTTP/2 servers (a private field of grpc.Server: the version is pinned, and tests fail if it goes away). */
interface WithHttp2Servers {
  http2Servers?: Map<http2.Http2Server | http2.Http2SecureServer, unknown>;
}

/**
 * The HTTP/2 servers grpc-js listens with, once `bindAsync` has called back; undefined when grpc-js
 * no longer keeps them where this reads them (or has none).
 */
export function http2ServersOf(server: grpc.Server): (http2.Http2Server | http2.Http2SecureServer)[] | undefined {
  const servers = (server as unknown as WithHttp2Servers).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return undefined;
  return [...servers.keys()];
}
