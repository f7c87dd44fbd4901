import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { RateLimitClient, type RateLimitMiddlewareOptions, defaultDescriptors, rateLimitMiddleware } from '../../../src/client';
import { ManualClock } from '../../../src/util/clock';
import { type StartedSluice, startTestSluice } from '../../support/start-sluice';

const EXAMPLE = fs.readFileSync(path.resolve(__dirname, '../../../examples/oauth2/ratelimit.yaml'), 'utf8');
const T0 = Date.UTC(2026, 0, 5, 12, 0, 10);

interface App {
  readonly url: string;
  close(): Promise<void>;
}

/**
 * A real node:http server: a stand-in JWT step puts the "verified" claims from the x-test-claims
 * header on req.auth (as express-jwt does), then the middleware, then a handler answering 200.
 * An error passed to next() becomes a 503, as an Express error handler would answer.
 */
async function startApp(options: RateLimitMiddlewareOptions<http.IncomingMessage & { auth?: unknown }>): Promise<App> {
  const middleware = rateLimitMiddleware<http.IncomingMessage & { auth?: unknown }, http.ServerResponse>(options);
  const server = http.createServer((req: http.IncomingMessage & { auth?: unknown }, res) => {
    const claims = req.headers['x-test-claims'];
    if (typeof claims === 'string') req.auth = JSON.parse(claims) as unknown;
    middleware(req, res, (error) => {
      res.statusCode = error === undefined ? 200 : 503;
      res.end(error === undefined ? 'ok' : 'rate limiter unavailable');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function get(app: App, claims?: object): Promise<{ status: number; headers: Headers; body: string }> {
  const response = await fetch(`${app.url}/api/orders`, { headers: claims === undefined ? {} : { 'x-test-claims': JSON.stringify(claims) } });
  return { status: response.status, headers: response.headers, body: await response.text() };
}

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('defaultDescriptors', () => {
  it("builds envoy.yaml's API descriptors from claims", () => {
    expect(defaultDescriptors({ client_id: 'web', sub: 'alice', scope: 'orders:read' }, { route: 'api' })).toEqual([
      { entries: [{ key: 'client_id', value: 'web' }] },
      { entries: [{ key: 'client_id', value: 'web' }, { key: 'user_id', value: 'alice' }] },
      { entries: [{ key: 'user_id', value: 'alice' }] },
      { entries: [{ key: 'route', value: 'api' }, { key: 'scope', value: 'orders:read' }] },
    ]);
  });

  it('falls back to azp, then cid, for the client; joins an scp list; counts missing claims under "-"', () => {
    expect(defaultDescriptors({ azp: 'spa', cid: 'other', sub: 'bob', scp: ['a', 'b'] }, { route: 'r' }).map((d) => d.entries)).toEqual([
      [{ key: 'client_id', value: 'spa' }],
      [{ key: 'client_id', value: 'spa' }, { key: 'user_id', value: 'bob' }],
      [{ key: 'user_id', value: 'bob' }],
      [{ key: 'route', value: 'r' }, { key: 'scope', value: 'a b' }],
    ]);
    expect(defaultDescriptors({ cid: 'okta-app', sub: 7 }).map((d) => d.entries)).toEqual([
      [{ key: 'client_id', value: 'okta-app' }],
      [{ key: 'client_id', value: 'okta-app' }, { key: 'user_id', value: '-' }],
      [{ key: 'user_id', value: '-' }],
    ]);
    expect(defaultDescriptors(undefined, { route: 'r' }).at(-1)!.entries).toEqual([{ key: 'route', value: 'r' }, { key: 'scope', value: '-' }]);
  });
});

describe('rateLimitMiddleware on a real node:http server and a real sluice', () => {
  let sluice: StartedSluice;
  let client: RateLimitClient;

  beforeAll(async () => {
    sluice = await startTestSluice({ files: { 'ratelimit.yaml': EXAMPLE }, clock: new ManualClock(T0) });
    client = new RateLimitClient({ address: `127.0.0.1:${sluice.app.grpcPort}`, deadlineMs: 2000 });
    await client.waitForReady(5000);
  });

  afterAll(async () => {
    client.close();
    await sluice.stop();
  });

  it("holds one user of a client at 100/minute with 429, Retry-After and RateLimit-*, while the client's other users go on", async () => {
    const app = await startApp({ client, domain: 'oauth2', route: 'api' });
    try {
      const thief = { client_id: 'web', sub: 'victim', scope: 'orders:read' };
      const first = await get(app, thief);
      expect(first.status).toBe(200);
      expect(first.headers.get('ratelimit-limit')).toBe('100');
      expect(first.headers.get('ratelimit-remaining')).toBe('99');
      expect(Number(first.headers.get('ratelimit-reset'))).toBeGreaterThan(0);
      expect(first.headers.get('retry-after')).toBeNull();
      const statuses = [first.status];
      for (let i = 1; i < 105; i++) statuses.push((await get(app, thief)).status);
      expect(statuses).toEqual([...Array<number>(100).fill(200), ...Array<number>(5).fill(429)]);

      const rejected = await get(app, thief);
      expect(rejected.status).toBe(429);
      expect(rejected.headers.get('content-type')).toBe('application/json');
      const retryAfter = Number(rejected.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(0);
      expect(rejected.headers.get('ratelimit-reset')).toBe(String(retryAfter));
      expect(rejected.headers.get('ratelimit-limit')).toBe('100');
      expect(rejected.headers.get('ratelimit-remaining')).toBe('0');
      expect(JSON.parse(rejected.body)).toEqual({ error: 'rate_limited', retry_after: retryAfter });

      expect((await get(app, { client_id: 'web', sub: 'another-user', scope: 'orders:read' })).status).toBe(200);
    } finally {
      await app.close();
    }
  });

  it('limits requests without claims under the "-" fallback buckets instead of letting them through', async () => {
    const app = await startApp({ client, domain: 'oauth2' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 102; i++) statuses.push((await get(app)).status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(100);
      expect(statuses.slice(100)).toEqual([429, 429]);
    } finally {
      await app.close();
    }
  });

  it('takes custom claims, descriptors and hits, and can leave RateLimit-* off allowed responses', async () => {
    const seen: unknown[] = [];
    const app = await startApp({
      client,
      domain: 'oauth2',
      headers: false,
      claims: (req) => ({ client_id: String(req.headers['x-client'] ?? '') }),
      descriptors: (claims) => {
        seen.push(claims);
        return [{ entries: { endpoint: 'token', client_id: String(claims?.['client_id']), username: 'carol' } }];
      },
      hitsAddend: () => 4,
    });
    try {
      const call = async (): Promise<{ status: number; headers: Headers }> => {
        const r = await fetch(`${app.url}/x`, { headers: { 'x-client': 'custom' } });
        await r.text();
        return { status: r.status, headers: r.headers };
      };
      const a = await call();
      const b = await call();
      const c = await call();
      expect([a.status, b.status, c.status]).toEqual([200, 200, 429]);
      expect(a.headers.get('ratelimit-limit')).toBeNull();
      expect(c.headers.get('ratelimit-limit')).toBe('10');
      expect(c.headers.get('ratelimit-remaining')).toBe('2');
      expect(seen[0]).toEqual({ client_id: 'custom' });
    } finally {
      await app.close();
    }
  });

  it('answers through a Fastify-style reply (code/header/send)', async () => {
    const middleware = rateLimitMiddleware({
      client,
      domain: 'oauth2',
      descriptors: () => [{ entries: { endpoint: 'token', client_id: 'fastify', username: 'dave' } }],
      hitsAddend: 11,
    });
    const reply = { status: 0, headers: {} as Record<string, string>, body: undefined as unknown };
    const fastifyReply = {
      code: (s: number) => ((reply.status = s), fastifyReply),
      header: (k: string, v: string) => ((reply.headers[k] = v), fastifyReply),
      send: (b: unknown) => ((reply.body = b), fastifyReply),
    };
    const nextCalls: unknown[] = [];
    const sent = new Promise<void>((resolve) => {
      fastifyReply.send = (b: unknown) => ((reply.body = b), resolve(), fastifyReply);
    });
    middleware({ user: { sub: 'dave' } }, fastifyReply, (e) => nextCalls.push(e));
    await sent;
    expect(nextCalls).toEqual([]);
    expect(reply.status).toBe(429);
    expect(reply.headers).toMatchObject({ 'RateLimit-Limit': '10', 'RateLimit-Remaining': '10', 'Content-Type': 'application/json' });
    expect(Number(reply.headers['Retry-After'])).toBeGreaterThan(0);
    expect(JSON.parse(String(reply.body))).toMatchObject({ error: 'rate_limited' });
  });
});

describe('rateLimitMiddleware when sluice cannot answer', () => {
  it('lets requests through with a fail-open client, and passes the error to next() with a fail-closed one', async () => {
    const address = `127.0.0.1:${await closedPort()}`;
    const open = new RateLimitClient({ address });
    const closed = new RateLimitClient({ address, failOpen: false });
    const openApp = await startApp({ client: open, domain: 'oauth2' });
    const closedApp = await startApp({ client: closed, domain: 'oauth2' });
    try {
      const through = await get(openApp, { client_id: 'web', sub: 'a' });
      expect(through.status).toBe(200);
      expect(through.headers.get('ratelimit-limit')).toBeNull();
      expect((await get(closedApp, { client_id: 'web', sub: 'a' })).status).toBe(503);
    } finally {
      await openApp.close();
      await closedApp.close();
      open.close();
      closed.close();
    }
  });
});
