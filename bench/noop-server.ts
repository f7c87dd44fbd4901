import * as grpc from '@grpc/grpc-js';
import cluster from 'node:cluster';
import { rateLimitServiceDefinition } from '../src/server/proto';

/**
 * The benchmark's baseline: a grpc-js server with sluice's own protos that answers OK to every
 * ShouldRateLimit without deciding anything. sluice's cost is reported as a ratio to this, so
 * the machine's noise and grpc-js's own cost cancel out. NOOP_WORKERS (1) > 1 serves from that
 * many node:cluster workers on one port, as sluice's WORKERS does (`npm run bench:workers`).
 */
interface NoopRequest {
  descriptors?: unknown[];
}

const WORKERS = Number(process.env.NOOP_WORKERS ?? 1);

if (WORKERS > 1 && cluster.isPrimary) {
  // Each worker binds port 0 through the primary, so all share the port the first one got.
  let started = 0;
  for (let i = 0; i < WORKERS; i++) {
    cluster.fork().on('message', (message: { grpcPort?: number }) => {
      started += 1;
      if (started === WORKERS) process.stdout.write(`${JSON.stringify({ msg: 'noop started', grpcPort: message.grpcPort, workers: WORKERS })}\n`);
    });
  }
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  serve();
}

function serve(): void {
  const server = new grpc.Server();
  server.addService(rateLimitServiceDefinition, {
    ShouldRateLimit: (call: grpc.ServerUnaryCall<NoopRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const statuses = (call.request.descriptors ?? []).map(() => ({ code: 'OK' }));
      callback(null, { overall_code: 'OK', statuses });
    },
  });
  server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) throw err;
    if (cluster.isWorker) process.send!({ grpcPort: port });
    else process.stdout.write(`${JSON.stringify({ msg: 'noop started', grpcPort: port })}\n`);
  });
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
}
