import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Logger } from '../logging/logger';
import type { ConfigHolder } from './config-holder';
import type { ConfigLoader, LoadOutcome } from './reload-host-loader';
import type { ConfigProblem, RateLimitConfig } from './types';

/**
 * Hot reload of the config directory.
 *
 * Like the reference, any event re-reads *every* file, and a file set is accepted or refused
 * whole: a broken change is logged with all its problems, counted, and the last good config keeps
 * serving. Events are debounced, so the kubelet's multi-step ConfigMap update (new `..<timestamp>`
 * directory, new `..data_tmp` link, rename over `..data`, old directory removed) is one reload.
 *
 * Loading happens off the request path: the `loader` reads, parses and validates the set in the
 * reload host, a process beside sluice's (ReloadHostLoader), and only a finished config reaches
 * `holder.set()`. A request reads the holder once, so every call is decided wholly by the old or
 * wholly by the new config, and none waits.
 *
 * What is watched (node's fs.watch, i.e. inotify on Linux; see `Watch` below for why not chokidar):
 * - `watchRoot` set (RUNTIME_WATCH_ROOT=true, the reference default): only the entry named like
 *   RUNTIME_ROOT in its parent directory, so a swap of that symlink reloads and edits inside the
 *   tree do not (the reference's deploy model).
 * - otherwise: the config directory itself (file edits, additions, removals, and the `..data`
 *   swap, which happens in that directory), every subdirectory that the loader reads, and the
 *   directory's own entry in its parent (the directory being replaced or being a swapped link).
 *   Hidden entries are not read with RUNTIME_IGNOREDOTFILES, but events about them (`..data`) still
 *   trigger the reload.
 */
export interface ConfigWatcherOptions {
  /** The directory the config is loaded from. */
  readonly dir: string;
  /** When set, reload only when this path (a symlink) is swapped. */
  readonly watchRoot?: string | undefined;
  readonly ignoreDotFiles: boolean;
  /** Reads and checks the directory (off the main thread). */
  readonly loader: ConfigLoader;
  /** Events closer together than this make one reload. */
  readonly debounceMs: number;
  readonly holder: ConfigHolder;
  readonly logger: Logger;
  /** Told about every reload attempt's result (metrics). */
  readonly listener?: ReloadListener;
  /**
   * A failed read (a file that vanished mid-swap, or was rewritten while read) is retried this many
   * times, `debounceMs` apart, before the reload counts as failed. Default 3.
   */
  readonly readRetries?: number;
}

export interface ReloadListener {
  onReloadSuccess(config: RateLimitConfig): void;
  onReloadError(problems: readonly ConfigProblem[]): void;
}

export type ReloadResult =
  | { readonly ok: true; readonly config: RateLimitConfig }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[] };

/** Longest a stream of events can postpone a reload, as a multiple of the debounce. */
const MAX_WAIT_FACTOR = 5;
const DEFAULT_READ_RETRIES = 3;

export class ConfigWatcher {
  private readonly watches = new Map<string, Watch>();
  private timer: NodeJS.Timeout | undefined;
  private firstEventAt: number | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private closed = false;
  /** Aborted on close(): a reload's worker is stopped rather than waited for. */
  private readonly closing = new AbortController();
  /** The serving config's rules as JSON by id, for the reload log's change summary. */
  private rulesJson: ReadonlyMap<string, string> | undefined;

  constructor(private readonly options: ConfigWatcherOptions) {
    // Before start(): the initial config's rules are compared at the first reload, and computing
    // them then would be main-thread work on a large config while calls are being answered.
    const initial = options.holder.current()?.rules();
    this.rulesJson = initial === undefined ? undefined : rulesById(initial, initial.map((rule) => JSON.stringify(rule)));
  }

  /** Starts watching. The initial config is loaded by the caller, before this. */
  start(): void {
    const { watchRoot, dir, logger } = this.options;
    this.syncWatches(true);
    if (watchRoot !== undefined) {
      logger.debug(
        { watchRoot, configDir: dir },
        'config reloads when RUNTIME_ROOT is swapped (RUNTIME_WATCH_ROOT=true); set RUNTIME_WATCH_ROOT=false to reload on file changes',
      );
    } else {
      logger.debug({ configDir: dir, watching: [...this.watches.keys()] }, 'watching the config directory for changes');
    }
  }

  /** Reloads now (no debounce); resolves when this reload is done. */
  async reloadNow(): Promise<ReloadResult> {
    await this.running;
    // Asked for now: the caller says the files are ready, so none is held back as still being written.
    const result = await this.options.loader.load(this.closing.signal);
    this.apply(result);
    return result.ok ? { ok: true, config: result.config } : { ok: false, problems: result.problems };
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closing.abort();
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    for (const watch of this.watches.values()) watch.close();
    this.watches.clear();
    await this.running;
  }

  /** An fs event: (re)arm the debounce timer, bounded so a steady stream still reloads. */
  private schedule(): void {
    if (this.closed) return;
    const now = Date.now();
    this.firstEventAt ??= now;
    const { debounceMs } = this.options;
    const delay = Math.max(0, Math.min(debounceMs, this.firstEventAt + debounceMs * MAX_WAIT_FACTOR - now));
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.firstEventAt = undefined;
      this.trigger();
    }, delay);
  }

  /** Runs one reload at a time; events during a reload cause exactly one more. */
  private trigger(): void {
    if (this.closed) return;
    if (this.running !== undefined) {
      this.again = true;
      return;
    }
    this.running = this.reloadWithRetries()
      .catch((err: unknown) => this.options.logger.error({ err }, 'config reload failed unexpectedly'))
      .finally(() => {
        this.running = undefined;
        this.syncWatches();
        if (this.again) {
          this.again = false;
          this.trigger();
        }
      });
  }

  private async reloadWithRetries(): Promise<void> {
    const retries = this.options.readRetries ?? DEFAULT_READ_RETRIES;
    // A reload comes at least a debounce after the last event it heard of: a file changed more
    // recently than that is still being written (a writer pausing between writes), not torn-read.
    const settleMs = this.options.debounceMs;
    let result = await this.options.loader.load(this.closing.signal, settleMs);
    for (let attempt = 0; attempt < retries && !result.ok && result.unstable === true && !this.closed; attempt++) {
      // Mid-swap a listed file can vanish before it is read; the swap's next event would reload
      // anyway, but one that never comes (the last step) must not leave a spurious error.
      this.options.logger.debug({ problems: result.problems.map((p) => p.message) }, 'config read failed; retrying');
      await delay(this.options.debounceMs);
      result = await this.options.loader.load(this.closing.signal, settleMs);
    }
    if (!this.closed) this.apply(result);
  }

  private apply(result: LoadOutcome): void {
    const { holder, logger, listener } = this.options;
    if (result.ok) {
      const previous = this.rulesJson;
      holder.set(result.config);
      this.rulesJson = rulesById(result.config.rules(), result.fingerprints);
      logger.info(
        { domains: result.config.domains(), limits: result.config.rules().length, ...ruleChanges(previous, this.rulesJson) },
        'config reloaded',
      );
      listener?.onReloadSuccess(result.config);
    } else {
      logger.error(
        { problems: result.problems.map((p) => p.message) },
        'config reload refused; the previous config keeps serving',
      );
      listener?.onReloadError(result.problems);
    }
  }

  /**
   * Watches exactly the directories that should be watched now; the tree may have changed. A
   * directory that is new since the last sync may have received files before its watch existed,
   * so it causes one more reload.
   */
  private syncWatches(initial = false): void {
    if (this.closed) return;
    const wanted = new Map<string, string | undefined>();
    const { watchRoot, dir } = this.options;
    if (watchRoot !== undefined) {
      wanted.set(path.dirname(watchRoot), path.basename(watchRoot));
    } else {
      wanted.set(path.dirname(dir), path.basename(dir));
      for (const sub of this.directoriesToWatch(dir)) wanted.set(sub, undefined);
    }
    for (const [watched, watch] of this.watches) {
      if (!wanted.has(watched) || watch.dead || watch.only !== wanted.get(watched)) {
        watch.close();
        this.watches.delete(watched);
      }
    }
    for (const [target, only] of wanted) {
      if (this.watches.has(target)) continue;
      const watch = Watch.open(target, only, () => this.schedule(), this.options.logger);
      if (watch === undefined) continue;
      this.watches.set(target, watch);
      if (!initial && only === undefined) this.schedule();
    }
  }

  /**
   * `dir` and every directory below it that the loader reads (hidden ones skipped as it does, and
   * links out of `dir` not followed, as it refuses them): this walk runs on the main thread, and a
   * link to `/etc` would have it list a whole tree between two calls.
   */
  private directoriesToWatch(dir: string): string[] {
    const found: string[] = [];
    const seen = new Set<string>();
    let root: string;
    try {
      root = fs.realpathSync(dir);
    } catch {
      return [];
    }
    const inside = (real: string): boolean => real === root || real.startsWith(root + path.sep);
    const walk = (current: string): void => {
      let real: string;
      let entries: fs.Dirent[];
      try {
        real = fs.realpathSync(current);
        if (seen.has(real) || !inside(real)) return;
        entries = fs.readdirSync(current, { withFileTypes: true });
      } catch {
        return;
      }
      seen.add(real);
      found.push(current);
      for (const entry of entries) {
        if (this.options.ignoreDotFiles && entry.name.startsWith('.')) continue;
        const full = path.join(current, entry.name);
        let isDirectory = entry.isDirectory();
        if (entry.isSymbolicLink()) {
          try {
            isDirectory = fs.statSync(full).isDirectory();
          } catch {
            isDirectory = false;
          }
        }
        if (isDirectory) walk(full);
      }
    };
    walk(dir);
    return found;
  }
}

/**
 * One fs.watch on a directory. Why node's watcher and not chokidar: chokidar ≥5 is ESM-only and
 * 6 needs Node ≥22 (sluice is CommonJS on Node 20); and what we need is small — any event means
 * "re-read everything", we must *see* events about hidden entries (`..data`) while not *reading*
 * them, and a symlink swap must be seen as an event in the directory that holds the link rather
 * than followed. A directory watch (inotify) does exactly that; the watcher re-syncs its set of
 * watched directories after each reload, which covers subdirectories appearing and vanishing.
 */
class Watch {
  dead = false;

  private constructor(
    private readonly watcher: fs.FSWatcher,
    /** Only events about this entry count; undefined: every event counts. */
    readonly only: string | undefined,
  ) {}

  static open(target: string, only: string | undefined, onEvent: () => void, logger: Logger): Watch | undefined {
    let watch: Watch | undefined;
    try {
      const watcher = fs.watch(target, { persistent: false }, (_event, filename) => {
        if (only !== undefined && filename !== null && filename.toString() !== only) return;
        onEvent();
      });
      watch = new Watch(watcher, only);
      watcher.on('error', (err) => {
        // The directory went away (a replaced tree): the next sync opens what is there now.
        logger.debug({ err, target }, 'config watch ended');
        if (watch !== undefined) watch.dead = true;
        onEvent();
      });
      return watch;
    } catch (err) {
      logger.warn({ err, target }, 'cannot watch for config changes here');
      return undefined;
    }
  }

  close(): void {
    this.dead = true;
    this.watcher.close();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Each rule's JSON by rule id (for a `rate_limits:` node, whose items share an id, the last item's). */
function rulesById(rules: readonly { readonly id: string }[], json: readonly string[]): Map<string, string> {
  const byId = new Map<string, string>();
  rules.forEach((rule, i) => byId.set(rule.id, json[i] ?? ''));
  return byId;
}

/**
 * How a reload changed the rules, by id, for the log line. Rules are compared by their JSON, made
 * by the reload worker, so the main thread only does map lookups.
 */
function ruleChanges(
  previous: ReadonlyMap<string, string> | undefined,
  next: ReadonlyMap<string, string>,
): { added?: number; removed?: number; changed?: number } {
  if (previous === undefined) return {};
  let added = 0;
  let changed = 0;
  for (const [id, json] of next) {
    const old = previous.get(id);
    if (old === undefined) added++;
    else if (old !== json) changed++;
  }
  let removed = 0;
  for (const id of previous.keys()) if (!next.has(id)) removed++;
  return { added, removed, changed };
}
