import * as net from 'node:net';
import { runClient } from '../../../src/cli/client';
import type { RateLimitResponse } from '../../../src/service/types';
import { startTestServer } from './fake-service';
import type { TestServer } from './fake-service';

function capture(): { out: string[]; err: string[]; io: { out(line: string): void; err(line: string): void } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (l) => out.push(l), err: (l) => err.push(l) } };
}

/** A port nothing listens on: bind one, note it, close it. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('sluice client', () => {
  let t: TestServer;

  beforeEach(async () => {
    t = await startTestServer();
  });

  afterEach(() => t.server.shutdown(100));

  it('sends the descriptors and prints one line per status', async () => {
    t.service.answer = (): RateLimitResponse => ({
      overallCode: 'OVER_LIMIT',
      statuses: [
        {
          code: 'OVER_LIMIT',
          currentLimit: { requestsPerUnit: 10, unit: 'MINUTE', name: 'token_per_client' },
          limitRemaining: 0,
          durationUntilResetSeconds: 42,
        },
        { code: 'OK', limitRemaining: 0 },
      ],
      responseHeadersToAdd: [{ key: 'retry-after', value: '42' }],
    });
    const { out, err, io } = capture();
    const code = await runClient(
      [
        '--addr', t.address,
        '--domain', 'oauth2',
        '--descriptor', 'client_id=abc',
        '--descriptor', 'client_id=abc,user_id=u=1\\,2',
        '--hits', '3',
      ],
      io,
    );
    expect(err).toEqual([]);
    expect(code).toBe(0);
    expect(out).toEqual([
      'overall: OVER_LIMIT',
      '[0] client_id=abc                 OVER_LIMIT  limit 10/MINUTE (name token_per_client)  remaining 0  reset 42s',
      '[1] client_id=abc,user_id=u=1\\,2  OK          no limit',
      'header retry-after: 42',
    ]);
    expect(t.service.requests).toEqual([
      {
        domain: 'oauth2',
        hitsAddend: 3,
        descriptors: [
          { entries: [{ key: 'client_id', value: 'abc' }] },
          { entries: [{ key: 'client_id', value: 'abc' }, { key: 'user_id', value: 'u=1,2' }] },
        ],
      },
    ]);
  });

  it('prints the gRPC status name and message of a failed call and returns 1', async () => {
    const { InvalidArgumentError } = await import('../../../src/errors');
    t.service.answer = () => Promise.reject(new InvalidArgumentError('descriptors[0].entries[0].key is empty'));
    const { out, err, io } = capture();
    const code = await runClient(['--addr', t.address, '--domain', 'd', '--descriptor', 'a=b'], io);
    expect(code).toBe(1);
    expect(out).toEqual([]);
    expect(err).toEqual([`INVALID_ARGUMENT: descriptors[0].entries[0].key is empty (${t.address})`]);
  });

  it('returns 1 with a clear message when nothing listens', async () => {
    const port = await closedPort();
    const { err, io } = capture();
    const code = await runClient(['--addr', `127.0.0.1:${port}`, '--domain', 'd', '--descriptor', 'a=b', '--timeout-ms', '2000'], io);
    expect(code).toBe(1);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(new RegExp(`^UNAVAILABLE: .*\\(127\\.0\\.0\\.1:${port}\\)$`));
  });

  it.each([
    [['--descriptor', 'a=b'], '--domain is required'],
    [['--domain', 'd'], 'at least one --descriptor is required'],
    [['--domain', 'd', '--descriptor', 'novalue'], 'entry "novalue" is not key=value'],
    [['--domain', 'd', '--descriptor', '=v'], 'entry "=v" is not key=value'],
    [['--domain', 'd', '--descriptor', 'a=b', '--hits=-1'], '--hits "-1": expected a whole number'],
    [['--domain', 'd', '--descriptor', 'a=b', '--hits', '4294967296'], '--hits "4294967296": expected a whole number'],
    [['--domain', 'd', '--descriptor', 'a=b', '--timeout-ms', '0'], '--timeout-ms "0": expected a whole number from 1'],
    [['--domain', 'd', '--descriptor', 'a=b', '--bogus'], "Unknown option '--bogus'"],
  ])('returns 2 with usage for %j', async (args, message) => {
    const { err, io } = capture();
    expect(await runClient(args, io)).toBe(2);
    expect(err[0]).toContain(message);
    expect(err.join('\n')).toContain('usage: sluice client');
  });
});
