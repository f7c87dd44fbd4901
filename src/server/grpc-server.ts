import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import type { Logger } from '../logging/logger';
import { type Clock, systemClock } from '../util/clock';
import type { RateLimitRequest, RateLimitResponse, RateLimitService } from '../service/types';
import type { HealthState } from './health';
import { packageDefinition, rateLimitServiceDefinition, REFLECTED_PROTOS } from './proto';
import { withReflectionFiles } from './reflection';
import { leanShouldRateLimit, routeShouldRateLimit } from './lean-transport';
import { encodeRateLimitResponse } from './response-encoder';
import { decide, decodeRequest, failureStatus, logDecided, type MalformedRequest } from './rls-call';
import { type CallBudget, ConnectionCallShares, liftedCallsPerConnection, shareCallsAmongConnections, tolerateRefusedStreams } from './call-budget';
import { applyStreamResetLimit, type StreamResetLimit } from './stream-reset-limit';
import { type GrpcServerTls, serverCredentials } from './tls';
import type { TlsReloader } from './tls-reloader';

export interface GrpcServerOptions {
  readonly service: RateLimitService;
  readonly health: HealthState;
  readonly host: string;
  /** 0 binds an ephemeral port; the handle says which. */
  readonly port: number;
  readonly logger: Logger;
  /** Bytes; grpc-js's default (4 MiB) when unset. */
  readonly maxReceiveMessageLength?: number;
  /** How many client stream resets one connection may send before Node closes it; Node's own 1000/33 per second when unset. */
  readonly streamResetLimit?: StreamResetLimit;
  /** Calls one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS); no limit when unset. */
  readonly maxConcurrentStreams?: number;
  /** Calls all connections together may have open at once under overload, shared among them; no limit when unset. */
  readonly callBudget?: CallBudget;
  /** Times how long the calls open have been calm (CallBudget); the system clock when unset. */
  readonly clock?: Clock;
  /** TLS or mutual TLS; plaintext (h2c) when unset. */
  readonly tls?: GrpcServerTls | undefined;
  /** Serves `tls` and follows its files (GRPC_SERVER_TLS_RELOAD_INTERVAL); without it, `tls` as read at start. */
  readonly tlsReloader?: TlsReloader | undefined;
  /**
   * GOAWAY after this long (grpc-js adds ±10% jitter), so that Envoy's long-lived HTTP/2
   * connections are re-established and spread over replicas. Unlimited when unset.
   */
  readonly maxConnectionAgeMs?: number;
  /** After the GOAWAY, in-flight calls get this long before the connection is closed. */
  readonly maxConnectionAgeGraceMs?: number;
  /**
   * GRPC_TRANSPORT: `lean` serves ShouldRateLimit straight on grpc-js's HTTP/2 streams
   * (lean-transport.ts; the setting's default), `grpc-js` (or unset here) leaves every call to grpc-js.
   */
  readonly transport?: GrpcTransport;
}

export type GrpcTransport = 'lean' | 'grpc-js';

export interface GrpcServerHandle {
  readonly port: number;
  /** Whether `streamResetLimit` is in force (Node >= 22.10); false when none was asked for. */
  readonly streamResetLimitApplied: boolean;
  /** Whether `callBudget` is shared among connections; false when none was asked for. */
  readonly callBudgetApplied: boolean;
  /** The transport serving ShouldRateLimit: `grpc-js` when `lean` was asked for but grpc-js's servers were not found. */
  readonly transport: GrpcTransport;
  /** Lets in-flight calls finish for up to `graceMs`, then cuts the rest. Safe to call twice. */
  shutdown(graceMs: number): Promise<void>;
}

/** `host:port` as grpc-js parses it: an IPv6 literal needs brackets. */
function bindAddress(host: string, port: number): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}

function shouldRateLimitHandler(
  service: RateLimitService,
  logger: Logger,
): grpc.handleUnaryCall<RateLimitRequest | MalformedRequest, RateLimitResponse> {
  return (call, callback) => {
    const started = performance.now();
    const deadline = deadlineMs(call.getDeadline());
    const request = call.request;
    decide(service, request, deadline)
      .then(
        (response) => {
          logDecided(logger, request, response, started);
          callback(null, response);
        },
        (err: unknown) => callback(failureStatus(logger, err, started)),
      )
      // Last line of defence: a throw from a logger or from grpc-js's callback must not become an
      // unhandled rejection, which would end the process.
      .catch((err: unknown) => {
        logger.error({ err }, 'ShouldRateLimit handler failed');
      });
  };
}

/**
 * The call's deadline as epoch ms, or undefined when the client set none (grpc-js reports that as
 * Infinity). Envoy always sets one (its rate-limit `timeout`, 20 ms by default); the store uses it
 * to give up in time for the failure policy's answer to arrive before Envoy stops waiting.
 */
function deadlineMs(deadline: grpc.Deadline): number | undefined {
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * The RLS service as the server decodes and encodes it: straight between bytes and the service's
 * types (rls-call's decodeRequest, the response encoder). A request that fails the bytes check is
 * handed to the handler rather than thrown, since grpc-js answers a throwing deserializer with
 * INTERNAL and no message.
 */
function checkedServiceDefinition(): grpc.ServiceDefinition {
  const method = rateLimitServiceDefinition.ShouldRateLimit!;
  return {
    ...rateLimitServiceDefinition,
    ShouldRateLimit: { ...method, requestDeserialize: decodeRequest, responseSerialize: (response: RateLimitResponse) => encodeRateLimitResponse(response) },
  };
}

/**
 * The gRPC front end: `envoy.service.ratelimit.v3.RateLimitService`, `grpc.health.v1.Health`
 * and server reflection (v1 and v1alpha, for grpcurl), all on one port.
 */
export function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServerHandle> {
  const { service, health, host, port, logger } = options;
  const server = new grpc.Server({
    ...(options.maxReceiveMessageLength !== undefined && { 'grpc.max_receive_message_length': options.maxReceiveMessageLength }),
    // With a call budget, its limit outside overload (at most maxConcurrentStreams) is what each connection starts with.
    ...(options.maxConcurrentStreams !== undefined && { 'grpc.max_concurrent_streams': options.maxConcurrentStreams }),
    ...(options.callBudget !== undefined && { 'grpc.max_concurrent_streams': liftedCallsPerConnection(options.callBudget) }),
    ...(options.maxConnectionAgeMs !== undefined && { 'grpc.max_connection_age_ms': options.maxConnectionAgeMs }),
    ...(options.maxConnectionAgeGraceMs !== undefined && { 'grpc.max_connection_age_grace_ms': options.maxConnectionAgeGraceMs }),
  });
  const streamResetLimitApplied = options.streamResetLimit !== undefined && applyStreamResetLimit(server, options.streamResetLimit);
  const callShares =
    options.callBudget === undefined
      ? undefined
      : new ConnectionCallShares(options.callBudget, options.clock ?? systemClock, (overloaded, limit) => {
          if (overloaded) {
            logger.warn({ callsPerConnection: limit, maxCallsInFlight: options.callBudget?.total }, 'calls arrive faster than they are decided: each connection is held to its share');
          } else {
            logger.info('calls no longer arrive faster than they are decided: connection shares lifted');
          }
        });
  if (options.callBudget !== undefined) tolerateRefusedStreams(server, options.callBudget);
  server.addService(checkedServiceDefinition(), { ShouldRateLimit: shouldRateLimitHandler(service, logger) });
  health.addToServer(server);
  // `{}`: some versions of the reflection service read `options.services` without a null check.
  new ReflectionService(withReflectionFiles(packageDefinition, REFLECTED_PROTOS), {}).addToServer(server);

  const address = bindAddress(host, port);
  return new Promise<GrpcServerHandle>((resolve, reject) => {
    server.bindAsync(address, serverCredentials(options.tls, options.tlsReloader), (error, boundPort) => {
      if (error) {
        server.forceShutdown();
        reject(new Error(`gRPC: cannot listen on ${address}: ${error.message}`, { cause: error }));
        return;
      }
      logger.debug(
        { address: bindAddress(host, boundPort), tls: options.tls === undefined ? 'off' : options.tls.clientCa === undefined ? 'tls' : 'mtls' },
        'gRPC server listening',
      );
      // Before the call budget's listener: the dispatcher takes grpc-js's place, first in line.
      // grpc-js's interceptors do not run for the lean transport's calls: the only one sluice
      // adds (GRPC_CLIENT_TLS_SAN's check) is checked by the lean transport itself; an interceptor
      // added later must be too, or not use the lean transport.
      const lean =
        options.transport === 'lean' &&
        routeShouldRateLimit(
          server,
          leanShouldRateLimit({
            service,
            logger,
            clientSan: options.tls?.clientSan,
            ...(options.maxReceiveMessageLength !== undefined && { maxReceiveMessageLength: options.maxReceiveMessageLength }),
          }),
        );
      const stopPressureChecks = callShares === undefined ? undefined : shareCallsAmongConnections(server, callShares, options.clock ?? systemClock);
      let stopping: Promise<void> | undefined;
      resolve({
        port: boundPort,
        streamResetLimitApplied,
        callBudgetApplied: stopPressureChecks !== undefined,
        transport: lean ? 'lean' : 'grpc-js',
        shutdown: (graceMs: number): Promise<void> => {
          stopPressureChecks?.();
          stopping ??= shutdown(server, health, graceMs, logger);
          return stopping;
        },
      });
    });
  });
}

function shutdown(server: grpc.Server, health: HealthState, graceMs: number, logger: Logger): Promise<void> {
  // Anyone still probing should stop sending us traffic.
  health.setDraining(true);
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      // Long-lived streams (health Watch, reflection) and slow calls: cut them. tryShutdown's
      // callback then fires too; resolve is idempotent.
      logger.warn({ graceMs }, 'gRPC calls still running after the grace period; forcing shutdown');
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
