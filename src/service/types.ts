import type { DescriptorEntry, Unit } from '../config/types';

/**
 * The RLS v3 request and response as the service layer sees them: plain data, decoupled from
 * grpc-js and proto-loader. `server/` converts to and from the wire.
 */
export interface RateLimitRequest {
  readonly domain: string;
  readonly descriptors: readonly RequestDescriptor[];
  /** The request-level `hits_addend` as sent; 0 means 1. */
  readonly hitsAddend: number;
}

export interface RequestDescriptor {
  readonly entries: readonly DescriptorEntry[];
  /** `RateLimitDescriptor.limit` sent by Envoy; `unit` is the wire enum number. */
  readonly limitOverride?: { readonly requestsPerUnit: number; readonly unit: number };
  /** `RateLimitDescriptor.hits_addend`; presence matters: 0 means check only. */
  readonly hitsAddend?: number;
}

export type Code = 'OK' | 'OVER_LIMIT';

export interface CurrentLimit {
  readonly requestsPerUnit: number;
  readonly unit: Unit;
  readonly name?: string;
}

export interface DescriptorStatus {
  readonly code: Code;
  /** Absent when no limit applies (unmatched, unlimited, replaced). */
  readonly currentLimit?: CurrentLimit;
  readonly limitRemaining: number;
  /** Whole seconds; absent when no limit applies. */
  readonly durationUntilResetSeconds?: number;
}

export interface HeaderValue {
  readonly key: string;
  readonly value: string;
}

export interface RateLimitResponse {
  readonly overallCode: Code;
  readonly statuses: readonly DescriptorStatus[];
  readonly responseHeadersToAdd: readonly HeaderValue[];
}

/** What the front end knows about a call besides its request. */
export interface CallContext {
  /**
   * Epoch milliseconds by which the caller needs the answer (the gRPC deadline); undefined when
   * the caller set none. The store gives up in time to answer by then, per the failure policy.
   */
  readonly deadlineMs?: number;
}

/** The decision service behind the gRPC and HTTP front ends. */
export interface RateLimitService {
  /**
   * Decides one request. Rejects with `InvalidArgumentError` for a malformed request,
   * `UnavailableError` when no config is loaded, a `StoreError` (kind unavailable) when the store
   * cannot answer and the failure policy says `error`.
   */
  shouldRateLimit(request: RateLimitRequest, context?: CallContext): Promise<RateLimitResponse>;
}
