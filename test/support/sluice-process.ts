import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { transportUnderTest } from './transport-under-test';

const ROOT = path.resolve(__dirname, '../..');
/** The built command, as deployed (`npm test` builds dist/ first). */
export const SLUICE_BIN = path.join(ROOT, 'dist/src/cli/main.js');

export interface SluiceProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly httpPort: number;
  readonly debugPort: number;
  /** Every line it has written to stdout so far (its JSON log). */
  readonly log: readonly string[];
  /** SIGTERM, then resolves once the process has exited. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Runs `sluice serve --config <configDir>` as a child process on free ports, with only PATH,
 * WORKERS=1 (one process, whatever the store; `env` may say otherwise) and `env` in its
 * environment (so its other settings are the defaults unless `env` says otherwise), and
 * resolves with its ports as soon as its startup line names them: that is the moment its gRPC
 * port accepts. `nodeArgs` go to node itself (e.g. `--max-old-space-size=256`); `node` is the
 * Node binary (this one unless set).
 */
export async function startSluiceProcess(
  configDir: string,
  env: NodeJS.ProcessEnv = {},
  options: { readonly nodeArgs?: readonly string[]; readonly args?: readonly string[]; readonly node?: string } = {},
): Promise<SluiceProcess> {
  const child = spawn(
    options.node ?? process.execPath,
    [
      ...(options.nodeArgs ?? []),
      SLUICE_BIN,
      'serve',
      '--config',
      configDir,
      '--grpc-host',
      '127.0.0.1',
      '--host',
      '127.0.0.1',
      '--debug-host',
      '127.0.0.1',
      '--grpc-port',
      '0',
      '--port',
      '0',
      '--debug-port',
      '0',
      ...(options.args ?? []),
    ],
    { cwd: ROOT, env: { PATH: process.env.PATH, WORKERS: '1', ...transportUnderTest(), ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const log: string[] = [];
  const ports = await new Promise<{ grpcPort: number; httpPort: number; debugPort: number }>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      log.push(line);
      try {
        const parsed = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number; debugPort?: number };
        if (parsed.msg === 'sluice started' && parsed.grpcPort !== undefined && parsed.httpPort !== undefined && parsed.debugPort !== undefined) {
          resolve({ grpcPort: parsed.grpcPort, httpPort: parsed.httpPort, debugPort: parsed.debugPort });
        }
      } catch {
        // Not a log line.
      }
    });
    child.on('exit', (code, signal) => reject(new Error(`sluice exited (${code ?? signal}) before it started`)));
  });
  let stopping: Promise<void> | undefined;
  return {
    child,
    ...ports,
    log,
    stop: () => {
      stopping ??= new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve();
          return;
        }
        child.on('exit', () => resolve());
        child.kill('SIGTERM');
      });
      return stopping;
    },
  };
}
