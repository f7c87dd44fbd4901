import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { WireRequestShape } from '../../src/server/proto';
import { grpcioBurst } from '../support/grpcio-burst';
import { type RedisServer, startRedisServer } from '../support/redis-server';
import { type SluiceProcess, startSluiceProcess } from '../support/sluice-process';

/**
 * GRPC_TRANSPORT=lean seen by an independent client: Python's grpcio (C-core), a second HTTP/2 and
 * gRPC implementation, with its own framing, its own grpc-timeout format ("4999952u") and its own
 * reading of grpc-message. (The gRPC behaviour suites run over both transports: grpc-server.test.ts,
 * rls.e2e, malformed-requests.e2e, tls.e2e.)
 */

const CONFIG = `
domain: lean
descriptors:
  - key: user_id
    rate_limit: { unit: hour, requests_per_unit: 1 }
`;

jest.setTimeout(60_000);

const user = (id: string): WireRequestShape => ({ domain: 'lean', descriptors: [{ entries: [{ key: 'user_id', value: id }] }] });

let configDir: string;

beforeAll(() => {
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-lean-'));
  fs.writeFileSync(path.join(configDir, 'lean.yaml'), CONFIG);
});

afterAll(() => {
  fs.rmSync(configDir, { recursive: true, force: true });
});

describe('GRPC_TRANSPORT=lean on the memory store, called by Python grpcio', () => {
  let sluice: SluiceProcess;

  beforeAll(async () => {
    sluice = await startSluiceProcess(configDir, { GRPC_TRANSPORT: 'lean' });
  });

  afterAll(async () => {
    await sluice?.stop();
  });

  it('says in its startup line that the lean transport serves', () => {
    const started = sluice.log.map((line) => JSON.parse(line) as { msg?: string; grpcTransport?: string }).find((l) => l.msg === 'sluice started');
    expect(started?.grpcTransport).toBe('lean');
  });

  it('answers OK, then OVER_LIMIT, with grpcio\'s deadline on every call', async () => {
    expect(await grpcioBurst(sluice.grpcPort, user('py-1'), 1, 5)).toEqual([{ code: 'OK', details: '', overall: 'OK' }]);
    expect(await grpcioBurst(sluice.grpcPort, user('py-1'), 3, 5)).toEqual(Array(3).fill({ code: 'OK', details: '', overall: 'OVER_LIMIT' }));
  });

  it('decides 200 calls sent at once on one connection: exactly one admitted', async () => {
    const answers = await grpcioBurst(sluice.grpcPort, user('py-burst'), 200, 10);
    expect(answers.filter((a) => a.overall === 'OK')).toHaveLength(1);
    expect(answers.filter((a) => a.overall === 'OVER_LIMIT')).toHaveLength(199);
  });

  it('refuses a bad request with INVALID_ARGUMENT and a message grpcio reads back whole', async () => {
    const bad: WireRequestShape = { domain: 'lean', descriptors: [{ entries: [{ key: '', value: 'zoë' }] }] };
    expect(await grpcioBurst(sluice.grpcPort, bad, 1, 5)).toEqual([{ code: 'INVALID_ARGUMENT', details: 'descriptors[0].entries[0].key: must not be empty' }]);
  });
});

describe('GRPC_TRANSPORT=lean on a Redis that hangs, called by Python grpcio with a deadline', () => {
  let redis: RedisServer;
  let sluice: SluiceProcess;

  beforeAll(async () => {
    redis = await startRedisServer();
    // deny: the failure policy's answer (OVER_LIMIT) shows that the call was decided in time.
    sluice = await startSluiceProcess(configDir, { GRPC_TRANSPORT: 'lean', REDIS_URL: redis.url, STORE_FAILURE_MODE: 'deny', REDIS_TIMEOUT: '10s' });
    for (let i = 0; i < 50 && (await grpcioBurst(sluice.grpcPort, user('warm'), 1, 5))[0]?.code !== 'OK'; i++) await new Promise((r) => setTimeout(r, 100));
  });

  afterAll(async () => {
    redis?.kill('SIGCONT');
    await sluice?.stop();
    await redis?.stop();
  });

  it('answers by the failure policy before grpcio\'s deadline instead of waiting for Redis', async () => {
    redis.kill('SIGSTOP');
    try {
      const started = Date.now();
      const answers = await grpcioBurst(sluice.grpcPort, user('py-hung'), 5, 0.5);
      expect(answers).toEqual(Array(5).fill({ code: 'OK', details: '', overall: 'OVER_LIMIT' }));
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      redis.kill('SIGCONT');
    }
  });

  it('answers DEADLINE_EXCEEDED (from the client or from sluice) to a deadline too short to decide in', async () => {
    const answers = await grpcioBurst(sluice.grpcPort, user('py-short'), 3, 0.000_001);
    for (const answer of answers) expect(answer.code).toBe('DEADLINE_EXCEEDED');
    // And keeps serving.
    expect((await grpcioBurst(sluice.grpcPort, user('py-after'), 1, 5))[0]).toMatchObject({ code: 'OK', overall: 'OK' });
  });
});
