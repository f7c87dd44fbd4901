import { StoreError } from '../../errors';

/** Socket-level failures: the network or the server is away, and may come back. */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EAI_AGAIN',
  'ENOTFOUND',
  'ERR_SOCKET_CLOSED',
]);

/** ioredis error classes that mean "not now" rather than "never". */
const TRANSIENT_NAMES = new Set(['MaxRetriesPerRequestError', 'ClusterAllFailedError', 'AbortError']);

/**
 * Redis error-reply prefixes worth retrying later: cluster resharding or failover (CLUSTERDOWN,
 * TRYAGAIN, MOVED/ASK surfacing after too many redirections, READONLY on a demoted master),
 * startup (LOADING, MASTERDOWN), a busy or full server (BUSY, OOM), missing replicas.
 */
const TRANSIENT_REPLIES = ['CLUSTERDOWN', 'TRYAGAIN', 'MOVED', 'ASK', 'LOADING', 'MASTERDOWN', 'READONLY', 'BUSY', 'OOM', 'NOREPLICAS'];

/** Messages ioredis itself produces when the connection is not usable right now. */
const TRANSIENT_MESSAGES = [
  'Command timed out',
  'Connection is closed',
  "Stream isn't writeable",
  "Cluster isn't ready",
  'Cluster is ended',
  'Failed to refresh slots cache',
  'Too many Cluster redirections',
  'None of startup nodes is available',
  'All sentinels are unreachable',
];

/**
 * True when the failure may go away on its own (timeouts, refused or closed connections, cluster
 * reconfiguring, a loading or busy server). False for what retrying cannot fix: bad credentials
 * or permissions, a script error, a key of the wrong type.
 */
export function isTransientRedisError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof StoreError) return err.transient;
  const code = (err as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
  if (TRANSIENT_NAMES.has(err.name)) return true;
  const message = err.message;
  if (TRANSIENT_REPLIES.some((prefix) => message.startsWith(prefix))) return true;
  return TRANSIENT_MESSAGES.some((text) => message.includes(text));
}

/**
 * Wraps a failure as a StoreError whose message names what failed, e.g.
 * `redis decide (3 checks, slot 866) failed: Command timed out`. The original stays as `cause`.
 */
export function toStoreError(what: string, err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  return new StoreError(`redis ${what} failed: ${detail}`, isTransientRedisError(err), { cause: err });
}
