import cluster from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { type ReadyMessage, WORKER_SLOT_ENV, isMetricsReply } from './messages';

/** How long a worker's /metrics waits for the primary's view across workers. */
const METRICS_TIMEOUT_MS = 10_000;

/** This process's part in a cluster of sluice workers (WORKERS > 1). */
export interface ClusterWorker {
  /** The worker's slot, 1..WORKERS, the same for the worker that replaces it. */
  readonly id: number;
  /** /metrics across all workers, as the primary aggregates it. */
  metricsText(): Promise<string>;
  /** Hands this worker's metrics to the primary's aggregation. */
  shareMetrics(registry: Registry): void;
  /** Tells the primary this worker serves. */
  ready(startup: Readonly<Record<string, unknown>>): void;
}

/** Undefined unless this process is a node:cluster worker. */
export function clusterWorker(): ClusterWorker | undefined {
  if (!cluster.isWorker) return undefined;
  // Constructing it makes prom-client answer the primary's requests for this worker's metrics;
  // until shareMetrics, with its (empty) global registry.
  new AggregatorRegistry();
  const pending = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  let nextId = 0;
  process.on('message', (message: unknown) => {
    if (!isMetricsReply(message)) return;
    const waiting = pending.get(message.id);
    if (waiting === undefined) return;
    pending.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.text !== undefined) waiting.resolve(message.text);
    else waiting.reject(new Error(`metrics across workers: ${message.error ?? 'no answer'}`));
  });
  return {
    id: Number(process.env[WORKER_SLOT_ENV] ?? cluster.worker?.id ?? 0),
    metricsText: () =>
      new Promise<string>((resolve, reject) => {
        const id = nextId++;
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new Error('metrics across workers: the primary did not answer'));
        }, METRICS_TIMEOUT_MS);
        pending.set(id, { resolve, reject, timer });
        process.send?.({ type: 'sluice:metrics-request', id });
      }),
    shareMetrics: (registry) => AggregatorRegistry.setRegistries([registry]),
    ready: (startup) => {
      const message: ReadyMessage = { type: 'sluice:ready', startup };
      process.send?.(message);
    },
  };
}
