import { MAX_CONFIG_DIRECTORY_BYTES, MAX_CONFIG_FILE_BYTES } from '../config/config-files';
import type { GrpcTransport } from '../server/grpc-server';
import type { StoreFailureMode } from '../store/counter-store';
import type { RedisType } from './redis-settings';
import { LOG_LEVELS, type SettingSpec } from './values';

export type ClockSource = 'redis' | 'local';

const REDIS_TYPES: readonly RedisType[] = ['single', 'sentinel', 'cluster'];
const STORE_FAILURE_MODES: readonly StoreFailureMode[] = ['error', 'allow', 'deny', 'local'];
const CLOCK_SOURCES: readonly ClockSource[] = ['redis', 'local'];
const GRPC_TRANSPORTS: readonly GrpcTransport[] = ['grpc-js', 'lean'];

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
  maxDescriptorsInFlight: {
    env: 'MAX_DESCRIPTORS_IN_FLIGHT',
    kind: 'count',
    default: '8192',
    help:
      'bound on the work being decided at once, in descriptors; a call that does not fit is refused at once with ' +
      'RESOURCE_EXHAUSTED (counted in sluice_requests_total{result="overloaded"}) instead of queueing past its deadline',
  },
  grpcMaxReceiveMessageBytes: { env: 'GRPC_MAX_RECV_MSG_SIZE', kind: 'count', default: '1048576', help: 'largest gRPC request, in bytes' },
  grpcTransport: {
    env: 'GRPC_TRANSPORT',
    kind: 'choice',
    choices: GRPC_TRANSPORTS,
    default: 'lean',
    help:
      'what serves ShouldRateLimit: lean (read and answered straight on the HTTP/2 streams of grpc-js\'s own servers, ' +
      'without grpc-js\'s per-call machinery: 1.2-1.4x the calls per second; health, reflection, TLS, keepalive, connection age ' +
      'and shutdown stay with grpc-js), or grpc-js (every call through grpc-js)',
  },
  grpcMaxConcurrentStreams: {
    env: 'GRPC_MAX_CONCURRENT_STREAMS',
    kind: 'size',
    default: '0',
    help:
      'calls one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; clients queue the rest, ' +
      'Envoy opens more connections); 0: no limit',
  },
  maxCallsInFlight: {
    env: 'MAX_CALLS_IN_FLIGHT',
    kind: 'size',
    default: '64',
    help:
      'most calls all gRPC connections together may have open while calls arrive faster than sluice decides them ' +
      '(more open than this, and calls answered past their deadline, at two looks 25 ms apart): ' +
      'each connection is then offered an equal share (at least 4) in its HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS, ' +
      'shrunk to what sluice answers in 10 ms, and clients (Envoy, gRPC) hold further calls until one ends; lifted ' +
      'once the clients leave their shares unfilled for 1 s (outside overload a connection may have 4 times this open). 0: off',
  },
  grpcStreamResetBurst: {
    env: 'GRPC_STREAM_RESET_BURST',
    kind: 'count',
    default: '10000',
    help:
      'client stream resets (RST_STREAM) one connection may send at once before it is closed; Envoy resets every call ' +
      "it stops waiting for, so Node's default of 1000 would close a busy Envoy's connection (Node >= 22.10; older Node keeps 1000)",
  },
  grpcStreamResetRate: {
    env: 'GRPC_STREAM_RESET_RATE',
    kind: 'count',
    default: '10000',
    help: 'after the burst, stream resets per second one connection may send (Node >= 22.10; older Node keeps 33)',
  },
  workers: {
    env: 'WORKERS',
    kind: 'count-or-auto',
    default: 'auto',
    help:
      'processes serving (node:cluster workers sharing the ports; counters shared through Redis). auto: the cores ' +
      'available (CPU affinity and a cgroup CPU limit, rounded up) with REDIS_URL, 1 on the memory store. More than 1 needs REDIS_URL: the memory store counts in one ' +
      'process, and sluice refuses to start rather than let each worker count alone',
  },
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
    default: '500ms',
    help:
      'a Redis connection with commands waiting that delivers no reply for this long is stalled: the store counts as down ' +
      '(failure policy at once, health NOT_SERVING) until it delivers again. Not a per-call timeout: each call waits for ' +
      "the store up to its own gRPC deadline (Envoy's timeout), and is answered by its failure policy if that comes first",
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
  storeBreakerFailures: { env: 'STORE_BREAKER_FAILURES', kind: 'count', default: '5', help: 'consecutive transient error replies from the store (with no success for 100 ms) that open the circuit breaker (calls then skip the store)' },
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
  configMaxFileBytes: {
    env: 'CONFIG_MAX_FILE_BYTES',
    kind: 'count',
    default: String(MAX_CONFIG_FILE_BYTES),
    help:
      'largest config file read, in bytes; a larger one is refused unread, naming the file and the limit. Parsing takes ' +
      'about 100 bytes of memory per byte of YAML; each reload worker gets 128 MB of heap per MiB of this (at least 256 MB)',
  },
  configMaxDirectoryBytes: {
    env: 'CONFIG_MAX_DIRECTORY_BYTES',
    kind: 'count',
    default: String(MAX_CONFIG_DIRECTORY_BYTES),
    help: 'most bytes of config files read from the config directory in all; past it the set is refused',
  },
  // A backstop, not the routine bound: the size and expansion bounds keep parsing finite. The
  // slowest set within the default limits (16 MiB of dense flow-style YAML, four files of 51,000
  // descriptors) took 54 s on a busy 2-core machine; a real config takes well under a second.
  configReloadTimeout: {
    env: 'CONFIG_RELOAD_TIMEOUT',
    kind: 'duration',
    default: '60s',
    help: 'longest a reload may spend reading and checking the config (in the reload host) before it is stopped and refused',
  },
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
  memoryStoreMaxBytes: {
    env: 'MEMORY_STORE_MAX_BYTES',
    kind: 'size',
    default: '0',
    zeroMeans: 'half the V8 heap limit',
    help:
      'memory store budget in estimated bytes (keys, states, columns, index); when full, the counters whose loss forgives ' +
      'the fewest hits are evicted, those at or over their limit last. 0: half the V8 heap limit (--max-old-space-size)',
  },
  grpcServerUseTls: { env: 'GRPC_SERVER_USE_TLS', kind: 'bool', default: 'false', help: 'serve gRPC over TLS (needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY)' },
  grpcServerTlsCert: { env: 'GRPC_SERVER_TLS_CERT', kind: 'string', default: '', help: 'PEM certificate chain file of the gRPC server (read at start, then re-read, see GRPC_SERVER_TLS_RELOAD_INTERVAL)' },
  grpcServerTlsKey: { env: 'GRPC_SERVER_TLS_KEY', kind: 'string', default: '', help: 'PEM private key file of the gRPC server (read at start, then re-read)' },
  grpcClientTlsCacert: { env: 'GRPC_CLIENT_TLS_CACERT', kind: 'string', default: '', help: 'PEM CA file; when set, clients must present a certificate it signed (mutual TLS; re-read too)' },
  grpcServerTlsReloadInterval: {
    env: 'GRPC_SERVER_TLS_RELOAD_INTERVAL',
    kind: 'duration',
    default: '1m',
    help:
      'how often the gRPC TLS files are re-read; new connections get new material once it checks out (certificate and key ' +
      'match, CA parses), and material that does not keeps the last good one serving. 0: read once at start',
  },
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

/** Lines for `sluice serve --help`. */
export function settingsHelp(): string[] {
  return (Object.values(SETTING_SPECS) as SettingSpec[]).map(
    (spec) => `  --${flagName(spec).padEnd(30)} ${spec.env.padEnd(30)} ${spec.help} (default: ${spec.default === '' ? 'none' : spec.default})`,
  );
}
