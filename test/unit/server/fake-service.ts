import { silentLogger } from '../../../src/logging/logger';
import { startGrpcServer } from '../../../src/server/grpc-server';
import type { GrpcServerHandle, GrpcServerOptions } from '../../../src/server/grpc-server';
import { HealthState } from '../../../src/server/health';
import type { CallContext, RateLimitRequest, RateLimitResponse, RateLimitService } from '../../../src/service/types';

/**
 * A real RateLimitService for server tests: records each request it is handed and answers with
 * whatever `answer` does (return a response, throw, reject, or wait).
 */
export class FakeRateLimitService implements RateLimitService {
  readonly requests: RateLimitRequest[] = [];
  /** The deadline each request came with (epoch ms), undefined without one. */
  readonly deadlines: (number | undefined)[] = [];
  answer: (request: RateLimitRequest) => Promise<RateLimitResponse> | RateLimitResponse = (request) => ({
    overallCode: 'OK',
    statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 0 })),
    responseHeadersToAdd: [],
  });

  shouldRateLimit(request: RateLimitRequest, context?: CallContext): Promise<RateLimitResponse> {
    this.requests.push(request);
    this.deadlines.push(context?.deadlineMs);
    // Called without await on purpose: a synchronous throw from `answer` reaches the server as a
    // throw from shouldRateLimit, which the handler must survive too.
    const result = this.answer(request);
    return result instanceof Promise ? result : Promise.resolve(result);
  }
}

export interface TestServer {
  readonly service: FakeRateLimitService;
  readonly health: HealthState;
  readonly server: GrpcServerHandle;
  readonly address: string;
}

/** Starts the real gRPC server on an ephemeral port with a serving HealthState; `options` adds server options (the transport, limits). */
export async function startTestServer(options: Partial<GrpcServerOptions> = {}): Promise<TestServer> {
  const service = new FakeRateLimitService();
  const health = new HealthState();
  health.setConfigLoaded(true);
  health.setStoreOk(true);
  const server = await startGrpcServer({ service, health, host: '127.0.0.1', port: 0, logger: silentLogger(), ...options });
  return { service, health, server, address: `127.0.0.1:${server.port}` };
}
