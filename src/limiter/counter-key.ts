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
  let tag: string;
  let rest: string;
  if (entries.length === 0) {
    const domainFull = encodeFull(domain);
    tag = slotTag(domainFull);
    rest = shortPart(domain, domainFull);
  } else {
    const first = entries[0]!;
    const head = keyHead(domain, first.key, first.value);
    tag = head.tag;
    rest = head.rest;
    for (let i = 1; i < entries.length; i++) {
      const { key, value } = entries[i]!;
      rest += `:${encodePart(key)}=${encodePart(value)}`;
    }
  }
  if (rest.length > MAX_REST) rest = `!${sha256(rest)}`;
  return `${prefix}${KEY_VERSION}{${tag}${limitPart(limit)}${rest}`;
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

/** What a key takes from its domain and first entry: the slot tag, and `<domain>:<key>=<value>` as encoded parts. */
interface KeyHead {
  readonly tag: string;
  readonly rest: string;
}

/**
 * Heads already built, by domain, first entry key and first entry value as the request carried
 * them. Every check of one client (client_id=A, and client_id=A + user_id=u) shares one, and busy
 * clients come back: a hit costs three lookups on strings whose hashes config matching has
 * mostly computed already, where building one is three encodings and a SHA-256. (A SHA-256 per
 * check was once 9 % of the memory store's CPU profile; a cache keyed by the joined encodings,
 * which had to be built, flattened and hashed for every check, still 2–3 %.)
 * Bounded: a new cache once it holds HEADS_MAX heads or HEAD_CHARS_MAX characters of entry keys
 * and values, so an identity flood costs at most a few MB.
 */
let heads = new Map<string, Map<string, Map<string, KeyHead>>>();
let headCount = 0;
let headChars = 0;
const HEADS_MAX = 10_000;
const HEAD_CHARS_MAX = 1 << 22;

function keyHead(domain: string, key: string, value: string): KeyHead {
  let byKey = heads.get(domain);
  let byValue = byKey?.get(key);
  const cached = byValue?.get(value);
  if (cached !== undefined) return cached;
  const domainFull = encodeFull(domain);
  const keyFull = encodeFull(key);
  const valueFull = encodeFull(value);
  const head: KeyHead = {
    tag: slotTag(`${domainFull}:${keyFull}=${valueFull}`),
    rest: `${shortPart(domain, domainFull)}:${shortPart(key, keyFull)}=${shortPart(value, valueFull)}`,
  };
  // A new Map rather than clear(): V8 keeps a cleared Map's old table reachable from its new one.
  if (headCount >= HEADS_MAX || headChars >= HEAD_CHARS_MAX) {
    heads = new Map();
    headCount = 0;
    headChars = 0;
    byKey = undefined;
    byValue = undefined;
  }
  if (byKey === undefined) {
    byKey = new Map();
    heads.set(domain, byKey);
    headChars += domain.length;
  }
  if (byValue === undefined) {
    byValue = new Map();
    byKey.set(key, byValue);
  }
  byValue.set(value, head);
  headCount += 1;
  headChars += key.length + value.length + head.rest.length;
  return head;
}

/**
 * 12 base64url characters (72 bits) of SHA-256 over the injective encoding of domain and first
 * entry (`input`): no braces, no client control over the slot, and a uniform spread.
 */
function slotTag(input: string): string {
  return createHash('sha256').update(input, 'utf8').digest().subarray(0, 9).toString('base64url');
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
