import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type RedisCluster, type RedisServer, startRedisCluster, startRedisServer } from '../support/redis-server';
import { type RlsClient, createRlsClient } from '../support/rls-client';
import { type SluiceProcess, startSluiceProcess } from '../support/sluice-process';

// Two separate sluice processes (the built command, as deployed, at its DEFAULT settings) share
// one Redis: together they must decide exactly as one instance would. 1,000 requests in flight at
// once against a limit of 100 must admit exactly 100 — never 101 (a race), never 99 (a lost or
// doubled charge) — and every one of the 1,000 must be decided: a burst is what a rate limiter is
// for, and an error answer makes Envoy let the request through.
const CONFIG = `
domain: api
descriptors:
  - key: client_id
    # An hour-long sliding window: the burst cannot straddle a window boundary in a way that matters.
    rate_limit: { unit: hour, requests_per_unit: 100 }
    descriptors:
      - key: user_id
        rate_limit: { unit: hour, requests_per_unit: 1000 }
  - key: route
    rate_limit: { unit: hour, requests_per_unit: 1000 }
`;

interface Instance {
  process: SluiceProcess;
  client: RlsClient;
}

async function startInstance(configDir: string, env: NodeJS.ProcessEnv): Promise<Instance> {
  const process = await startSluiceProcess(configDir, env);
  return { process, client: createRlsClient(`127.0.0.1:${process.grpcPort}`) };
}

async function stopInstance(instance: Instance): Promise<void> {
  instance.client.close();
  await instance.process.stop();
}

/** Fires `total` requests at once, alternating between the instances, and counts the answers. */
async function flood(instances: Instance[], total: number, descriptors: [string, string][][]): Promise<Record<string, number>> {
  const request = {
    domain: 'api',
    descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })),
  };
  const answers = await Promise.all(
    Array.from({ length: total }, (_, i) =>
      instances[i % instances.length]!.client.shouldRateLimit(request).then(
        (res) => String(res.overall_code),
        (err: { details?: string }) => `error: ${err.details ?? String(err)}`,
      ),
    ),
  );
  const counts: Record<string, number> = {};
  for (const answer of answers) counts[answer] = (counts[answer] ?? 0) + 1;
  return counts;
}

describe.each([
  ['one Redis', 'single'],
  ['a 3-master Redis Cluster', 'cluster'],
])('two sluice processes sharing %s', (_name, type) => {
  let redis: RedisServer | undefined;
  let cluster: RedisCluster | undefined;
  let instances: Instance[] = [];
  let configDir: string;

  beforeAll(async () => {
    configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-shared-'));
    fs.writeFileSync(path.join(configDir, 'api.yaml'), CONFIG);
    let env: NodeJS.ProcessEnv;
    if (type === 'single') {
      redis = await startRedisServer();
      env = { REDIS_URL: `${redis.host}:${redis.port}` };
    } else {
      cluster = await startRedisCluster(3);
      env = { REDIS_TYPE: 'cluster', REDIS_URL: cluster.nodes.map((n) => `${n.host}:${n.port}`).join(',') };
    }
    instances = await Promise.all([startInstance(configDir, env), startInstance(configDir, env)]);
  }, 60_000);

  afterAll(async () => {
    await Promise.all(instances.map(stopInstance));
    await redis?.stop();
    await cluster?.stop();
    fs.rmSync(configDir, { recursive: true, force: true });
  });

  it('admits exactly 100 of 1,000 concurrent requests on a limit of 100, three bursts back to back, deciding every one', async () => {
    for (let burst = 1; burst <= 3; burst++) {
      const counts = await flood(instances, 1000, [[['client_id', `c-${type}-${burst}`]], [['client_id', `c-${type}-${burst}`], ['user_id', 'u1']]]);
      expect({ burst, counts }).toEqual({ burst, counts: { OK: 100, OVER_LIMIT: 900 } });
    }
  });

  it('admits exactly 100 when each request also carries limits in other slots (all-or-nothing across slots)', async () => {
    const counts = await flood(instances, 1000, [
      [['client_id', `multi-${type}`]],
      [['client_id', `multi-${type}`], ['user_id', 'u1']],
      [['route', `orders-${type}`]],
    ]);
    expect(counts).toEqual({ OK: 100, OVER_LIMIT: 900 });
    // Nothing was charged for the 900 rejected requests: the route limit (1,000) has exactly 900 left.
    const res = await instances[0]!.client.shouldRateLimit({
      domain: 'api',
      descriptors: [{ entries: [{ key: 'route', value: `orders-${type}` }], hits_addend: { value: 0 } }],
    });
    expect(res.statuses?.[0]?.limit_remaining).toBe(900);
  });
});
