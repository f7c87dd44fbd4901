import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { HEALTH_SERVICE_NAME, healthServiceDefinition } from '../../src/server/proto';
import { startSluiceProcess } from '../support/sluice-process';

/**
 * grpc.health.v1.Health/Watch at shutdown: a stream open when sluice gets SIGTERM is told
 * NOT_SERVING and ended, so it does not hold the process for its grace period (SHUTDOWN_GRACE_MS,
 * 10 s by default) and then break with UNAVAILABLE.
 */

const CONFIG = 'domain: watch\ndescriptors:\n  - key: k\n    rate_limit: { unit: hour, requests_per_unit: 1 }\n';
const GRACE_MS = 10_000;

interface WatchLog {
  readonly statuses: string[];
  readonly ended: Promise<string>;
}

function watch(client: grpc.Client, service: string): WatchLog {
  const method = healthServiceDefinition.Watch!;
  const statuses: string[] = [];
  const call = client.makeServerStreamRequest(
    `/${HEALTH_SERVICE_NAME}/Watch`,
    (req: object) => method.requestSerialize(req),
    (bytes: Buffer) => method.responseDeserialize(bytes) as { status: string | number },
    { service },
  );
  call.on('data', (reply: { status: string | number }) => statuses.push(String(reply.status)));
  const ended = new Promise<string>((resolve) => {
    call.on('status', (status: grpc.StatusObject) => resolve(status.code === grpc.status.OK ? 'OK' : `${grpc.status[status.code]}: ${status.details}`));
    call.on('error', () => undefined);
  });
  return { statuses, ended };
}

test('at SIGTERM, open Watch streams get NOT_SERVING and end OK, and the process exits without waiting out its grace period', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-watch-'));
  fs.writeFileSync(path.join(dir, 'watch.yaml'), CONFIG);
  const sluice = await startSluiceProcess(dir);
  const client = new grpc.Client(`127.0.0.1:${sluice.grpcPort}`, grpc.credentials.createInsecure());
  try {
    const served = watch(client, '');
    const unknown = watch(client, 'no.such.Service');
    const deadline = Date.now() + 5_000;
    while (!served.statuses.includes('SERVING') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(served.statuses).toEqual(['SERVING']);
    const stoppingAt = Date.now();
    const exited = sluice.stop();
    expect(await served.ended).toBe('OK');
    expect(await unknown.ended).toBe('OK');
    await exited;
    expect(served.statuses).toEqual(['SERVING', 'NOT_SERVING']);
    expect(unknown.statuses).toEqual(['SERVICE_UNKNOWN']);
    expect(Date.now() - stoppingAt).toBeLessThan(GRACE_MS / 2);
  } finally {
    client.close();
    await sluice.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
