import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { keyPrefixProblem } from '../limiter/counter-key';
import type { LogLevel } from '../logging/logger';
import type { RateLimitHeaderNames } from '../service/response';
import type { StoreFailureMode } from '../store/counter-store';
import type { RedisNode, RedisStoreOptions } from '../store/redis/options';

/**
 * Process settings. Every setting has the reference service's environment variable name where
 * one exists, and a CLI flag derived from it (`GRPC_PORT` → `--grpc-port`); a flag beats the
 * environment. The table below is the single list: parsing, `--help` and docs read it.
 */
export interface Settings {
  readonly host: string;
  readonly port: number;
  readonly grpcHost: string;
  readonly grpcPort: number;
  readonly debugHost: string;
  readonly debugPort: number;
  readonly logLevel: LogLevel;
  /** The directory whose files are the rate-limit config. */
  readonly configDir: string;
  readonly ignoreDotFiles: boolean;
  readonly mergeDomainConfig: boolean;
  readonly shadowMode: boolean;
  /** LIMIT_RESPONSE_HEADERS_ENABLED and the three names; undefined when disabled. */
  readonly responseHeaders: RateLimitHeaderNames | undefined;
  readonly chargeRejectedHits: boolean;
  readonly maxDescriptors: number;
  readonly maxEntries: number;
  readonly maxKeyLength: number;
  readonly maxValueLength: number;
  readonly maxHitsAddend: number;
  readonly grpcMaxReceiveMessageBytes: number;
  readonly shutdownGraceMs: number;
  /** Undefined when REDIS_URL is empty: counters live in process memory. Holds secrets: never log it. */
  readonly redis: RedisConnectionSettings | undefined;
  /** CACHE_KEY_PREFIX: prepended to every counter key (several deployments sharing one Redis). */
  readonly cacheKeyPrefix: string;
  /** REDIS_TIMEOUT in ms: the longest a call waits for the store. */
  readonly storeTimeoutMs: number;
  /** STORE_FAILURE_MODE: what a rule without `store_failure` answers when the store cannot. */
  readonly storeFailureMode: StoreFailureMode;
  /** CLOCK: `redis` takes time from Redis TIME (one clock for every replica); `local` from this process. */
  readonly clockSource: ClockSource;
  readonly storeBreakerFailures: number;
  readonly storeBreakerCooldownMs: number;
  /**
   * RUNTIME_WATCH_ROOT (reference default true): when set, this is the RUNTIME_ROOT path, and the
   * config is reloaded only when that symlink is swapped. Undefined: `configDir` itself is watched
   * (RUNTIME_WATCH_ROOT=false, or `--config DIR`, which has no root to swap).
   */
  readonly watchRoot: string | undefined;
  /** CONFIG_RELOAD_DEBOUNCE in ms: file events this close together make one reload. */
  readonly configReloadDebounceMs: number;
  /** NEAR_LIMIT_RATIO: hits above floor(limit × ratio) that are still within the limit count as near_limit. */
  readonly nearLimitRatio: number;
  /** DETAILED_METRIC_MAX_VALUES: distinct descriptor-value label sets per `detailed_metric` rule before `_other_`. */
  readonly detailedMetricMaxValues: number;
  /**
   * LOCAL_CACHE_SIZE_IN_BYTES / LOCAL_CACHE_MAX_ENTRIES: bounds of the over-limit cache (0 = that
   * bound unused; both 0 = no cache). See store/over-limit-cache-store.ts.
   */
  readonly localCacheSizeInBytes: number;
  readonly localCacheMaxEntries: number;
  /** GRPC_SERVER_USE_TLS and friends; undefined serves plaintext. Holds a private key: never log it. */
  readonly grpcTls: GrpcTlsSettings | undefined;
  /** GRPC_MAX_CONNECTION_AGE in ms: connections are asked to go away (GOAWAY) after this long. */
  readonly grpcMaxConnectionAgeMs: number;
  /** GRPC_MAX_CONNECTION_AGE_GRACE in ms: then in-flight calls get this long before the connection is closed. */
  readonly grpcMaxConnectionAgeGraceMs: number;
}

/** The gRPC server's TLS material, read from the files at start. */
export interface GrpcTlsSettings {
  readonly certChain: Buffer;
  readonly privateKey: Buffer;
  /** GRPC_CLIENT_TLS_CACERT: when set, clients must present a certificate signed by this CA (mTLS). */
  readonly clientCa?: Buffer;
  /** GRPC_CLIENT_TLS_SAN: when set, the client certificate must carry this DNS or URI subject alt name. */
  readonly clientSan?: string;
}

export type ClockSource = 'redis' | 'local';

type Kind = 'string' | 'secret' | 'port' | 'count' | 'size' | 'bool' | 'level' | 'duration' | 'choice' | 'ratio';

interface SettingSpec {
  readonly env: string;
  readonly kind: Kind;
  readonly default: string;
  readonly help: string;
  /** The flag, when it is not the env name in kebab case. */
  readonly flag?: string;
  /** For `choice`: the accepted values, lower case; input is matched case-insensitively. */
  readonly choices?: readonly string[];
}

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const REDIS_TYPES: readonly RedisType[] = ['single', 'sentinel', 'cluster'];
const STORE_FAILURE_MODES: readonly StoreFailureMode[] = ['error', 'allow', 'deny', 'local'];
const CLOCK_SOURCES: readonly ClockSource[] = ['redis', 'local'];

/** Every setting: environment name, type, default, and what it does. */
export const SETTING_SPECS = {
  host: { env: 'HOST', kind: 'string', default: '0.0.0.0', help: 'HTTP listen address (/healthcheck)' },
  port: { env: 'PORT', kind: 'port', default: '8080', help: 'HTTP port; 0 picks a free one' },
  grpcHost: { env: 'GRPC_HOST', kind: 'string', default: '0.0.0.0', help: 'gRPC listen address' },
  grpcPort: { env: 'GRPC_PORT', kind: 'port', default: '8081', help: 'gRPC port (RateLimitService, health, reflection); 0 picks a free one' },
  debugHost: { env: 'DEBUG_HOST', kind: 'string', default: '0.0.0.0', help: 'debug HTTP listen address' },
  debugPort: { env: 'DEBUG_PORT', kind: 'port', default: '6070', help: 'debug HTTP port; 0 picks a free one' },
  logLevel: { env: 'LOG_LEVEL', kind: 'level', default: 'info', help: `log level: ${LOG_LEVELS.join(', ')}` },
  runtimeRoot: { env: 'RUNTIME_ROOT', kind: 'string', default: '/srv/runtime_data/current', help: 'config root (the reference layout)' },
  runtimeSubdirectory: { env: 'RUNTIME_SUBDIRECTORY', kind: 'string', default: '', help: 'config subdirectory under RUNTIME_ROOT' },
  runtimeAppdirectory: { env: 'RUNTIME_APPDIRECTORY', kind: 'string', default: 'config', help: 'directory holding the YAML files' },
  config: { env: 'SLUICE_CONFIG', flag: 'config', kind: 'string', default: '', help: 'config directory; overrides RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY' },
  ignoreDotFiles: { env: 'RUNTIME_IGNOREDOTFILES', kind: 'bool', default: 'false', help: 'skip files and directories starting with "." (Kubernetes ConfigMap volumes)' },
  mergeDomainConfig: { env: 'MERGE_DOMAIN_CONFIG', kind: 'bool', default: 'false', help: 'let several files add descriptors to one domain' },
  shadowMode: { env: 'SHADOW_MODE', kind: 'bool', default: 'false', help: 'answer OK overall whatever the limits say (statuses still report them)' },
  responseHeadersEnabled: { env: 'LIMIT_RESPONSE_HEADERS_ENABLED', kind: 'bool', default: 'false', help: 'add RateLimit-Limit/-Remaining/-Reset (and Retry-After when over) to response_headers_to_add' },
  limitLimitHeader: { env: 'LIMIT_LIMIT_HEADER', kind: 'string', default: 'RateLimit-Limit', help: 'name of the header carrying the limit' },
  limitRemainingHeader: { env: 'LIMIT_REMAINING_HEADER', kind: 'string', default: 'RateLimit-Remaining', help: 'name of the header carrying the hits left' },
  limitResetHeader: { env: 'LIMIT_RESET_HEADER', kind: 'string', default: 'RateLimit-Reset', help: 'name of the header carrying the seconds until reset' },
  chargeRejectedHits: { env: 'CHARGE_REJECTED_HITS', kind: 'bool', default: 'false', help: "count hits of rejected requests too (the reference's counting)" },
  maxDescriptors: { env: 'MAX_DESCRIPTORS_PER_REQUEST', kind: 'count', default: '64', help: 'most descriptors in one request' },
  maxEntries: { env: 'MAX_ENTRIES_PER_DESCRIPTOR', kind: 'count', default: '16', help: 'most entries in one descriptor' },
  maxKeyLength: { env: 'MAX_KEY_LENGTH', kind: 'count', default: '256', help: 'longest entry key, in characters' },
  maxValueLength: { env: 'MAX_VALUE_LENGTH', kind: 'count', default: '1024', help: 'longest entry value (and domain), in characters' },
  maxHitsAddend: { env: 'MAX_HITS_ADDEND', kind: 'count', default: '1000000', help: 'largest hits_addend, request or descriptor level' },
  grpcMaxReceiveMessageBytes: { env: 'GRPC_MAX_RECV_MSG_SIZE', kind: 'count', default: '1048576', help: 'largest gRPC request, in bytes' },
  shutdownGraceMs: { env: 'SHUTDOWN_GRACE_MS', kind: 'count', default: '10000', help: 'on SIGTERM, how long in-flight calls may take before the server closes anyway' },
  redisUrl: {
    env: 'REDIS_URL',
    kind: 'secret',
    default: '',
    help:
      'Redis address; empty keeps counters in process memory. single: host:port, redis://[user:pass@]host:port[/db], ' +
      'rediss://... (TLS), or a socket path with REDIS_SOCKET_TYPE=unix; sentinel: master,host:port,host:port; ' +
      'cluster: host:port,host:port,... (never logged in full: passwords are redacted)',
  },
  redisType: { env: 'REDIS_TYPE', kind: 'choice', choices: REDIS_TYPES, default: 'single', help: 'single, sentinel or cluster (any case)' },
  redisSocketType: {
    env: 'REDIS_SOCKET_TYPE',
    kind: 'choice',
    choices: ['tcp', 'unix'],
    default: 'tcp',
    help:
      'tcp: REDIS_URL is host:port or a redis:// or rediss:// URL; unix: REDIS_URL is a socket path. ' +
      'NOTE: the reference defaults to unix; sluice defaults to tcp',
  },
  redisAuth: { env: 'REDIS_AUTH', kind: 'secret', default: '', help: 'Redis password, or user:password (never logged)' },
  redisSentinelAuth: { env: 'REDIS_SENTINEL_AUTH', kind: 'secret', default: '', help: 'password for the sentinels themselves (never logged)' },
  redisTls: { env: 'REDIS_TLS', kind: 'bool', default: 'false', help: 'TLS to Redis (also implied by a rediss:// REDIS_URL)' },
  redisTlsCacert: { env: 'REDIS_TLS_CACERT', kind: 'string', default: '', help: 'PEM file of the CA that signed the Redis certificate (read at start; system CAs when unset)' },
  redisTlsClientCert: { env: 'REDIS_TLS_CLIENT_CERT', kind: 'string', default: '', help: 'PEM client certificate file for mutual TLS (read at start; needs REDIS_TLS_CLIENT_KEY)' },
  redisTlsClientKey: { env: 'REDIS_TLS_CLIENT_KEY', kind: 'string', default: '', help: 'PEM client key file for mutual TLS (read at start; needs REDIS_TLS_CLIENT_CERT)' },
  redisTlsSkipHostnameVerification: {
    env: 'REDIS_TLS_SKIP_HOSTNAME_VERIFICATION',
    kind: 'bool',
    default: 'false',
    help: "accept any Redis certificate (name and chain unchecked, like the reference's InsecureSkipVerify)",
  },
  redisTimeout: {
    env: 'REDIS_TIMEOUT',
    kind: 'duration',
    default: '10ms',
    help:
      'longest wait for the store per call (10ms, 1s, or a bare number of ms), further capped by the caller\'s gRPC ' +
      "deadline less 2 ms. 10ms keeps answers inside Envoy's default 20 ms timeout even when Redis hangs " +
      '(the reference defaults to 10s)',
  },
  cacheKeyPrefix: { env: 'CACHE_KEY_PREFIX', kind: 'string', default: '', help: 'prefix of every counter key (several deployments sharing one Redis)' },
  storeFailureMode: {
    env: 'STORE_FAILURE_MODE',
    kind: 'choice',
    choices: STORE_FAILURE_MODES,
    default: 'error',
    help:
      "when the store cannot answer, for rules without store_failure: error (gRPC UNAVAILABLE; Envoy's " +
      'failure_mode_deny decides), allow, deny, or local (an in-process limiter decides until the store is back)',
  },
  clockSource: {
    env: 'CLOCK',
    flag: 'clock',
    kind: 'choice',
    choices: CLOCK_SOURCES,
    default: 'redis',
    help: 'time for windows on Redis: redis (Redis TIME: one clock for all replicas) or local (this process)',
  },
  storeBreakerFailures: { env: 'STORE_BREAKER_FAILURES', kind: 'count', default: '5', help: 'store timeouts/errors within one second, at least half of the calls, that open the circuit breaker (calls then skip the store)' },
  storeBreakerCooldown: { env: 'STORE_BREAKER_COOLDOWN', kind: 'duration', default: '1s', help: 'how long an open breaker skips the store before one call probes it' },
  runtimeWatchRoot: {
    env: 'RUNTIME_WATCH_ROOT',
    kind: 'bool',
    default: 'true',
    help:
      'reload only when the RUNTIME_ROOT symlink is swapped (the reference default); false reloads on any change in the ' +
      'config directory (Kubernetes ConfigMaps: false, with RUNTIME_IGNOREDOTFILES=true). Ignored with --config, whose directory is always watched',
  },
  configReloadDebounce: { env: 'CONFIG_RELOAD_DEBOUNCE', kind: 'duration', default: '150ms', help: 'file events this close together make one reload' },
  nearLimitRatio: { env: 'NEAR_LIMIT_RATIO', kind: 'ratio', default: '0.8', help: 'share of a limit above which admitted hits count as near_limit in metrics' },
  detailedMetricMaxValues: {
    env: 'DETAILED_METRIC_MAX_VALUES',
    kind: 'count',
    default: '100',
    help: 'per detailed_metric rule, distinct descriptor values given their own metric labels; later ones share the _other_ label',
  },
  localCacheSizeInBytes: {
    env: 'LOCAL_CACHE_SIZE_IN_BYTES',
    kind: 'size',
    default: '0',
    help: 'over-limit cache budget (estimated bytes: 96 + 2 per key character per entry); keys known over their limit are rejected locally until their retry time. 0: off',
  },
  localCacheMaxEntries: {
    env: 'LOCAL_CACHE_MAX_ENTRIES',
    kind: 'size',
    default: '0',
    help: 'over-limit cache budget in entries (with LOCAL_CACHE_SIZE_IN_BYTES too, both bounds apply). 0: no entry bound',
  },
  grpcServerUseTls: { env: 'GRPC_SERVER_USE_TLS', kind: 'bool', default: 'false', help: 'serve gRPC over TLS (needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY)' },
  grpcServerTlsCert: { env: 'GRPC_SERVER_TLS_CERT', kind: 'string', default: '', help: 'PEM certificate chain file of the gRPC server (read at start)' },
  grpcServerTlsKey: { env: 'GRPC_SERVER_TLS_KEY', kind: 'string', default: '', help: 'PEM private key file of the gRPC server (read at start)' },
  grpcClientTlsCacert: { env: 'GRPC_CLIENT_TLS_CACERT', kind: 'string', default: '', help: 'PEM CA file; when set, clients must present a certificate it signed (mutual TLS)' },
  grpcClientTlsSan: { env: 'GRPC_CLIENT_TLS_SAN', kind: 'string', default: '', help: 'when set, the client certificate must carry this subject alt name (DNS or URI); needs GRPC_CLIENT_TLS_CACERT' },
  grpcMaxConnectionAge: {
    env: 'GRPC_MAX_CONNECTION_AGE',
    kind: 'duration',
    default: '24h',
    help: 'connections get a GOAWAY after this long (with 10% jitter), so Envoy reconnects and spreads over replicas',
  },
  grpcMaxConnectionAgeGrace: { env: 'GRPC_MAX_CONNECTION_AGE_GRACE', kind: 'duration', default: '1h', help: 'after the GOAWAY, how long in-flight calls may take before the connection is closed' },
} as const satisfies Record<string, SettingSpec>;

export type SettingName = keyof typeof SETTING_SPECS;

/** `GRPC_PORT` → `grpc-port`. */
export function flagName(spec: SettingSpec): string {
  return spec.flag ?? spec.env.toLowerCase().replace(/_/g, '-');
}

export class SettingsError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'SettingsError';
  }
}

/**
 * Reads settings from the environment, then flags (`--grpc-port 0` or `--grpc-port=0`).
 * Throws SettingsError listing every bad value and unknown flag at once.
 */
export function loadSettings(env: NodeJS.ProcessEnv, argv: readonly string[]): Settings {
  const problems: string[] = [];
  const raw = new Map<SettingName, { value: string; source: string }>();
  const names = Object.keys(SETTING_SPECS) as SettingName[];
  for (const name of names) {
    const value = env[SETTING_SPECS[name].env];
    if (value !== undefined && value !== '') raw.set(name, { value, source: SETTING_SPECS[name].env });
  }
  const byFlag = new Map(names.map((name) => [flagName(SETTING_SPECS[name]), name]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    const name = match ? byFlag.get(match[1]!) : undefined;
    if (!match || name === undefined) {
      problems.push(`unknown argument '${arg}'`);
      continue;
    }
    let value = match[2];
    if (value === undefined) {
      if (SETTING_SPECS[name].kind === 'bool' && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--'))) {
        value = 'true';
      } else {
        value = argv[++i];
      }
    }
    if (value === undefined) problems.push(`--${match[1]} needs a value`);
    else raw.set(name, { value, source: `--${match[1]}` });
  }

  const read = <N extends SettingName>(name: N): string | number | boolean => {
    const spec: SettingSpec = SETTING_SPECS[name];
    const given = raw.get(name);
    const text = given?.value ?? spec.default;
    const source = given?.source ?? spec.env;
    const parsed = parseValue(spec, text);
    if (parsed === undefined) {
      problems.push(`${source}: invalid value '${text}' (${describe(spec)})`);
      return parseValue(spec, spec.default)!;
    }
    return parsed;
  };
  /** Where a setting's value came from, for messages: the flag when one was given, else the variable. */
  const sourceOf = (name: SettingName): string => raw.get(name)?.source ?? SETTING_SPECS[name].env;

  const str = (name: SettingName): string => read(name) as string;
  const num = (name: SettingName): number => read(name) as number;
  const bool = (name: SettingName): boolean => read(name) as boolean;

  const configDir =
    str('config') !== ''
      ? path.resolve(str('config'))
      : path.resolve(str('runtimeRoot'), str('runtimeSubdirectory'), str('runtimeAppdirectory'));
  const watchRoot = str('config') === '' && bool('runtimeWatchRoot') ? path.resolve(str('runtimeRoot')) : undefined;

  const settings: Settings = {
    host: str('host'),
    port: num('port'),
    grpcHost: str('grpcHost'),
    grpcPort: num('grpcPort'),
    debugHost: str('debugHost'),
    debugPort: num('debugPort'),
    logLevel: str('logLevel') as LogLevel,
    configDir,
    ignoreDotFiles: bool('ignoreDotFiles'),
    mergeDomainConfig: bool('mergeDomainConfig'),
    shadowMode: bool('shadowMode'),
    responseHeaders: bool('responseHeadersEnabled')
      ? { limit: str('limitLimitHeader'), remaining: str('limitRemainingHeader'), reset: str('limitResetHeader') }
      : undefined,
    chargeRejectedHits: bool('chargeRejectedHits'),
    maxDescriptors: num('maxDescriptors'),
    maxEntries: num('maxEntries'),
    maxKeyLength: num('maxKeyLength'),
    maxValueLength: num('maxValueLength'),
    maxHitsAddend: num('maxHitsAddend'),
    grpcMaxReceiveMessageBytes: num('grpcMaxReceiveMessageBytes'),
    shutdownGraceMs: num('shutdownGraceMs'),
    redis: undefined,
    cacheKeyPrefix: str('cacheKeyPrefix'),
    storeTimeoutMs: num('redisTimeout'),
    storeFailureMode: str('storeFailureMode') as StoreFailureMode,
    clockSource: str('clockSource') as ClockSource,
    storeBreakerFailures: num('storeBreakerFailures'),
    storeBreakerCooldownMs: num('storeBreakerCooldown'),
    watchRoot,
    configReloadDebounceMs: num('configReloadDebounce'),
    nearLimitRatio: num('nearLimitRatio'),
    detailedMetricMaxValues: num('detailedMetricMaxValues'),
    localCacheSizeInBytes: num('localCacheSizeInBytes'),
    localCacheMaxEntries: num('localCacheMaxEntries'),
    grpcTls: undefined,
    grpcMaxConnectionAgeMs: num('grpcMaxConnectionAge'),
    grpcMaxConnectionAgeGraceMs: num('grpcMaxConnectionAgeGrace'),
  };

  // An HTTP field name (RFC 9110 token), checked even when the headers are off.
  for (const name of ['limitLimitHeader', 'limitRemainingHeader', 'limitResetHeader'] as const) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(str(name))) {
      problems.push(`${sourceOf(name)}: '${str(name)}' is not a valid header name`);
    }
  }
  const prefixProblem = keyPrefixProblem(settings.cacheKeyPrefix);
  if (prefixProblem !== undefined) problems.push(`${sourceOf('cacheKeyPrefix')}: ${prefixProblem}`);

  // Every Redis setting is read even without REDIS_URL, so a bad value is reported either way.
  const redisInput: RedisSettingsInput = {
    url: { value: str('redisUrl'), source: sourceOf('redisUrl') },
    type: str('redisType') as RedisType,
    socketType: str('redisSocketType') as 'tcp' | 'unix',
    auth: { value: str('redisAuth'), source: sourceOf('redisAuth') },
    sentinelAuth: str('redisSentinelAuth'),
    tls: bool('redisTls'),
    skipVerification: bool('redisTlsSkipHostnameVerification'),
    caFile: { value: str('redisTlsCacert'), source: sourceOf('redisTlsCacert') },
    certFile: { value: str('redisTlsClientCert'), source: sourceOf('redisTlsClientCert') },
    keyFile: { value: str('redisTlsClientKey'), source: sourceOf('redisTlsClientKey') },
    commandTimeoutMs: settings.storeTimeoutMs,
    keyPrefix: settings.cacheKeyPrefix,
  };
  const redis =
    redisInput.url.value === ''
      ? undefined
      : parseRedisSettings(redisInput, { readFile: (file) => fs.readFileSync(file, 'utf8') }, problems);
  const grpcTls = parseGrpcTlsSettings(
    {
      useTls: bool('grpcServerUseTls'),
      cert: { value: str('grpcServerTlsCert'), source: sourceOf('grpcServerTlsCert') },
      key: { value: str('grpcServerTlsKey'), source: sourceOf('grpcServerTlsKey') },
      clientCa: { value: str('grpcClientTlsCacert'), source: sourceOf('grpcClientTlsCacert') },
      clientSan: { value: str('grpcClientTlsSan'), source: sourceOf('grpcClientTlsSan') },
    },
    { readFile: (file) => fs.readFileSync(file) },
    problems,
  );
  if (problems.length > 0) throw new SettingsError(problems);
  return { ...settings, redis, grpcTls };
}

function parseValue(spec: SettingSpec, text: string): string | number | boolean | undefined {
  switch (spec.kind) {
    case 'string':
    case 'secret':
      return text;
    case 'bool': {
      const lower = text.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(lower)) return true;
      if (['false', '0', 'no', 'off'].includes(lower)) return false;
      return undefined;
    }
    case 'port': {
      const n = /^\d+$/.test(text) ? Number(text) : NaN;
      return n >= 0 && n <= 65535 ? n : undefined;
    }
    case 'count': {
      const n = /^\d+$/.test(text) ? Number(text) : NaN;
      return Number.isSafeInteger(n) && n > 0 ? n : undefined;
    }
    case 'size': {
      const n = /^\d+$/.test(text) ? Number(text) : NaN;
      return Number.isSafeInteger(n) ? n : undefined;
    }
    case 'level': {
      const lower = text.toLowerCase();
      return (LOG_LEVELS as readonly string[]).includes(lower) ? lower : undefined;
    }
    case 'choice': {
      const lower = text.toLowerCase();
      return (spec.choices ?? []).includes(lower) ? lower : undefined;
    }
    case 'duration':
      return parseDurationMs(text);
    case 'ratio': {
      const n = /^\d+(\.\d+)?$/.test(text.trim()) ? Number(text) : NaN;
      return n >= 0 && n <= 1 ? n : undefined;
    }
  }
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * A duration as Go writes one (`10ms`, `1.5s`, `1m30s`: the reference's env values keep working)
 * or a bare number of milliseconds. Undefined unless positive and finite.
 */
export function parseDurationMs(text: string): number | undefined {
  const trimmed = text.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) {
    const ms = Number(trimmed);
    return ms > 0 && Number.isFinite(ms) ? ms : undefined;
  }
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(trimmed)) return undefined;
  let total = 0;
  for (const [, amount, unit] of trimmed.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(amount) * DURATION_UNITS_MS[unit!]!;
  }
  return total > 0 && Number.isFinite(total) ? total : undefined;
}

function describe(spec: SettingSpec): string {
  switch (spec.kind) {
    case 'string':
    case 'secret':
      return 'text';
    case 'bool':
      return 'true or false';
    case 'port':
      return 'a port from 0 to 65535';
    case 'count':
      return 'a positive integer';
    case 'size':
      return 'a non-negative integer (0 turns it off)';
    case 'level':
      return LOG_LEVELS.join(', ');
    case 'choice':
      return (spec.choices ?? []).join(', ');
    case 'duration':
      return "a positive duration such as '10ms' or '1s', or a number of milliseconds";
    case 'ratio':
      return 'a number from 0 to 1';
  }
}

/** Lines for `sluice serve --help`. */
export function settingsHelp(): string[] {
  return (Object.values(SETTING_SPECS) as SettingSpec[]).map(
    (spec) => `  --${flagName(spec).padEnd(30)} ${spec.env.padEnd(30)} ${spec.help} (default: ${spec.default === '' ? 'none' : spec.default})`,
  );
}

// ---------------------------------------------------------------------------------------------
// gRPC server TLS: GRPC_SERVER_USE_TLS and its companions → certificates for the server.

export interface GrpcTlsSettingsInput {
  readonly useTls: boolean;
  readonly cert: Sourced;
  readonly key: Sourced;
  readonly clientCa: Sourced;
  readonly clientSan: Sourced;
}

/**
 * Reads the server's certificate, key and client CA, and checks that they fit together (a key that
 * does not match the certificate is reported here, naming the variables, rather than as a failed
 * bind). A client CA or SAN without GRPC_SERVER_USE_TLS is a problem too: it would otherwise
 * serve plaintext to an operator who asked for mutual TLS.
 */
export function parseGrpcTlsSettings(
  input: GrpcTlsSettingsInput,
  io: { readFile(file: string): Buffer },
  problems: string[],
): GrpcTlsSettings | undefined {
  const before = problems.length;
  if (!input.useTls) {
    for (const option of [input.cert, input.key, input.clientCa, input.clientSan]) {
      if (option.value !== '') problems.push(`${option.source}: is set, but GRPC_SERVER_USE_TLS is false`);
    }
    return undefined;
  }
  const read = (file: Sourced, required: boolean): Buffer | undefined => {
    if (file.value === '') {
      if (required) problems.push(`${file.source}: required when GRPC_SERVER_USE_TLS is true`);
      return undefined;
    }
    try {
      return io.readFile(file.value);
    } catch (err) {
      const { code, message } = err as { code?: unknown; message?: unknown };
      problems.push(`${file.source}: cannot read '${file.value}': ${String(code ?? message ?? err)}`);
      return undefined;
    }
  };
  const certChain = read(input.cert, true);
  const privateKey = read(input.key, true);
  const clientCa = read(input.clientCa, false);
  if (input.clientSan.value !== '' && input.clientCa.value === '') {
    problems.push(`${input.clientSan.source}: needs GRPC_CLIENT_TLS_CACERT (client certificates are only asked for with a CA)`);
  }
  if (problems.length > before || certChain === undefined || privateKey === undefined) return undefined;
  try {
    tls.createSecureContext({ cert: certChain, key: privateKey, ...(clientCa !== undefined && { ca: clientCa }) });
  } catch (err) {
    const { message } = err as { message?: unknown };
    problems.push(
      `${input.cert.source}/${input.key.source}${clientCa !== undefined ? `/${input.clientCa.source}` : ''}: ` +
        `unusable TLS material: ${String(message ?? err)}`,
    );
    return undefined;
  }
  return {
    certChain,
    privateKey,
    ...(clientCa !== undefined && { clientCa }),
    ...(input.clientSan.value !== '' && { clientSan: input.clientSan.value }),
  };
}

// ---------------------------------------------------------------------------------------------
// Redis: REDIS_URL and its companions → the Redis store's connection options.

export type RedisType = RedisStoreOptions['type'];

/**
 * Everything the Redis store needs from settings: its options minus the clock, which the
 * composition root adds for CLOCK=local, and minus `url`, which is always parsed here (so that
 * credentials from REDIS_AUTH and from the URL cannot silently disagree). Holds passwords: log
 * `describeStore()` instead.
 */
export type RedisConnectionSettings = Omit<RedisStoreOptions, 'clock' | 'url'>;

interface Sourced {
  readonly value: string;
  /** The variable or flag the value came from, for messages. */
  readonly source: string;
}

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
  readonly commandTimeoutMs: number;
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
    const read = (file: Sourced): string | undefined => {
      if (file.value === '') return undefined;
      try {
        return io.readFile(file.value);
      } catch (err) {
        // The errno code says it all (ENOENT, EACCES); the message would repeat the path.
        const { code, message } = err as { code?: unknown; message?: unknown };
        report(file.source, `cannot read '${file.value}': ${String(code ?? message ?? err)}`);
        return undefined;
      }
    };
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
    commandTimeoutMs: input.commandTimeoutMs,
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
