import { status as grpcStatus } from '@grpc/grpc-js';
import { InvalidArgumentError } from '../errors';
import type { Logger } from '../logging/logger';
import type { RateLimitRequest, RateLimitResponse, RateLimitService } from '../service/types';
import { type GrpcErrorStatus, toGrpcStatus } from './grpc-status';
import { rateLimitServiceDefinition } from './proto';
import { checkRequestBytes } from './request-bytes';
import { decodeRateLimitRequest } from './request-decoder';
import { fromWireRequest } from './wire';

/**
 * One ShouldRateLimit call from its request bytes to its answer, shared by both transports
 * (grpc-js's handler and the lean one), so that they check, decode, decide and log alike.
 */

const METHOD = rateLimitServiceDefinition.ShouldRateLimit!;

/** A request whose bytes are not a valid `RateLimitRequest` (`checkRequestBytes` says why): answered INVALID_ARGUMENT. */
export class MalformedRequest {
  constructor(readonly problem: string) {}
}

/** Request bytes → the service's request, or what is wrong with them. Never throws for bad bytes. */
export function decodeRequest(bytes: Buffer): RateLimitRequest | MalformedRequest {
  const request = decodeRateLimitRequest(bytes);
  if (request !== undefined) return request;
  const problem = checkRequestBytes(bytes);
  if (problem !== undefined) return new MalformedRequest(problem);
  // The one-pass decoder refuses nothing the check accepts; should it ever, protobufjs decides,
  // and what protobufjs cannot read is refused, never thrown (the lean transport calls this from a stream event).
  try {
    return fromWireRequest(METHOD.requestDeserialize(bytes));
  } catch (err) {
    return new MalformedRequest(`malformed request: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/**
 * Decides a decoded request (or refuses a malformed one). Never throws: a synchronous throw
 * anywhere in the service arrives as a rejection.
 */
export function decide(
  service: RateLimitService,
  request: RateLimitRequest | MalformedRequest,
  deadline: number | undefined,
): Promise<RateLimitResponse> {
  if (request instanceof MalformedRequest) return Promise.reject(new InvalidArgumentError(request.problem));
  try {
    return service.shouldRateLimit(request, deadline === undefined ? {} : { deadlineMs: deadline });
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Logs a decision answered. */
export function logDecided(logger: Logger, request: RateLimitRequest | MalformedRequest, response: RateLimitResponse, started: number): void {
  // Every call passes here: build the line only when it is written (debug is off by default).
  if (!logger.isLevelEnabled('debug')) return;
  const domain = request instanceof MalformedRequest ? undefined : request.domain;
  logger.debug({ domain, overall: response.overallCode, ms: performance.now() - started }, 'ShouldRateLimit');
}
/** Maps a failure to its status (the one mapper) and logs it: a warning for INTERNAL (a bug or a broken peer), debug otherwise. */
export function failureStatus(logger: Logger, err: unknown, started: number): GrpcErrorStatus {
  const status = toGrpcStatus(err);
  const fields = { code: grpcStatus[status.code], details: status.details, ms: performance.now() - started };
  if (status.code === grpcStatus.INTERNAL) {
    logger.warn({ ...fields, err }, 'ShouldRateLimit failed');
  } else {
    logger.debug(fields, 'ShouldRateLimit failed');
  }
  return status;
}
