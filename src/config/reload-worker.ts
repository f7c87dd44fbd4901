import { parentPort, workerData } from 'node:worker_threads';
import { transferablesOf } from './config-snapshot';
import { checkForReload, type ReloadRequest } from './reload-job';

/**
 * Entry point of the config reload worker (see WorkerConfigLoader): one request in `workerData`,
 * one reply posted, then the thread ends and its whole heap goes with it. An exception becomes
 * the worker's 'error' event on the main thread.
 */
const reply = checkForReload(workerData as ReloadRequest);
parentPort?.postMessage(reply, reply.ok ? transferablesOf(reply.snapshot) : []);
