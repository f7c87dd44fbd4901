'use strict';
// A tiny "orders" API for the sluice demo (docker-compose.yml). Plain Node 20, no dependencies.
// It sits behind Envoy, which has already verified the access token (jwt_authn), checked the
// orders:write scope for POST /api/orders (rbac) and asked sluice for the limits; so this service
// only reads the forwarded token's claims to say who called. Do not expose it without Envoy.
//
//   GET  /api/orders    the caller's orders
//   POST /api/orders    create one
//   GET  /api/me        the claims Envoy verified
//   GET  /healthz

const http = require('node:http');

const PORT = Number(process.env.PORT || 9001);
const orders = [];

/** Claims of the bearer token Envoy forwarded (jwt_authn `forward: true`); Envoy checked the signature. */
function claims(req) {
  const match = /^Bearer\s+[^.]+\.([^.]+)\./i.exec(req.headers.authorization || '');
  if (!match) return {};
  try {
    return JSON.parse(Buffer.from(match[1], 'base64url').toString());
  } catch {
    return {};
  }
}

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  const path = new URL(req.url, 'http://api').pathname;
  const who = claims(req);
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, { ok: true });
  if (req.method === 'GET' && path === '/api/me') return send(res, 200, who);
  if (path === '/api/orders' && req.method === 'GET') {
    return send(res, 200, orders.filter((o) => o.owner === who.sub).slice(-20));
  }
  if (path === '/api/orders' && req.method === 'POST') {
    req.resume();
    const order = { id: orders.length + 1, owner: who.sub, client_id: who.client_id, created: new Date().toISOString() };
    orders.push(order);
    if (orders.length > 1000) orders.shift();
    return send(res, 201, order);
  }
  return send(res, 404, { error: 'not_found' });
});

server.listen({ port: PORT, host: process.env.HOST }, () => process.stdout.write(`api listening on ${server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
