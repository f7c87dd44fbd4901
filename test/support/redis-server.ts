import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Real redis-server processes for tests, on free ports of 127.0.0.1, with no persistence. Never
 * the machine's own Redis on 6379.
 *
 * Leak-proof: each server runs under a tiny bash wrapper that holds our stdin pipe and kills the
 * server when the pipe closes, which happens however this process ends (even SIGKILL, even a
 * jest worker torn down without afterAll). A process 'exit' hook also kills every server left.
 */

const REDIS_SERVER = process.env['REDIS_SERVER_BIN'] ?? 'redis-server';
const REDIS_CLI = process.env['REDIS_CLI_BIN'] ?? 'redis-cli';
const HOST = '127.0.0.1';
const START_TIMEOUT_MS = 10_000;

export interface RedisServerOptions {
  /** Extra redis-server arguments, e.g. ['--maxmemory', '1mb']. */
  readonly args?: readonly string[];
  /** Sets `requirepass`. */
  readonly password?: string;
}

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** redis://127.0.0.1:<port> (no credentials). */
  readonly url: string;
  /** The redis-server process id (a new one after restart()). */
  readonly pid: number;
  /** Kills the server and removes its directory. Idempotent. */
  stop(): Promise<void>;
  /** Sends a signal to redis-server itself: SIGKILL (crash), SIGSTOP (hang), SIGCONT (resume)... */
  kill(signal: NodeJS.Signals): void;
  /** Starts the server again on the same port (killing it first if it still runs); resolves once it answers PING. Data is gone. */
  restart(): Promise<void>;
}

export interface RedisClusterNode {
  readonly host: string;
  readonly port: number;
  readonly pid: number;
  kill(signal: NodeJS.Signals): void;
  /** Starts the node again on its port with its nodes.conf: it rejoins with its id and slots (data is gone). */
  restart(): Promise<void>;
}

export interface RedisCluster {
  readonly nodes: readonly RedisClusterNode[];
  stop(): Promise<void>;
}

/** Starts one redis-server; resolves once it answers PING. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const extra = [...(options.args ?? [])];
  if (options.password !== undefined) extra.push('--requirepass', options.password);
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const server = new ManagedServer(port, extra);
    try {
      await server.start();
      return server;
    } catch (err) {
      await server.stop();
      // Another process may have taken the port between our probe and redis' bind: try another.
      if (attempt >= 5 || !(err instanceof PortInUseError)) throw err;
    }
  }
}

/**
 * Starts a Redis Sentinel (`redis-server <conf> --sentinel`) monitoring `master` under
 * `masterName` with a quorum of 1; resolves once it answers PING. kill/restart work as for a server.
 */
export async function startRedisSentinel(master: { readonly host: string; readonly port: number }, masterName = 'mymaster'): Promise<RedisServer> {
  const port = await freePort();
  const server = new ManagedServer(port, [], { host: master.host, port: master.port, name: masterName });
  try {
    await server.start();
  } catch (err) {
    await server.stop();
    throw err;
  }
  return server;
}

/**
 * Starts `masters` redis-server processes in cluster mode and joins them with
 * `redis-cli --cluster create` (no replicas); resolves once every node reports cluster_state:ok
 * and knows every other node.
 */
export async function startRedisCluster(masters = 3): Promise<RedisCluster> {
  const servers: ManagedServer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(servers.map((s) => s.stop()));
  };
  try {
    for (let i = 0; i < masters; i++) {
      const [port, busPort] = [await freePort(), await freePort()];
      const server = new ManagedServer(port, [
        '--cluster-enabled',
        'yes',
        '--cluster-port',
        String(busPort),
        '--cluster-node-timeout',
        '3000',
      ]);
      servers.push(server);
      await server.start();
    }
    await run(REDIS_CLI, ['--cluster', 'create', ...servers.map((s) => `${HOST}:${s.port}`), '--cluster-replicas', '0', '--cluster-yes']);
    await waitFor(
      async () => {
        for (const s of servers) {
          const info = await redisCommand(s.port, ['CLUSTER', 'INFO']);
          if (!info.includes('cluster_state:ok') || !info.includes(`cluster_known_nodes:${masters}`)) return false;
        }
        return true;
      },
      START_TIMEOUT_MS,
      'cluster_state:ok on every node',
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    nodes: servers.map((s) => ({
      host: s.host,
      port: s.port,
      get pid() {
        return s.pid;
      },
      kill: (signal: NodeJS.Signals) => s.kill(signal),
      restart: () => s.restart(),
    })),
    stop,
  };
}

/**
 * Sends one command over a fresh connection and returns the reply as text (simple, bulk or
 * integer). Error replies reject. Good enough for test plumbing (PING, INFO, CLUSTER INFO).
 */
export function redisCommand(port: number, args: readonly string[], timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    let buffer = Buffer.alloc(0);
    const done = (err: Error | undefined, value?: string): void => {
      socket.destroy();
      if (err !== undefined) reject(err);
      else resolve(value!);
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`redis ${args[0]} on port ${port}: timed out`)));
    socket.on('error', (err) => done(err));
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const reply = parseReply(buffer);
      if (reply === undefined) return;
      if (reply.error) done(new Error(`redis ${args[0]} on port ${port}: ${reply.text}`));
      else done(undefined, reply.text);
    });
    socket.connect(port, HOST, () => {
      socket.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`);
    });
  });
}

function parseReply(buffer: Buffer): { text: string; error: boolean } | undefined {
  const end = buffer.indexOf('\r\n');
  if (end === -1) return undefined;
  const type = String.fromCharCode(buffer[0]!);
  const head = buffer.subarray(1, end).toString();
  if (type === '+' || type === ':') return { text: head, error: false };
  if (type === '-') return { text: head, error: true };
  if (type === '$') {
    const length = Number(head);
    if (length < 0) return { text: '', error: false };
    if (buffer.length < end + 2 + length + 2) return undefined;
    return { text: buffer.subarray(end + 2, end + 2 + length).toString(), error: false };
  }
  return { text: buffer.toString(), error: false };
}

class PortInUseError extends Error {}

/** Every server not yet stopped, for the exit hook. */
const live = new Set<ManagedServer>();
let exitHookInstalled = false;

/**
 * The wrapper (bash): starts redis-server and a `cat` of our stdin pipe as its two children,
 * prints the server's pid, and waits for either to end. The pipe reaching EOF (we closed it, or
 * this process died) kills the server; the server dying ends the wrapper, so its exit tells us
 * the server is gone. bash reaps both: no zombies, no pid reuse races. fd 3 carries stdin into
 * `cat`, because a non-interactive shell gives background jobs /dev/null as stdin.
 */
const WRAPPER = [
  'exec 3<&0',
  '"$@" </dev/null >/dev/null 2>&1 3<&- &',
  'echo $!',
  'cat <&3 >/dev/null &',
  'exec 3<&-',
  'wait -n',
  'kill -9 %1 %2 2>/dev/null',
  'wait',
].join('\n');

class ManagedServer implements RedisServer {
  readonly host = HOST;
  readonly url: string;
  private readonly dir: string;
  private wrapper: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private currentPid = 0;
  private stopped = false;

  constructor(
    readonly port: number,
    private readonly extraArgs: readonly string[],
    private readonly sentinelOf?: { readonly host: string; readonly port: number; readonly name: string },
  ) {
    this.url = `redis://${HOST}:${port}`;
    this.dir = mkdtempSync(join(tmpdir(), `sluice-redis-${port}-`));
    live.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on('exit', () => {
        for (const server of live) server.killNow();
      });
    }
  }

  get pid(): number {
    return this.currentPid;
  }

  async start(): Promise<void> {
    const leading: string[] = [];
    if (this.sentinelOf !== undefined) {
      // A sentinel needs a config file of its own, which it rewrites as it learns the topology.
      const conf = join(this.dir, 'sentinel.conf');
      const { host, port, name } = this.sentinelOf;
      writeFileSync(conf, `sentinel monitor ${name} ${host} ${port} 1\nsentinel down-after-milliseconds ${name} 1000\n`);
      leading.push(conf, '--sentinel');
    }
    const args = [
      ...leading,
      '--port',
      String(this.port),
      '--bind',
      HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      this.dir,
      '--logfile',
      join(this.dir, 'redis.log'),
      '--cluster-config-file',
      join(this.dir, `nodes-${this.port}.conf`),
      ...this.extraArgs,
    ];
    const child = spawn('bash', ['-c', WRAPPER, 'redis-wrapper', REDIS_SERVER, ...args], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.wrapper = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    // Never keep the test process alive because of a forgotten server: the pipe still closes
    // (and the server dies) when this process exits.
    child.unref();
    (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    this.currentPid = await new Promise<number>((resolve, reject) => {
      let text = '';
      child.stdout!.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        const line = text.split('\n')[0];
        if (text.includes('\n') && line !== undefined) resolve(Number(line.trim()));
      });
      child.once('error', reject);
      child.once('exit', () => reject(new Error(`redis-server wrapper exited before starting (port ${this.port})`)));
    });
    (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();

    let exited = false;
    void this.exited.then(() => {
      exited = true;
    });
    await waitFor(
      async () => {
        if (exited) {
          const log = this.log();
          if (log.includes('Address already in use')) throw new PortInUseError(`port ${this.port} is taken`);
          throw new Error(`redis-server on port ${this.port} exited while starting:\n${log}`);
        }
        try {
          return (await redisCommand(this.port, ['PING'], 500)) === 'PONG';
        } catch (err) {
          // With requirepass, an answer asking for authentication means it is up.
          return err instanceof Error && err.message.includes('NOAUTH');
        }
      },
      START_TIMEOUT_MS,
      `redis-server on port ${this.port} to answer PING`,
    );
  }

  kill(signal: NodeJS.Signals): void {
    if (this.currentPid > 0) process.kill(this.currentPid, signal);
  }

  async restart(): Promise<void> {
    await this.terminate();
    await this.start();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.terminate();
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Kills redis-server (stopped or not) and waits until the wrapper has reaped it. */
  private async terminate(): Promise<void> {
    const wrapper = this.wrapper;
    if (wrapper === undefined) return;
    this.wrapper = undefined;
    // Keep this process alive until the server is really gone.
    wrapper.ref();
    if (wrapper.exitCode === null && wrapper.signalCode === null) {
      try {
        process.kill(this.currentPid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    wrapper.stdin?.end();
    await this.exited;
    this.currentPid = 0;
  }

  /** Synchronous last resort for the exit hook. */
  killNow(): void {
    try {
      if (this.currentPid > 0) process.kill(this.currentPid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // Best effort.
    }
  }

  private log(): string {
    try {
      return readFileSync(join(this.dir, 'redis.log'), 'utf8');
    } catch {
      return '(no log)';
    }
  }
}

/** A TCP port of 127.0.0.1 free right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function run(command: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, [...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}
