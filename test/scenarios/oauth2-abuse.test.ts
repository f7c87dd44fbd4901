import * as fs from 'node:fs';
import * as path from 'node:path';
import { ManualClock } from '../../src/util/clock';
import {
  type EnvoyModel,
  type Obj,
  ROOT,
  type RequestContext,
  jwtMetadata,
  loadEnvoyModel,
  simulateRequest,
  tokenEndpointMetadata,
} from '../deploy/envoy-model';
import { type RedisServer, startRedisServer } from '../support/redis-server';
import { type StartedSluice, startTestSluice } from '../support/start-sluice';

/**
 * OAuth2 abuse, played against a real sluice (memory store, then Redis) over gRPC, with the
 * requests Envoy would send: every request goes through the model of envoy/envoy.yaml
 * (test/deploy/envoy-model.ts), which builds each stage's descriptors from the route's
 * rate_limits — the same actions, stages and fail-open/closed choices Envoy would use — for the
 * limits of examples/oauth2/ratelimit.yaml. All attempts happen at one instant, so the counts are
 * exact. Each scenario prints one line: what got through against the limit that should hold.
 */

const EXAMPLE = fs.readFileSync(path.join(ROOT, 'examples/oauth2/ratelimit.yaml'), 'utf8');
// 10 s into a minute (and on a second boundary).
const T0 = Date.UTC(2026, 0, 5, 12, 0, 10);

type StoreName = 'memory' | 'redis';

let envoy: EnvoyModel;
let redis: RedisServer | undefined;
let scenarioCount = 0;

beforeAll(() => {
  envoy = loadEnvoyModel();
});

afterAll(async () => {
  await redis?.stop();
});

async function startSluice(store: StoreName): Promise<StartedSluice> {
  scenarioCount++;
  const env: NodeJS.ProcessEnv =
    store === 'memory'
      ? {}
      : {
          REDIS_URL: (redis ??= await startRedisServer()).url,
          // Windows on the test's clock; a separate key space per scenario on the shared server.
          CLOCK: 'local',
          CACHE_KEY_PREFIX: `scenario${scenarioCount}:`,
          // Generous: a slow CI machine must not turn into fail-open answers.
          REDIS_TIMEOUT: '2s',
        };
  const sluice = await startTestSluice({ files: { 'ratelimit.yaml': EXAMPLE }, env, clock: new ManualClock(T0) });
  if (store === 'redis') {
    for (let i = 0; i < 200 && (await sluice.client.health('')) !== 'SERVING'; i++) await new Promise((r) => setTimeout(r, 25));
  }
  return sluice;
}

interface Outcome {
  readonly admitted: number;
  readonly attempts: number;
  readonly statuses: Readonly<Record<number, number>>;
}

/** Sends `attempts` requests to a route and counts what Envoy would have let through to the upstream. */
async function attack(
  sluice: StartedSluice,
  route: string,
  requestPath: string,
  attempts: number,
  request: (i: number) => RequestContext,
): Promise<Outcome> {
  const statuses: Record<number, number> = {};
  for (let i = 0; i < attempts; i++) {
    const result = await simulateRequest(envoy, route, requestPath, request(i), (r) => sluice.client.shouldRateLimit(r));
    for (const call of result.calls) if (call.error !== undefined) throw call.error;
    statuses[result.status] = (statuses[result.status] ?? 0) + 1;
  }
  return { admitted: statuses[200] ?? 0, attempts, statuses };
}

function report(name: string, store: StoreName, outcome: Outcome, limit: number): void {
  process.stdout.write(`scenario: ${name} [${store}]: ${outcome.admitted}/${outcome.attempts} admitted, limit ${limit}\n`);
}

const tokenRequest = (ip: string, values: { client_id?: string; grant_type?: string; username?: string }): RequestContext => ({
  remoteAddress: ip,
  metadata: tokenEndpointMetadata(values),
});

const apiRequest = (claims: Obj): RequestContext => ({ remoteAddress: '192.0.2.1', metadata: jwtMetadata(claims) });

/** 203.0.113.0/24 and beyond: a botnet, so the per-IP limit is not what stops the attack. */
const botnetIp = (i: number): string => `203.0.${113 + Math.floor(i / 250)}.${(i % 250) + 1}`;

describe.each<StoreName>(['memory', 'redis'])('OAuth2 abuse scenarios against sluice (%s store)', (store) => {
  let sluice: StartedSluice;

  beforeEach(async () => {
    sluice = await startSluice(store);
  });

  afterEach(async () => {
    await sluice.stop();
  });

  it('token-endpoint flood by one client_id: blocked at 60/minute, other clients unaffected', async () => {
    const flood = await attack(sluice, 'token', '/oauth/token', 300, (i) =>
      tokenRequest(botnetIp(i), { client_id: 'mobile-app', grant_type: 'client_credentials' }),
    );
    report('token-endpoint flood by one client_id', store, flood, 60);
    expect(flood).toEqual({ admitted: 60, attempts: 300, statuses: { 200: 60, 429: 240 } });

    const others = await attack(sluice, 'token', '/oauth/token', 20, (i) =>
      tokenRequest('198.51.100.7', { client_id: i % 2 === 0 ? 'web' : 'internal-batch', grant_type: 'client_credentials' }),
    );
    expect(others.admitted).toBe(20);
  });

  it('token-endpoint flood from one IP rotating client_ids: blocked at 120/minute per IP', async () => {
    const flood = await attack(sluice, 'token', '/oauth/token', 300, (i) =>
      tokenRequest('198.51.100.66', { client_id: `made-up-${i}`, grant_type: 'client_credentials' }),
    );
    report('token-endpoint flood from one IP rotating client_ids', store, flood, 120);
    expect(flood).toEqual({ admitted: 120, attempts: 300, statuses: { 200: 120, 429: 180 } });
    // Requests naming no client at all share the "-" bucket (60/minute) instead of going unlimited.
    const anonymous = await attack(sluice, 'token', '/oauth/token', 100, (i) => tokenRequest(botnetIp(i), { grant_type: 'password', username: `u${i}` }));
    report('token-endpoint flood naming no client', store, anonymous, 60);
    expect(anonymous.admitted).toBe(60);
  });

  it('credential stuffing across usernames through one client: blocked at 60/minute for the client', async () => {
    const stuffing = await attack(sluice, 'token', '/oauth/token', 500, (i) =>
      tokenRequest(botnetIp(i), { client_id: 'mobile-app', grant_type: 'password', username: `user${i}@example.com` }),
    );
    report('credential stuffing across usernames for one client', store, stuffing, 60);
    expect(stuffing).toEqual({ admitted: 60, attempts: 500, statuses: { 200: 60, 429: 440 } });
    // Logins through other clients keep working.
    const web = await attack(sluice, 'token', '/oauth/token', 5, () => tokenRequest('198.51.100.7', { client_id: 'web', grant_type: 'password', username: 'alice' }));
    expect(web.admitted).toBe(5);
  });

  it('password guessing against one account: blocked at 10/minute per (client, username)', async () => {
    const guessing = await attack(sluice, 'token', '/oauth/token', 50, (i) =>
      tokenRequest(botnetIp(i), { client_id: 'mobile-app', grant_type: 'password', username: 'alice@example.com' }),
    );
    report('password guessing against one account', store, guessing, 10);
    expect(guessing).toEqual({ admitted: 10, attempts: 50, statuses: { 200: 10, 429: 40 } });
    // The same client's other users are not locked out.
    const bob = await attack(sluice, 'token', '/oauth/token', 3, () => tokenRequest('198.51.100.8', { client_id: 'mobile-app', grant_type: 'password', username: 'bob@example.com' }));
    expect(bob.admitted).toBe(3);
  });

  it('authorization-code brute force: blocked at 20 code exchanges/minute per client', async () => {
    const brute = await attack(sluice, 'token', '/oauth/token', 200, (i) =>
      tokenRequest(botnetIp(i), { client_id: 'web', grant_type: 'authorization_code' }),
    );
    report('authorization-code brute force', store, brute, 20);
    expect(brute).toEqual({ admitted: 20, attempts: 200, statuses: { 200: 20, 429: 180 } });
    // The same client can still refresh and use client credentials (within its 60/minute).
    const refresh = await attack(sluice, 'token', '/oauth/token', 5, () => tokenRequest('198.51.100.9', { client_id: 'web', grant_type: 'refresh_token' }));
    expect(refresh.admitted).toBe(5);
  });

  it("a stolen token hammering the API: blocked at 100/minute for that user, the client's other users keep working", async () => {
    const victim = { client_id: 'web', sub: 'victim', scope: 'orders:read' };
    const stolen = await attack(sluice, 'api', '/api/orders', 300, () => apiRequest(victim));
    report('stolen token hammering a resource (per user of a client)', store, stolen, 100);
    expect(stolen).toEqual({ admitted: 100, attempts: 300, statuses: { 200: 100, 429: 200 } });

    const alice = await attack(sluice, 'api', '/api/orders', 50, () => apiRequest({ client_id: 'web', sub: 'alice', scope: 'orders:read' }));
    expect(alice.admitted).toBe(50);
    // Rejected calls were not charged: the client's own budget only holds what got through.
    const check = await sluice.client.shouldRateLimit({ domain: 'oauth2', descriptors: [{ entries: [{ key: 'client_id', value: 'web' }], hits_addend: { value: 0 } }] });
    expect(check.statuses![0]!.limit_remaining).toBe(1000 - 150);
  });

  it('leaked client credentials used for many users: blocked at 1000/minute for the client, other clients unaffected', async () => {
    const scopes = ['orders:read', 'orders:read profile'];
    const leaked = await attack(sluice, 'api', '/api/orders', 1200, (i) =>
      apiRequest({ client_id: 'partner-app', sub: `user-${i % 20}`, scope: scopes[i % 2]! }),
    );
    report('stolen token hammering a resource (per client)', store, leaked, 1000);
    expect(leaked).toEqual({ admitted: 1000, attempts: 1200, statuses: { 200: 1000, 429: 200 } });
    const web = await attack(sluice, 'api', '/api/orders', 10, () => apiRequest({ client_id: 'web', sub: 'alice', scope: 'orders:write' }));
    expect(web.admitted).toBe(10);
  });

  it('scope-based limit: every orders:write token shares 50/second on order creation; tokens without the scope never reach it', async () => {
    const writers = await attack(sluice, 'orders-create', '/api/orders', 300, (i) =>
      apiRequest({ client_id: ['web', 'partner-app', 'mobile-app'][i % 3]!, sub: `writer-${i % 30}`, scope: 'orders:read orders:write' }),
    );
    report('scope orders:write on order creation', store, writers, 50);
    expect(writers).toEqual({ admitted: 50, attempts: 300, statuses: { 200: 50, 429: 250 } });

    const readers = await attack(sluice, 'orders-create', '/api/orders', 10, () => apiRequest({ client_id: 'web', sub: 'reader', scope: 'orders:read' }));
    expect(readers.statuses).toEqual({ 403: 10 });
    // Reads are another route and another bucket.
    const reads = await attack(sluice, 'api', '/api/orders', 10, (i) => apiRequest({ client_id: 'web', sub: `writer-${i}`, scope: 'orders:read orders:write' }));
    expect(reads.admitted).toBe(10);
  });

  it('tokens missing claims are limited under the "-" fallback buckets, not let through', async () => {
    const noClaims = await attack(sluice, 'api', '/api/orders', 150, () => apiRequest({ scope: 'orders:read' }));
    report('tokens without client_id and sub', store, noClaims, 100);
    expect(noClaims).toEqual({ admitted: 100, attempts: 150, statuses: { 200: 100, 429: 50 } });
  });
});
