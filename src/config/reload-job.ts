import type { ConfigSizeLimits } from './config-files';
import { type ConfigSnapshot, snapshotOf } from './config-snapshot';
import { inspectConfigDirectory } from './load';
import { LoadedRateLimitConfig } from './rate-limit-config';
import type { ConfigProblem } from './types';

/** What the reload worker is asked to do: read and check one config directory. */
export interface ReloadRequest {
  readonly dir: string;
  readonly ignoreDotFiles: boolean;
  readonly mergeDomainConfig: boolean;
  readonly limits: ConfigSizeLimits;
  /** A file changed less than this many ms ago is not taken yet (0 or absent: take what is there). */
  readonly settleMs?: number | undefined;
}

/** The worker's one answer; plain data, so it crosses to the main thread by structured clone. */
export type ReloadReply =
  | { readonly ok: true; readonly snapshot: ConfigSnapshot }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[]; readonly unstable: boolean };

/**
 * Reads, parses and validates the directory: all the expensive part of a reload, run by
 * `reload-worker.ts` on its own thread. Pure apart from reading the files, so tests call it here.
 */
export function checkForReload(request: ReloadRequest): ReloadReply {
  const inspected = inspectConfigDirectory(request.dir, request);
  const { config, problems, unstable } = inspected;
  if (config === undefined || problems.length > 0) return { ok: false, problems, unstable };
  if (!(config instanceof LoadedRateLimitConfig)) throw new Error('the config loader built an unknown kind of config');
  return { ok: true, snapshot: snapshotOf(config) };
}
