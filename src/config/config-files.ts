import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../errors';
import { configProblem, errorText } from './config-problem';
import type { ConfigProblem } from './types';

export interface ConfigFileRef {
  /** The reference's file name for messages: path relative to the config dir's parent, `/` → `.`. */
  readonly name: string;
  readonly path: string;
}

export interface ConfigFileContent {
  readonly name: string;
  readonly content: string;
}

export interface ReadConfigDirectory {
  readonly files: (ConfigFileRef & ConfigFileContent)[];
  readonly problems: ConfigProblem[];
}

/**
 * Every regular file under `dir`, recursively and through symlinks (ConfigMap volumes are symlinks),
 * sorted by path. Like the reference's runtime loader, any file counts, not only `*.yaml`.
 * Throws `ConfigError` when a directory cannot be read.
 */
export function listConfigFiles(dir: string, options: { ignoreDotFiles: boolean }): ConfigFileRef[] {
  const problems: ConfigProblem[] = [];
  const files = collectConfigFiles(dir, options, problems);
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return files;
}

/** Lists and reads the files under `dir`, collecting problems instead of throwing. */
export function readConfigDirectory(dir: string, options: { ignoreDotFiles: boolean }): ReadConfigDirectory {
  const problems: ConfigProblem[] = [];
  const files: (ConfigFileRef & ConfigFileContent)[] = [];
  for (const file of collectConfigFiles(dir, options, problems)) {
    try {
      files.push({ ...file, content: fs.readFileSync(file.path, 'utf8') });
    } catch (error) {
      problems.push(configProblem(file.name, '', `cannot read config file: ${errorText(error)}`));
    }
  }
  return { files, problems };
}

function collectConfigFiles(
  dir: string,
  options: { ignoreDotFiles: boolean },
  problems: ConfigProblem[],
): ConfigFileRef[] {
  const root = path.resolve(dir);
  const base = path.dirname(root);
  const found: ConfigFileRef[] = [];
  // Real paths of the directories being walked: a symlink back to one of them would never end.
  const ancestors = new Set<string>();

  const walk = (current: string, label: string): void => {
    let real: string;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(current, { withFileTypes: true });
      real = fs.realpathSync(current);
    } catch (error) {
      problems.push(configProblem(label, '', `cannot read config directory: ${errorText(error)}`));
      return;
    }
    if (ancestors.has(real)) {
      return;
    }
    ancestors.add(real);
    for (const entry of entries) {
      // Skips the kubelet's `..data` link and `..<timestamp>` directory, which hold a second copy.
      if (options.ignoreDotFiles && entry.name.startsWith('.')) {
        continue;
      }
      const full = path.join(current, entry.name);
      let isDirectory = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const target = fs.statSync(full);
          isDirectory = target.isDirectory();
          isFile = target.isFile();
        } catch {
          // A dangling link (e.g. mid-swap of `..data`) has nothing to load.
          continue;
        }
      }
      if (isDirectory) {
        walk(full, full);
      } else if (isFile) {
        found.push({ name: path.relative(base, full).split(path.sep).join('.'), path: full });
      }
    }
    ancestors.delete(real);
  };

  walk(root, dir);
  return found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
