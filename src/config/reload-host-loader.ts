import { type ChildProcess, fork } from 'node:child_process';
import type { Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { errorText } from './config-problem';
import { configFromSnapshot } from './config-snapshot';
import { type RefusedReload, type ReloadHostReply, type ReloadHostRequest, type ReloadReply, type ReloadRequest, refusedReload } from './reload-job';
import type { ConfigProblem, RateLimitConfig } from './types';

/** A reload's result: the checked config, or why not. */
export type LoadOutcome =
  | { readonly ok: true; readonly config: RateLimitConfig; readonly fingerprints: readonly string[] }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[]; readonly unstable?: boolean };

/**
 * Reads and checks the config directory for a reload. Never rejects; `signal` abandons the load;
 * files changed less than `settleMs` ago are not taken yet (an unstable outcome, worth retrying).
 */
export interface ConfigLoader {
  load(signal?: AbortSignal, settleMs?: number): Promise<LoadOutcome>;
}

export interface ReloadHostLoaderOptions {
  readonly request: ReloadRequest;
  /** Old-generation heap of each reload worker (resourceLimits.maxOldGenerationSizeMb). */
  readonly heapMb: number;
  /** The reload is refused, and its worker stopped, after this long. */
  readonly timeoutMs: number;
  /** The compiled entry of the reload host; default: `reload-host.js` beside this file (dist/). */
  readonly script?: string | undefined;
  /** Between slices of re-linking on the main thread; default: one turn of the event loop. */
  readonly pause?: () => Promise<void>;
}

/** MiB of worker heap per MiB of the largest config file; see `reloadHeapMb`. */
const HEAP_PER_FILE_BYTE = 128;
const MIN_RELOAD_HEAP_MB = 256;
/** How much of the host's stderr is kept: a crash's first lines. */
const STDERR_KEPT_BYTES = 8 * 1024;

/**
 * The reload worker's heap for a file limit. Parsing takes about 100 bytes of heap per byte of
 * dense YAML (measured: a 4 MiB file of 51,000 flow-style descriptors, 393 MB of heap when done);
 * files are parsed one at a time and each document is dropped before the next, so the largest
 * file sets the need (a 16 MiB directory of four such files finished within 512 MB). 128 per byte
 * leaves a quarter for the config being built and the collector: 512 MB at the default 4 MiB.
 */
export function reloadHeapMb(maxFileBytes: number): number {
  return Math.max(MIN_RELOAD_HEAP_MB, Math.ceil((HEAP_PER_FILE_BYTE * maxFileBytes) / (1024 * 1024)));
}

/** A load waiting on the host: the snapshot slices received so far, and what to do with the reply. */
interface WaitingLoad {
  readonly slices: Uint8Array[];
  readonly settle: (reply: ReloadReply) => void;
}

/** The running host: its process, the loads waiting on it by id, the tail of its stderr. */
interface ReloadHost {
  readonly child: ChildProcess;
  readonly waiting: Map<number, WaitingLoad>;
  stderr: string;
}

/**
 * Runs each reload's reading, parsing and validation in the reload host, a small process started
 * beside sluice (reload-host.ts), on a fresh worker thread there with its own heap limit and a
 * time limit. No file dropped into the directory can stall the thread that answers calls, nor take
 * the process down: running out of memory ends only the worker, one that overruns is stopped, and
 * its memory is returned when it ends, whatever the file did to it.
 *
 * Why a process beside sluice and not a worker thread of sluice's own: a worker's heap is its own,
 * but V8's collector threads are the process's, at the main thread's priority. Parsing a 4 MiB file
 * grows a heap of hundreds of MB, and marking it kept four of them busy for 2.2 s of CPU beside
 * the main thread, which waited 250-260 ms in the run queue over the reload while running 100 ms
 * (its /proc schedstat, quiet 2-core machine). Every thread of the host runs at the lowest
 * priority, the collector's included.
 *
 * Why one host for the life of sluice and not a process per reload: starting a process blocks the
 * main thread until the child has exec'd, and the fork copies the page tables of sluice's whole
 * heap; measured 10-17 ms per reload at 100-150 MB. The host is started by `start()`, before
 * sluice takes calls; one that died is started again by the next reload.
 *
 * What comes back is a `ConfigSnapshot`, a slice per IPC message (each assembled in a turn of
 * its own), re-linked into a config a slice at a time with a turn of the event loop before each
 * slice.
 */
export class ReloadHostLoader implements ConfigLoader {
  private host: ReloadHost | undefined;
  private nextId = 1;
  private closed = false;

  constructor(private readonly options: ReloadHostLoaderOptions) {}

  /** Starts the host now (else the first reload does). A failure to start is that reload's problem. */
  start(): void {
    try {
      this.runningHost();
    } catch {
      // The next load tries again and reports why.
    }
  }

  /** Stops the host; a load still waiting is refused. */
  close(): void {
    this.closed = true;
    this.host?.child.kill('SIGKILL');
  }

  async load(signal?: AbortSignal, settleMs?: number): Promise<LoadOutcome> {
    const reply = await this.loadInHost(signal, settleMs);
    if (!reply.ok) return reply;
    try {
      const { config, ruleJson } = await configFromSnapshot(reply.snapshot, this.options.pause ?? nextTurn);
      return { ok: true, config, fingerprints: ruleJson };
    } catch (err) {
      return this.failed(`config reload failed: ${errorText(err)}`);
    }
  }

  private loadInHost(signal: AbortSignal | undefined, settleMs: number | undefined): Promise<ReloadReply> {
    const { request, heapMb, timeoutMs } = this.options;
    return new Promise<ReloadReply>((resolve) => {
      if (this.closed || signal?.aborted === true) {
        resolve(this.failed('config reload abandoned (sluice is stopping)'));
        return;
      }
      let host: ReloadHost;
      try {
        host = this.runningHost();
      } catch (err) {
        resolve(this.failed(`cannot start the config reload host: ${errorText(err)}`));
        return;
      }
      const id = this.nextId++;
      const settle = (reply: ReloadReply, cancel: boolean): void => {
        if (!host.waiting.delete(id)) return;
        clearTimeout(timer);
        signal?.removeEventListener('abort', abandon);
        if (cancel) this.send(host, { kind: 'cancel', id });
        resolve(reply);
      };
      const timer = setTimeout(
        () => settle(this.failed(`reading and checking the config took over ${timeoutMs} ms; stopped (CONFIG_RELOAD_TIMEOUT)`), true),
        timeoutMs,
      );
      const abandon = (): void => settle(this.failed('config reload abandoned (sluice is stopping)'), true);
      signal?.addEventListener('abort', abandon);
      host.waiting.set(id, { slices: [], settle: (reply) => settle(reply, false) });
      this.send(host, { kind: 'load', id, request: { ...request, settleMs }, heapMb });
    });
  }

  /** The host, started if there is none. Throws if it cannot be started. */
  private runningHost(): ReloadHost {
    if (this.host !== undefined) return this.host;
    const child = fork(this.options.script ?? path.join(__dirname, 'reload-host.js'), [], {
      // Not this process's flags (a heap size for serving, a loader), nor its environment (a
      // node:cluster worker's NODE_UNIQUE_ID, NODE_OPTIONS): the host reads files and nothing else.
      execArgv: [],
      env: {},
      serialization: 'advanced',
      // Its output is not sluice's log; replies are all it has to say. stderr is kept for a crash.
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    // The host lowers every thread it has once it runs (reload-host.ts); this lowers its main
    // thread now, so the threads Node starts while booting (~50 ms of CPU) inherit it too.
    try {
      if (child.pid !== undefined) os.setPriority(child.pid, 19);
    } catch {
      // Gone already, or not allowed: the host lowers itself.
    }
    const host: ReloadHost = { child, waiting: new Map(), stderr: '' };
    this.host = host;
    // Neither the host nor its channel keeps sluice running: `close()` ends it, and so does
    // sluice's exit (the channel closes and the host leaves).
    child.unref();
    child.channel?.unref();
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      host.stderr = (host.stderr + chunk).slice(-STDERR_KEPT_BYTES);
    });
    (child.stderr as Socket | null)?.unref();
    child.on('message', (message: ReloadHostReply) => {
      const load = host.waiting.get(message.id);
      if (load === undefined) return; // out of time or abandoned meanwhile
      if ('slice' in message) {
        load.slices.push(message.slice);
      } else {
        const { reply } = message;
        load.settle(reply.ok ? { ok: true, snapshot: { ...reply.snapshot, slices: load.slices } } : reply);
      }
    });
    const ended = (why: string): void => {
      if (this.host === host) this.host = undefined;
      for (const load of [...host.waiting.values()]) load.settle(this.failed(why));
    };
    child.once('error', (err) => ended(`cannot start the config reload host: ${errorText(err)}`));
    // 'close', not 'exit': it comes after the channel has delivered everything the host sent.
    child.once('close', (code, signalName) => ended(endedWithoutAnswer(code, signalName, host.stderr)));
    return host;
  }

  private send(host: ReloadHost, message: ReloadHostRequest): void {
    if (!host.child.connected) return;
    // A failed send means the host is gone; its 'close' refuses what waits on it.
    host.child.send(message, () => undefined);
  }

  private failed(reason: string): RefusedReload {
    return refusedReload(this.options.request.dir, reason);
  }
}

/** Why the host ended with loads waiting on it: its exit, and its first error line if it wrote one. */
function endedWithoutAnswer(code: number | null, signalName: NodeJS.Signals | null, stderr: string): string {
  const how = code !== null ? `exit code ${code}` : `signal ${signalName ?? 'unknown'}`;
  const firstError = stderr.split('\n').find((line) => /error/i.test(line))?.trim();
  return `config reload failed: the config reload host ended (${how}) without an answer${firstError === undefined ? '' : `: ${firstError}`}`;
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
