import { parentPort, workerData } from 'node:worker_threads';
import { transferablesOf } from './config-snapshot';
import { checkForReload, type ReloadRequest } from './reload-job';

/**
 * Entry point of a config reload worker, a thread of the reload host (reload-host.ts): one
 * request in `workerData`, one reply posted, then the thread ends and its whole heap goes with it.
 * An exception becomes the worker's 'error' event in the host. Its CPU priority is the host's:
 * a thread starts at its creator's nice value.
 */
const reply = checkForReload(workerData as ReloadRequest);
parentPort?.postMessage(reply, reply.ok ? transferablesOf(reply.snapshot) : []);
