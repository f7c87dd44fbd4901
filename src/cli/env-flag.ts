import { parseBool } from '../settings/values';

/**
 * A boolean environment variable as `serve` reads it (settings/values.ts): unset or empty is
 * false; undefined when the text is no boolean, for the command to report in its own way.
 */
export function envFlag(env: Readonly<Record<string, string | undefined>>, name: string): boolean | undefined {
  const text = env[name];
  return text === undefined || text === '' ? false : parseBool(text);
}
