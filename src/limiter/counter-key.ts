import { createHash } from 'node:crypto';
import type { DescriptorEntry, LimitSpec } from '../config/types';

/**
 * Version of the stored counter format. Bump it whenever what a key holds changes shape (hash
 * fields, window indexing), so old and new instances never misread each other's counters during a
 * rolling deploy. v2: sliding_window keeps sub-windows in one string instead of a 3-number hash.
 * v3: every counter is one string of packed doubles (fixed_window and token_bucket were hashes),
 * and sliding_window's string starts with the total of its hits.
 */
export const KEY_VERSION = 'sluice:v3:';

/** Encoded parts longer than this are replaced by their hash, so keys stay short and bounded. */
const MAX_PART = 64;
/** Above this, everything after the limit identity is hashed as one. */
const MAX_REST = 384;

/**
 * The one place counter keys are built, for every store. Two checks share a counter exactly when
 * domain, entries (in order), algorithm, window and counter variant agree — so changing only
 * `requests_per_unit` (or a bucket's `burst`) keeps the count, while changing the window or
 * algorithm starts afresh instead of misreading old state.
 *
 *   <prefix>sluice:v3:{<tag>}:<algorithm>:<windowMs>[.<variant>]:<domain>:<key>=<value>:<key>=<value>…
 *   e.g. sluice:v3:{0iz-Ki9NEKaO}:sliding_window:60000:oauth2:client_id=app-1:user_id=u%40x.org
 *
 * - Several limits on one node (`rate_limits:`) share domain and entries; their counters differ by
 *   algorithm or window, and where two items share both, the later ones carry
 *   `limit.counterVariant` (1, 2, …) as `.<variant>` after the window. A window is only digits,
 *   so `60000.1` is never another limit's window, and a node with one limit (or limits that
 *   differ in algorithm or window) keeps exactly the keys it had.
 *
 * - Injective: every part is percent-encoded over a small safe alphabet (`:`, `=`, `{`, `}`, `%`,
 *   `|`, spaces, newlines and all non-ASCII are escaped), so the separators only ever come from
 *   this function. A part whose encoding is longer than 64 characters becomes `#` + its SHA-256
 *   (`#` never appears in an encoding), and a tail longer than 384 characters becomes `!` + the
 *   SHA-256 of the tail. Distinct identities collide only if SHA-256 does.
 * - Cluster placement: the hash tag comes right after the operator's prefix, before any value
 *   a client sends, and holds only a hash (base64url: no braces). So a client can neither choose a
 *   slot nor inject a tag. The tag hashes (domain, first entry key, first entry value): the limits
 *   of one client (client_id=A, and client_id=A + user_id=u) share one slot and are decided in one
 *   script call, while different clients and domains spread over every slot.
 * - Bounded: at most the prefix plus about 460 characters (480 is tested), whatever the request carried.
 *
 * `prefix` is CACHE_KEY_PREFIX; it must not contain braces (see `keyPrefixProblem`).
 */
export function counterKey(prefix: string, domain: string, entries: readonly DescriptorEntry[], limit: LimitSpec): string {
  // Domain and first entry are encoded once, for the key's tail and for the slot tag.
  const domainFull = encodeFull(domain);
  let rest = shortPart(domain, domainFull);
  let tagInput = domainFull;
  for (let i = 0; i < entries.length; i++) {
    const { key, value } = entries[i]!;
    if (i === 0) {
      const keyFull = encodeFull(key);
      const valueFull = encodeFull(value);
      tagInput = `${domainFull}:${keyFull}=${valueFull}`;
      rest += `:${shortPart(key, keyFull)}=${shortPart(value, valueFull)}`;
    } else {
      rest += `:${encodePart(key)}=${encodePart(value)}`;
    }
  }
  if (rest.length > MAX_REST) rest = `!${sha256(rest)}`;
  return `${prefix}${KEY_VERSION}{${slotTag(tagInput)}${limitPart(limit)}${rest}`;
}

/** `}:<algorithm>:<windowMs>[.<variant>]:`, made once per limit of the config (every check of it has it). */
const limitParts = new WeakMap<LimitSpec, string>();

function limitPart(limit: LimitSpec): string {
  let part = limitParts.get(limit);
  if (part === undefined) {
    const variant = limit.counterVariant ?? 0;
    const window = variant > 0 ? `${String(limit.windowMs)}.${String(variant)}` : String(limit.windowMs);
    part = `}:${encodePart(limit.algorithm)}:${window}:`;
    limitParts.set(limit, part);
  }
  return part;
}

/**
 * Why a CACHE_KEY_PREFIX is unusable, or undefined when it is fine. Braces would form a Redis
 * Cluster hash tag ahead of ours (pinning every counter to one slot, or letting the whole key —
 * client values included — choose the slot).
 */
export function keyPrefixProblem(prefix: string): string | undefined {
  if (prefix.includes('{') || prefix.includes('}')) {
    return 'must not contain "{" or "}" (they would form a Redis Cluster hash tag)';
  }
  return undefined;
}

/**
 * Tags already computed, by their hash input. One client's limits share a tag (a request with 4
 * descriptors often needs 1–2 distinct ones) and busy clients come back, while a SHA-256 per check
 * was about 9 % of the memory store's CPU. Bounded: emptied when full, so an identity flood costs
 * at most TAG_CACHE_MAX entries (about 2 MB).
 */
const tagCache = new Map<string, string>();
const TAG_CACHE_MAX = 10_000;

/**
 * 12 base64url characters (72 bits) of SHA-256 over the injective encoding of domain and first
 * entry (`input`): no braces, no client control over the slot, and a uniform spread.
 */
function slotTag(input: string): string {
  const cached = tagCache.get(input);
  if (cached !== undefined) return cached;
  const tag = createHash('sha256').update(input, 'utf8').digest().subarray(0, 9).toString('base64url');
  if (tagCache.size >= TAG_CACHE_MAX) tagCache.clear();
  tagCache.set(input, tag);
  return tag;
}

/** A part as it appears in the key: its encoding, or `#` + a hash when that would be long. */
function encodePart(value: string): string {
  return shortPart(value, value.length <= MAX_PART ? encodeFull(value) : undefined);
}

/** `encodePart` given the value's full encoding (undefined: known to be too long). */
function shortPart(value: string, encoded: string | undefined): string {
  if (encoded !== undefined && encoded.length <= MAX_PART) return encoded;
  // UTF-16 code units are an injective image of any JS string, lone surrogates included.
  return `#${createHash('sha256').update(Buffer.from(value, 'utf16le')).digest('base64url')}`;
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('base64url');
}

/**
 * Percent-encoding over `[A-Za-z0-9._~/-]` (so routes and UUIDs stay readable). Other code points
 * become `%XX` per UTF-8 byte; a lone surrogate (possible in a JS string, not in valid UTF-8)
 * becomes `%uXXXX`, so no two strings share an encoding.
 */
function encodeFull(value: string): string {
  if (SAFE_STRING.test(value)) return value;
  // Safe runs are copied whole; only the code points between them are encoded.
  let out = '';
  let run = 0;
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    if (isSafe(unit)) continue;
    out += value.slice(run, i);
    let cp = unit;
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < value.length) {
      const low = value.charCodeAt(i + 1);
      if (low >= 0xdc00 && low <= 0xdfff) {
        cp = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
        i += 1;
      }
    }
    out += cp >= 0xd800 && cp <= 0xdfff ? `%u${hex(cp, 4)}` : utf8Escapes(cp);
    run = i + 1;
  }
  return out + value.slice(run);
}

/** `%XX` for each UTF-8 byte of code point `cp` (not a surrogate). */
function utf8Escapes(cp: number): string {
  if (cp < 0x80) return `%${hex(cp, 2)}`;
  if (cp < 0x800) return `%${hex(0xc0 | (cp >> 6), 2)}%${hex(0x80 | (cp & 0x3f), 2)}`;
  if (cp < 0x10000) return `%${hex(0xe0 | (cp >> 12), 2)}%${hex(0x80 | ((cp >> 6) & 0x3f), 2)}%${hex(0x80 | (cp & 0x3f), 2)}`;
  return `%${hex(0xf0 | (cp >> 18), 2)}%${hex(0x80 | ((cp >> 12) & 0x3f), 2)}%${hex(0x80 | ((cp >> 6) & 0x3f), 2)}%${hex(0x80 | (cp & 0x3f), 2)}`;
}

function hex(n: number, digits: number): string {
  return n.toString(16).toUpperCase().padStart(digits, '0');
}

const SAFE_STRING = /^[A-Za-z0-9._~/-]*$/;

function isSafe(cp: number): boolean {
  return (
    (cp >= 0x61 && cp <= 0x7a) || // a-z
    (cp >= 0x41 && cp <= 0x5a) || // A-Z
    (cp >= 0x30 && cp <= 0x39) || // 0-9
    cp === 0x2e || // .
    cp === 0x5f || // _
    cp === 0x7e || // ~
    cp === 0x2f || // /
    cp === 0x2d // -
  );
}
