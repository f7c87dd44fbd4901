import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { StoreError } from '../../../src/errors';
import { silentLogger } from '../../../src/logging/logger';
import type { LimitCheck } from '../../../src/store/counter-store';
import { isTransientRedisError, toStoreError } from '../../../src/store/redis/errors';
import { createRedisStore } from '../../../src/store/redis/redis-store';
import { ManualClock } from '../../../src/util/clock';
import { type RedisServer, freePort, startRedisSentinel, startRedisServer } from '../../support/redis-server';
import { availableStore, fixedWindowState, singleOptions, uniquePrefix, whenAvailable } from './helpers';

/**
 * How the store behaves around its connection: fails fast while Redis is away, keeps the caller's
 * deadline, reports availability, comes back by itself, and connects over TCP, URL or unix socket.
 */

const MINUTE = 60_000;
const T0 = 1_000 * MINUTE;

const check = (key: string, limit = 10, hits = 1): LimitCheck => ({
  key,
  algorithm: 'fixed_window',
  limit,
  windowMs: MINUTE,
  hits,
  enforced: true,
});

const elapsedOf = async (work: Promise<unknown>): Promise<{ ms: number; error: unknown }> => {
  const start = Date.now();
  try {
    await work;
    return { ms: Date.now() - start, error: undefined };
  } catch (error) {
    return { ms: Date.now() - start, error };
  }
};

async function eventually(condition: () => Promise<boolean> | boolean, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('RedisStore connection behaviour', () => {
  let server: RedisServer;
  let redis: Redis;

  beforeAll(async () => {
    server = await startRedisServer();
    redis = new Redis({ host: server.host, port: server.port, retryStrategy: () => 50, maxRetriesPerRequest: 1 });
    redis.on('error', () => undefined);
  });

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('reads Redis TIME when no clock is given, and reports sane reset times', async () => {
    const store = await availableStore(singleOptions(server));
    try {
      const before = Date.now();
      const [outcome] = await store.decide([check(`${uniquePrefix()}a`)], { chargeRejectedHits: false });
      const untilWindowEnd = MINUTE - (before % MINUTE);
      expect(outcome!.admitted).toBe(true);
      expect(Math.abs(outcome!.resetMs - untilWindowEnd)).toBeLessThan(2_000);
    } finally {
      await store.close();
    }
  });

  it('fails fast while Redis is down, reports unavailability, and recovers by itself after a restart', async () => {
    const store = await availableStore(singleOptions(server), new ManualClock(T0));
    const changes: boolean[] = [];
    store.onAvailabilityChange((available) => changes.push(available));
    try {
      server.kill('SIGKILL');
      await eventually(() => !store.isAvailable());
      const { ms, error } = await elapsedOf(store.decide([check(`${uniquePrefix()}a`)], { chargeRejectedHits: false }));
      expect(error).toBeInstanceOf(StoreError);
      expect(error).toMatchObject({ transient: true, message: expect.stringMatching(/^redis decide \(1 check\) failed: /) });
      expect(ms).toBeLessThan(250);

      await server.restart();
      await whenAvailable(store, 10_000);
      expect(changes).toEqual([false, true]);
      const [outcome] = await store.decide([check(`${uniquePrefix()}a`)], { chargeRejectedHits: false });
      expect(outcome).toEqual({ admitted: true, remaining: 9, resetMs: MINUTE });
    } finally {
      await store.close();
    }
  });

  it('takes back a charge whose answer comes after its caller stopped waiting', async () => {
    const store = await availableStore(singleOptions(server, { replyTimeoutMs: 5_000 }), new ManualClock(T0));
    const key = `${uniquePrefix()}a`;
    const ticket = { abandoned: false };
    let answer: Promise<unknown>;
    try {
      server.kill('SIGSTOP');
      answer = store.decide([check(key, 10, 3)], { chargeRejectedHits: false, ticket });
      await new Promise((resolve) => setTimeout(resolve, 50));
      // What ResilientStore does at the call's deadline: it answers from the policy and abandons the call.
      ticket.abandoned = true;
    } finally {
      server.kill('SIGCONT');
    }
    try {
      // The script ran once Redis resumed and charged 3 hits; nobody was told, so they are refunded.
      await expect(answer).resolves.toEqual([{ admitted: true, remaining: 7, resetMs: MINUTE }]);
      await eventually(async () => (await fixedWindowState(redis, key))?.c === '0');
      const [outcome] = await store.decide([check(key)], { chargeRejectedHits: false });
      expect(outcome).toMatchObject({ admitted: true, remaining: 9 });
    } finally {
      await store.close();
    }
  });

  it('is down while a connection holds replies back for replyTimeoutMs, and up again once it delivers', async () => {
    const store = await availableStore(singleOptions(server, { replyTimeoutMs: 150 }), new ManualClock(T0));
    const states: string[] = [];
    store.onStateChange((state) => states.push(state));
    let answer: Promise<unknown>;
    try {
      server.kill('SIGSTOP');
      const key = `${uniquePrefix()}a`;
      answer = store.decide([check(key)], { chargeRejectedHits: false });
      await eventually(() => store.state() === 'down');
      expect(store.downReason()).toMatch(/^no reply from single 127\.0\.0\.1:\d+ for \d+ ms with 1 command waiting$/);
      expect(store.isAvailable()).toBe(false);
    } finally {
      server.kill('SIGCONT');
    }
    try {
      // The call itself was never failed by the store: it gets Redis' answer once Redis resumes.
      await expect(answer).resolves.toEqual([{ admitted: true, remaining: 9, resetMs: MINUTE }]);
      await whenAvailable(store, 5_000);
      expect(states).toEqual(['down', 'up']);
    } finally {
      await store.close();
    }
  });

  it('is not stalled by a busy client: a blocked event loop never marks a healthy Redis down', async () => {
    const store = await availableStore(singleOptions(server, { replyTimeoutMs: 100 }), new ManualClock(T0));
    const states: string[] = [];
    store.onStateChange((state) => states.push(state));
    try {
      for (let round = 0; round < 3; round++) {
        const answers = Array.from({ length: 50 }, (_, i) => store.decide([check(`${uniquePrefix()}${i}`)], { chargeRejectedHits: false }));
        // Commands are written, then this process is busy for far longer than replyTimeoutMs.
        await new Promise((resolve) => setImmediate(resolve));
        const until = Date.now() + 400;
        while (Date.now() < until) {
          // busy
        }
        await Promise.all(answers);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(states).toEqual([]);
      expect(store.state()).toBe('up');
    } finally {
      await store.close();
    }
  });

  it('never crashes on a Redis that is not there, and closes promptly', async () => {
    const store = createRedisStore({ ...singleOptions(server), nodes: [{ host: '127.0.0.1', port: 1 }] }, silentLogger());
    try {
      const { ms, error } = await elapsedOf(store.decide([check('k')], { chargeRejectedHits: false }));
      expect(error).toMatchObject({ transient: true });
      expect(ms).toBeLessThan(250);
      expect(store.isAvailable()).toBe(false);
    } finally {
      const { ms } = await elapsedOf(store.close());
      expect(ms).toBeLessThan(1_500);
    }
  });

  it('refuses a CACHE_KEY_PREFIX with braces', () => {
    expect(() => createRedisStore(singleOptions(server, { keyPrefix: 'a{b}' }), silentLogger())).toThrow(/CACHE_KEY_PREFIX must not contain/);
  });
});

describe('RedisStore addresses', () => {
  it('connects with a redis:// URL carrying a password', async () => {
    const server = await startRedisServer({ password: 's3cret' });
    try {
      const store = await availableStore({ ...singleOptions(server), url: `redis://:s3cret@${server.host}:${server.port}/2` }, new ManualClock(T0));
      try {
        const key = `${uniquePrefix()}a`;
        expect(await store.decide([check(key)], { chargeRejectedHits: false })).toEqual([{ admitted: true, remaining: 9, resetMs: MINUTE }]);
        const plain = new Redis({ host: server.host, port: server.port, password: 's3cret', db: 2 });
        expect(await plain.exists(key)).toBe(1);
        await plain.quit();
      } finally {
        await store.close();
      }
    } finally {
      await server.stop();
    }
  });

  it('connects over a unix socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-sock-'));
    const socketPath = join(dir, 'redis.sock');
    const server = await startRedisServer({ args: ['--unixsocket', socketPath, '--unixsocketperm', '700'] });
    try {
      const store = await availableStore({ ...singleOptions(server), nodes: [], socketPath }, new ManualClock(T0));
      try {
        expect(await store.decide([check(`${uniquePrefix()}a`)], { chargeRejectedHits: false })).toEqual([
          { admitted: true, remaining: 9, resetMs: MINUTE },
        ]);
      } finally {
        await store.close();
      }
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('connects over TLS, checking the server certificate against the given CA (host:port and rediss:// URL)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-tls-'));
    const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-keyout', key, '-out', cert, '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    ], { stdio: 'ignore' });
    const tlsPort = await freePort();
    const server = await startRedisServer({
      args: ['--tls-port', String(tlsPort), '--tls-cert-file', cert, '--tls-key-file', key, '--tls-ca-cert-file', cert, '--tls-auth-clients', 'no'],
    });
    try {
      const tls = { ca: readFileSync(cert, 'utf8'), rejectUnauthorized: true };
      for (const address of [
        { nodes: [{ host: '127.0.0.1', port: tlsPort }] },
        { url: `rediss://127.0.0.1:${tlsPort}` },
      ]) {
        const store = await availableStore({ ...singleOptions(server), ...address, tls }, new ManualClock(T0));
        try {
          const outcomes = await store.decide([check(`${uniquePrefix()}a`)], { chargeRejectedHits: false });
          expect(outcomes).toEqual([{ admitted: true, remaining: 9, resetMs: MINUTE }]);
        } finally {
          await store.close();
        }
      }
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds the master through Sentinel', async () => {
    const master = await startRedisServer();
    const sentinel = await startRedisSentinel(master, 'sluice-master');
    try {
      const store = await availableStore(
        { ...singleOptions(master), type: 'sentinel', nodes: [{ host: sentinel.host, port: sentinel.port }], sentinelMasterName: 'sluice-master' },
        new ManualClock(T0),
      );
      try {
        const key = `${uniquePrefix()}a`;
        expect(await store.decide([check(key)], { chargeRejectedHits: false })).toEqual([{ admitted: true, remaining: 9, resetMs: MINUTE }]);
        const plain = new Redis({ host: master.host, port: master.port });
        expect(await fixedWindowState(plain, key)).toEqual({ w: '1000', c: '1' });
        await plain.quit();
      } finally {
        await store.close();
      }
    } finally {
      await Promise.all([sentinel.stop(), master.stop()]);
    }
  });
});

describe('Redis error mapping', () => {
  const errorWith = (message: string, props: Record<string, unknown> = {}): Error => Object.assign(new Error(message), props);

  it.each([
    ['a refused connection', errorWith('connect ECONNREFUSED 127.0.0.1:6390', { code: 'ECONNREFUSED' })],
    ['a reset connection', errorWith('read ECONNRESET', { code: 'ECONNRESET' })],
    ['a command timeout', errorWith('Command timed out')],
    ['a closed connection', errorWith('Connection is closed.')],
    ['no offline queue', errorWith("Stream isn't writeable and enableOfflineQueue options is false")],
    ['a cluster not ready', errorWith("Cluster isn't ready and enableOfflineQueue options is false")],
    ['the retry limit', errorWith('Reached the max retries per request limit (which is 0).', { name: 'MaxRetriesPerRequestError' })],
    ['CLUSTERDOWN', errorWith('CLUSTERDOWN The cluster is down')],
    ['TRYAGAIN', errorWith('TRYAGAIN Multiple keys request during rehashing of slot')],
    ['LOADING', errorWith('LOADING Redis is loading the dataset in memory')],
    ['BUSY', errorWith('BUSY Redis is busy running a script.')],
    ['READONLY', errorWith("READONLY You can't write against a read only replica.")],
    ['OOM', errorWith("OOM command not allowed when used memory > 'maxmemory'.")],
  ])('treats %s as transient', (_name, err) => {
    expect(isTransientRedisError(err)).toBe(true);
    expect(toStoreError('decide (1 check)', err)).toMatchObject({ transient: true, message: `redis decide (1 check) failed: ${err.message}` });
  });

  it.each([
    ['bad credentials', errorWith('WRONGPASS invalid username-password pair or user is disabled.')],
    ['a missing permission', errorWith("NOPERM this user has no permissions to run the 'evalsha' command")],
    ['a script error', errorWith('ERR user_script:1: Script attempted to access nonexistent global variable')],
    ['a wrong key type', errorWith('WRONGTYPE Operation against a key holding the wrong kind of value')],
    ['a non-error', 'oops'],
  ])('treats %s as permanent', (_name, err) => {
    expect(isTransientRedisError(err)).toBe(false);
    expect(toStoreError('refund (2 checks, slot 7)', err)).toMatchObject({ transient: false, message: expect.stringMatching(/^redis refund \(2 checks, slot 7\) failed: /) });
  });

  it('keeps a StoreError as it is', () => {
    const original = new StoreError('redis decide: no answer within the deadline (20 ms)', true);
    expect(toStoreError('decide', original)).toBe(original);
  });
});
