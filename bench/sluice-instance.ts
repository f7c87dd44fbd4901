import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import * as readline from 'node:readline';

const ROOT = path.resolve(__dirname, '../..');

/** A `sluice serve` the bench started, on ephemeral loopback ports. */
export interface SluiceInstance {
  readonly child: ChildProcess;
  readonly port: number;
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
  const child = spawn(
    process.execPath,
    [...nodeArgs, path.join(tree, 'dist/src/cli/main.js'), 'serve', '--config', configDir, '--grpc-host', '127.0.0.1', '--host', '127.0.0.1', '--debug-host', '127.0.0.1',
      '--grpc-port', '0', '--port', '0', '--debug-port', '0'],
    { cwd: tree, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const ports = await new Promise<{ port: number; debugPort: number }>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { grpcPort?: number; debugPort?: number };
        if (parsed.grpcPort !== undefined && parsed.debugPort !== undefined) resolve({ port: parsed.grpcPort, debugPort: parsed.debugPort });
      } catch {
        // not a log line
      }
    });
    child.on('exit', (code) => reject(new Error(`sluice from ${tree} exited with ${code}`)));
  });
  return { child, ...ports };
}

/** SIGTERM, and waits for the exit. */
export async function stopSluice(instance: SluiceInstance): Promise<void> {
  if (instance.child.exitCode !== null) return;
  const exited = new Promise((resolve) => instance.child.on('exit', resolve));
  instance.child.kill('SIGTERM');
  await exited;
}

/** A bench's own server script (the do-nothing grpc-js server, the plain HTTP/2 one) in a process of its own. */
export interface BenchServer {
  readonly child: ChildProcess;
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Runs the built bench script `script` (relative to dist/bench) with only PATH and `env` in its
 * environment and `nodeArgs` for node; resolves once it prints `{"grpcPort": N}`.
 */
export async function startBenchServer(script: string, env: NodeJS.ProcessEnv = {}, nodeArgs: readonly string[] = []): Promise<BenchServer> {
  const child = spawn(process.execPath, [...nodeArgs, path.join(ROOT, 'dist/bench', script)], {
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { grpcPort?: number };
        if (parsed.grpcPort !== undefined) resolve(parsed.grpcPort);
      } catch {
        // not the line with the port (node's own --trace-gc output, say)
      }
    });
    child.on('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return {
    child,
    port,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
