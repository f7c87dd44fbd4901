import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './envoy-model';

/**
 * The root Dockerfile, parsed the way the Docker builder reads it (enough of it for our file):
 * `#` comments, `\` line continuations, one stage per FROM, and each instruction's arguments in
 * exec (JSON array) or shell form. No Docker engine here; this is what the tests can check.
 */

export interface Instruction {
  readonly keyword: string;
  /** The text after the keyword, continuations joined. */
  readonly raw: string;
  /** Exec form (`["a", "b"]`) parsed; undefined for shell form. */
  readonly exec?: readonly string[];
  /** 1-based line of the instruction. */
  readonly line: number;
}

export interface Stage {
  /** `FROM <image> [AS <name>]`. */
  readonly image: string;
  readonly name?: string;
  readonly instructions: readonly Instruction[];
}

export function parseDockerfile(text: string): Stage[] {
  const instructions: Instruction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const first = lines[i] ?? '';
    if (first.trim() === '' || first.trim().startsWith('#')) continue;
    const start = i;
    let joined = first;
    while (/\\\s*$/.test(joined) && i + 1 < lines.length) {
      i++;
      const next = lines[i] ?? '';
      if (next.trim().startsWith('#')) continue;
      joined = `${joined.replace(/\\\s*$/, '')} ${next.trim()}`;
    }
    const match = /^\s*(\w+)\s+(.*)$/.exec(joined);
    if (match === null) throw new Error(`Dockerfile line ${start + 1}: not an instruction: ${joined}`);
    const raw = match[2]!.trim();
    let exec: string[] | undefined;
    if (raw.startsWith('[')) {
      const parsed: unknown = JSON.parse(raw);
      if (!Array.isArray(parsed) || !parsed.every((p) => typeof p === 'string')) {
        throw new Error(`Dockerfile line ${start + 1}: exec form must be a JSON array of strings`);
      }
      exec = parsed;
    }
    instructions.push({ keyword: match[1]!.toUpperCase(), raw, ...(exec !== undefined && { exec }), line: start + 1 });
  }
  const stages: { image: string; name?: string; instructions: Instruction[] }[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.raw);
      if (from === null) throw new Error(`Dockerfile line ${instruction.line}: bad FROM`);
      stages.push({ image: from[1]!, ...(from[2] !== undefined && { name: from[2] }), instructions: [] });
    } else if (instruction.keyword === 'ARG' && stages.length === 0) {
      continue;
    } else {
      const stage = stages[stages.length - 1];
      if (stage === undefined) throw new Error(`Dockerfile line ${instruction.line}: ${instruction.keyword} before FROM`);
      stage.instructions.push(instruction);
    }
  }
  return stages;
}

export function readDockerfile(relative = 'Dockerfile'): Stage[] {
  return parseDockerfile(fs.readFileSync(path.join(ROOT, relative), 'utf8'));
}

/** The last instruction of `keyword` in `stage` (the one in force), if any. */
export function last(stage: Stage, keyword: string): Instruction | undefined {
  return [...stage.instructions].reverse().find((i) => i.keyword === keyword);
}

export function all(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

/** `COPY [--from=x] src... dest`, shell form (what our Dockerfile uses). */
export interface Copy {
  readonly from?: string;
  readonly sources: readonly string[];
  readonly dest: string;
}

export function copies(stage: Stage): Copy[] {
  return all(stage, 'COPY').map((c) => {
    const words = c.raw.split(/\s+/);
    const fromFlag = words[0]?.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
    const dest = words.pop();
    if (dest === undefined || words.length === 0) throw new Error(`Dockerfile line ${c.line}: COPY needs a source and a destination`);
    return { ...(fromFlag !== undefined && { from: fromFlag }), sources: words, dest };
  });
}

/** `HEALTHCHECK [--opt=v ...] CMD <shell command>`. */
export function healthcheck(stage: Stage): { options: Record<string, string>; command: string } | undefined {
  const h = last(stage, 'HEALTHCHECK');
  if (h === undefined) return undefined;
  const match = /^((?:--\w[\w-]*=\S+\s+)*)CMD\s+(.+)$/.exec(h.raw);
  if (match === null) throw new Error(`Dockerfile line ${h.line}: HEALTHCHECK must be [options] CMD <command>`);
  const options = Object.fromEntries(
    (match[1] ?? '')
      .trim()
      .split(/\s+/)
      .filter((o) => o !== '')
      .map((o) => o.slice(2).split('=') as [string, string]),
  );
  return { options, command: match[2]! };
}

/**
 * Whether `.dockerignore` keeps `file` (a context-relative path) in the build context: its
 * patterns in order, the last match wins, `!` re-includes (Docker's rule). Patterns here are
 * plain names or `*`, which is all ours uses; anything else is refused so the check stays honest.
 */
export function inBuildContext(file: string, dockerignore: string): boolean {
  let included = true;
  for (const rawLine of dockerignore.split('\n')) {
    const line = rawLine.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negate = line.startsWith('!');
    const pattern = (negate ? line.slice(1) : line).replace(/^\/+|\/+$/g, '');
    if (/[?[\]]/.test(pattern) || (pattern.includes('*') && pattern !== '*')) {
      throw new Error(`.dockerignore: pattern ${line} is more than this check understands`);
    }
    const matches = pattern === '*' || file === pattern || file.startsWith(`${pattern}/`);
    if (matches) included = negate;
  }
  return included;
}
