import type { DescriptorEntry, LimitSpec } from '../config/types';

/**
 * The one place counter keys are built. Two checks share a counter exactly when domain, entries
 * (in order), algorithm and window agree — so changing only `requests_per_unit` keeps the count,
 * while changing the window or algorithm starts afresh instead of misreading old state.
 *
 * The encoding is JSON of a string array, which is injective: no value (containing `_`, `:`,
 * quotes or newlines) can make two different identities produce one key.
 */
export function counterKey(domain: string, entries: readonly DescriptorEntry[], limit: LimitSpec): string {
  const parts: string[] = [domain];
  for (const entry of entries) parts.push(entry.key, entry.value);
  parts.push(limit.algorithm, String(limit.windowMs));
  return JSON.stringify(parts);
}
