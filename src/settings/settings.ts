import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ConfigSizeLimits } from '../config/config-files';
import { availableCores } from './cores';
import { keyPrefixProblem } from '../limiter/counter-key';
import type { LogLevel } from '../logging/logger';
import type { GrpcTransport } from '../server/grpc-server';
import type { StreamResetLimit } from '../server/stream-reset-limit';
import type { RateLimitHeaderNames } from '../service/response';
import type { StoreFailureMode } from '../store/counter-store';
import { parseRedisSettings, type RedisConnectionSettings, type RedisSettingsInput, type RedisType } from './redis-settings';
import { SETTING_SPECS, flagName, type ClockSource, type SettingName } from './setting-specs';
import { parseGrpcTlsSettings, type GrpcTlsSettings } from './tls-settings';
import { describe, parseValue, type SettingSpec } from './values';

export {
  describeStore,
  parseRedisSettings,
  redactRedisUrl,
  type RedisConnectionSettings,
  type RedisSettingsInput,
  type RedisType,
} from './redis-settings';
export { SETTING_SPECS, flagName, settingsHelp, type ClockSource, type SettingName } from './setting-specs';
export { parseGrpcTlsSettings, type GrpcTlsSettings, type GrpcTlsSettingsInput } from './tls-settings';
export { parseDurationMs } from './values';

/**
 * Process settings. Every setting has the reference service's environment variable name where
 * one exists, and a CLI flag derived from it (`GRPC_PORT` → `--grpc-port`); a flag beats the
 * environment. The table in setting-specs.ts is the single list: parsing, `--help` and docs read it.
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
  readonly maxDescriptorsInFlight: number;
  readonly grpcMaxReceiveMessageBytes: number;
  /** GRPC_STREAM_RESET_BURST and GRPC_STREAM_RESET_RATE: how many client stream resets a connection may send. */
  readonly grpcStreamResetLimit: StreamResetLimit;
  /** GRPC_MAX_CONCURRENT_STREAMS: calls one connection may have open at once; 0 for no limit. */
  readonly grpcMaxConcurrentStreams: number;
  /** GRPC_TRANSPORT: what serves ShouldRateLimit (grpc-js, or the lean transport on grpc-js's servers). */
  readonly grpcTransport: GrpcTransport;
  /** Calls open at once over all gRPC connections; 0: no limit. */
  readonly maxCallsInFlight: number;
  /**
   * WORKERS, resolved: how many processes serve. 1 runs sluice in this process, as always; more
   * runs a node:cluster primary forking that many workers (only with Redis: see loadSettings).
   */
  readonly workers: number;
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
  /** CONFIG_MAX_FILE_BYTES, CONFIG_MAX_DIRECTORY_BYTES: what the config directory may hold. */
  readonly configLimits: ConfigSizeLimits;
  /** CONFIG_RELOAD_TIMEOUT in ms: a reload's worker is stopped, and the reload refused, after this long. */
  readonly configReloadTimeoutMs: number;
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
  /**
   * MEMORY_STORE_MAX_BYTES: the memory store's budget in estimated bytes; 0 = half the V8 heap limit
   * (store/memory/memory-budget.ts). Also bounds the local limiter of STORE_FAILURE_MODE=local.
   */
  readonly memoryStoreMaxBytes: number;
  /** GRPC_SERVER_USE_TLS and friends; undefined serves plaintext. Holds a private key: never log it. */
  readonly grpcTls: GrpcTlsSettings | undefined;
  /** GRPC_MAX_CONNECTION_AGE in ms: connections are asked to go away (GOAWAY) after this long. */
  readonly grpcMaxConnectionAgeMs: number;
  /** GRPC_MAX_CONNECTION_AGE_GRACE in ms: then in-flight calls get this long before the connection is closed. */
  readonly grpcMaxConnectionAgeGraceMs: number;
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
    maxDescriptorsInFlight: num('maxDescriptorsInFlight'),
    grpcMaxReceiveMessageBytes: num('grpcMaxReceiveMessageBytes'),
    grpcMaxConcurrentStreams: num('grpcMaxConcurrentStreams'),
    grpcTransport: str('grpcTransport') as GrpcTransport,
    maxCallsInFlight: num('maxCallsInFlight'),
    grpcStreamResetLimit: { burst: num('grpcStreamResetBurst'), ratePerSecond: num('grpcStreamResetRate') },
    workers: 1,
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
    configLimits: { maxFileBytes: num('configMaxFileBytes'), maxDirectoryBytes: num('configMaxDirectoryBytes') },
    configReloadTimeoutMs: num('configReloadTimeout'),
    nearLimitRatio: num('nearLimitRatio'),
    detailedMetricMaxValues: num('detailedMetricMaxValues'),
    localCacheSizeInBytes: num('localCacheSizeInBytes'),
    localCacheMaxEntries: num('localCacheMaxEntries'),
    memoryStoreMaxBytes: num('memoryStoreMaxBytes'),
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
    replyTimeoutMs: settings.storeTimeoutMs,
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
      reloadIntervalMs: num('grpcServerTlsReloadInterval'),
    },
    { readFile: (file) => fs.readFileSync(file) },
    problems,
  );
  const workers = resolveWorkers(read('workers') as number | 'auto', redisInput.url.value !== '', sourceOf('workers'), problems);
  if (problems.length > 0) throw new SettingsError(problems);
  return { ...settings, workers, redis, grpcTls };
}

/** Most workers: past this a typo (WORKERS=1000) would fork a process storm, not serve. */
export const MAX_WORKERS = 256;

/**
 * WORKERS as a count. `auto` is the cores this process may use with Redis, and 1 on the memory
 * store. More than 1 without Redis is refused: each worker would keep its own counters, so every
 * limit would be multiplied by the workers, and silently forcing 1 would hide that the setting did
 * nothing.
 */
function resolveWorkers(asked: number | 'auto', redis: boolean, source: string, problems: string[]): number {
  if (asked === 'auto') return redis ? Math.min(availableCores(), MAX_WORKERS) : 1;
  if (asked > MAX_WORKERS) {
    problems.push(`${source}: ${asked} workers is more than ${MAX_WORKERS}`);
    return 1;
  }
  if (asked > 1 && !redis) {
    problems.push(
      `${source}: ${asked} workers need REDIS_URL: the memory store keeps counters in one process, ` +
        'so each worker would allow the full limit; use WORKERS=1 (or auto) with the memory store',
    );
    return 1;
  }
  return asked;
}
