import { parseArgs } from 'node:util';
import { errorText, inspectConfigDirectory } from '../config/load';
import { envConfigLimits, envFlag } from './env-flag';

export interface CheckConfigIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

const USAGE = 'usage: sluice check-config <dir> [--merge-domain-config] [--ignore-dotfiles]';

/**
 * `sluice check-config <dir>`: validates a config directory offline, like the reference's
 * `ratelimit_config_check`, but prints every problem instead of the first.
 * Returns the exit code: 0 valid, 1 invalid, 2 usage error.
 */
export function runCheckConfig(
  args: readonly string[],
  io: CheckConfigIo,
  env: Readonly<Record<string, string | undefined>> = process.env,
): number {
  let values: { 'merge-domain-config'?: boolean; 'ignore-dotfiles'?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...args],
      options: {
        'merge-domain-config': { type: 'boolean' },
        'ignore-dotfiles': { type: 'boolean' },
      },
      allowPositionals: true,
      strict: true,
    }));
  } catch (error) {
    io.err(`sluice check-config: ${errorText(error)}`);
    io.err(USAGE);
    return 2;
  }
  const dir = positionals[0];
  if (dir === undefined || positionals.length > 1) {
    io.err(USAGE);
    return 2;
  }

  const mergeDomainConfig = values['merge-domain-config'] === true || reportedEnvFlag(env, 'MERGE_DOMAIN_CONFIG', io);
  const ignoreDotFiles = values['ignore-dotfiles'] === true || reportedEnvFlag(env, 'RUNTIME_IGNOREDOTFILES', io);
  const limits = envConfigLimits(env);
  if (typeof limits === 'string') io.err(`sluice check-config: ${limits}`);
  if (mergeDomainConfig === undefined || ignoreDotFiles === undefined || typeof limits === 'string') {
    io.err(USAGE);
    return 2;
  }

  const { config, problems, fileCount } = inspectConfigDirectory(dir, { ignoreDotFiles, mergeDomainConfig, limits });
  if (config === undefined) {
    problems.forEach((problem) => io.err(problem.message));
    return 1;
  }

  const domains = config.domains();
  const domainList = domains.length > 0 ? ` (${domains.join(', ')})` : '';
  io.out(
    `config OK: ${plural(fileCount, 'file')}, ${plural(domains.length, 'domain')}${domainList}, ` +
      plural(config.rules().length, 'limit'),
  );
  return 0;
}

/** The env flag's value; undefined (after reporting) when it is set to something unrecognisable. */
function reportedEnvFlag(env: Readonly<Record<string, string | undefined>>, name: string, io: CheckConfigIo): boolean | undefined {
  const value = envFlag(env, name);
  if (value === undefined) io.err(`sluice check-config: ${name} must be true or false, got '${env[name] ?? ''}'`);
  return value;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
