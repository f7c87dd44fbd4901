import { silentLogger } from '../../../src/logging/logger';
import { HealthState } from '../../../src/server/health';
import { healthcheckRoute, indexRoute, startHttpServer } from '../../../src/server/http-server';
import type { HttpServerHandle } from '../../../src/server/http-server';

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

describe('HTTP server', () => {
  let health: HealthState;
  let server: HttpServerHandle;

  beforeEach(async () => {
    health = new HealthState();
    server = await startHttpServer({
      host: '127.0.0.1',
      port: 0,
      logger: silentLogger(),
      routes: {
        '/healthcheck': healthcheckRoute(health),
        '/': indexRoute({ '/healthcheck': 'readiness' }),
        '/sync-throw': () => {
          throw new Error('boom');
        },
        '/async-throw': async () => {
          await Promise.resolve();
          throw new Error('boom');
        },
      },
    });
  });

  afterEach(() => server.close());

  it('answers /healthcheck 500 naming what is not ready, then 200 OK', async () => {
    expect(await get(server.port, '/healthcheck')).toEqual({ status: 500, body: 'NOT OK: config not loaded, store unavailable' });
    health.setConfigLoaded(true);
    expect(await get(server.port, '/healthcheck')).toEqual({ status: 500, body: 'NOT OK: store unavailable' });
    health.setStoreOk(true);
    expect(await get(server.port, '/healthcheck?probe=1')).toEqual({ status: 200, body: 'OK' });
    health.setDraining(true);
    expect(await get(server.port, '/healthcheck')).toEqual({ status: 500, body: 'NOT OK: draining' });
  });

  it('answers 404 for an unknown path, including Object.prototype names', async () => {
    expect(await get(server.port, '/nope')).toEqual({ status: 404, body: 'not found: /nope\n' });
    expect((await get(server.port, '/constructor')).status).toBe(404);
  });

  it('lists endpoints at the index', async () => {
    expect(await get(server.port, '/')).toEqual({ status: 200, body: '/healthcheck: readiness\n' });
  });

  it('answers 500 when a handler throws or rejects, and keeps serving', async () => {
    expect((await get(server.port, '/sync-throw')).status).toBe(500);
    expect((await get(server.port, '/async-throw')).status).toBe(500);
    expect((await get(server.port, '/')).status).toBe(200);
  });

  it('fails to start with a message naming the address when the port is taken', async () => {
    await expect(
      startHttpServer({ host: '127.0.0.1', port: server.port, routes: {}, logger: silentLogger() }),
    ).rejects.toThrow(`HTTP: cannot listen on 127.0.0.1:${server.port}`);
  });
});
