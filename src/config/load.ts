import { ConfigError } from '../errors';
import { readConfigDirectory, type ConfigFileContent, type ConfigSizeLimits } from './config-files';
import { capProblems } from './config-problem';
import { FileParser } from './file-parser';
import { FileSetBuilder } from './file-set-builder';
import type { ConfigProblem, RateLimitConfig } from './types';

export {
  listConfigFiles,
  readConfigDirectory,
  type ConfigSizeLimits,
  type ConfigFileContent,
  type ConfigFileRef,
  type ReadConfigDirectory,
} from './config-files';
export { configProblem, errorText } from './config-problem';

export interface ParsedConfigFiles {
  /** Undefined whenever `problems` is not empty: a file set is accepted or rejected whole. */
  readonly config: RateLimitConfig | undefined;
  readonly problems: ConfigProblem[];
}

/**
 * Validates a whole file set and builds the lookup tree. Pure: no I/O. Reports every problem in
 * every file rather than stopping at the first, so one `check-config` run shows all of them.
 */
function parseFilesUncapped(
  files: readonly ConfigFileContent[],
  options: { mergeDomainConfig: boolean },
): ParsedConfigFiles {
  const problems: ConfigProblem[] = [];
  const set = new FileSetBuilder(options.mergeDomainConfig);
  for (const file of files) {
    new FileParser(file.name, set, problems).parse(file.content);
  }
  return problems.length > 0 ? { config: undefined, problems } : { config: set.build(), problems };
}

/** Every problem of a file set, or its config; at most MAX_PROBLEMS_SHOWN problems are reported. */
export function parseConfigFiles(files: readonly ConfigFileContent[], options: { mergeDomainConfig: boolean }): ParsedConfigFiles {
  const parsed = parseFilesUncapped(files, options);
  return { ...parsed, problems: capProblems(parsed.problems) };
}

export interface InspectedConfigDirectory extends ParsedConfigFiles {
  /** Files read from the directory (for summaries). */
  readonly fileCount: number;
  /** A file or directory vanished or changed while read: worth reading again (see ReadConfigDirectory). */
  readonly unstable: boolean;
}

export interface ConfigDirectoryOptions {
  readonly ignoreDotFiles: boolean;
  readonly mergeDomainConfig: boolean;
  /** Defaults: MAX_CONFIG_FILE_BYTES, MAX_CONFIG_DIRECTORY_BYTES. */
  readonly limits?: ConfigSizeLimits | undefined;
  /** Reloads only: files changed less than this many ms ago are still being written (unstable). */
  readonly settleMs?: number | undefined;
}

/**
 * Reads and validates `dir` without throwing: every read and parse problem together, and the
 * config when there is none. What `loadConfigDirectory`, `check-config` and `explain` share.
 */
export function inspectConfigDirectory(dir: string, options: ConfigDirectoryOptions): InspectedConfigDirectory {
  const read = readConfigDirectory(dir, options);
  const parsed = parseFilesUncapped(read.files, options);
  const problems = capProblems([...read.problems, ...parsed.problems]);
  return {
    fileCount: read.files.length,
    unstable: read.unstable,
    config: problems.length > 0 ? undefined : parsed.config,
    problems,
  };
}

/** Loads `dir` as one config; throws `ConfigError` listing every problem. No files ⇒ no domains. */
export function loadConfigDirectory(dir: string, options: ConfigDirectoryOptions): RateLimitConfig {
  const { config, problems } = inspectConfigDirectory(dir, options);
  if (config === undefined) throw new ConfigError(problems);
  return config;
}
