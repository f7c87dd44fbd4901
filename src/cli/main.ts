#!/usr/bin/env node
import cluster from 'node:cluster';
import { startSluice } from '../app';
import { runPrimary } from '../cluster/primary';
import { type ClusterWorker, clusterWorker } from '../cluster/worker';
import { ConfigError } from '../errors';
import { createLogger } from '../logging/logger';
import { SettingsError, loadSettings, settingsHelp } from '../settings/settings';
import { runCheckConfig } from './check-config';
import { runClient } from './client';
import { runExplain } from './explain';

const USAGE = [
  'usage: sluice <command> [options]',
  '',
  'commands:',
  '  serve          run the rate limit service (default)',
  '  check-config   validate a config directory: sluice check-config <dir>',
  '  client         send one ShouldRateLimit: sluice client --domain D --descriptor k=v[,k2=v2] [--hits N] [--addr host:port]',
  '  explain        why a descriptor gets its limit (offline): sluice explain --config DIR --domain D --descriptor k=v[,k2=v2]',
  '  help           this text; `sluice serve --help` lists every setting',
];

const io = {
  out: (line: string): void => void process.stdout.write(`${line}\n`),
  err: (line: string): void => void process.stderr.write(`${line}\n`),
};

async function main(argv: readonly string[]): Promise<number> {
  const [command = 'serve', ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(rest);
    case 'check-config':
      return runCheckConfig(rest, io);
    case 'client':
      return runClient(rest, io);
    case 'explain':
      return runExplain(rest, io);
    case 'help':
    case '--help':
    case '-h':
      USAGE.forEach(io.out);
      return 0;
    default:
      if (command.startsWith('--')) return serve(argv);
      io.err(`unknown command '${command}'`);
      USAGE.forEach(io.err);
      return 2;
  }
}

async function serve(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.out('usage: sluice serve [--flag value ...]   (each flag also reads the environment variable beside it)');
    settingsHelp().forEach(io.out);
    return 0;
  }
  let settings;
  try {
    settings = loadSettings(process.env, argv);
  } catch (err) {
    if (!(err instanceof SettingsError)) throw err;
    err.problems.forEach((p) => io.err(`sluice: ${p}`));
    return 2;
  }
  const logger = createLogger(settings.logLevel);
  // WORKERS > 1: this process forks the workers and serves nothing itself; each worker re-runs
  // this command (same argv and environment) and lands below, as a worker.
  if (settings.workers > 1 && cluster.isPrimary) {
    return runPrimary({ workers: settings.workers, logger, shutdownGraceMs: settings.shutdownGraceMs });
  }
  const worker = clusterWorker();
  const log = worker === undefined ? logger : logger.child({ worker: worker.id });
  let running;
  try {
    running = await startSluice(settings, {
      logger: log,
      ...(worker !== undefined && { worker: { id: worker.id, metricsText: () => worker.metricsText() } }),
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      log.error({ problems: err.problems.map((p) => p.message) }, 'invalid rate limit config; not starting');
      return exitWorker(worker, 1);
    }
    log.error({ err }, 'sluice failed to start');
    return exitWorker(worker, 1);
  }
  if (worker !== undefined) {
    worker.shareMetrics(running.metrics.registry);
    worker.ready(running.startup);
  }
  const stopped = running;
  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string): void => {
      // A worker can get a signal twice (the primary's SIGTERM and a terminal's SIGINT to the
      // whole process group): the second must not end the drain the first began.
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutdown requested');
      stopped.stop().then(
        () => resolve(exitWorker(worker, 0)),
        (err: unknown) => {
          log.error({ err }, 'unclean shutdown');
          resolve(exitWorker(worker, 1));
        },
      );
    };
    // One process keeps the default for a second signal (it ends the process); a worker stays.
    const listen = worker === undefined ? process.once.bind(process) : process.on.bind(process);
    listen('SIGTERM', () => shutdown('SIGTERM'));
    listen('SIGINT', () => shutdown('SIGINT'));
  });
}

/**
 * A cluster worker exits here: its IPC channel to the primary would otherwise keep it alive after
 * everything else has closed. A single process exits by itself once it has closed everything.
 */
function exitWorker(worker: ClusterWorker | undefined, code: number): number {
  if (worker !== undefined) process.exit(code);
  return code;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`sluice: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
