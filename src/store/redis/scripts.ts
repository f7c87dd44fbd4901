import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** A Lua script as sluice runs it (through ScriptCaller, script-call.ts). */
export interface LuaScript {
  /** Entry file, relative to the lua/ directory. */
  readonly file: string;
  /** The assembled text, includes resolved: exactly what Redis runs. */
  readonly text: string;
  /** SHA1 of `text`: the EVALSHA name, and the script's version. */
  readonly sha1: string;
}

export interface LuaScripts {
  readonly decide: LuaScript;
  readonly refund: LuaScript;
}

const INCLUDE = /^--@include\s+(\S+)\s*$/;

/**
 * The lua/ directory: the first ancestor of this file's directory that holds `lua/decide.lua`.
 * Walking up works from src/store/redis (ts-jest), dist/src/store/redis (compiled) and an
 * installed package alike.
 */
export function findLuaDir(start: string = __dirname): string {
  let dir = resolve(start);
  for (;;) {
    const candidate = join(dir, 'lua');
    if (existsSync(join(candidate, 'decide.lua'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`lua/decide.lua not found in any parent directory of ${start}`);
    dir = parent;
  }
}

/**
 * Reads an entry script and replaces each `--@include <path>` line (relative to the lua/ dir)
 * with that file, recursively. A file is included once per script, so shared helpers can be
 * included by several files without being defined twice.
 */
export function assembleScript(luaDir: string, file: string): string {
  const included = new Set<string>();
  const expand = (relative: string, from: string): string => {
    const path = resolve(luaDir, relative);
    if (included.has(path)) return '';
    included.add(path);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new Error(`Lua include ${relative} (from ${from}) cannot be read`, { cause: err });
    }
    return text
      .split('\n')
      .map((line) => {
        const include = INCLUDE.exec(line);
        return include === null ? line : expand(include[1]!, relative).replace(/\n$/, '');
      })
      .join('\n');
  };
  return expand(file, file);
}

let cached: LuaScripts | undefined;

/** Every script, assembled once per process (the files are read at first use, i.e. startup). */
export function loadScripts(): LuaScripts {
  if (cached === undefined) {
    const luaDir = findLuaDir();
    const script = (file: string): LuaScript => {
      const text = assembleScript(luaDir, file);
      return { file, text, sha1: createHash('sha1').update(text).digest('hex') };
    };
    cached = { decide: script('decide.lua'), refund: script('refund.lua') };
  }
  return cached;
}
