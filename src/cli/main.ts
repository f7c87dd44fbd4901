#!/usr/bin/env node
import { startSluice } from '../app';
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
  let running;
  try {
    running = await startSluice(settings, { logger });
  } catch (err) {
    if (err instanceof ConfigError) {
      logger.error({ problems: err.problems.map((p) => p.message) }, 'invalid rate limit config; not starting');
      return 1;
    }
    logger.error({ err }, 'sluice failed to start');
    return 1;
  }
  return new Promise<number>((resolve) => {
    const shutdown = (signal: string): void => {
      logger.info({ signal }, 'shutdown requested');
      running.stop().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error({ err }, 'unclean shutdown');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
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
