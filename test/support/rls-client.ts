import {
  createGrpcClient,
  healthCheckMethod,
  shouldRateLimitMethod,
  unaryCall,
} from '../../src/server/proto';
import type { WireRequestShape, WireResponseShape } from '../../src/server/proto';

export type { WireRequestShape, WireResponseShape };

/**
 * A real gRPC client for end-to-end tests, built from sluice's own protos (the same package
 * definition and loader options the server uses). Talks plaintext to `host:port`.
 *
 * Shapes are proto-loader's, snake_case: `{domain, descriptors: [{entries: [{key, value}],
 * hits_addend?: {value}, limit?: {requests_per_unit, unit}}], hits_addend}` in, and
 * `{overall_code: 'OK' | 'OVER_LIMIT', statuses: [{code, current_limit?: {requests_per_unit, unit,
 * name?}, limit_remaining, duration_until_reset?: {seconds}}], response_headers_to_add?}` out.
 * Field presence is the wire's: a field the server did not set is absent, not null or 0 (sluice
 * always sets `code` and `limit_remaining`, even when 0). Enums are names ('WEEK').
 *
 * Every method rejects with the grpc-js `ServiceError` on a gRPC failure: assert on `code`
 * (`status.INVALID_ARGUMENT` from '@grpc/grpc-js') and `details` (the server's message).
 */
export interface RlsClient {
  /** `deadlineMs` defaults to 5000, so a hung server fails the test with DEADLINE_EXCEEDED instead of a jest timeout. */
  shouldRateLimit(req: WireRequestShape, opts?: { deadlineMs?: number }): Promise<WireResponseShape>;
  /** `grpc.health.v1.Health/Check`: 'SERVING', 'NOT_SERVING', ...; an unknown name rejects with NOT_FOUND. */
  health(service: string): Promise<string>;
  close(): void;
}

const DEFAULT_DEADLINE_MS = 5000;

export function createRlsClient(address: string): RlsClient {
  const client = createGrpcClient(address);
  return {
    shouldRateLimit: (req, opts) =>
      unaryCall(client, shouldRateLimitMethod, req, opts?.deadlineMs ?? DEFAULT_DEADLINE_MS),
    health: async (service) => {
      const response = await unaryCall(client, healthCheckMethod, { service }, DEFAULT_DEADLINE_MS);
      // UNKNOWN is enum value 0; a server that leaves it unset means UNKNOWN.
      return String(response.status ?? 'UNKNOWN');
    },
    close: () => client.close(),
  };
}
