import { type ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { promisify } from 'node:util';
import { createRlsClient } from '../support/rls-client';

// These tests run the built command exactly as a user does (`npm test` builds dist/ first).
const ROOT = path.resolve(__dirname, '../..');
const SLUICE = path.join(ROOT, 'dist/src/cli/main.js');
const run = promisify(execFile);

const LOCAL = ['--grpc-host', '127.0.0.1', '--host', '127.0.0.1', '--debug-host', '127.0.0.1'];
const EPHEMERAL = ['--grpc-port', '0', '--port', '0', '--debug-port', '0'];

interface Served {
  child: ChildProcess;
  started: Record<string, unknown>;
  lines: string[];
  exit: Promise<number | null>;
}

/** Spawns `sluice serve` and resolves with its first log line, which must be the startup line. */
async function serve(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Served> {
  const child = spawn(process.execPath, [SLUICE, 'serve', ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines: string[] = [];
  const rl = readline.createInterface({ input: child.stdout! });
  const first = await new Promise<string>((resolve, reject) => {
    rl.on('line', (line) => {
      lines.push(line);
      if (lines.length === 1) resolve(line);
    });
    void exit.then((code) => reject(new Error(`sluice exited with ${code} before logging`)));
  });
  return { child, started: JSON.parse(first) as Record<string, unknown>, lines, exit };
}

describe('the sluice command', () => {
  it('serves the example config, logs one startup line naming its ports, and drains on SIGTERM', async () => {
    const served = await serve(['--config', 'examples/oauth2', ...LOCAL, ...EPHEMERAL]);
    expect(served.started).toMatchObject({ msg: 'sluice started', store: 'memory', domains: ['oauth2'] });
    const grpcPort = served.started.grpcPort as number;
    expect(grpcPort).toBeGreaterThan(0);
    expect(served.started.httpPort).toBeGreaterThan(0);
    expect(served.started.debugPort).toBeGreaterThan(0);

    // Password guessing against one account through one client: 10 a minute, then refused.
    const client = createRlsClient(`127.0.0.1:${grpcPort}`);
    const attempt = {
      domain: 'oauth2',
      descriptors: [
        {
          entries: [
            { key: 'endpoint', value: 'token' },
            { key: 'client_id', value: 'mobile-app' },
            { key: 'username', value: 'alice@example.com' },
          ],
        },
      ],
    };
    const codes: string[] = [];
    for (let i = 0; i < 11; i++) codes.push(String((await client.shouldRateLimit(attempt)).overall_code));
    expect(codes).toEqual([...Array<string>(10).fill('OK'), 'OVER_LIMIT']);
    client.close();
    // Startup is one log line; calls log nothing at the default level.
    expect(served.lines).toHaveLength(1);

    served.child.kill('SIGTERM');
    expect(await served.exit).toBe(0);
    expect(served.lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain('sluice stopped');
  });

  it('refuses to start on an invalid config, logging every problem, and exits 1', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bad-'));
    fs.writeFileSync(path.join(dir, 'a.yaml'), 'domain: ""\n');
    fs.writeFileSync(path.join(dir, 'b.yaml'), 'domain: x\ndescriptors:\n  - key: k\n    rate_limit: { unit: fortnight }\n');
    const child = spawn(process.execPath, [SLUICE, 'serve', '--config', dir, ...LOCAL, ...EPHEMERAL], { cwd: ROOT });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(1);
    const logged = JSON.parse(out.trim().split('\n')[0]!) as { problems: string[] };
    const base = path.basename(dir);
    expect(logged.problems).toEqual([
      `${base}.a.yaml: domain: config file cannot have empty domain`,
      `${base}.b.yaml: descriptors[0].rate_limit.unit: invalid rate limit unit 'fortnight'`,
    ]);
    fs.rmSync(dir, { recursive: true });
  });

  it('rejects an unknown flag or a bad setting with exit code 2', async () => {
    const result = await run(process.execPath, [SLUICE, 'serve', '--grpc-port', 'eighty', '--bogus'], { cwd: ROOT }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(result).toMatchObject({ code: 2 });
    expect((result as { stderr: string }).stderr).toContain("unknown argument '--bogus'");
    expect((result as { stderr: string }).stderr).toContain("--grpc-port: invalid value 'eighty'");
  });

  it('check-config accepts the example config', async () => {
    const { stdout } = await run(process.execPath, [SLUICE, 'check-config', 'examples/oauth2'], { cwd: ROOT });
    expect(stdout).toMatch(/^config OK: 1 file/);
  });

  it('client sends one request and prints the answer', async () => {
    const served = await serve(['--config', 'examples/oauth2', ...LOCAL, ...EPHEMERAL]);
    const { stdout } = await run(
      process.execPath,
      [SLUICE, 'client', '--addr', `127.0.0.1:${served.started.grpcPort as number}`, '--domain', 'oauth2', '--descriptor', 'client_id=web,user_id=u1', '--hits', '5'],
      { cwd: ROOT },
    );
    expect(stdout).toContain('overall: OK');
    expect(stdout).toMatch(/client_id=web,user_id=u1\s+OK\s+limit 100\/MINUTE \(name api_per_client_user\)\s+remaining 95/);
    served.child.kill('SIGTERM');
    expect(await served.exit).toBe(0);
  });
});
