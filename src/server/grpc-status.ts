import { status } from '@grpc/grpc-js';
import { SluiceError } from '../errors';

/** A gRPC error status: what a grpc-js handler passes to its callback. */
export interface GrpcErrorStatus {
  readonly code: status;
  readonly details: string;
}

/**
 * Peers cap the size of the trailers that carry `details` (grpc-message); over the cap a clear
 * error turns into a reset stream. Long messages (a config error listing every problem) are cut.
 */
const MAX_DETAILS_LENGTH = 2048;

function truncate(message: string): string {
  return message.length <= MAX_DETAILS_LENGTH ? message : `${message.slice(0, MAX_DETAILS_LENGTH - 1)}…`;
}

/**
 * THE mapping from an error to a gRPC status; nothing else in sluice picks a status code.
 *
 * - `invalid_argument` → INVALID_ARGUMENT, with the message naming the field.
 * - `unavailable` (no config loaded, store down) → UNAVAILABLE. Deliberately an error and not an
 *   answer: Envoy treats any gRPC error as "the rate limit service failed" and lets the operator's
 *   `failure_mode_deny` decide (fail open by default, or `status_on_error`). Answering OK would
 *   decide for them, and answering with `overall_code: UNKNOWN` is worse: release builds of Envoy
 *   treat anything but OVER_LIMIT as OK, so it would silently fail open whatever the setting says.
 *   UNAVAILABLE is also the code gRPC clients read as "transient, retry elsewhere".
 * - `deadline_exceeded` → DEADLINE_EXCEEDED: the caller's deadline passed before a decision.
 * - `resource_exhausted` → RESOURCE_EXHAUSTED: shed at once because sluice is at its work bound,
 *   or a request message over the size limit.
 * - `unimplemented` → UNIMPLEMENTED: a call the server does not serve (no request message or two
 *   for a unary method, an unknown compression).
 * - `unauthenticated` → UNAUTHENTICATED: a client certificate without GRPC_CLIENT_TLS_SAN.
 * - anything else → INTERNAL, prefixed `internal error:` when it is not one of ours (a bug).
 */
export function toGrpcStatus(err: unknown): GrpcErrorStatus {
  if (err instanceof SluiceError) {
    switch (err.kind) {
      case 'invalid_argument':
        return { code: status.INVALID_ARGUMENT, details: truncate(err.message) };
      case 'unavailable':
        return { code: status.UNAVAILABLE, details: truncate(err.message) };
      case 'deadline_exceeded':
        return { code: status.DEADLINE_EXCEEDED, details: truncate(err.message) };
      case 'resource_exhausted':
        return { code: status.RESOURCE_EXHAUSTED, details: truncate(err.message) };
      case 'unimplemented':
        return { code: status.UNIMPLEMENTED, details: truncate(err.message) };
      case 'unauthenticated':
        return { code: status.UNAUTHENTICATED, details: truncate(err.message) };
      case 'internal':
        return { code: status.INTERNAL, details: truncate(err.message) };
    }
  }
  return { code: status.INTERNAL, details: truncate(`internal error: ${describe(err)}`) };
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    return err.message;
  }
  try {
    return String(err);
  } catch {
    // An object whose toString throws must not turn error reporting into a second failure.
    return 'non-Error value thrown';
  }
}
