import { parseArgs } from 'node:util';
import type { ConfigSizeLimits } from '../config/config-files';
import { explainRequest, formatExplanation } from '../config/explain';
import { errorText, inspectConfigDirectory } from '../config/load';
import { LoadedRateLimitConfig } from '../config/rate-limit-config';
import type { DescriptorEntry } from '../config/types';
import { UsageError, parseDescriptorEntries } from './client';
import { envConfigLimits, envFlag } from './env-flag';

export interface ExplainIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export const EXPLAIN_USAGE = [
  'usage: sluice explain --config DIR --domain D --descriptor k=v[,k2=v2...] [--descriptor ...]',
  '                      [--merge-domain-config] [--ignore-dotfiles]',
  '  offline: loads DIR as `serve` would and, for each descriptor, prints the rule it matches',
  '  and why the others do not (each level tried, depth, whitelists, near misses).',
  '  --descriptor  entries split at "," (write "\\," for a comma in a value), key and value at the first "="',
].join('\n');

/**
 * `sluice explain`: traces descriptors through a config directory, without a server.
 * MERGE_DOMAIN_CONFIG and RUNTIME_IGNOREDOTFILES in `env` apply as for `serve` and `check-config`
 * (a flag turns each on too), so explain reads the same files into the same tree as the server.
 * Returns the exit code: 0 explained (whatever the verdicts), 1 the config does not load
 * (every problem printed), 2 usage error.
 */
export function runExplain(
  args: readonly string[],
  io: ExplainIo,
  env: Readonly<Record<string, string | undefined>> = process.env,
): number {
  let dir: string;
  let domain: string;
  let descriptors: DescriptorEntry[][];
  let mergeDomainConfig: boolean;
  let ignoreDotFiles: boolean;
  let limits: ConfigSizeLimits;
  try {
    let parsed;
    try {
      parsed = parseArgs({
        args: [...args],
        options: {
          config: { type: 'string' },
          domain: { type: 'string' },
          descriptor: { type: 'string', multiple: true },
          'merge-domain-config': { type: 'boolean' },
          'ignore-dotfiles': { type: 'boolean' },
        },
        strict: true,
        allowPositionals: false,
      });
    } catch (error) {
      throw new UsageError(errorText(error));
    }
    const { values } = parsed;
    if (values.config === undefined || values.config === '') throw new UsageError('--config is required');
    if (values.domain === undefined || values.domain === '') throw new UsageError('--domain is required');
    if (values.descriptor === undefined || values.descriptor.length === 0) {
      throw new UsageError('at least one --descriptor is required');
    }
    dir = values.config;
    domain = values.domain;
    descriptors = values.descriptor.map(parseDescriptorEntries);
    mergeDomainConfig = values['merge-domain-config'] === true || flagFromEnv(env, 'MERGE_DOMAIN_CONFIG');
    ignoreDotFiles = values['ignore-dotfiles'] === true || flagFromEnv(env, 'RUNTIME_IGNOREDOTFILES');
    const fromEnv = envConfigLimits(env);
    if (typeof fromEnv === 'string') throw new UsageError(fromEnv);
    limits = fromEnv;
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    io.err(`sluice explain: ${error.message}`);
    io.err(EXPLAIN_USAGE);
    return 2;
  }

  const { config, problems } = inspectConfigDirectory(dir, { ignoreDotFiles, mergeDomainConfig, limits });
  if (config === undefined) {
    problems.forEach((problem) => io.err(problem.message));
    return 1;
  }
  if (!(config instanceof LoadedRateLimitConfig)) throw new Error('explain needs the loaded config tree');

  io.out(`domain ${domain}, config ${dir}`);
  explainRequest(config, domain, descriptors).forEach((explanation, i) => {
    formatExplanation(explanation, i).forEach(io.out);
  });
  return 0;
}

/** An environment flag as `serve` reads it; anything unrecognised is a usage error. */
function flagFromEnv(env: Readonly<Record<string, string | undefined>>, name: string): boolean {
  const value = envFlag(env, name);
  if (value === undefined) throw new UsageError(`${name} must be true or false, got '${env[name] ?? ''}'`);
  return value;
}
