import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../errors';
import { configProblem, errorText } from './config-problem';
import type { ConfigProblem } from './types';

/**
 * The largest config file, and the most bytes of config in one directory, sluice reads. Parsing
 * takes about 100 bytes of memory per byte of YAML: a 50 MB file dropped into the directory froze
 * the service for seconds and kept 1.8 GB. Real configs are kilobytes; a generated one with ten
 * thousand rules is about 1 MB.
 */
export const MAX_CONFIG_FILE_BYTES = 4 * 1024 * 1024;
export const MAX_CONFIG_DIRECTORY_BYTES = 16 * 1024 * 1024;

const CANNOT_READ_DIRECTORY = 'cannot read config directory';

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
  /**
   * Set when a problem may be a moment of an update rather than the update itself: a directory or
   * file that could not be read (it vanished mid-swap) or a file rewritten while it was read. A
   * reload tries such a set again before it counts as refused.
   */
  readonly unstable: boolean;
}

/** How much a config directory may hold (CONFIG_MAX_FILE_BYTES, CONFIG_MAX_DIRECTORY_BYTES). */
export interface ConfigSizeLimits {
  readonly maxFileBytes: number;
  readonly maxDirectoryBytes: number;
}

export const DEFAULT_CONFIG_SIZE_LIMITS: ConfigSizeLimits = {
  maxFileBytes: MAX_CONFIG_FILE_BYTES,
  maxDirectoryBytes: MAX_CONFIG_DIRECTORY_BYTES,
};

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
export function readConfigDirectory(
  dir: string,
  options: {
    ignoreDotFiles: boolean;
    limits?: ConfigSizeLimits | undefined;
    /** Reloads: a file changed less than this many ms ago is not taken yet (see below). */
    settleMs?: number | undefined;
  },
): ReadConfigDirectory {
  const { maxFileBytes, maxDirectoryBytes } = options.limits ?? DEFAULT_CONFIG_SIZE_LIMITS;
  const problems: ConfigProblem[] = [];
  const files: (ConfigFileRef & ConfigFileContent)[] = [];
  let total = 0;
  let unstable = false;
  const listed = collectConfigFiles(dir, options, problems);
  if (problems.some((problem) => problem.reason.startsWith(CANNOT_READ_DIRECTORY))) unstable = true;
  for (const file of listed) {
    try {
      const before = fs.statSync(file.path);
      if (before.size > maxFileBytes) {
        problems.push(configProblem(file.name, '', `config file is ${before.size} bytes, over the limit of ${maxFileBytes}; not read`));
        continue;
      }
      total += before.size;
      if (total > maxDirectoryBytes) {
        problems.push(configProblem(file.name, '', `config files add up to over ${maxDirectoryBytes} bytes here; not read`));
        break;
      }
      const bytes = fs.readFileSync(file.path);
      const after = fs.statSync(file.path);
      // Rewritten in place while we read it: what we have may be half of each version.
      if (after.size !== before.size || after.mtimeMs !== before.mtimeMs || bytes.length !== after.size) {
        problems.push(configProblem(file.name, '', 'config file changed while it was being read; not taken'));
        unstable = true;
        continue;
      }
      // Read between two writes of a writer that is not done: whole as far as the stats can tell,
      // but perhaps only the first part. A reload comes at least `settleMs` after the last change
      // it heard of, so a younger file is still being written. (An mtime in the future says nothing.)
      const age = Date.now() - after.mtimeMs;
      if (options.settleMs !== undefined && age >= 0 && age < options.settleMs) {
        problems.push(configProblem(file.name, '', `config file changed ${Math.round(age)} ms ago and may still be being written; not taken yet`));
        unstable = true;
        continue;
      }
      let content: string;
      try {
        content = STRICT_UTF8.decode(bytes);
      } catch {
        // Decoding leniently would turn each bad byte into U+FFFD: two different values, one counter.
        const at = firstInvalidUtf8(bytes);
        problems.push(configProblem(file.name, '', `config file is not valid UTF-8 (line ${lineOf(bytes, at)}, byte ${at})`));
        continue;
      }
      files.push({ ...file, content });
    } catch (error) {
      problems.push(configProblem(file.name, '', `cannot read config file: ${errorText(error)}`));
      unstable = true;
    }
  }
  return { files, problems, unstable };
}

function collectConfigFiles(
  dir: string,
  options: { ignoreDotFiles: boolean },
  problems: ConfigProblem[],
): ConfigFileRef[] {
  const root = path.resolve(dir);
  const base = path.dirname(root);
  let realRoot: string;
  try {
    realRoot = fs.realpathSync(root);
  } catch {
    realRoot = root;
  }
  const inside = (real: string): boolean => real === realRoot || real.startsWith(realRoot + path.sep);
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
      problems.push(configProblem(label, '', `${CANNOT_READ_DIRECTORY}: ${errorText(error)}`));
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
          // Links stay inside the config directory (the kubelet's all do): one to /etc would read
          // a whole tree and quote other files' contents in its errors.
          const resolved = fs.realpathSync(full);
          if (!inside(resolved)) {
            problems.push(configProblem(path.relative(base, full).split(path.sep).join('.'), '', 'symlink points outside the config directory; not followed'));
            continue;
          }
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

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Offset of the first byte that does not decode as UTF-8 (a slow scan, only when decoding failed). */
function firstInvalidUtf8(bytes: Buffer): number {
  let low = 0;
  let high = bytes.length;
  // The longest prefix that decodes; a bad sequence starts right after it (at most 3 bytes back).
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (decodesAsPrefix(bytes.subarray(0, mid))) low = mid;
    else high = mid - 1;
  }
  return low;
}

function decodesAsPrefix(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes, { stream: true });
    return true;
  } catch {
    return false;
  }
}

function lineOf(bytes: Buffer, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset; i++) if (bytes[i] === 0x0a) line++;
  return line;
}
