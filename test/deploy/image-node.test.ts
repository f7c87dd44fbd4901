import { execFile, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { createGrpcClient, shouldRateLimitMethod, unaryCall } from '../../src/server/proto';
import { IMAGE_NODE_VERSION, imageNode } from '../support/modern-node';
import { type Stage, copies, healthcheck, last, readDockerfile } from './dockerfile-model';
import { ROOT } from './envoy-model';

/**
 * The image's runtime stage without Docker: its files are laid out in a temporary directory by
 * following the Dockerfile's runtime-stage instructions (COPY from the context, COPY --from=build
 * of dist/ — the build stage's `tsc -p tsconfig.build.json` is what `npm test` runs first — and its
 * RUN lines, `npm ci --omit=dev ...` included, with a private npm cache), then its ENTRYPOINT + CMD
 * run on the image's Node release (IMAGE_NODE_VERSION), and its HEALTHCHECK command is run as
 * Docker would (`/bin/sh -c`). What differs from a container, and why: ports are free ones (PORT,
 * GRPC_PORT, DEBUG_PORT set, as a user may) instead of the defaults other processes here may hold;
 * USER is not switched (the files are not root-only either way); the distro is this one, not alpine.
 */

const SHELL = '/bin/sh';

function sh(command: string, cwd: string, env: NodeJS.ProcessEnv, timeout: number): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(SHELL, ['-c', command], { cwd, env, timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, output: stdout + stderr });
    });
  });
}

let stage: Stage;
let dir: string;
let appDir: string;
let env: NodeJS.ProcessEnv;
let child: ChildProcess | undefined;

beforeAll(async () => {
  const stages = readDockerfile();
  stage = stages[stages.length - 1]!;
  expect(fs.existsSync(path.join(ROOT, 'dist/src/cli/main.js'))).toBe(true);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-image-'));
  const workdir = last(stage, 'WORKDIR')!.raw;
  appDir = path.join(dir, workdir);
  fs.mkdirSync(appDir, { recursive: true });
  env = { PATH: process.env.PATH, HOME: dir, npm_config_cache: path.join(dir, '.npm') };
  for (const instruction of stage.instructions) {
    if (instruction.keyword === 'ENV') {
      const [name, ...value] = instruction.raw.split('=');
      env[name!] = value.join('=');
    } else if (instruction.keyword === 'COPY') {
      const [copy] = copies({ ...stage, instructions: [instruction] });
      for (const source of copy!.sources) {
        // The build stage (WORKDIR /app) compiles to /app/dist; here that is ROOT/dist.
        const from = copy!.from === 'build' ? path.join(ROOT, path.posix.relative('/app', source)) : path.join(ROOT, source);
        const to = path.join(appDir, copy!.dest.endsWith('/') || copy!.sources.length > 1 ? path.join(copy!.dest, path.basename(source)) : copy!.dest);
        fs.cpSync(from, to, { recursive: true });
      }
    } else if (instruction.keyword === 'RUN') {
      const run = await sh(instruction.raw, appDir, env, 240_000);
      expect({ run: instruction.raw, code: run.code, output: run.code === 0 ? '' : run.output }).toEqual({ run: instruction.raw, code: 0, output: '' });
    }
  }
}, 300_000);

afterAll(() => {
  if (child !== undefined && child.exitCode === null) child.kill('SIGKILL');
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

it('holds the production dependencies of package-lock.json, and none of the dev-only ones', () => {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; optional?: boolean }>;
  };
  const entries = Object.entries(lock.packages).filter(([where, p]) => where.startsWith('node_modules/') && p.optional !== true);
  const present = (where: string): boolean => fs.existsSync(path.join(appDir, where));
  const prod = entries.filter(([, p]) => p.dev !== true).map(([where]) => where);
  const devOnly = entries.filter(([, p]) => p.dev === true).map(([where]) => where);
  expect(prod.length).toBeGreaterThan(0);
  expect(prod.filter((where) => !present(where))).toEqual([]);
  expect(devOnly.filter(present)).toEqual([]);
  // (@types/node is installed: protobufjs declares it as a dependency.)
  expect(present('node_modules/typescript')).toBe(false);
  expect(present('node_modules/jest')).toBe(false);
});

it(`serves the bundled example on Node ${IMAGE_NODE_VERSION} by its default command, and its HEALTHCHECK passes, then fails once it is gone`, async () => {
  const node = imageNode();
  const entrypoint = last(stage, 'ENTRYPOINT')!.exec!;
  const cmd = last(stage, 'CMD')!.exec!;
  expect(entrypoint[0]).toBe('node');
  const runEnv = { ...env, PORT: '0', GRPC_PORT: '0', DEBUG_PORT: '0' };
  const started = spawn(node, [...entrypoint.slice(1), ...cmd], { cwd: appDir, env: runEnv, stdio: ['ignore', 'pipe', 'inherit'] });
  child = started;
  const ports = await new Promise<{ grpcPort: number; httpPort: number }>((resolve, reject) => {
    readline.createInterface({ input: started.stdout! }).on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as { msg?: string; grpcPort?: number; httpPort?: number; nodeVersion?: string };
        if (parsed.msg === 'sluice started' && parsed.grpcPort !== undefined && parsed.httpPort !== undefined) resolve({ grpcPort: parsed.grpcPort, httpPort: parsed.httpPort });
      } catch {
        // Not a log line.
      }
    });
    started.on('exit', (code) => reject(new Error(`the image's command exited (${code}) before it started`)));
  });

  const version = await sh(`"${node}" --version`, appDir, env, 10_000);
  expect(version.output.trim()).toBe(`v${IMAGE_NODE_VERSION}`);

  const check = healthcheck(stage)!;
  const checkEnv = { PATH: process.env.PATH, PORT: String(ports.httpPort) };
  // Docker runs the check every interval from the start; it counts once the service is ready.
  let passed = false;
  for (let attempt = 0; attempt < 20 && !passed; attempt++) {
    passed = (await sh(check.command, appDir, checkEnv, 5_000)).code === 0;
    if (!passed) await new Promise((resolve) => setTimeout(resolve, 250));
  }
  expect(passed).toBe(true);

  // The bundled example config, the protos and the production dependencies answer a real call.
  const client = createGrpcClient(`127.0.0.1:${ports.grpcPort}`);
  try {
    const response = await unaryCall(client, shouldRateLimitMethod, { domain: 'oauth2', descriptors: [{ entries: [{ key: 'client_id', value: 'web' }] }] }, 5_000);
    expect(response.overall_code).toBe('OK');
    expect(response.statuses?.[0]?.current_limit?.name).toBe('api_per_client');
  } finally {
    client.close();
  }

  await new Promise<void>((resolve) => {
    started.once('exit', () => resolve());
    started.kill('SIGTERM');
  });
  expect((await sh(check.command, appDir, checkEnv, 5_000)).code).not.toBe(0);
}, 60_000);
