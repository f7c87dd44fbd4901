import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { errorText } from './config-problem';
import { type ReloadHostReply, type ReloadHostRequest, type ReloadReply, type ReloadRequest, refusedReload } from './reload-job';

/**
 * Entry point of the reload host: the small process sluice starts beside itself (see
 * ReloadHostLoader) to read and check its config directory on reload. Each load runs on a fresh
 * worker thread (reload-worker.ts) with its own heap limit; its answer goes back over the IPC
 * channel. The host ends when sluice does (the channel closes).
 */

/**
 * On Linux a nice value belongs to a thread, and a new thread takes its creator's: at 19 every
 * thread of this process, the reload workers and V8's collector threads included, gets a core only
 * when sluice's threads do not want it. The threads Node started before this line are lowered one
 * by one; later ones inherit. Best effort: elsewhere, or if refused, reloads run at normal priority,
 * still outside sluice's process.
 */
function yieldToSluice(): void {
  try {
    for (const tid of fs.readdirSync('/proc/self/task')) os.setPriority(Number(tid), 19);
  } catch {
    // Not Linux, or no /proc.
  }
}

/**
 * A reload of a file near the size limit takes hundreds of MB here. If that runs the container out
 * of memory, the kernel should end this process (the reload is then refused and the next one
 * starts a new host), not sluice: 1000 makes it the first the kernel picks. Raising one's own
 * score needs no privilege. Best effort, as above.
 */
function dieFirstOnOutOfMemory(): void {
  try {
    fs.writeFileSync('/proc/self/oom_score_adj', '1000');
  } catch {
    // Not Linux, or no /proc.
  }
}

const WORKER_SCRIPT = path.join(__dirname, 'reload-worker.js');
/** How to end each load still running, by id. */
const running = new Map<number, () => void>();

function send(message: ReloadHostReply): void {
  process.send?.(message);
}

function load(id: number, request: ReloadRequest, heapMb: number): void {
  let answered = false;
  let worker: Worker | undefined;
  /** Answers with `reply`, or ends the load unanswered (`undefined`: sluice cancelled it). */
  const end = (reply: ReloadReply | undefined): void => {
    if (answered) return;
    answered = true;
    running.delete(id);
    // Ends the thread whatever state it is in; its heap goes with it.
    void worker?.terminate();
    if (reply === undefined) return;
    if (reply.ok) {
      for (const slice of reply.snapshot.slices) send({ id, slice });
      send({ id, reply: { ok: true, snapshot: { ...reply.snapshot, slices: [] } } });
    } else {
      send({ id, reply });
    }
  };
  try {
    worker = new Worker(WORKER_SCRIPT, {
      workerData: request,
      resourceLimits: { maxOldGenerationSizeMb: heapMb },
      // Its output is not sluice's log; a reply is all it has to say.
      stdout: true,
      stderr: true,
    });
  } catch (err) {
    end(refusedReload(request.dir, `cannot start the config reload worker: ${errorText(err)}`));
    return;
  }
  running.set(id, () => end(undefined));
  worker.once('message', (reply: ReloadReply) => end(reply));
  worker.once('error', (err: Error & { code?: string }) =>
    end(
      refusedReload(
        request.dir,
        err.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? `reading and checking the config needed more than ${heapMb} MB of memory; stopped`
          : `config reload failed: ${errorText(err)}`,
      ),
    ),
  );
  worker.once('exit', (code) => end(refusedReload(request.dir, `the config reload worker ended (exit code ${code}) without an answer`)));
}

yieldToSluice();
dieFirstOnOutOfMemory();
process.on('message', (message: ReloadHostRequest) => {
  if (message.kind === 'load') {
    load(message.id, message.request, message.heapMb);
  } else {
    running.get(message.id)?.();
  }
});
// Sluice stopped or died: nothing is left to answer.
process.once('disconnect', () => process.exit(0));
