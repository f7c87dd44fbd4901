import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { Logger } from '../logging/logger';
import { type MetricsReply, WORKER_SLOT_ENV, isMetricsRequest, isReady } from './messages';

export interface PrimaryOptions {
  readonly workers: number;
  readonly logger: Logger;
  /** SHUTDOWN_GRACE_MS: workers still running this long (plus a margin) after SIGTERM are killed. */
  readonly shutdownGraceMs: number;
}

/** A worker dying sooner than this after its start counts towards a longer wait before the next. */
const STABLE_AFTER_MS = 10_000;
const FIRST_RESTART_DELAY_MS = 100;
const MAX_RESTART_DELAY_MS = 10_000;
/** What a worker past its grace gets before the primary gives up on it. */
const STOP_MARGIN_MS = 5_000;

interface Slot {
  readonly id: number;
  worker: Worker | undefined;
  ready: boolean;
  startedAt: number;
  /** Deaths in a row, each within STABLE_AFTER_MS of its start: the restart delay doubles with each. */
  quickDeaths: number;
  restartTimer: NodeJS.Timeout | undefined;
}

/**
 * The node:cluster primary of `sluice serve` with WORKERS > 1. It serves nothing itself: the
 * workers each run the whole app and share the listening ports through the primary (node:cluster
 * hands each accepted connection to one worker, round-robin). The primary writes the one
 * `sluice started` line once every worker serves, replaces a worker that dies (after a wait that
 * doubles while they keep dying young), answers /metrics requests with the sum over workers, and
 * on SIGTERM or SIGINT drains the workers and resolves with the exit code once all have exited.
 * A worker that fails while the cluster starts (a bad config, a port in use) fails the start.
 */
export function runPrimary(options: PrimaryOptions): Promise<number> {
  const { logger } = options;
  const aggregator = new AggregatorRegistry();
  const own = new Registry();
  const slots: Slot[] = Array.from({ length: options.workers }, (_, i) => ({
    id: i + 1,
    worker: undefined,
    ready: false,
    startedAt: 0,
    quickDeaths: 0,
    restartTimer: undefined,
  }));
  const restarts = new Counter({
    name: 'sluice_worker_restarts_total',
    help: 'Workers that died while serving and were replaced',
    registers: [own],
  });
  new Gauge({
    name: 'sluice_workers',
    help: 'Workers serving now, of WORKERS',
    registers: [own],
    collect() {
      this.set(slots.filter((slot) => slot.ready).length);
    },
  });
  let restartCount = 0;
  let state: 'starting' | 'running' | 'stopping' = 'starting';

  return new Promise<number>((resolve) => {
    let exitCode = 0;
    let killTimer: NodeJS.Timeout | undefined;
    const finishIfAllExited = (): void => {
      if (state !== 'stopping' || slots.some((slot) => slot.worker !== undefined)) return;
      if (killTimer !== undefined) clearTimeout(killTimer);
      logger.info({ exitCode }, 'sluice stopped: all workers exited');
      resolve(exitCode);
    };
    const stopAll = (reason: string, code: number): void => {
      if (state === 'stopping') return;
      state = 'stopping';
      exitCode = code;
      logger.info({ reason, workers: slots.filter((slot) => slot.worker !== undefined).length }, 'sluice draining workers');
      for (const slot of slots) {
        if (slot.restartTimer !== undefined) clearTimeout(slot.restartTimer);
        slot.restartTimer = undefined;
        // SIGTERM whatever the primary got: a worker drains on either, and SIGINT from a terminal
        // reaches the workers too (same process group), so a second signal must be harmless.
        slot.worker?.process.kill('SIGTERM');
      }
      killTimer = setTimeout(() => {
        for (const slot of slots) {
          if (slot.worker === undefined) continue;
          logger.error({ worker: slot.id, pid: slot.worker.process.pid }, 'worker still running past the shutdown grace; killing it');
          exitCode = 1;
          slot.worker.process.kill('SIGKILL');
        }
      }, options.shutdownGraceMs + STOP_MARGIN_MS);
      finishIfAllExited();
    };

    const fork = (slot: Slot): void => {
      slot.restartTimer = undefined;
      slot.ready = false;
      slot.startedAt = Date.now();
      const worker = cluster.fork({ [WORKER_SLOT_ENV]: String(slot.id) });
      slot.worker = worker;
      worker.on('message', (message: unknown) => {
        if (isReady(message)) onReady(slot, message.startup);
        else if (isMetricsRequest(message)) answerMetrics(worker, message.id);
      });
      worker.on('exit', (code, signal) => onExit(slot, worker, code, signal));
    };

    let firstStartup: Readonly<Record<string, unknown>> | undefined;
    const onReady = (slot: Slot, startup: Readonly<Record<string, unknown>>): void => {
      slot.ready = true;
      firstStartup ??= startup;
      if (state === 'running') {
        logger.info({ worker: slot.id, pid: slot.worker?.process.pid, restarts: restartCount }, 'worker replaced');
        return;
      }
      if (state !== 'starting' || slots.some((s) => !s.ready)) return;
      state = 'running';
      // The workers' own lines say `sluice worker started`; this is the one `sluice started`.
      logger.info(
        { ...firstStartup, workers: slots.length, pids: slots.map((s) => s.worker?.process.pid), primaryPid: process.pid },
        'sluice started',
      );
    };

    const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      slot.ready = false;
      if (state === 'stopping') {
        if (code !== 0) {
          logger.error({ worker: slot.id, pid: worker.process.pid, code, signal }, 'worker did not stop cleanly');
          exitCode = 1;
        }
        finishIfAllExited();
        return;
      }
      if (state === 'starting') {
        logger.error({ worker: slot.id, pid: worker.process.pid, code, signal }, 'a worker failed to start; stopping the others');
        stopAll('a worker failed to start', 1);
        return;
      }
      const lived = Date.now() - slot.startedAt;
      slot.quickDeaths = lived < STABLE_AFTER_MS ? slot.quickDeaths + 1 : 0;
      const delayMs = Math.min(FIRST_RESTART_DELAY_MS * 2 ** Math.max(0, slot.quickDeaths - 1), MAX_RESTART_DELAY_MS);
      restarts.inc();
      restartCount++;
      logger.warn(
        { worker: slot.id, pid: worker.process.pid, code, signal, livedMs: lived, restartInMs: delayMs, restarts: restartCount },
        'worker died; replacing it',
      );
      slot.restartTimer = setTimeout(() => fork(slot), delayMs);
    };

    const answerMetrics = (worker: Worker, id: number): void => {
      const reply = (message: MetricsReply): void => {
        if (worker.isConnected()) worker.send(message);
      };
      Promise.all([aggregator.clusterMetrics(), own.metrics()]).then(
        ([workers, primary]) => reply({ type: 'sluice:metrics-reply', id, text: workers + primary }),
        (err: unknown) => reply({ type: 'sluice:metrics-reply', id, error: err instanceof Error ? err.message : String(err) }),
      );
    };

    process.on('SIGTERM', () => stopAll('SIGTERM', 0));
    process.on('SIGINT', () => stopAll('SIGINT', 0));
    for (const slot of slots) fork(slot);
  });
}
