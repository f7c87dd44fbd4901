import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { silentLogger } from '../../../src/logging/logger';
import type { RedisStoreOptions } from '../../../src/store/redis/options';
import { type RedisStore, createRedisStore } from '../../../src/store/redis/redis-store';
import type { Clock } from '../../../src/util/clock';
import type { RedisCluster, RedisServer } from '../../support/redis-server';

/** A key prefix no other test uses (counter keys of one test never meet another's). */
export function uniquePrefix(): string {
  return `t-${randomUUID().slice(0, 8)}:`;
}

export function singleOptions(server: RedisServer, overrides: Partial<RedisStoreOptions> = {}): RedisStoreOptions {
  return { type: 'single', nodes: [{ host: server.host, port: server.port }], replyTimeoutMs: 1_000, keyPrefix: '', ...overrides };
}

export function clusterOptions(cluster: RedisCluster, overrides: Partial<RedisStoreOptions> = {}): RedisStoreOptions {
  return { type: 'cluster', nodes: cluster.nodes.map((n) => ({ host: n.host, port: n.port })), replyTimeoutMs: 1_000, keyPrefix: '', ...overrides };
}

/** Resolves once the store reports itself available (connected, scripts run). */
export function whenAvailable(store: RedisStore, timeoutMs = 10_000): Promise<void> {
  if (store.isAvailable()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`store not available after ${timeoutMs} ms`)), timeoutMs);
    store.onAvailabilityChange((available) => {
      if (available) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** Creates a store and waits until it is available. */
export async function availableStore(options: RedisStoreOptions, clock?: Clock): Promise<RedisStore> {
  const store = createRedisStore(clock === undefined ? options : { ...options, clock }, silentLogger());
  await whenAvailable(store);
  return store;
}

/** A fixed_window counter as stored (two packed doubles: window index, hits), or null when none. */
export async function fixedWindowState(client: Redis | Cluster, key: string): Promise<{ w: string; c: string } | null> {
  const stored = await client.getBuffer(key);
  if (stored === null) return null;
  return { w: String(stored.readDoubleBE(0)), c: String(stored.readDoubleBE(8)) };
}

/** A plain client for looking at what the store wrote. */
export function inspector(target: RedisServer | RedisCluster): Redis | Cluster {
  return 'nodes' in target
    ? new Cluster(target.nodes.map((n) => ({ host: n.host, port: n.port })))
    : new Redis({ host: target.host, port: target.port });
}

/** EVAL + EVALSHA calls so far, summed over the given nodes (INFO commandstats). */
export async function scriptCalls(ports: readonly number[]): Promise<number> {
  let total = 0;
  for (const port of ports) {
    const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
    await client.connect();
    const info = await client.info('commandstats');
    await client.quit();
    for (const name of ['eval', 'evalsha']) {
      const match = new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(info);
      if (match) total += Number(match[1]);
    }
  }
  return total;
}
