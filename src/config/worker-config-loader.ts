import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { configProblem, errorText } from './config-problem';
import { configFromSnapshot } from './config-snapshot';
import type { ReloadReply, ReloadRequest } from './reload-job';
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

export interface WorkerConfigLoaderOptions {
  readonly request: ReloadRequest;
  /** Old-generation heap of the worker (resourceLimits.maxOldGenerationSizeMb). */
  readonly heapMb: number;
  /** The worker is stopped, and the reload refused, after this long. */
  readonly timeoutMs: number;
  /** The compiled worker entry; default: `reload-worker.js` beside this file (dist/). */
  readonly script?: string | undefined;
  /** Between slices of re-linking on the main thread; default: one turn of the event loop. */
  readonly pause?: () => Promise<void>;
}

/** MiB of worker heap per MiB of the largest config file; see `workerHeapMb`. */
const HEAP_PER_FILE_BYTE = 128;
const MIN_WORKER_HEAP_MB = 256;

/**
 * The worker heap for a file limit. Parsing takes about 100 bytes of heap per byte of dense YAML
 * (measured: a 4 MiB file of 51,000 flow-style descriptors, 393 MB of heap when done); files are
 * parsed one at a time and each document is dropped before the next, so the largest file sets the
 * need (a 16 MiB directory of four such files finished within 512 MB). 128 per byte leaves a
 * quarter for the config being built and the collector: 512 MB at the default 4 MiB.
 */
export function workerHeapMb(maxFileBytes: number): number {
  return Math.max(MIN_WORKER_HEAP_MB, Math.ceil((HEAP_PER_FILE_BYTE * maxFileBytes) / (1024 * 1024)));
}

/**
 * Runs each reload's reading, parsing and validation in a fresh worker thread with its own heap
 * limit and a time limit, so no file dropped into the directory can stall the thread that answers
 * calls, nor take the process down: running out of memory ends only the worker
 * (ERR_WORKER_OUT_OF_MEMORY), and a worker that overruns is terminated. A fresh worker per reload
 * also means its memory is returned when it ends, whatever the file did to it.
 *
 * What reaches the main thread is a `ConfigSnapshot` (one transferred buffer of JSON), re-linked
 * into a config a slice at a time with a turn of the event loop between slices.
 */
export class WorkerConfigLoader implements ConfigLoader {
  constructor(private readonly options: WorkerConfigLoaderOptions) {}

  async load(signal?: AbortSignal, settleMs?: number): Promise<LoadOutcome> {
    const reply = await this.runWorker(signal, settleMs);
    if (!reply.ok) return reply;
    try {
      const { config, ruleJson } = await configFromSnapshot(reply.snapshot, this.options.pause ?? nextTurn);
      return { ok: true, config, fingerprints: ruleJson };
    } catch (err) {
      return this.failed(`config reload failed: ${errorText(err)}`);
    }
  }

  private runWorker(signal: AbortSignal | undefined, settleMs: number | undefined): Promise<ReloadReply> {
    const { request, heapMb, timeoutMs } = this.options;
    const script = this.options.script ?? path.join(__dirname, 'reload-worker.js');
    return new Promise<ReloadReply>((resolve) => {
      let settled = false;
      let worker: Worker | undefined;
      const settle = (reply: ReloadReply): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', abandon);
        // Ends the thread whatever state it is in; its heap goes with it.
        void worker?.terminate();
        resolve(reply);
      };
      const timer = setTimeout(
        () => settle(this.failed(`reading and checking the config took over ${timeoutMs} ms; stopped (CONFIG_RELOAD_TIMEOUT)`)),
        timeoutMs,
      );
      const abandon = (): void => settle(this.failed('config reload abandoned (sluice is stopping)'));
      if (signal?.aborted === true) {
        abandon();
        return;
      }
      signal?.addEventListener('abort', abandon);
      try {
        worker = new Worker(script, {
          workerData: { ...request, settleMs } satisfies ReloadRequest,
          resourceLimits: { maxOldGenerationSizeMb: heapMb },
          // Its output is not sluice's log; a reply is all it has to say.
          stdout: true,
          stderr: true,
        });
      } catch (err) {
        settle(this.failed(`cannot start the config reload worker: ${errorText(err)}`));
        return;
      }
      worker.once('message', (reply: ReloadReply) => settle(reply));
      worker.once('error', (err: Error & { code?: string }) =>
        settle(
          this.failed(
            err.code === 'ERR_WORKER_OUT_OF_MEMORY'
              ? `reading and checking the config needed more than ${heapMb} MB of memory; stopped`
              : `config reload failed: ${errorText(err)}`,
          ),
        ),
      );
      worker.once('exit', (code) => settle(this.failed(`the config reload worker ended (exit code ${code}) without an answer`)));
    });
  }

  private failed(reason: string): { ok: false; problems: ConfigProblem[]; unstable: false } {
    return { ok: false, problems: [configProblem(this.options.request.dir, '', reason)], unstable: false };
  }
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
