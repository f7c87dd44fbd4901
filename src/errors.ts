import type { ConfigProblem } from './config/types';

/**
 * sluice's typed errors. Each carries a kind that `server/grpc-status.ts` maps to a gRPC status
 * in one place; nothing else chooses a status code.
 */
export type ErrorKind = 'invalid_argument' | 'unavailable' | 'deadline_exceeded' | 'resource_exhausted' | 'unimplemented' | 'unauthenticated' | 'internal';

export abstract class SluiceError extends Error {
  abstract readonly kind: ErrorKind;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is malformed; the message names the field (e.g. `descriptors[1].entries[0].key`). */
export class InvalidArgumentError extends SluiceError {
  readonly kind = 'invalid_argument';
}

/** sluice cannot decide now: no config loaded, or the store is down. Envoy's `failure_mode_deny` decides. */
export class UnavailableError extends SluiceError {
  readonly kind = 'unavailable';
}

/**
 * The call's deadline passed before it could be decided. gRPC clients do not retry this (they do
 * retry UNAVAILABLE), which is right: the caller has already stopped waiting.
 */
export class DeadlineExceededError extends SluiceError {
  readonly kind = 'deadline_exceeded';
}

/**
 * sluice is deciding as much as it can (the work-in-flight budget is spent): the call is refused
 * at once instead of queueing behind work it cannot overtake, so it never times out a healthy store.
 */
export class OverloadedError extends SluiceError {
  readonly kind = 'resource_exhausted';
}

/** The call asks for something the server does not do: no request message or two for a unary method, an unknown compression. */
export class UnimplementedError extends SluiceError {
  readonly kind = 'unimplemented';
}

/** The client's certificate does not name GRPC_CLIENT_TLS_SAN. */
export class UnauthenticatedError extends SluiceError {
  readonly kind = 'unauthenticated';
}

/** A request message over GRPC_MAX_RECV_MSG_SIZE (as sent, or once decompressed): refused before it is read whole. */
export class MessageTooLargeError extends SluiceError {
  readonly kind = 'resource_exhausted';
}

/** The call breaks the gRPC protocol (a malformed grpc-timeout, a message cut off, a compressed message that does not decompress). */
export class ProtocolError extends SluiceError {
  readonly kind = 'internal';
}

/** The counter store failed. `transient` failures (timeouts, refused connections) may succeed later. */
export class StoreError extends SluiceError {
  readonly kind = 'unavailable';

  constructor(
    message: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A config file set failed validation; `problems` lists every error found, not just the first. */
export class ConfigError extends SluiceError {
  readonly kind = 'internal';

  constructor(readonly problems: readonly ConfigProblem[]) {
    super(problems.map((p) => p.message).join('\n'));
  }
}
