import type { ConfigProblem } from './config/types';

/**
 * sluice's typed errors. Each carries a kind that `server/grpc-status.ts` maps to a gRPC status
 * in one place; nothing else chooses a status code.
 */
export type ErrorKind = 'invalid_argument' | 'unavailable' | 'internal';

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
