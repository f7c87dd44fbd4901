import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  SettingsError,
  describeStore,
  loadSettings,
  parseDurationMs,
  redactRedisUrl,
  settingsHelp,
  type Settings,
} from '../../../src/settings/settings';
import { availableCores } from '../../../src/settings/cores';

function load(env: NodeJS.ProcessEnv, argv: string[] = []): Settings {
  return loadSettings(env, argv);
}

function problems(env: NodeJS.ProcessEnv, argv: string[] = []): string[] {
  try {
    loadSettings(env, argv);
  } catch (err) {
    if (err instanceof SettingsError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a SettingsError');
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-settings-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function writeFile(name: string, content: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, content);
  return file;
}

describe('store settings defaults', () => {
  it('keeps counters in memory without REDIS_URL, with the documented defaults', () => {
    const settings = load({});
    expect(settings.redis).toBeUndefined();
    expect(settings.storeTimeoutMs).toBe(500);
    expect(settings.maxDescriptorsInFlight).toBe(8192);
    expect(settings.storeFailureMode).toBe('error');
    expect(settings.clockSource).toBe('redis');
    expect(settings.storeBreakerFailures).toBe(5);
    expect(settings.storeBreakerCooldownMs).toBe(1000);
    expect(settings.cacheKeyPrefix).toBe('');
    expect(describeStore(settings.redis)).toBe('memory');
  });

  it('treats an empty REDIS_URL as unset', () => {
    expect(load({ REDIS_URL: '' }).redis).toBeUndefined();
  });
});

describe('REDIS_URL, single', () => {
  it('reads host:port over tcp by default', () => {
    expect(load({ REDIS_URL: 'redis.internal:6380' }).redis).toEqual({
      type: 'single',
      nodes: [{ host: 'redis.internal', port: 6380 }],
      replyTimeoutMs: 500,
      keyPrefix: '',
    });
  });

  it('defaults the port to 6379 and takes bracketed IPv6', () => {
    expect(load({ REDIS_URL: 'localhost' }).redis?.nodes).toEqual([{ host: 'localhost', port: 6379 }]);
    expect(load({ REDIS_URL: '[::1]:7000' }).redis?.nodes).toEqual([{ host: '::1', port: 7000 }]);
  });

  it('reads a redis:// URL with credentials (percent-decoded) and a database', () => {
    expect(load({ REDIS_URL: 'redis://app:p%40ss%3Aw@10.0.0.5:6390/3' }).redis).toEqual({
      type: 'single',
      nodes: [{ host: '10.0.0.5', port: 6390 }],
      username: 'app',
      password: 'p@ss:w',
      db: 3,
      replyTimeoutMs: 500,
      keyPrefix: '',
    });
    expect(load({ REDIS_URL: 'redis://:secret@host' }).redis).toMatchObject({
      nodes: [{ host: 'host', port: 6379 }],
      password: 'secret',
    });
    expect(load({ REDIS_URL: 'redis://:secret@host' }).redis?.username).toBeUndefined();
  });

  it('turns TLS on for rediss://, verifying the server by default', () => {
    expect(load({ REDIS_URL: 'rediss://cache.example.com:6380' }).redis?.tls).toEqual({ rejectUnauthorized: true });
  });

  it('reads a socket path with REDIS_SOCKET_TYPE=unix (any case)', () => {
    expect(load({ REDIS_URL: '/var/run/redis.sock', REDIS_SOCKET_TYPE: 'UNIX' }).redis).toEqual({
      type: 'single',
      nodes: [],
      socketPath: '/var/run/redis.sock',
      replyTimeoutMs: 500,
      keyPrefix: '',
    });
  });

  it('says what to change when the socket type and the address disagree', () => {
    expect(problems({ REDIS_URL: '/var/run/redis.sock' })).toEqual([
      "REDIS_URL: '/var/run/redis.sock' is a socket path: set REDIS_SOCKET_TYPE=unix",
    ]);
    expect(problems({ REDIS_URL: 'redis://h:1', REDIS_SOCKET_TYPE: 'unix' })).toEqual([
      "REDIS_URL: 'redis://h:1' is a URL, but REDIS_SOCKET_TYPE=unix needs a socket path",
    ]);
    expect(problems({ REDIS_URL: '/s', REDIS_SOCKET_TYPE: 'unix', REDIS_TYPE: 'cluster' })).toEqual([
      'REDIS_URL: REDIS_SOCKET_TYPE=unix works only with REDIS_TYPE=single, not cluster',
    ]);
  });

  it('rejects bad addresses with the reason', () => {
    expect(problems({ REDIS_URL: 'host:0' })).toEqual(["REDIS_URL: invalid value 'host:0' (port must be 1 to 65535, got '0')"]);
    expect(problems({ REDIS_URL: 'host:http' })).toEqual([
      "REDIS_URL: invalid value 'host:http' (port must be 1 to 65535, got 'http')",
    ]);
    expect(problems({ REDIS_URL: '::1:6379' })).toEqual([
      "REDIS_URL: invalid value '::1:6379' (an IPv6 address needs brackets: [::1]:6379)",
    ]);
    expect(problems({ REDIS_URL: 'http://host:1' })).toEqual([
      "REDIS_URL: unsupported scheme 'http://' in 'http://host:1' (use redis:// or rediss://)",
    ]);
    expect(problems({ REDIS_URL: 'redis://host/x' })).toEqual([
      "REDIS_URL: the path of 'redis://host/x' must be a database number, got '/x'",
    ]);
  });
});

describe('REDIS_URL, sentinel and cluster', () => {
  it('reads master,host:port,... for sentinel, with the sentinels own password', () => {
    expect(
      load({
        REDIS_TYPE: 'SENTINEL',
        REDIS_URL: 'mymaster, s1:26379,s2:26380',
        REDIS_AUTH: 'data-pass',
        REDIS_SENTINEL_AUTH: 'sentinel-pass',
      }).redis,
    ).toEqual({
      type: 'sentinel',
      sentinelMasterName: 'mymaster',
      nodes: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
      ],
      password: 'data-pass',
      sentinelPassword: 'sentinel-pass',
      replyTimeoutMs: 500,
      keyPrefix: '',
    });
  });

  it('needs at least one sentinel after the master name', () => {
    expect(problems({ REDIS_TYPE: 'sentinel', REDIS_URL: 'mymaster' })).toEqual([
      "REDIS_URL: invalid value 'mymaster' (REDIS_TYPE=sentinel needs master,host:port[,host:port...])",
    ]);
  });

  it('reads seed nodes for cluster', () => {
    expect(load({ REDIS_TYPE: 'Cluster', REDIS_URL: 'n1:7000,n2:7001,n3:7002,' }).redis).toEqual({
      type: 'cluster',
      nodes: [
        { host: 'n1', port: 7000 },
        { host: 'n2', port: 7001 },
        { host: 'n3', port: 7002 },
      ],
      replyTimeoutMs: 500,
      keyPrefix: '',
    });
  });

  it('names each bad node', () => {
    expect(problems({ REDIS_TYPE: 'cluster', REDIS_URL: 'n1:7000,n2:x' })).toEqual([
      "REDIS_URL: invalid address 'n2:x' (port must be 1 to 65535, got 'x')",
    ]);
  });
});

describe('REDIS_AUTH', () => {
  it('is a password, or user:password split at the first colon', () => {
    expect(load({ REDIS_URL: 'h:1', REDIS_AUTH: 'only-pass' }).redis).toMatchObject({ password: 'only-pass' });
    expect(load({ REDIS_URL: 'h:1', REDIS_AUTH: 'only-pass' }).redis?.username).toBeUndefined();
    expect(load({ REDIS_URL: 'h:1', REDIS_AUTH: 'user:pa:ss' }).redis).toMatchObject({ username: 'user', password: 'pa:ss' });
  });

  it('refuses credentials given twice', () => {
    expect(problems({ REDIS_URL: 'redis://u:p@h:1', REDIS_AUTH: 'x' })).toEqual([
      'REDIS_AUTH: credentials are given both here and in REDIS_URL; give them once',
    ]);
  });

  it('ignores REDIS_SENTINEL_AUTH outside sentinel mode, as the reference does', () => {
    expect(load({ REDIS_URL: 'h:1', REDIS_SENTINEL_AUTH: 's' }).redis?.sentinelPassword).toBeUndefined();
  });
});

describe('TLS', () => {
  it('reads the PEM files at start and can skip verification', () => {
    const ca = writeFile('ca.pem', 'CA PEM');
    const cert = writeFile('cert.pem', 'CERT PEM');
    const key = writeFile('key.pem', 'KEY PEM');
    const settings = load({
      REDIS_URL: 'h:6379',
      REDIS_TLS: 'true',
      REDIS_TLS_CACERT: ca,
      REDIS_TLS_CLIENT_CERT: cert,
      REDIS_TLS_CLIENT_KEY: key,
      REDIS_TLS_SKIP_HOSTNAME_VERIFICATION: 'true',
    });
    expect(settings.redis?.tls).toEqual({ ca: 'CA PEM', cert: 'CERT PEM', key: 'KEY PEM', rejectUnauthorized: false });
  });

  it('ignores the TLS files when TLS is off, as the reference does', () => {
    expect(load({ REDIS_URL: 'h:6379', REDIS_TLS_CACERT: '/does/not/exist' }).redis?.tls).toBeUndefined();
  });

  it('names the variable of a file it cannot read, and a cert without its key', () => {
    const cert = writeFile('cert.pem', 'CERT PEM');
    const found = problems({
      REDIS_URL: 'rediss://h',
      REDIS_TLS_CACERT: path.join(tmp, 'missing.pem'),
      REDIS_TLS_CLIENT_CERT: cert,
    });
    expect(found).toHaveLength(2);
    expect(found[0]).toMatch(/^REDIS_TLS_CACERT: cannot read '.*missing\.pem': ENOENT$/);
    expect(found[1]).toBe('REDIS_TLS_CLIENT_KEY: REDIS_TLS_CLIENT_CERT and REDIS_TLS_CLIENT_KEY go together; set both or neither');
  });
});

describe('timeouts, policy, clock, breaker', () => {
  it('reads durations Go-style or as bare milliseconds', () => {
    expect(load({ REDIS_TIMEOUT: '25ms' }).storeTimeoutMs).toBe(25);
    expect(load({ REDIS_TIMEOUT: '0.5s' }).storeTimeoutMs).toBe(500);
    expect(load({ REDIS_TIMEOUT: '15' }).storeTimeoutMs).toBe(15);
    expect(load({ STORE_BREAKER_COOLDOWN: '1m30s' }).storeBreakerCooldownMs).toBe(90_000);
    expect(parseDurationMs('500us')).toBe(0.5);
    expect(parseDurationMs('2h')).toBe(7_200_000);
    for (const bad of ['0', '0ms', '-5ms', '10 ms', 'ms', '1d', '', 'fast']) expect(parseDurationMs(bad)).toBeUndefined();
  });

  it('passes REDIS_TIMEOUT and CACHE_KEY_PREFIX to the Redis store', () => {
    expect(load({ REDIS_URL: 'h:1', REDIS_TIMEOUT: '7ms', CACHE_KEY_PREFIX: 'prod:' }).redis).toMatchObject({
      replyTimeoutMs: 7,
      keyPrefix: 'prod:',
    });
  });

  it('reads the failure policy, the clock and the breaker, case-insensitively, from env or flags', () => {
    const settings = load({ STORE_FAILURE_MODE: 'LOCAL', CLOCK: 'Local', STORE_BREAKER_FAILURES: '3' }, [
      '--store-breaker-cooldown',
      '250ms',
    ]);
    expect(settings.storeFailureMode).toBe('local');
    expect(settings.clockSource).toBe('local');
    expect(settings.storeBreakerFailures).toBe(3);
    expect(settings.storeBreakerCooldownMs).toBe(250);
    expect(load({}, ['--store-failure-mode=deny', '--clock', 'redis', '--redis-url', 'h:9']).storeFailureMode).toBe('deny');
    expect(load({}, ['--redis-url', 'h:9', '--redis-type', 'single']).redis?.nodes).toEqual([{ host: 'h', port: 9 }]);
  });
});

describe('every problem at once, secrets kept out', () => {
  it('lists each bad value with its variable or flag', () => {
    expect(
      problems(
        {
          REDIS_TYPE: 'twemproxy',
          REDIS_SOCKET_TYPE: 'udp',
          REDIS_TIMEOUT: 'fast',
          STORE_FAILURE_MODE: 'maybe',
          CLOCK: 'sundial',
          STORE_BREAKER_FAILURES: '0',
          REDIS_TLS: 'sometimes',
        },
        ['--store-breaker-cooldown', '-1s'],
      ).sort(),
    ).toEqual(
      [
        "REDIS_TYPE: invalid value 'twemproxy' (single, sentinel, cluster)",
        "REDIS_SOCKET_TYPE: invalid value 'udp' (tcp, unix)",
        "REDIS_TLS: invalid value 'sometimes' (true or false)",
        "REDIS_TIMEOUT: invalid value 'fast' (a positive duration such as '10ms' or '1s', or a number of milliseconds)",
        "STORE_FAILURE_MODE: invalid value 'maybe' (error, allow, deny, local)",
        "CLOCK: invalid value 'sundial' (redis, local)",
        "STORE_BREAKER_FAILURES: invalid value '0' (a positive integer)",
        "--store-breaker-cooldown: invalid value '-1s' (a positive duration such as '10ms' or '1s', or a number of milliseconds)",
      ].sort(),
    );
  });

  it('never repeats a password from REDIS_URL in a message', () => {
    const found = problems({ REDIS_URL: 'redis://user:hunter2@host:99999' });
    expect(found.join('\n')).not.toContain('hunter2');
    expect(found).toEqual(["REDIS_URL: invalid URL 'redis://user:***@host:99999'"]);
    const sentinel = problems({ REDIS_TYPE: 'cluster', REDIS_URL: 'redis://:hunter2@h:1' });
    expect(sentinel.join('\n')).not.toContain('hunter2');
  });

  it('redacts URLs with or without a user', () => {
    expect(redactRedisUrl('redis://user:pw@h:1/0')).toBe('redis://user:***@h:1/0');
    expect(redactRedisUrl('rediss://:pw@h')).toBe('rediss://:***@h');
    expect(redactRedisUrl('redis://token@h')).toBe('redis://***@h');
    expect(redactRedisUrl('h:6379')).toBe('h:6379');
  });
});

describe('describeStore (the startup log line)', () => {
  it('names the store and its address, never a credential', () => {
    expect(describeStore(load({ REDIS_URL: 'redis://u:hunter2@h:6380/2' }).redis)).toBe('redis single h:6380 (db 2, auth)');
    expect(describeStore(load({ REDIS_URL: 'rediss://[::1]:6380' }).redis)).toBe('redis single [::1]:6380 (tls)');
    expect(describeStore(load({ REDIS_URL: '/run/r.sock', REDIS_SOCKET_TYPE: 'unix' }).redis)).toBe(
      'redis single unix:/run/r.sock',
    );
    expect(describeStore(load({ REDIS_TYPE: 'sentinel', REDIS_URL: 'm,a:1,b:2', REDIS_AUTH: 'x' }).redis)).toBe(
      'redis sentinel m@a:1,b:2 (auth)',
    );
    expect(describeStore(load({ REDIS_TYPE: 'cluster', REDIS_URL: 'a:1,b:2' }).redis)).toBe('redis cluster a:1,b:2');
  });
});

describe('help', () => {
  it('documents every new setting, and that tcp is our default where the reference says unix', () => {
    const help = settingsHelp().join('\n');
    for (const name of [
      'REDIS_URL',
      'REDIS_TYPE',
      'REDIS_SOCKET_TYPE',
      'REDIS_AUTH',
      'REDIS_SENTINEL_AUTH',
      'REDIS_TLS',
      'REDIS_TLS_CACERT',
      'REDIS_TLS_CLIENT_CERT',
      'REDIS_TLS_CLIENT_KEY',
      'REDIS_TLS_SKIP_HOSTNAME_VERIFICATION',
      'REDIS_TIMEOUT',
      'CACHE_KEY_PREFIX',
      'STORE_FAILURE_MODE',
      'CLOCK',
      'STORE_BREAKER_FAILURES',
      'STORE_BREAKER_COOLDOWN',
    ]) {
      expect(help).toMatch(new RegExp(` ${name} `));
    }
    expect(help).toMatch(/the reference defaults to unix; sluice defaults to tcp/);
  });
});

describe('CACHE_KEY_PREFIX', () => {
  it('refuses braces, which would form a Redis Cluster hash tag', () => {
    expect(problems({ CACHE_KEY_PREFIX: 'team{a}:' })).toEqual([
      'CACHE_KEY_PREFIX: must not contain "{" or "}" (they would form a Redis Cluster hash tag)',
    ]);
  });
});

describe('config size limits and reload timeout', () => {
  it('default to 4 MiB per file, 16 MiB per directory, 60 s per reload', () => {
    const settings = load({});
    expect(settings.configLimits).toEqual({ maxFileBytes: 4 * 1024 * 1024, maxDirectoryBytes: 16 * 1024 * 1024 });
    expect(settings.configReloadTimeoutMs).toBe(60_000);
  });

  it('read CONFIG_MAX_FILE_BYTES, CONFIG_MAX_DIRECTORY_BYTES (bytes) and CONFIG_RELOAD_TIMEOUT (a duration)', () => {
    const settings = load({ CONFIG_MAX_FILE_BYTES: '1000', CONFIG_MAX_DIRECTORY_BYTES: '5000', CONFIG_RELOAD_TIMEOUT: '2s' });
    expect(settings.configLimits).toEqual({ maxFileBytes: 1000, maxDirectoryBytes: 5000 });
    expect(settings.configReloadTimeoutMs).toBe(2_000);
  });

  it('refuse 0 (there is no unlimited) and anything but a whole number of bytes', () => {
    expect(problems({ CONFIG_MAX_FILE_BYTES: '0', CONFIG_MAX_DIRECTORY_BYTES: '4MiB' })).toEqual([
      "CONFIG_MAX_FILE_BYTES: invalid value '0' (a positive integer)",
      "CONFIG_MAX_DIRECTORY_BYTES: invalid value '4MiB' (a positive integer)",
    ]);
  });
});

describe('MEMORY_STORE_MAX_BYTES', () => {
  it('defaults to 0 (a share of the heap limit, decided by the store) and takes a byte count', () => {
    expect(load({}).memoryStoreMaxBytes).toBe(0);
    expect(load({ MEMORY_STORE_MAX_BYTES: '67108864' }).memoryStoreMaxBytes).toBe(67_108_864);
    expect(load({}, ['--memory-store-max-bytes', '1000']).memoryStoreMaxBytes).toBe(1000);
  });

  it('refuses what is not a byte count', () => {
    expect(problems({ MEMORY_STORE_MAX_BYTES: '64MB' })).toEqual([
      "MEMORY_STORE_MAX_BYTES: invalid value '64MB' (a non-negative integer (0: half the V8 heap limit))",
    ]);
    expect(problems({ MEMORY_STORE_MAX_BYTES: '-1' }).join('\n')).toContain('MEMORY_STORE_MAX_BYTES');
  });
});

describe('WORKERS', () => {
  const redis = { REDIS_URL: 'redis://127.0.0.1:1' };

  it('auto is the cores available with Redis, and 1 on the memory store', () => {
    expect(load(redis).workers).toBe(Math.min(availableCores(), 256));
    expect(load({}).workers).toBe(1);
    expect(load({ WORKERS: 'AUTO' }).workers).toBe(1);
  });

  it('takes a count, from the variable or --workers', () => {
    expect(load({ ...redis, WORKERS: '3' }).workers).toBe(3);
    expect(load(redis, ['--workers', '1']).workers).toBe(1);
    expect(load({ WORKERS: '1' }).workers).toBe(1);
  });

  it('refuses more than one worker on the memory store, naming the setting and why', () => {
    const found = problems({ WORKERS: '2' });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^WORKERS: 2 workers need REDIS_URL: .*memory store/);
    expect(problems({}, ['--workers=4'])[0]).toMatch(/^--workers: 4 workers need REDIS_URL/);
  });

  it('refuses what is not a count or auto, and absurd counts', () => {
    expect(problems({ ...redis, WORKERS: '0' })).toEqual(["WORKERS: invalid value '0' ('auto' or a positive integer)"]);
    expect(problems({ ...redis, WORKERS: 'all' })).toEqual(["WORKERS: invalid value 'all' ('auto' or a positive integer)"]);
    expect(problems({ ...redis, WORKERS: '1000' })).toEqual(['WORKERS: 1000 workers is more than 256']);
  });
});

describe('availableCores', () => {
  const cpus = os.availableParallelism();
  it('is the CPUs this process may run on without a cgroup limit', () => {
    expect(availableCores(() => `max 100000\n`)).toBe(cpus);
    expect(
      availableCores(() => {
        throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
      }),
    ).toBe(cpus);
  });
  it('is a cgroup CPU limit rounded up, never more than the CPUs nor less than 1', () => {
    expect(availableCores(() => '150000 100000\n')).toBe(Math.min(cpus, 2));
    expect(availableCores(() => '25000 100000')).toBe(1);
    expect(availableCores(() => '6400000 100000')).toBe(cpus);
  });
});

describe('GRPC_TRANSPORT', () => {
  it('defaults to lean, takes grpc-js from env or flag in any case, and refuses anything else', () => {
    expect(load({}).grpcTransport).toBe('lean');
    expect(load({ GRPC_TRANSPORT: 'LEAN' }).grpcTransport).toBe('lean');
    expect(load({ GRPC_TRANSPORT: 'GRPC-JS' }).grpcTransport).toBe('grpc-js');
    expect(load({ GRPC_TRANSPORT: 'lean' }, ['--grpc-transport', 'grpc-js']).grpcTransport).toBe('grpc-js');
    expect(problems({ GRPC_TRANSPORT: 'fast' })).toEqual(["GRPC_TRANSPORT: invalid value 'fast' (grpc-js, lean)"]);
    expect(settingsHelp().join('\n')).toMatch(/ GRPC_TRANSPORT /);
  });
});
