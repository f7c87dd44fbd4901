import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { shouldRateLimitMethod, type WireRequestShape } from '../../src/server/proto';

/** Debian's python3 with python3-grpcio and python3-protobuf (a pyenv python3 earlier on PATH has no grpc). */
export const DEBIAN_PYTHON = '/usr/bin/python3';

/** One call's answer from grpcio: its status name and details, and the decoded overall code when OK. */
export interface GrpcioAnswer {
  readonly code: string;
  readonly details: string;
  readonly overall?: string;
}

/**
 * `count` ShouldRateLimit calls of `request`, all at once, from Python's grpcio (C-core: an
 * independent HTTP/2 and gRPC implementation) with a `timeoutS` deadline each (grpcio-burst.py).
 */
export function grpcioBurst(port: number, request: WireRequestShape, count: number, timeoutS: number): Promise<GrpcioAnswer[]> {
  const hex = shouldRateLimitMethod.serialize(request).toString('hex');
  return new Promise((resolve, reject) => {
    execFile(
      DEBIAN_PYTHON,
      [path.join(__dirname, 'grpcio-burst.py'), `127.0.0.1:${port}`, hex, String(count), String(timeoutS)],
      { maxBuffer: 16 * 1024 * 1024, timeout: 30_000 },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${err.message}\n${stderr}`));
          return;
        }
        resolve(
          stdout
            .trim()
            .split('\n')
            .map((line) => JSON.parse(line) as { code: string; details: string; response: string })
            .map(({ code, details, response }) =>
              code === 'OK' ? { code, details, overall: String(shouldRateLimitMethod.deserialize(Buffer.from(response, 'hex')).overall_code) } : { code, details },
            ),
        );
      },
    );
  });
}
