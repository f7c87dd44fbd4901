import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../logging/logger';
import type { HealthState } from './health';

/** May be async (e.g. `POST /json` reading a body); a rejection is answered with 500. */
export type RouteHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void | Promise<void>;

export interface HttpServerOptions {
  readonly host: string;
  /** 0 binds an ephemeral port; the handle says which. */
  readonly port: number;
  /** Exact paths (query string ignored) → handler. */
  readonly routes: Readonly<Record<string, RouteHandler>>;
  readonly logger: Logger;
}

export interface HttpServerHandle {
  readonly port: number;
  /** Stops accepting, lets in-flight requests finish, drops idle keep-alive connections. */
  close(): Promise<void>;
}

function sendText(res: http.ServerResponse, statusCode: number, body: string): void {
  res.writeHead(statusCode, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function pathOf(req: http.IncomingMessage): string {
  const url = req.url ?? '/';
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** A small router over node:http for the main (8080) and debug (6070) ports. */
export function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  const { host, port, routes, logger } = options;

  const fail = (res: http.ServerResponse, path: string, err: unknown): void => {
    logger.error({ err, path }, 'HTTP handler failed');
    if (!res.headersSent) {
      sendText(res, 500, 'internal error\n');
    } else {
      res.destroy();
    }
  };

  const server = http.createServer((req, res) => {
    const path = pathOf(req);
    // Own-property lookup: a path like `/constructor` must not find Object.prototype members.
    const handler = Object.hasOwn(routes, path) ? routes[path] : undefined;
    if (handler === undefined) {
      sendText(res, 404, `not found: ${path}\n`);
      return;
    }
    try {
      const result = handler(req, res);
      if (result instanceof Promise) {
        result.catch((err: unknown) => fail(res, path, err));
      }
    } catch (err) {
      fail(res, path, err);
    }
  });

  return new Promise<HttpServerHandle>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`HTTP: cannot listen on ${host}:${port}: ${err.message}`, { cause: err })));
    server.listen(port, host, () => {
      const boundPort = (server.address() as AddressInfo).port;
      logger.debug({ host, port: boundPort, paths: Object.keys(routes) }, 'HTTP server listening');
      resolve({
        port: boundPort,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            server.closeIdleConnections();
          }),
      });
    });
  });
}

/**
 * `GET /healthcheck`, the reference's shape: 200 `OK` when serving, else 500 naming what is not
 * ready, e.g. `NOT OK: config not loaded`. For `httpGet` probes and load balancers.
 */
export function healthcheckRoute(health: HealthState): RouteHandler {
  return (_req, res) => {
    const reasons = health.notReadyReasons();
    if (reasons.length === 0) {
      sendText(res, 200, 'OK');
    } else {
      sendText(res, 500, `NOT OK: ${reasons.join(', ')}`);
    }
  };
}

/** `GET /` on the debug port: one line per endpoint, `<path>: <what it serves>`. */
export function indexRoute(endpoints: Readonly<Record<string, string>>): RouteHandler {
  const body = Object.entries(endpoints)
    .map(([path, description]) => `${path}: ${description}\n`)
    .join('');
  return (_req, res) => sendText(res, 200, body);
}
