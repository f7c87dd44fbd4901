'use strict';
// A tiny OAuth2 token issuer for the sluice demo (docker-compose.yml). Plain Node 20, no
// dependencies. NOT an authorization server to deploy: static clients and users, passwords in
// this file, no login page, no refresh tokens, keys gone at restart.
//
//   POST /oauth/token              grant_type=client_credentials | password (| authorization_code:
//                                  always invalid_grant, there is no login page to issue codes)
//   POST /oauth/introspect         RFC 7662, for confidential clients
//   GET  /.well-known/jwks.json    the RS256 public key (a new key pair at every start)
//   GET  /healthz
//
// Client authentication: HTTP Basic (client_secret_basic) or client_id/client_secret form fields
// (client_secret_post); a public client sends client_id only. Access tokens are RFC 9068 JWTs with
// iss, aud, sub, client_id, scope, iat, exp, jti.

const http = require('node:http');
const crypto = require('node:crypto');

const PORT = Number(process.env.PORT || 9000);
const ISSUER = process.env.ISSUER || 'http://localhost:10000';
const AUDIENCE = process.env.AUDIENCE || 'orders-api';
const TOKEN_TTL_SECONDS = Number(process.env.TOKEN_TTL_SECONDS || 3600);
const MAX_BODY_BYTES = 16 * 1024;

// secret null: a public client (no client authentication).
const CLIENTS = {
  web: { secret: 'web-secret', scopes: ['orders:read', 'orders:write'] },
  'mobile-app': { secret: null, scopes: ['orders:read'] },
  'internal-batch': { secret: 'batch-secret', scopes: ['orders:read'] },
};
const USERS = { alice: 'alice-password', bob: 'bob-password' };

const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const KID = crypto.createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('base64url').slice(0, 16);
const JWKS = { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: KID, use: 'sig', alg: 'RS256' }] };

const b64url = (value) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

function signJwt(payload) {
  const input = `${b64url({ alg: 'RS256', typ: 'at+jwt', kid: KID })}.${b64url(payload)}`;
  return `${input}.${crypto.sign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

/** The payload of a token this issuer signed and that has not expired, else undefined. */
function verifyJwt(token) {
  const [header, payload, signature] = String(token).split('.');
  if (signature === undefined) return undefined;
  const valid = crypto.verify('sha256', Buffer.from(`${header}.${payload}`), publicKey, Buffer.from(signature, 'base64url'));
  if (!valid) return undefined;
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  return claims.exp > Date.now() / 1000 ? claims : undefined;
}

const equal = (a, b) => a.length === b.length && crypto.timingSafeEqual(Buffer.from(a), Buffer.from(b));

/** The authenticated client id, or an OAuth2 error. */
function authenticateClient(req, form) {
  let id = form.get('client_id');
  let secret = form.get('client_secret');
  const basic = /^basic\s+(\S+)\s*$/i.exec(req.headers.authorization || '');
  if (basic) {
    // RFC 6749 §2.3.1: one method only.
    if (id !== null || secret !== null) return { error: 'invalid_request', status: 400 };
    const decoded = Buffer.from(basic[1], 'base64').toString();
    const colon = decoded.indexOf(':');
    if (colon < 0) return { error: 'invalid_client', status: 401 };
    id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
    secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
  }
  const client = id === null ? undefined : CLIENTS[id];
  if (client === undefined) return { error: 'invalid_client', status: 401 };
  if (client.secret !== null && (secret === null || !equal(secret, client.secret))) return { error: 'invalid_client', status: 401 };
  return { id, client };
}

function grantedScope(client, requested) {
  if (requested === null) return client.scopes.join(' ');
  const scopes = requested.split(' ').filter((s) => client.scopes.includes(s));
  return scopes.length > 0 ? scopes.join(' ') : undefined;
}

function token(req, form) {
  const auth = authenticateClient(req, form);
  if (auth.error) return [auth.status, { error: auth.error }];
  const grant = form.get('grant_type');
  let sub;
  if (grant === 'client_credentials') {
    if (auth.client.secret === null) return [400, { error: 'unauthorized_client' }];
    sub = auth.id;
  } else if (grant === 'password') {
    const username = (form.get('username') || '').toLowerCase();
    const password = USERS[username];
    if (password === undefined || !equal(form.get('password') || '', password)) return [400, { error: 'invalid_grant' }];
    sub = username;
  } else if (grant === 'authorization_code') {
    return [400, { error: 'invalid_grant', error_description: 'this demo issuer never issues codes' }];
  } else {
    return [400, { error: 'unsupported_grant_type' }];
  }
  const scope = grantedScope(auth.client, form.get('scope'));
  if (scope === undefined) return [400, { error: 'invalid_scope' }];
  const now = Math.floor(Date.now() / 1000);
  const accessToken = signJwt({
    iss: ISSUER,
    aud: AUDIENCE,
    sub,
    client_id: auth.id,
    scope,
    iat: now,
    exp: now + TOKEN_TTL_SECONDS,
    jti: crypto.randomUUID(),
  });
  return [200, { access_token: accessToken, token_type: 'Bearer', expires_in: TOKEN_TTL_SECONDS, scope }];
}

function introspect(req, form) {
  const auth = authenticateClient(req, form);
  if (auth.error || auth.client.secret === null) return [401, { error: 'invalid_client' }];
  const claims = verifyJwt(form.get('token'));
  if (claims === undefined) return [200, { active: false }];
  return [200, { active: true, client_id: claims.client_id, sub: claims.sub, scope: claims.scope, exp: claims.exp, aud: claims.aud, iss: claims.iss }];
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://issuer').pathname;
  if (req.method === 'GET' && path === '/.well-known/jwks.json') return send(res, 200, JWKS);
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
  const handler = { '/oauth/token': token, '/oauth/introspect': introspect }[path];
  if (handler === undefined) return send(res, 404, { error: 'not_found' });
  if (req.method !== 'POST') return send(res, 405, { error: 'invalid_request' });
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk) => {
    body += chunk;
    if (body.length > MAX_BODY_BYTES) req.destroy();
  });
  req.on('end', () => {
    const [status, payload] = handler(req, new URLSearchParams(body));
    send(res, status, payload);
  });
});

server.listen({ port: PORT, host: process.env.HOST }, () => process.stdout.write(`issuer listening on ${server.address().port} (iss ${ISSUER}, aud ${AUDIENCE}, kid ${KID})\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
