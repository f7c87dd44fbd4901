// What a cluster primary and its workers say to each other over the IPC channel (WORKERS > 1).

/** A worker is serving: its ports and the rest of its startup line. */
export interface ReadyMessage {
  readonly type: 'sluice:ready';
  readonly startup: Readonly<Record<string, unknown>>;
}

/** A worker asks for /metrics across all workers. */
export interface MetricsRequest {
  readonly type: 'sluice:metrics-request';
  readonly id: number;
}

/** The primary's answer: the exposition text, or why there is none. */
export interface MetricsReply {
  readonly type: 'sluice:metrics-reply';
  readonly id: number;
  readonly text?: string;
  readonly error?: string;
}

function hasType(message: unknown, type: string): boolean {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}

export const isReady = (message: unknown): message is ReadyMessage => hasType(message, 'sluice:ready');
export const isMetricsRequest = (message: unknown): message is MetricsRequest => hasType(message, 'sluice:metrics-request');
export const isMetricsReply = (message: unknown): message is MetricsReply => hasType(message, 'sluice:metrics-reply');

/** The environment variable carrying a worker's slot (1..WORKERS), kept across its replacements. */
export const WORKER_SLOT_ENV = 'SLUICE_WORKER_SLOT';
