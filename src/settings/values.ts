import type { LogLevel } from '../logging/logger';

// Value kinds: how one setting's text becomes its value, and how a bad one is described.

export type Kind = 'string' | 'secret' | 'port' | 'count' | 'count-or-auto' | 'size' | 'bool' | 'level' | 'duration' | 'choice' | 'ratio';

export interface SettingSpec {
  readonly env: string;
  readonly kind: Kind;
  readonly default: string;
  readonly help: string;
  /** The flag, when it is not the env name in kebab case. */
  readonly flag?: string;
  /** For `size`: what 0 means, when it does not turn the setting off. */
  readonly zeroMeans?: string;
  /** For `choice`: the accepted values, lower case; input is matched case-insensitively. */
  readonly choices?: readonly string[];
}

export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export interface Sourced {
  readonly value: string;
  /** The variable or flag the value came from, for messages. */
  readonly source: string;
}

/**
 * The content of the file a setting names, or undefined when the setting is empty or the file
 * cannot be read (reported as `<source>: cannot read '<path>': <errno code>`).
 */
export function readSettingFile<T>(file: Sourced, readFile: (path: string) => T, problems: string[]): T | undefined {
  if (file.value === '') return undefined;
  try {
    return readFile(file.value);
  } catch (err) {
    // The errno code says it all (ENOENT, EACCES); the message would repeat the path.
    const { code, message } = err as { code?: unknown; message?: unknown };
    problems.push(`${file.source}: cannot read '${file.value}': ${String(code ?? message ?? err)}`);
    return undefined;
  }
}

/** true / 1 / yes / on, false / 0 / no / off, any case; undefined for anything else. */
export function parseBool(text: string): boolean | undefined {
  const lower = text.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(lower)) return true;
  if (['false', '0', 'no', 'off'].includes(lower)) return false;
  return undefined;
}

export function parseValue(spec: SettingSpec, text: string): string | number | boolean | undefined {
  switch (spec.kind) {
    case 'string':
    case 'secret':
      return text;
    case 'bool':
      return parseBool(text);
    case 'port': {
      const n = /^\d+$/.test(text) ? Number(text) : NaN;
      return n >= 0 && n <= 65535 ? n : undefined;
    }
    case 'count': {
      const n = /^\d+$/.test(text) ? Number(text) : NaN;
      return Number.isSafeInteger(n) && n > 0 ? n : undefined;
    }
    case 'count-or-auto': {
      if (text.toLowerCase() === 'auto') return 'auto';
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

export function describe(spec: SettingSpec): string {
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
    case 'count-or-auto':
      return "'auto' or a positive integer";
    case 'size':
      return spec.zeroMeans === undefined ? 'a non-negative integer (0 turns it off)' : `a non-negative integer (0: ${spec.zeroMeans})`;
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
