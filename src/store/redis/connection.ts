import type { ConnectionOptions } from 'node:tls';
import { Cluster, Redis } from 'ioredis';
import type { ClusterOptions, RedisOptions } from 'ioredis';
import type { RedisStoreOptions } from './options';

export type RedisClient = Redis | Cluster;

/** Reconnect delays: 50 ms doubling to a 2 s cap, with ±20 % jitter so replicas do not stampede. Forever. */
export function reconnectDelayMs(attempt: number): number {
  const base = Math.min(2_000, 50 * 2 ** Math.min(Math.max(attempt - 1, 0), 6));
  return Math.round(base * (0.8 + Math.random() * 0.4));
}

/** How long to wait for a TCP (and TLS) connection before trying again. */
const CONNECT_TIMEOUT_MS = 2_000;

/**
 * Builds the ioredis client for a store: `Redis` for single (host:port, URL or unix socket) and
 * sentinel, `Cluster` for cluster. It connects at once and reconnects forever with capped backoff.
 *
 * Fail fast instead of queueing: sluice must answer well inside Envoy's 20 ms deadline, and a
 * decision made seconds later is worthless (the request has gone). So while disconnected a call
 * rejects at once (`enableOfflineQueue: false`), and a call in flight when the connection drops
 * rejects at once instead of being resent after reconnecting (`maxRetriesPerRequest: 0`,
 * `autoResendUnfulfilledCommands: false` — a resent script might charge twice). Commands have no
 * timeout of their own, on purpose: a reply that comes late is still read, so the Redis store can
 * take back a charge whose caller was answered without it (the caller's wait is bounded by its
 * deadline and by the stall watch, not here). Concurrent requests share round trips
 * (`enableAutoPipelining`).
 *
 * The caller must attach an 'error' listener (RedisStore does): ioredis emits one per failed
 * reconnect, and an unhandled 'error' event would crash the process.
 */
export function createRedisClient(options: RedisStoreOptions): RedisClient {
  const tls = tlsOptions(options);
  const auth = {
    ...(options.username !== undefined ? { username: options.username } : {}),
    ...(options.password !== undefined ? { password: options.password } : {}),
  };
  const common: RedisOptions = {
    ...auth,
    ...(tls !== undefined ? { tls } : {}),
    connectTimeout: CONNECT_TIMEOUT_MS,
    enableAutoPipelining: true,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // A demoted master (sentinel failover) answers READONLY: reconnect to find the new one, but
    // do not resend (the caller already got a transient error and may apply its failure policy).
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 1 : false),
  };

  switch (options.type) {
    case 'single': {
      const single: RedisOptions = {
        ...common,
        enableOfflineQueue: false,
        retryStrategy: reconnectDelayMs,
        ...(options.db !== undefined ? { db: options.db } : {}),
      };
      if (options.url !== undefined) return new Redis(options.url, single);
      if (options.socketPath !== undefined) return new Redis({ ...single, path: options.socketPath });
      const node = firstNode(options);
      return new Redis({ ...single, host: node.host, port: node.port });
    }
    case 'sentinel': {
      if (options.sentinelMasterName === undefined || options.sentinelMasterName === '') {
        throw new Error('redis sentinel: a master name is required');
      }
      firstNode(options);
      return new Redis({
        ...common,
        enableOfflineQueue: false,
        retryStrategy: reconnectDelayMs,
        sentinels: options.nodes.map((n) => ({ host: n.host, port: n.port })),
        name: options.sentinelMasterName,
        sentinelRetryStrategy: reconnectDelayMs,
        // Learns of a failover from the sentinels' +switch-master at once instead of on the next error.
        failoverDetector: true,
        ...(options.sentinelPassword !== undefined ? { sentinelPassword: options.sentinelPassword } : {}),
        ...(tls !== undefined ? { enableTLSForSentinelMode: true, sentinelTLS: tls } : {}),
        ...(options.db !== undefined ? { db: options.db } : {}),
      });
    }
    case 'cluster': {
      firstNode(options);
      const cluster: ClusterOptions = {
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        clusterRetryStrategy: reconnectDelayMs,
        clusterNodeRetryStrategy: reconnectDelayMs,
        // "Connection is closed" may hit a script that already ran: failing is better than
        // resending it and charging twice. MOVED/ASK/TRYAGAIN/CLUSTERDOWN are resent as usual
        // (the script did not run), bounded by the caller's deadline.
        retryDelayOnFailover: 0,
        scaleReads: 'master',
        redisOptions: common,
        // With TLS the certificate names the host: connect by name, not by resolved address
        // (what managed clusters such as ElastiCache need).
        ...(tls !== undefined ? { dnsLookup: (address, callback) => callback(null, address) } : {}),
      };
      return new Cluster(
        options.nodes.map((n) => ({ host: n.host, port: n.port })),
        cluster,
      );
    }
  }
}

/** Where the store connects, for logs: never a password. */
export function describeRedisTarget(options: RedisStoreOptions): string {
  if (options.type === 'single') {
    if (options.url !== undefined) return `single ${redactUrl(options.url)}`;
    if (options.socketPath !== undefined) return `single unix:${options.socketPath}`;
  }
  const nodes = options.nodes.map((n) => `${n.host}:${n.port}`).join(',');
  return options.type === 'sentinel' ? `sentinel ${options.sentinelMasterName ?? '?'}@${nodes}` : `${options.type} ${nodes}`;
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = 'redacted';
    return parsed.toString();
  } catch {
    return '(unparsable url)';
  }
}

function firstNode(options: RedisStoreOptions): { host: string; port: number } {
  const node = options.nodes[0];
  if (node === undefined) throw new Error(`redis ${options.type}: no node address given`);
  return node;
}

function tlsOptions(options: RedisStoreOptions): ConnectionOptions | undefined {
  const tls = options.tls;
  if (tls === undefined) return undefined;
  return {
    rejectUnauthorized: tls.rejectUnauthorized,
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls.cert !== undefined ? { cert: tls.cert } : {}),
    ...(tls.key !== undefined ? { key: tls.key } : {}),
  };
}
