import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { grpcioBurst } from '../support/grpcio-burst';
import { type RedisServer, startRedisServer } from '../support/redis-server';
import { type RlsClient, type WireRequestShape, createRlsClient } from '../support/rls-client';
import { type SluiceProcess, startSluiceProcess } from '../support/sluice-process';

/**
 * sluice as a user first runs it: `sluice serve` at its DEFAULT settings on a healthy Redis, on
 * this 2-core machine, while it is busy — bursts, sustained load, a caller with huge requests
 * beside a small one, calls sent the moment it starts. Every call must be decided (OK or
 * OVER_LIMIT): a rate limiter that answers errors under load makes Envoy let the traffic through.
 * Bounded in count and time; nothing here raises a sluice setting.
 */

const CONFIG = `
domain: load
descriptors:
  - key: client_id
    rate_limit: { unit: hour, requests_per_unit: 100 }
  - key: tenant
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
    descriptors:
      - key: user_id
        rate_limit: { unit: hour, requests_per_unit: 1000000000 }
  - key: route
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
  - key: bystander
    rate_limit: { unit: hour, requests_per_unit: 1000000000 }
`;

jest.setTimeout(120_000);

let redis: RedisServer;
let configDir: string;

beforeAll(async () => {
  redis = await startRedisServer();
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-load-'));
  fs.writeFileSync(path.join(configDir, 'load.yaml'), CONFIG);
});

afterAll(async () => {
  await redis?.stop();
  fs.rmSync(configDir, { recursive: true, force: true });
});

function request(descriptors: [string, string][][]): WireRequestShape {
  return { domain: 'load', descriptors: descriptors.map((entries) => ({ entries: entries.map(([key, value]) => ({ key, value })) })) };
}

/** The answer of one call: the overall code, or `error <code>: <details>`. */
async function answer(client: RlsClient, req: WireRequestShape, deadlineMs?: number): Promise<string> {
  try {
    const res = await client.shouldRateLimit(req, deadlineMs === undefined ? {} : { deadlineMs });
    return String(res.overall_code);
  } catch (err) {
    const e = err as { code?: number; details?: string };
    return `error ${String(e.code)}: ${e.details ?? String(err)}`;
  }
}

function tally(answers: Iterable<string>, into: Record<string, number> = {}): Record<string, number> {
  for (const a of answers) into[a] = (into[a] ?? 0) + 1;
  return into;
}

describe('one `sluice serve` at default settings on a healthy Redis', () => {
  let sluice: SluiceProcess;

  beforeAll(async () => {
    sluice = await startSluiceProcess(configDir, { REDIS_URL: redis.url });
  });

  afterAll(async () => {
    await sluice?.stop();
  });

  it('decides every call of 1,000 in flight at once, exactly 100 admitted, three bursts back to back', async () => {
    const client = createRlsClient(`127.0.0.1:${sluice.grpcPort}`);
    try {
      for (let burst = 1; burst <= 3; burst++) {
        const id = `burst-${burst}`;
        const req = request([[['client_id', id]], [['tenant', id], ['user_id', 'u1']]]);
        const counts = tally(await Promise.all(Array.from({ length: 1000 }, () => answer(client, req))));
        expect({ burst, counts }).toEqual({ burst, counts: { OK: 100, OVER_LIMIT: 900 } });
      }
    } finally {
      client.close();
    }
  });

  it('decides every call with 256 calls of 4 descriptors in flight for 10 s', async () => {
    const clients = Array.from({ length: 4 }, () => createRlsClient(`127.0.0.1:${sluice.grpcPort}`));
    const counts: Record<string, number> = {};
    try {
      const until = Date.now() + 10_000;
      await Promise.all(
        Array.from({ length: 256 }, async (_, w) => {
          for (let i = 0; Date.now() < until; i++) {
            const user = `u${(w * 7919 + i) % 50_000}`;
            const req = request([[['tenant', 't1']], [['tenant', 't1'], ['user_id', user]], [['route', 'orders']], [['bystander', user]]]);
            tally([await answer(clients[w % clients.length]!, req)], counts);
          }
        }),
      );
    } finally {
      for (const c of clients) c.close();
    }
    expect(Object.keys(counts)).toEqual(['OK']);
    expect(counts.OK).toBeGreaterThan(1_000);
  });

  it('does not let a caller of 64-descriptor calls (8 in flight) cost a 1-descriptor bystander a single answer', async () => {
    const big = createRlsClient(`127.0.0.1:${sluice.grpcPort}`);
    const small = createRlsClient(`127.0.0.1:${sluice.grpcPort}`);
    const bigCounts: Record<string, number> = {};
    const smallCounts: Record<string, number> = {};
    const sixtyFour = request(Array.from({ length: 64 }, (_, d): [string, string][] => [['tenant', `t${d}`], ['user_id', `u${d}`]]));
    try {
      const until = Date.now() + 5_000;
      await Promise.all([
        ...Array.from({ length: 8 }, async () => {
          while (Date.now() < until) tally([await answer(big, sixtyFour)], bigCounts);
        }),
        (async () => {
          // An Envoy-like deadline for the bystander, with room for a busy 2-core machine.
          for (let i = 0; Date.now() < until; i++) tally([await answer(small, request([[['bystander', `b${i % 100}`]]]), 500)], smallCounts);
        })(),
      ]);
    } finally {
      big.close();
      small.close();
    }
    expect(Object.keys(bigCounts)).toEqual(['OK']);
    expect(Object.keys(smallCounts)).toEqual(['OK']);
    expect(smallCounts.OK).toBeGreaterThan(20);
  });

  it('decides 500 concurrent calls from an independent client (Python grpcio), limits exact', async () => {
    const answers = (await grpcioBurst(sluice.grpcPort, request([[['client_id', 'grpcio']]]), 500, 10)).map((a) =>
      a.overall ?? `error ${a.code}: ${a.details}`,
    );
    expect(tally(answers)).toEqual({ OK: 100, OVER_LIMIT: 400 });
  });
});

describe('fresh starts', () => {
  it('decides a call sent the moment the gRPC port accepts, 50 starts out of 50', async () => {
    const counts: Record<string, number> = {};
    // Five at a time: bounded time on two cores, and starts that compete, as in a rolling deploy.
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(
        Array.from({ length: 5 }, async (_, i) => {
          const sluice = await startSluiceProcess(configDir, { REDIS_URL: redis.url });
          const client = createRlsClient(`127.0.0.1:${sluice.grpcPort}`);
          try {
            tally([await answer(client, request([[['route', `start-${batch}-${i}`]]]))], counts);
          } finally {
            client.close();
            await sluice.stop();
          }
        }),
      );
    }
    expect(counts).toEqual({ OK: 50 });
  });
});
