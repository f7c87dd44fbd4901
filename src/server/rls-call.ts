import { status as grpcStatus } from '@grpc/grpc-js';
import { InvalidArgumentError } from '../errors';
import type { Logger } from '../logging/logger';
import type { RateLimitService } from '../service/types';
import { type GrpcErrorStatus, toGrpcStatus } from './grpc-status';
import { rateLimitServiceDefinition, type WireResponseShape } from './proto';
import { checkRequestBytes } from './request-bytes';
import { fromWireRequest, toWireResponse } from './wire';

/**
 * One ShouldRateLimit call from its request bytes to its answer, shared by both transports
 * (grpc-js's handler and the lean one), so that they check, decode, decide and log alike.
 */

const METHOD = rateLimitServiceDefinition.ShouldRateLimit!;

/** A request whose bytes failed `checkRequestBytes`: answered INVALID_ARGUMENT. */
export class MalformedRequest {
  constructor(readonly problem: string) {}
}

/** Request bytes → the decoded message (proto-loader's object), or what is wrong with them. Never throws for bad bytes. */
export function decodeRequest(bytes: Buffer): unknown {
  const problem = checkRequestBytes(bytes);
  return problem === undefined ? METHOD.requestDeserialize(bytes) : new MalformedRequest(problem);
}

/** A response object → its protobuf bytes (protobufjs, through proto-loader: the encoder grpc-js uses). */
export function encodeResponse(response: WireResponseShape): Buffer {
  return METHOD.responseSerialize(response);
}

/**
 * Decides a decoded request (or refuses a malformed one). Async, so a synchronous throw anywhere
 * in conversion or in the service arrives as a rejection: callers cannot throw.
 */
export async function decide(
  service: RateLimitService,
  raw: unknown,
  deadline: number | undefined,
): Promise<{ domain: string; response: WireResponseShape }> {
  if (raw instanceof MalformedRequest) throw new InvalidArgumentError(raw.problem);
  const request = fromWireRequest(raw);
  const response = await service.shouldRateLimit(request, deadline === undefined ? {} : { deadlineMs: deadline });
  return { domain: request.domain, response: toWireResponse(response) };
}

/** Logs a decision answered. */
export function logDecided(logger: Logger, domain: string, response: WireResponseShape, started: number): void {
  // Every call passes here: build the line only when it is written (debug is off by default).
  if (!logger.isLevelEnabled('debug')) return;
  logger.debug({ domain, overall: response.overall_code, ms: performance.now() - started }, 'ShouldRateLimit');
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
