import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

const ROOT = path.resolve(__dirname, '../..');

/** A server a bench started in a process of its own: sluice, the do-nothing grpc-js server, the plain HTTP/2 one. */
export interface BenchServer {
  readonly child: ChildProcess;
  readonly port: number;
  stop(): Promise<void>;
}

/** A `sluice serve` the bench started, on ephemeral loopback ports. */
export interface SluiceInstance extends BenchServer {
  readonly debugPort: number;
}

/**
 * Starts the built `sluice serve` on `configDir`, with only PATH and `env` in its environment (so
 * every other setting is its default) and `nodeArgs` for node (`--max-old-space-size=...`);
 * resolves with the ports its startup line names. `tree`: the checkout whose build runs (this
 * one unless told; the A/B benches compare builds).
 */
export async function startSluice(
  configDir: string,
  env: NodeJS.ProcessEnv,
  nodeArgs: readonly string[] = [],
  tree: string = ROOT,
): Promise<SluiceInstance> {
  const args = [...nodeArgs, path.join(tree, 'dist/src/cli/main.js'), 'serve', '--config', configDir, '--grpc-host', '127.0.0.1', '--host', '127.0.0.1',
    '--debug-host', '127.0.0.1', '--grpc-port', '0', '--port', '0', '--debug-port', '0'];
  const { child, ports } = await spawnServer(args, env, tree, `sluice from ${tree}`, (line) =>
    line.grpcPort !== undefined && line.debugPort !== undefined ? { port: line.grpcPort, debugPort: line.debugPort } : undefined);
  const instance: SluiceInstance = { child, ...ports, stop: () => stopSluice(instance) };
  return instance;
}

/** SIGTERM, and waits for the exit. */
export async function stopSluice(instance: BenchServer): Promise<void> {
  const { child } = instance;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.on('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/**
 * Runs the built bench script `script` (relative to dist/bench) with only PATH and `env` in its
 * environment and `nodeArgs` for node; resolves once it prints `{"grpcPort": N}`.
 */
export async function startBenchServer(script: string, env: NodeJS.ProcessEnv = {}, nodeArgs: readonly string[] = []): Promise<BenchServer> {
  const { child, ports } = await spawnServer([...nodeArgs, path.join(ROOT, 'dist/bench', script)], env, ROOT, script, (line) =>
    line.grpcPort !== undefined ? { port: line.grpcPort } : undefined);
  const server: BenchServer = { child, port: ports.port, stop: () => stopSluice(server) };
  return server;
}

/** A JSON line a server prints on stdout: its startup line names its ports. */
interface PortsLine {
  readonly grpcPort?: number;
  readonly debugPort?: number;
}

/**
 * node `args`, with only PATH and `env` in its environment; resolves with the ports `pick` finds
 * in the first stdout line it accepts (other lines, log or `--trace-gc` output, are skipped), or
 * rejects if the process exits first.
 */
async function spawnServer<T>(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  cwd: string,
  name: string,
  pick: (line: PortsLine) => T | undefined,
): Promise<{ child: ChildProcess; ports: T }> {
  const child = spawn(process.execPath, args, { cwd, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  const ports = await new Promise<T>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let parsed: PortsLine;
      try {
        parsed = JSON.parse(line) as PortsLine;
      } catch {
        return; // not a JSON line
      }
      const found = parsed === null || typeof parsed !== 'object' ? undefined : pick(parsed);
      if (found !== undefined) resolve(found);
    });
    child.on('exit', (code) => reject(new Error(`${name} exited with ${code}`)));
  });
  return { child, ports };
}
