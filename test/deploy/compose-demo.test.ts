import { type ChildProcess, spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ManualClock } from '../../src/util/clock';
import { type StartedSluice, startTestSluice } from '../support/start-sluice';
import {
  type EnvoyModel,
  type Obj,
  ROOT,
  jwtMetadata,
  loadEnvoyModel,
  obj,
  readYaml,
  simulateRequest,
  str,
  tokenEndpointMetadata,
} from './envoy-model';

/**
 * What `docker compose up` shows, without Docker: the real demo issuer and API (envoy/demo/*.js,
 * run by this Node), a real sluice with the example config, and Envoy played by the model of
 * envoy/envoy.yaml (test/deploy/envoy-model.ts) — same routes, same descriptors, same filter order.
 * The token is verified against the issuer's JWKS as jwt_authn would, then its claims drive the
 * rate limit actions; requests Envoy would let through are really sent to the upstreams.
 */

interface Upstream {
  readonly child: ChildProcess;
  readonly url: string;
}

function startScript(script: string, env: Record<string, string>): Promise<Upstream> {
  const child = spawn(process.execPath, [path.join(ROOT, 'envoy/demo', script)], {
    env: { ...process.env, ...env, PORT: '0', HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const port = /listening on (\d+)/.exec(out)?.[1];
      if (port !== undefined) resolve({ child, url: `http://127.0.0.1:${port}` });
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}: ${out}`)));
  });
}

function stop(upstream: Upstream | undefined): Promise<void> {
  if (upstream === undefined || upstream.child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    upstream.child.once('exit', () => resolve());
    upstream.child.kill('SIGTERM');
  });
}

/** jwt_authn's check: RS256 signature by a JWKS key with the token's kid, issuer, audience, expiry. */
async function verifyLikeJwtAuthn(token: string, jwksUrl: string, issuer: string, audiences: readonly string[]): Promise<Obj> {
  const [h, p, s] = token.split('.') as [string, string, string];
  const header = JSON.parse(Buffer.from(h, 'base64url').toString()) as { alg: string; kid: string };
  expect(header.alg).toBe('RS256');
  const jwks = (await (await fetch(jwksUrl)).json()) as { keys: (crypto.JsonWebKey & { kid: string })[] };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  expect(jwk).toBeDefined();
  const key = crypto.createPublicKey({ key: jwk!, format: 'jwk' });
  expect(crypto.verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))).toBe(true);
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Obj;
  expect(claims['iss']).toBe(issuer);
  expect(audiences).toContain(claims['aud']);
  expect(claims['exp']).toBeGreaterThan(Date.now() / 1000);
  return claims;
}

const form = (fields: Record<string, string>): string => new URLSearchParams(fields).toString();

describe('the docker-compose demo, played without Docker', () => {
  let envoy: EnvoyModel;
  let sluice: StartedSluice;
  let issuer: Upstream | undefined;
  let api: Upstream | undefined;
  let provider: Obj;

  beforeAll(async () => {
    envoy = loadEnvoyModel();
    const compose = obj(readYaml('docker-compose.yml'), 'compose');
    const issuerEnv = obj(obj(obj(compose['services'], 'services')['issuer'], 'issuer')['environment'], 'env') as Record<string, string>;
    const jwt = envoy.filters.find((f) => f.name === 'envoy.filters.http.jwt_authn')!;
    provider = obj(Object.values(obj(jwt.config['providers'], 'providers'))[0], 'provider');
    sluice = await startTestSluice({
      files: { 'ratelimit.yaml': fs.readFileSync(path.join(ROOT, 'examples/oauth2/ratelimit.yaml'), 'utf8') },
      clock: new ManualClock(Date.UTC(2026, 0, 5, 12, 0, 10)),
    });
    issuer = await startScript('issuer.js', { ISSUER: issuerEnv['ISSUER']!, AUDIENCE: issuerEnv['AUDIENCE']! });
    api = await startScript('api.js', {});
  });

  afterAll(async () => {
    await Promise.all([stop(issuer), stop(api)]);
    await sluice?.stop();
  });

  const rls = (request: Parameters<StartedSluice['client']['shouldRateLimit']>[0]) => sluice.client.shouldRateLimit(request);

  it('answers 429 after 100 calls with the same token (api_per_client_user), and the API serves the 100', async () => {
    const tokenResponse = await fetch(`${issuer!.url}/oauth/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from('web:web-secret').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: form({ grant_type: 'client_credentials' }),
    });
    expect(tokenResponse.status).toBe(200);
    const token = str(((await tokenResponse.json()) as Obj)['access_token'], 'access_token');
    const jwksPath = new URL(str(obj(obj(provider['remote_jwks'], 'jwks')['http_uri'], 'http_uri')['uri'], 'uri')).pathname;
    const claims = await verifyLikeJwtAuthn(token, `${issuer!.url}${jwksPath}`, str(provider['issuer'], 'issuer'), provider['audiences'] as string[]);
    expect(claims).toMatchObject({ client_id: 'web', sub: 'web', scope: 'orders:read orders:write' });

    const statuses: number[] = [];
    for (let i = 0; i < 110; i++) {
      const result = await simulateRequest(envoy, 'api', '/api/orders', { metadata: jwtMetadata(claims) }, rls);
      if (result.status === 200) {
        const upstream = await fetch(`${api!.url}/api/orders`, { headers: { authorization: `Bearer ${token}` } });
        statuses.push(upstream.status);
      } else {
        statuses.push(result.status);
        expect(result.calls.at(-1)!.response!.statuses!.find((s) => s.code === 'OVER_LIMIT')!.current_limit).toMatchObject({
          name: 'api_per_client_user',
          requests_per_unit: 100,
        });
      }
    }
    expect(statuses).toEqual([...Array<number>(100).fill(200), ...Array<number>(10).fill(429)]);
  });

  it('lets a token without orders:write no further than RBAC on POST /api/orders', async () => {
    const response = await fetch(`${issuer!.url}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: form({ grant_type: 'password', client_id: 'mobile-app', username: 'bob', password: 'bob-password' }),
    });
    const token = str(((await response.json()) as Obj)['access_token'], 'access_token');
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Obj;
    expect(claims['scope']).toBe('orders:read');
    const result = await simulateRequest(envoy, 'orders-create', '/api/orders', { metadata: jwtMetadata(claims) }, rls);
    expect(result).toMatchObject({ status: 403, calls: [] });
  });

  it('stops password guessing for one account at 10 a minute, before the issuer sees the 11th', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const body = form({ grant_type: 'password', client_id: 'mobile-app', username: 'alice', password: `guess-${i}` });
      // What the Lua filter writes for this request (test/deploy/lua-identity.test.ts runs the real script).
      const metadata = tokenEndpointMetadata({ client_id: 'mobile-app', grant_type: 'password', username: 'alice' });
      const result = await simulateRequest(envoy, 'token', '/oauth/token', { remoteAddress: '198.51.100.20', metadata }, rls);
      if (result.status !== 200) {
        statuses.push(result.status);
        continue;
      }
      const upstream = await fetch(`${issuer!.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body,
      });
      statuses.push(upstream.status);
    }
    expect(statuses).toEqual([...Array<number>(10).fill(400), 429, 429]);
  });
});
