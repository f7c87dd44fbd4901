import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import { transferablesOf } from './config-snapshot';
import { checkForReload, type ReloadRequest } from './reload-job';

/**
 * Entry point of the config reload worker (see WorkerConfigLoader): one request in `workerData`,
 * one reply posted, then the thread ends and its whole heap goes with it. An exception becomes
 * the worker's 'error' event on the main thread.
 */

/**
 * On Linux a thread's nice value is its own: at 19 this thread gets a core only when the thread
 * that answers calls does not want it. On a 2-core machine a reload parsing megabytes otherwise
 * competes with it for CPU time. Best effort: elsewhere, or if refused, it runs at normal priority.
 */
function yieldToCalls(): void {
  try {
    const tid = Number(path.basename(fs.readlinkSync('/proc/thread-self')));
    if (Number.isInteger(tid) && tid > 0) os.setPriority(tid, 19);
  } catch {
    // Not Linux, or no /proc: the reload still runs, off the main thread.
  }
}

yieldToCalls();
const reply = checkForReload(workerData as ReloadRequest);
parentPort?.postMessage(reply, reply.ok ? transferablesOf(reply.snapshot) : []);
