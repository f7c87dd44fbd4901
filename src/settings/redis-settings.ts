import type { RedisNode, RedisStoreOptions } from '../store/redis/options';
import { type Sourced, readSettingFile } from './values';

// Redis: REDIS_URL and its companions → the Redis store's connection options.

export type RedisType = RedisStoreOptions['type'];

/**
 * Everything the Redis store needs from settings: its options minus the clock, which the
 * composition root adds for CLOCK=local, and minus `url`, which is always parsed here (so that
 * credentials from REDIS_AUTH and from the URL cannot silently disagree). Holds passwords: log
 * `describeStore()` instead.
 */
export type RedisConnectionSettings = Omit<RedisStoreOptions, 'clock' | 'url'>;

export interface RedisSettingsInput {
  readonly url: Sourced;
  readonly type: RedisType;
  readonly socketType: 'tcp' | 'unix';
  readonly auth: Sourced;
  readonly sentinelAuth: string;
  readonly tls: boolean;
  readonly skipVerification: boolean;
  readonly caFile: Sourced;
  readonly certFile: Sourced;
  readonly keyFile: Sourced;
  readonly replyTimeoutMs: number;
  readonly keyPrefix: string;
}

const DEFAULT_REDIS_PORT = 6379;

/**
 * `redis://user:secret@host` → `redis://user:***@host`: a value that may hold a password, made fit
 * for messages and logs.
 */
export function redactRedisUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^@/]*)@/i, (_match, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon < 0 ? `${scheme}***@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
}

/**
 * Parses REDIS_URL in the form REDIS_TYPE and REDIS_SOCKET_TYPE call for, adds credentials and TLS,
 * and reads the TLS files. Problems go to `problems`, each naming its variable; the result is
 * undefined when there was any.
 */
export function parseRedisSettings(
  input: RedisSettingsInput,
  io: { readFile(file: string): string },
  problems: string[],
): RedisConnectionSettings | undefined {
  const before = problems.length;
  const report = (source: string, reason: string): void => {
    problems.push(`${source}: ${reason}`);
  };
  const urlSource = input.url.source;
  const shown = redactRedisUrl(input.url.value);
  const text = input.url.value.trim();

  let nodes: RedisNode[] = [];
  let socketPath: string | undefined;
  let sentinelMasterName: string | undefined;
  let fromUrl: { username?: string; password?: string; db?: number; tls: boolean } = { tls: false };

  const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
  if (input.socketType === 'unix') {
    if (input.type !== 'single') {
      report(input.url.source, `REDIS_SOCKET_TYPE=unix works only with REDIS_TYPE=single, not ${input.type}`);
    } else if (isUrl) {
      report(urlSource, `'${shown}' is a URL, but REDIS_SOCKET_TYPE=unix needs a socket path`);
    } else {
      socketPath = text;
    }
  } else if (input.type === 'single') {
    if (isUrl) {
      const parsed = parseRedisUri(text, shown);
      if (typeof parsed === 'string') report(urlSource, parsed);
      else {
        nodes = [parsed.node];
        fromUrl = parsed;
      }
    } else if (text.startsWith('/')) {
      report(urlSource, `'${shown}' is a socket path: set REDIS_SOCKET_TYPE=unix`);
    } else {
      const node = parseHostPort(text);
      if (typeof node === 'string') report(urlSource, `invalid value '${shown}' (${node})`);
      else nodes = [node];
    }
  } else {
    const items = text
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== '');
    if (input.type === 'sentinel') {
      sentinelMasterName = items.shift();
      if (sentinelMasterName === undefined || items.length === 0) {
        report(urlSource, `invalid value '${shown}' (REDIS_TYPE=sentinel needs master,host:port[,host:port...])`);
      }
    } else if (items.length === 0) {
      report(urlSource, `invalid value '${shown}' (REDIS_TYPE=cluster needs host:port[,host:port...])`);
    }
    for (const item of items) {
      const node = isUrl ? 'a URL is not allowed here; list host:port pairs' : parseHostPort(item);
      if (typeof node === 'string') report(urlSource, `invalid address '${redactRedisUrl(item)}' (${node})`);
      else nodes.push(node);
    }
  }

  // REDIS_AUTH: `pass` or `user:pass`, split at the first colon as the reference does.
  let username = fromUrl.username;
  let password = fromUrl.password;
  if (input.auth.value !== '') {
    if (fromUrl.username !== undefined || fromUrl.password !== undefined) {
      report(input.auth.source, `credentials are given both here and in ${urlSource}; give them once`);
    }
    const colon = input.auth.value.indexOf(':');
    if (colon < 0) {
      password = input.auth.value;
    } else {
      username = input.auth.value.slice(0, colon);
      password = input.auth.value.slice(colon + 1);
    }
  }

  let tls: RedisConnectionSettings['tls'];
  if (input.tls || fromUrl.tls) {
    const read = (file: Sourced): string | undefined => readSettingFile(file, (path) => io.readFile(path), problems);
    const ca = read(input.caFile);
    const cert = read(input.certFile);
    const key = read(input.keyFile);
    if ((input.certFile.value === '') !== (input.keyFile.value === '')) {
      const missing = input.certFile.value === '' ? input.certFile.source : input.keyFile.source;
      report(missing, 'REDIS_TLS_CLIENT_CERT and REDIS_TLS_CLIENT_KEY go together; set both or neither');
    }
    tls = {
      ...(ca !== undefined && { ca }),
      ...(cert !== undefined && { cert }),
      ...(key !== undefined && { key }),
      rejectUnauthorized: !input.skipVerification,
    };
  }

  if (problems.length > before) return undefined;
  return {
    type: input.type,
    nodes,
    ...(socketPath !== undefined && { socketPath }),
    ...(sentinelMasterName !== undefined && { sentinelMasterName }),
    ...(username !== undefined && username !== '' && { username }),
    ...(password !== undefined && { password }),
    ...(input.type === 'sentinel' && input.sentinelAuth !== '' && { sentinelPassword: input.sentinelAuth }),
    ...(tls !== undefined && { tls }),
    ...(fromUrl.db !== undefined && { db: fromUrl.db }),
    replyTimeoutMs: input.replyTimeoutMs,
    keyPrefix: input.keyPrefix,
  };
}

/** `host:port`, `[::1]:port`, or a bare host (port 6379). A reason string when invalid. */
function parseHostPort(text: string): RedisNode | string {
  let host: string;
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (bracketed) {
    host = bracketed[1]!;
    portText = bracketed[2];
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0 && text.indexOf(':') !== colon) {
      return 'an IPv6 address needs brackets: [::1]:6379';
    }
    host = colon < 0 ? text : text.slice(0, colon);
    portText = colon < 0 ? undefined : text.slice(colon + 1);
  }
  if (host === '' || /[\s/@,]/.test(host)) return 'expected host:port';
  if (portText === undefined) return { host, port: DEFAULT_REDIS_PORT };
  const port = /^\d+$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) return `port must be 1 to 65535, got '${portText}'`;
  return { host, port };
}

/** `redis://[user[:pass]@]host[:port][/db]` or `rediss://…`. A reason string when invalid. */
function parseRedisUri(
  text: string,
  shown: string,
): { node: RedisNode; username?: string; password?: string; db?: number; tls: boolean } | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `invalid URL '${shown}'`;
  }
  const scheme = url.protocol.toLowerCase();
  if (scheme !== 'redis:' && scheme !== 'rediss:') {
    return `unsupported scheme '${scheme}//' in '${shown}' (use redis:// or rediss://)`;
  }
  // URL keeps IPv6 literals bracketed; the client wants them bare.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') return `no host in '${shown}'`;
  const port = url.port === '' ? DEFAULT_REDIS_PORT : Number(url.port);
  let db: number | undefined;
  const pathText = url.pathname.replace(/^\//, '');
  if (pathText !== '') {
    if (!/^\d+$/.test(pathText) || !Number.isSafeInteger(Number(pathText))) {
      return `the path of '${shown}' must be a database number, got '/${pathText}'`;
    }
    db = Number(pathText);
  }
  let username: string | undefined;
  let password: string | undefined;
  try {
    if (url.username !== '') username = decodeURIComponent(url.username);
    if (url.password !== '') password = decodeURIComponent(url.password);
  } catch {
    return `bad percent-encoding in the credentials of '${shown}'`;
  }
  return {
    node: { host, port },
    ...(username !== undefined && { username }),
    ...(password !== undefined && { password }),
    ...(db !== undefined && { db }),
    tls: scheme === 'rediss:',
  };
}

/**
 * The store in words for the startup log: `memory`, or `redis <type> <addresses>` with TLS noted.
 * Built from parsed addresses only, so it cannot carry a password.
 */
export function describeStore(redis: RedisConnectionSettings | undefined): string {
  if (redis === undefined) return 'memory';
  const hostPort = (node: RedisNode): string =>
    node.host.includes(':') ? `[${node.host}]:${node.port}` : `${node.host}:${node.port}`;
  let address: string;
  if (redis.socketPath !== undefined) address = `unix:${redis.socketPath}`;
  else if (redis.type === 'sentinel') address = `${redis.sentinelMasterName ?? ''}@${redis.nodes.map(hostPort).join(',')}`;
  else address = redis.nodes.map(hostPort).join(',');
  const extras = [
    ...(redis.db !== undefined ? [`db ${redis.db}`] : []),
    ...(redis.tls !== undefined ? ['tls'] : []),
    ...(redis.username !== undefined || redis.password !== undefined ? ['auth'] : []),
  ];
  return `redis ${redis.type} ${address}${extras.length > 0 ? ` (${extras.join(', ')})` : ''}`;
}
