import type { ConfigSizeLimits } from './config-files';
import { configProblem } from './config-problem';
import { type ConfigSnapshot, snapshotOf } from './config-snapshot';
import { inspectConfigDirectory } from './load';
import { LoadedRateLimitConfig } from './rate-limit-config';
import type { ConfigProblem } from './types';

/** What a reload worker is asked to do: read and check one config directory. */
export interface ReloadRequest {
  readonly dir: string;
  readonly ignoreDotFiles: boolean;
  readonly mergeDomainConfig: boolean;
  readonly limits: ConfigSizeLimits;
  /** A file changed less than this many ms ago is not taken yet (0 or absent: take what is there). */
  readonly settleMs?: number | undefined;
}

/** A reload worker's one answer; plain data, so it crosses threads and processes by V8's serializer. */
export type ReloadReply =
  | { readonly ok: true; readonly snapshot: ConfigSnapshot }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[]; readonly unstable: boolean };

export interface RefusedReload {
  readonly ok: false;
  readonly problems: readonly ConfigProblem[];
  readonly unstable: false;
}

/**
 * A reload refused for a reason of the reload machinery's (out of time or memory, a worker or the
 * host gone), not of a file's: one problem, reported against the config directory.
 */
export function refusedReload(dir: string, reason: string): RefusedReload {
  return { ok: false, problems: [configProblem(dir, '', reason)], unstable: false };
}

/** What sluice asks of its reload host (reload-host.ts), over the IPC channel. */
export type ReloadHostRequest =
  | { readonly kind: 'load'; readonly id: number; readonly request: ReloadRequest; readonly heapMb: number }
  /** Sluice no longer waits for load `id` (out of time, or stopping): end its worker. */
  | { readonly kind: 'cancel'; readonly id: number };

/**
 * The host's answer to load `id`: a good config comes as one message per slice of its snapshot
 * (see ConfigSnapshot for why), then the reply with `snapshot.slices` empty; anything else as the
 * reply alone.
 */
export type ReloadHostReply = { readonly id: number; readonly slice: Uint8Array } | { readonly id: number; readonly reply: ReloadReply };

/**
 * Reads, parses and validates the directory: all the expensive part of a reload, run by
 * `reload-worker.ts` on a thread of the reload host. Pure apart from reading the files, so tests
 * call it here.
 */
export function checkForReload(request: ReloadRequest): ReloadReply {
  const inspected = inspectConfigDirectory(request.dir, request);
  const { config, problems, unstable } = inspected;
  if (config === undefined || problems.length > 0) return { ok: false, problems, unstable };
  if (!(config instanceof LoadedRateLimitConfig)) throw new Error('the config loader built an unknown kind of config');
  return { ok: true, snapshot: snapshotOf(config) };
}
