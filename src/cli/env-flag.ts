import type { ConfigSizeLimits } from '../config/config-files';
import { SETTING_SPECS } from '../settings/setting-specs';
import { describe, parseBool, parseValue, type SettingSpec } from '../settings/values';

/**
 * A boolean environment variable as `serve` reads it (settings/values.ts): unset or empty is
 * false; undefined when the text is no boolean, for the command to report in its own way.
 */
export function envFlag(env: Readonly<Record<string, string | undefined>>, name: string): boolean | undefined {
  const text = env[name];
  return text === undefined || text === '' ? false : parseBool(text);
}

/**
 * CONFIG_MAX_FILE_BYTES and CONFIG_MAX_DIRECTORY_BYTES as `serve` reads them, so `check-config`
 * and `explain` refuse exactly what a running sluice would; a message when one is no valid count.
 */
export function envConfigLimits(env: Readonly<Record<string, string | undefined>>): ConfigSizeLimits | string {
  const read = (spec: SettingSpec): number | string => {
    const text = env[spec.env];
    const value = parseValue(spec, text === undefined || text === '' ? spec.default : text);
    return typeof value === 'number' ? value : `${spec.env} must be ${describe(spec)}, got '${text ?? ''}'`;
  };
  const maxFileBytes = read(SETTING_SPECS.configMaxFileBytes);
  const maxDirectoryBytes = read(SETTING_SPECS.configMaxDirectoryBytes);
  if (typeof maxFileBytes === 'string') return maxFileBytes;
  if (typeof maxDirectoryBytes === 'string') return maxDirectoryBytes;
  return { maxFileBytes, maxDirectoryBytes };
}
