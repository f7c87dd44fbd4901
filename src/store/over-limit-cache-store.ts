import type { AlgorithmName } from '../config/types';
import type { Clock } from '../util/clock';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from './counter-store';

/**
 * Estimated bytes one cache entry holds, for LOCAL_CACHE_SIZE_IN_BYTES: the key's characters
 * (UTF-16, 2 bytes each; the Map holds the key once) plus a fixed part for the Map slot and the
 * entry object (eight fields). An estimate, not a measurement: V8 does not expose object sizes,
 * and the figure errs high so that the budget is a ceiling.
 */
export const ENTRY_OVERHEAD_BYTES = 96;
export function entryBytes(key: string): number {
  return ENTRY_OVERHEAD_BYTES + 2 * key.length;
}

export interface OverLimitCacheRecorder {
  /** One request answered from the cache, without calling the store. */
  overLimitCacheHit(): void;
  /** The number of entries held, after every change. */
  overLimitCacheEntries(entries: number): void;
}

export interface OverLimitCacheOptions {
  /** The app's clock: retry instants are `now + resetMs` on it. */
  readonly clock: Clock;
  /** Budget in estimated bytes (see `entryBytes`); 0 = no byte bound. */
  readonly maxBytes: number;
  /** Budget in entries; 0 = no entry bound. At least one of the two must be > 0. */
  readonly maxEntries: number;
  readonly recorder?: OverLimitCacheRecorder;
}

/** An outcome answered from the cache; `localCache` lets metrics tell it apart. */
export interface LocallyCachedOutcome extends LimitOutcome {
  readonly localCache: true;
}

export function isLocallyCached(outcome: LimitOutcome): outcome is LocallyCachedOutcome {
  return (outcome as Partial<LocallyCachedOutcome>).localCache === true;
}

/** "A check on `key` with exactly these limit parameters, needing ≥ `minHits` hits, is rejected until `untilMs`." */
interface Entry {
  readonly algorithm: AlgorithmName;
  readonly limit: number;
  readonly windowMs: number;
  readonly burst: number | undefined;
  readonly chargeRejectedHits: boolean;
  /** Hits (a check-only call counts as 1) the rejected check needed; 0 = any check is rejected. */
  readonly minHits: number;
  readonly untilMs: number;
  readonly bytes: number;
}

/**
 * The over-limit cache (the reference's LOCAL_CACHE_SIZE_IN_BYTES): a CounterStore decorator that
 * remembers rejections and answers a request locally, without calling the store it wraps, when
 * the store is certain to reject it too.
 *
 * Why a remembered rejection stays true: without CHARGE_REJECTED_HITS a rejected check charges
 * nothing, and the only other thing that changes a counter before its retry instant is other
 * requests' admitted hits, which only make it fuller. So a check that needed `h` hits and was told
 * "retry in resetMs" stays rejected, for any check on the same counter with the same limit,
 * window, algorithm and burst that needs `h` hits or more, until `sent + resetMs`, where `sent` is
 * the clock read *before* the store call (the store decided later, so this instant is never after
 * the real one). A check needing fewer hits may fit sooner (sliding windows, token buckets), so it
 * goes to the store. A check-only call (0 hits) needs 1.
 *
 * With CHARGE_REJECTED_HITS the store charges rejected hits too, so skipping the store would
 * forgive them; only `fixed_window` rejections are cached then: once a window's count is over the
 * limit it stays over, whatever is added, until the window ends (`resetMs`), and any check on it
 * (0 hits included) is rejected. (Sliding windows and token buckets would reopen sooner without
 * the uncharged hits, so they always go to the store.)
 *
 * All-or-nothing: a request is answered locally only when EVERY one of its checks is cached as
 * rejected. Then the store would reject every check: without CHARGE_REJECTED_HITS it would charge
 * nothing; with it, it would charge fixed windows that are over until their end anyway, so the
 * hits not charged change no decision. Nothing is lost by not calling it; each check
 * is reported rejected with `remaining` 0 (as the reference does) and `resetMs` until its cached
 * retry instant; shadow-mode checks are reported the same way and the service still lets them
 * through. A request with any check not cached goes to the store whole and unchanged, so the
 * outcomes it reports for its other checks are real (one store call, which a rejected request
 * makes charge-free by itself): no partial answers.
 *
 * The premise is a store that only takes hits back through its own windows. Hits taken back
 * early break it, and then a cached rejection can outlive the store's: a request spanning several
 * cluster slots refunds its reservations, a late reply is refunded, and another request saw the
 * counter full meanwhile (an under-admission the cluster already accepts, stretched here to the
 * cached retry time). A reload that lowers a token_bucket's limit does not: the bucket then owes
 * at most the time it had left, which is also when its counter expires.
 *
 * Bounded: an insertion-ordered Map used as an LRU (a hit or a new rejection moves the key to the
 * end), the oldest evicted when over either budget; expired entries are dropped when read.
 * Counters that appear twice in one request are not learnt (their outcomes include each other's
 * staged hits).
 */
export class OverLimitCacheStore implements CounterStore {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(
    private readonly inner: CounterStore,
    private readonly options: OverLimitCacheOptions,
  ) {
    if (options.maxBytes <= 0 && options.maxEntries <= 0) {
      throw new Error('OverLimitCacheStore needs maxBytes or maxEntries > 0');
    }
  }

  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    const sentMs = this.options.clock.nowMs();
    // An empty cache answers nothing: no lookups (each hashes a fresh key string).
    if (checks.length > 0 && this.entries.size > 0) {
      const local = this.answerLocally(checks, options, sentMs);
      if (local !== undefined) {
        this.options.recorder?.overLimitCacheHit();
        return Promise.resolve(local);
      }
    }
    let answer: Promise<readonly LimitOutcome[]>;
    try {
      answer = this.inner.decide(checks, options);
    } catch (err) {
      return Promise.reject(err);
    }
    return answer.then((outcomes) => {
      this.remember(checks, outcomes, options, sentMs);
      return outcomes;
    });
  }

  /** Entries held (expired ones not yet read included). */
  size(): number {
    return this.entries.size;
  }

  /** Estimated bytes held. */
  sizeInBytes(): number {
    return this.bytes;
  }

  close(): Promise<void> {
    this.entries.clear();
    this.bytes = 0;
    return this.inner.close();
  }

  private answerLocally(checks: readonly LimitCheck[], options: DecideOptions, nowMs: number): LimitOutcome[] | undefined {
    const outcomes: LimitOutcome[] = [];
    for (const check of checks) {
      const entry = this.lookup(check, options, nowMs);
      if (entry === undefined) return undefined;
      const outcome: LocallyCachedOutcome = { admitted: false, remaining: 0, resetMs: entry.untilMs - nowMs, localCache: true };
      outcomes.push(outcome);
    }
    for (const check of checks) this.touch(check.key);
    return outcomes;
  }

  private lookup(check: LimitCheck, options: DecideOptions, nowMs: number): Entry | undefined {
    const entry = this.entries.get(check.key);
    if (entry === undefined) return undefined;
    if (entry.untilMs <= nowMs) {
      this.drop(check.key, entry);
      this.publish();
      return undefined;
    }
    const matches =
      entry.algorithm === check.algorithm &&
      entry.limit === check.limit &&
      entry.windowMs === check.windowMs &&
      entry.burst === check.burst &&
      entry.chargeRejectedHits === options.chargeRejectedHits &&
      Math.max(check.hits, 1) >= entry.minHits;
    return matches ? entry : undefined;
  }

  private remember(
    checks: readonly LimitCheck[],
    outcomes: readonly LimitOutcome[],
    options: DecideOptions,
    sentMs: number,
  ): void {
    let changed = false;
    const repeated = checks.length > SCAN_CHECKS ? repeatedKeys(checks) : undefined;
    for (let i = 0; i < checks.length; i++) {
      const check = checks[i]!;
      const outcome = outcomes[i];
      if (outcome === undefined) continue;
      // Nothing to learn from an admission; only an entry it contradicts (another config) goes,
      // and an empty cache has none.
      if (outcome.admitted && this.entries.size === 0) continue;
      // Two checks on one counter in a request see each other's staged hits: a retry time computed
      // with hits that were then not charged would be too late, so such counters are not learnt.
      if (repeatsKey(checks, i, repeated)) continue;
      const old = this.entries.get(check.key);
      if (outcome.admitted) {
        if (old !== undefined && this.lookup(check, options, sentMs) !== undefined) {
          this.drop(check.key, old);
          changed = true;
        }
        continue;
      }
      if (!(outcome.resetMs > 0)) continue;
      if (options.chargeRejectedHits && check.algorithm !== 'fixed_window') continue;
      const entry: Entry = {
        algorithm: check.algorithm,
        limit: check.limit,
        windowMs: check.windowMs,
        burst: check.burst,
        chargeRejectedHits: options.chargeRejectedHits,
        minHits: options.chargeRejectedHits ? 0 : Math.max(check.hits, 1),
        untilMs: sentMs + outcome.resetMs,
        bytes: entryBytes(check.key),
      };
      if (old !== undefined) this.drop(check.key, old);
      this.entries.set(check.key, entry);
      this.bytes += entry.bytes;
      changed = true;
    }
    if (!changed) return;
    this.evict();
    this.publish();
  }

  /** Moves a key to the most recently used end. */
  private touch(key: string): void {
    const entry = this.entries.get(key);
    if (entry === undefined) return;
    this.entries.delete(key);
    this.entries.set(key, entry);
  }

  private drop(key: string, entry: Entry): void {
    this.entries.delete(key);
    this.bytes -= entry.bytes;
  }

  private evict(): void {
    const { maxBytes, maxEntries } = this.options;
    while (
      this.entries.size > 0 &&
      ((maxEntries > 0 && this.entries.size > maxEntries) || (maxBytes > 0 && this.bytes > maxBytes))
    ) {
      const [key, entry] = this.entries.entries().next().value as [string, Entry];
      this.drop(key, entry);
    }
  }

  private publish(): void {
    this.options.recorder?.overLimitCacheEntries(this.entries.size);
  }
}

/** Above this many checks, repeated keys are found with a set rather than by scanning. */
const SCAN_CHECKS = 16;

/** Keys that appear more than once in a request (long requests only, see `repeatsKey`). */
function repeatedKeys(checks: readonly LimitCheck[]): ReadonlySet<string> {
  const seen = new Set<string>();
  const repeated = new Set<string>();
  for (const check of checks) (seen.has(check.key) ? repeated : seen).add(check.key);
  return repeated;
}

/**
 * Whether another check of the request has the same key. Requests mostly have a few checks: a
 * scan costs less than building two sets per request.
 */
function repeatsKey(checks: readonly LimitCheck[], i: number, repeated: ReadonlySet<string> | undefined): boolean {
  const key = checks[i]!.key;
  if (repeated !== undefined) return repeated.has(key);
  for (let j = 0; j < checks.length; j++) {
    if (j !== i && checks[j]!.key === key) return true;
  }
  return false;
}
