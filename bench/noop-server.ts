import * as grpc from '@grpc/grpc-js';
import { rateLimitServiceDefinition } from '../src/server/proto';

/**
 * The benchmark's baseline: a grpc-js server with sluice's own protos that answers OK to every
 * ShouldRateLimit without deciding anything. sluice's cost is reported as a ratio to this, so
 * the machine's noise and grpc-js's own cost cancel out.
 */
interface NoopRequest {
  descriptors?: unknown[];
}

const server = new grpc.Server();
server.addService(rateLimitServiceDefinition, {
  ShouldRateLimit: (call: grpc.ServerUnaryCall<NoopRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
    const statuses = (call.request.descriptors ?? []).map(() => ({ code: 'OK' }));
    callback(null, { overall_code: 'OK', statuses });
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  process.stdout.write(`${JSON.stringify({ msg: 'noop started', grpcPort: port })}\n`);
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
