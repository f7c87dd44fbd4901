import type { Clock } from '../../util/clock';

export interface RedisNode {
  readonly host: string;
  readonly port: number;
}

/** How to reach Redis and how the Redis store behaves. Built from settings; validated there. */
export interface RedisStoreOptions {
  readonly type: 'single' | 'sentinel' | 'cluster';
  /** single: one node (unless socketPath or url); sentinel: the sentinels; cluster: seed nodes. */
  readonly nodes: readonly RedisNode[];
  /** single only: a full redis:// or rediss:// URL (takes precedence over nodes). */
  readonly url?: string;
  /** single only: unix socket path. */
  readonly socketPath?: string;
  readonly sentinelMasterName?: string;
  readonly username?: string;
  readonly password?: string;
  readonly sentinelPassword?: string;
  /** PEM texts (not file paths): the settings layer reads the files. */
  readonly tls?: { readonly ca?: string; readonly cert?: string; readonly key?: string; readonly rejectUnauthorized: boolean };
  readonly db?: number;
  /**
   * REDIS_TIMEOUT, ms: a connection with commands waiting that delivers no reply bytes for this
   * long counts as stalled, and the store as down until it delivers again (see StallWatch).
   */
  readonly replyTimeoutMs: number;
  /** CACHE_KEY_PREFIX; passed to counterKey by the limiter, not applied again here. */
  readonly keyPrefix: string;
  /** Undefined: scripts read Redis TIME (one clock for all instances). A Clock: `now` comes from it (CLOCK=local, tests). */
  readonly clock?: Clock;
}
