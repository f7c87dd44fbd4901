import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import type { Logger } from '../../../src/logging/logger';

/**
 * A Kubernetes ConfigMap volume, updated the way the kubelet's AtomicWriter does it:
 *
 *     <dir>/..2026_01_01_00_00_01.123/ratelimit.yaml   the payload, in a hidden timestamped directory
 *     <dir>/..data -> ..2026_01_01_00_00_01.123          the one link that is swapped
 *     <dir>/ratelimit.yaml -> ..data/ratelimit.yaml      what the pod sees
 *
 * An update writes a new timestamped directory, points `..data_tmp` at it, renames `..data_tmp`
 * over `..data` (the atomic step), adds links for new files, removes links of dropped files, and
 * finally deletes the old timestamped directory.
 */
export class FakeConfigMapVolume {
  private generation = 0;
  private payloadDir: string | undefined;
  private names: string[] = [];

  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  update(files: Record<string, string>): void {
    this.generation++;
    const payload = `..2026_01_01_00_00_${String(this.generation).padStart(2, '0')}.${100 + this.generation}`;
    fs.mkdirSync(path.join(this.dir, payload));
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(this.dir, payload, name), content);
    const tmp = path.join(this.dir, '..data_tmp');
    fs.symlinkSync(payload, tmp);
    fs.renameSync(tmp, path.join(this.dir, '..data'));
    const next = Object.keys(files);
    for (const name of next) {
      if (!this.names.includes(name)) fs.symlinkSync(path.join('..data', name), path.join(this.dir, name));
    }
    for (const name of this.names) {
      if (!next.includes(name)) fs.unlinkSync(path.join(this.dir, name));
    }
    if (this.payloadDir !== undefined) fs.rmSync(path.join(this.dir, this.payloadDir), { recursive: true, force: true });
    this.payloadDir = payload;
    this.names = next;
  }
}

/**
 * The reference's deploy model: `<root>/current` is a symlink to a versioned tree holding
 * `config/`; a deploy writes a new version and swaps `current` atomically (rename over it).
 */
export class FakeRuntimeRoot {
  private version = 0;

  constructor(readonly base: string) {
    fs.mkdirSync(base, { recursive: true });
  }

  get root(): string {
    return path.join(this.base, 'current');
  }

  /** Writes version N+1 and swaps `current` to it. */
  deploy(files: Record<string, string>): string {
    this.version++;
    const tree = path.join(this.base, `v${this.version}`);
    fs.mkdirSync(path.join(tree, 'config'), { recursive: true });
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(tree, 'config', name), content);
    const tmp = path.join(this.base, 'current_tmp');
    fs.symlinkSync(tree, tmp);
    fs.renameSync(tmp, this.root);
    return path.join(tree, 'config');
  }
}

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A logger whose lines are kept, parsed, for assertions. */
export function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

/** Polls `check` every 10 ms until it returns true; rejects after `timeoutMs`. Resolves with the time taken. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const started = Date.now();
  for (;;) {
    if (await check()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
