import * as path from 'node:path';
import type { LogLevel } from '../logging/logger';

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
  readonly chargeRejectedHits: boolean;
  readonly maxDescriptors: number;
  readonly maxEntries: number;
  readonly maxKeyLength: number;
  readonly maxValueLength: number;
  readonly maxHitsAddend: number;
  readonly grpcMaxReceiveMessageBytes: number;
  readonly shutdownGraceMs: number;
}

type Kind = 'string' | 'port' | 'count' | 'bool' | 'level';

interface SettingSpec {
  readonly env: string;
  readonly kind: Kind;
  readonly default: string;
  readonly help: string;
  /** The flag, when it is not the env name in kebab case. */
  readonly flag?: string;
}

const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

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
  chargeRejectedHits: { env: 'CHARGE_REJECTED_HITS', kind: 'bool', default: 'false', help: "count hits of rejected requests too (the reference's counting)" },
  maxDescriptors: { env: 'MAX_DESCRIPTORS_PER_REQUEST', kind: 'count', default: '64', help: 'most descriptors in one request' },
  maxEntries: { env: 'MAX_ENTRIES_PER_DESCRIPTOR', kind: 'count', default: '16', help: 'most entries in one descriptor' },
  maxKeyLength: { env: 'MAX_KEY_LENGTH', kind: 'count', default: '256', help: 'longest entry key, in characters' },
  maxValueLength: { env: 'MAX_VALUE_LENGTH', kind: 'count', default: '1024', help: 'longest entry value (and domain), in characters' },
  maxHitsAddend: { env: 'MAX_HITS_ADDEND', kind: 'count', default: '1000000', help: 'largest hits_addend, request or descriptor level' },
  grpcMaxReceiveMessageBytes: { env: 'GRPC_MAX_RECV_MSG_SIZE', kind: 'count', default: '1048576', help: 'largest gRPC request, in bytes' },
  shutdownGraceMs: { env: 'SHUTDOWN_GRACE_MS', kind: 'count', default: '10000', help: 'on SIGTERM, how long in-flight calls may take before the server closes anyway' },
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
    const parsed = parseValue(spec.kind, text);
    if (parsed === undefined) {
      problems.push(`${source}: invalid value '${text}' (${describe(spec.kind)})`);
      return parseValue(spec.kind, spec.default)!;
    }
    return parsed;
  };

  const str = (name: SettingName): string => read(name) as string;
  const num = (name: SettingName): number => read(name) as number;
  const bool = (name: SettingName): boolean => read(name) as boolean;

  const configDir =
    str('config') !== ''
      ? path.resolve(str('config'))
      : path.resolve(str('runtimeRoot'), str('runtimeSubdirectory'), str('runtimeAppdirectory'));

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
    chargeRejectedHits: bool('chargeRejectedHits'),
    maxDescriptors: num('maxDescriptors'),
    maxEntries: num('maxEntries'),
    maxKeyLength: num('maxKeyLength'),
    maxValueLength: num('maxValueLength'),
    maxHitsAddend: num('maxHitsAddend'),
    grpcMaxReceiveMessageBytes: num('grpcMaxReceiveMessageBytes'),
    shutdownGraceMs: num('shutdownGraceMs'),
  };
  if (problems.length > 0) throw new SettingsError(problems);
  return settings;
}

function parseValue(kind: Kind, text: string): string | number | boolean | undefined {
  switch (kind) {
    case 'string':
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
    case 'level': {
      const lower = text.toLowerCase();
      return (LOG_LEVELS as readonly string[]).includes(lower) ? lower : undefined;
    }
  }
}

function describe(kind: Kind): string {
  switch (kind) {
    case 'string':
      return 'text';
    case 'bool':
      return 'true or false';
    case 'port':
      return 'a port from 0 to 65535';
    case 'count':
      return 'a positive integer';
    case 'level':
      return LOG_LEVELS.join(', ');
  }
}

/** Lines for `sluice serve --help`. */
export function settingsHelp(): string[] {
  return (Object.values(SETTING_SPECS) as SettingSpec[]).map(
    (spec) => `  --${flagName(spec).padEnd(30)} ${spec.env.padEnd(30)} ${spec.help} (default: ${spec.default === '' ? 'none' : spec.default})`,
  );
}
