import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger };

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';

/** One JSON line per event on stdout; secrets never reach the log. */
export function createLogger(level: LogLevel, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name: 'sluice',
    level,
    redact: { paths: ['redisAuth', 'redisUrl', 'password', '*.password', '*.redisAuth'], censor: '[redacted]' },
  };
  return destination ? pino(options, destination) : pino(options);
}

/** A logger that drops everything: for tests and offline commands. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
