import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type RunningSluice, startSluice } from '../../src/app';
import { type Logger, silentLogger } from '../../src/logging/logger';
import { loadSettings } from '../../src/settings/settings';
import type { CounterStore } from '../../src/store/counter-store';
import type { Clock } from '../../src/util/clock';
import { type RlsClient, createRlsClient } from './rls-client';
import { transportUnderTest } from './transport-under-test';

/**
 * The config reload host runs compiled JavaScript in its own process, outside ts-jest: in-process
 * tests use the dist/ build of its entry (`npm test` builds dist/ first, as the e2e tests need).
 */
export const CONFIG_RELOAD_SCRIPT = path.resolve(__dirname, '../../dist/src/config/reload-host.js');

export interface StartedSluice {
  readonly app: RunningSluice;
  readonly client: RlsClient;
  readonly configDir: string;
  stop(): Promise<void>;
}

/**
 * Starts the whole service in this process on free ports, with `files` as its config directory
 * and a real gRPC client connected to it. `args` are `sluice serve` flags; `env` stands in for
 * the process environment (e.g. `REDIS_URL`, `STORE_FAILURE_MODE`: the app then builds its Redis
 * store itself, as in production). `logger` defaults to a silent one.
 */
export async function startTestSluice(options: {
  files: Record<string, string>;
  /**
   * An existing config directory to serve instead of writing `files` to a fresh one (e.g. a fake
   * ConfigMap volume); the caller owns it and it is not removed on stop.
   */
  configDir?: string;
  /** Leave out `--config`: the config location comes from `env` (RUNTIME_ROOT…), as in production. */
  configFromEnv?: boolean;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  clock?: Clock;
  store?: CounterStore;
  logger?: Logger;
  /**
   * Start the reload host with sluice, as `sluice serve` does, instead of at the first reload: for
   * a test that times a reload (the lazy start forks this jest process on the way).
   */
  eagerReloadHost?: boolean;
}): Promise<StartedSluice> {
  const ownDir = options.configDir === undefined;
  const configDir = options.configDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-config-'));
  if (ownDir) {
    for (const [name, content] of Object.entries(options.files)) {
      fs.mkdirSync(path.dirname(path.join(configDir, name)), { recursive: true });
      fs.writeFileSync(path.join(configDir, name), content);
    }
  }
  const settings = loadSettings({ ...transportUnderTest(), ...options.env }, [
    ...(options.configFromEnv === true ? [] : ['--config', configDir]),
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
  ]);
  const app = await startSluice(settings, {
    logger: options.logger ?? silentLogger(),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.store ? { store: options.store } : {}),
    configReloadScript: CONFIG_RELOAD_SCRIPT,
    // Not a fork of this jest process at every start: most tests never reload.
    lazyReloadHost: options.eagerReloadHost !== true,
  });
  const client = createRlsClient(`127.0.0.1:${app.grpcPort}`);
  return {
    app,
    client,
    configDir,
    stop: async () => {
      client.close();
      await app.stop();
      if (ownDir) fs.rmSync(configDir, { recursive: true, force: true });
    },
  };
}
