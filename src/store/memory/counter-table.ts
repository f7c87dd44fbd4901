import type { AlgorithmName } from '../../config/types';
import { KeyIndex } from './key-index';
import { LAYOUTS, LAYOUT_ORDER, type StateLayout } from './state-layouts';

/**
 * What a counter's loss would cost, kept beside its state: the hits it counted at its last
 * decision, and whether that decision left it at or over its limit ("protected").
 */
export interface CounterStanding {
  /** Hits counted at the last decision (what evicting it forgives, at most). */
  readonly hits: number;
  /** At or over its limit at the last decision: no room left, or a request rejected. */
  readonly protect: boolean;
}

export interface CounterTableOptions {
  /** Estimated bytes the counters may take; the cheapest are evicted beyond it. */
  readonly maxBytes: number;
  /** Candidates examined per eviction. */
  readonly evictionSamples?: number;
  /** Told about every eviction, with the hits it forgave. */
  readonly onEvict?: (forgivenHits: number) => void;
  /** Random numbers in [0, 1), for sampling (injected by tests). */
  readonly random?: () => number;
}

const INITIAL_CAPACITY = 256;
/** A record id is `position * SLABS + slab`. */
const SLABS = 4;

/**
 * Counters of one algorithm in columns: the key, the state's doubles, its expiry, what its loss
 * would forgive, and (variable-length states) a packed string. Positions [0, ordinary) hold
 * ordinary counters, [ordinary, size) protected ones, so eviction can pick among ordinary ones
 * only, and knows in O(1) whether any exist.
 */
class Slab {
  capacity = 0;
  size = 0;
  ordinary = 0;
  keys: (string | undefined)[] = [];
  /** Only for layouts with a packed string. */
  packed: (string | undefined)[] = [];
  fields = new Float64Array(0);
  /**
   * Expiry in whole seconds, rounded up: a state is dropped at most a second after it stopped
   * mattering (it decides as no state would), never before.
   */
  expires = new Uint32Array(0);
  /** Hits counted at the last decision, rounded up, capped at 65,535 (only compared). */
  hits = new Uint16Array(0);
  /** The key's hash in the index (so moves never hash the key again). */
  hashes = new Uint32Array(0);

  constructor(
    readonly index: number,
    readonly layout: StateLayout,
  ) {}

  /**
   * Bytes of the columns per position: the typed arrays, and the JS arrays' 8-byte references
   * counted as 12 (V8 grows their backing stores on its own, by half again).
   */
  get columnBytes(): number {
    return 8 * this.layout.fields + 4 + 2 + 4 + 12 + (this.layout.packed ? 12 : 0);
  }

  reset(): void {
    this.keys = [];
    this.packed = [];
    this.size = 0;
    this.ordinary = 0;
    this.capacity = 0;
    this.fields = new Float64Array(0);
    this.expires = new Uint32Array(0);
    this.hits = new Uint16Array(0);
    this.hashes = new Uint32Array(0);
  }

  grow(capacity: number): void {
    const fields = new Float64Array(capacity * this.layout.fields);
    fields.set(this.fields);
    this.fields = fields;
    const expires = new Uint32Array(capacity);
    expires.set(this.expires);
    this.expires = expires;
    const hits = new Uint16Array(capacity);
    hits.set(this.hits);
    this.hits = hits;
    const hashes = new Uint32Array(capacity);
    hashes.set(this.hashes);
    this.hashes = hashes;
    this.capacity = capacity;
  }
}

/**
 * The memory store's counters: compact columns per algorithm, a byte budget, and eviction of the
 * counter whose loss forgives the fewest hits.
 *
 * Eviction policy (when an insert or a growing state would pass `maxBytes`):
 * 1. only ordinary counters are candidates while any exists: a counter at or over its limit
 *    (protected) is evicted only when every counter in the store is protected;
 * 2. among the candidates, `evictionSamples` are drawn at random (as Redis approximates LFU) and
 *    the cheapest goes: an expired one (forgives nothing), else the fewest hits counted;
 * 3. counters charged by the request being committed are passed over while others exist.
 * An evicted ordinary counter had room left, so its loss forgives at most limit − 1 hits.
 */
export class CounterTable {
  private readonly index = new KeyIndex(
    (id) => this.slabs[id % SLABS]!.keys[(id - (id % SLABS)) / SLABS]!,
    (id) => this.slabs[id % SLABS]!.hashes[(id - (id % SLABS)) / SLABS]!,
    (visit) => {
      for (const slab of this.slabs) {
        const hashes = slab.hashes;
        for (let position = 0; position < slab.size; position++) visit(position * SLABS + slab.index, hashes[position]!);
      }
    },
  );
  private readonly slabs: Slab[] = LAYOUT_ORDER.map((name, i) => new Slab(i, LAYOUTS[name]));
  private readonly slabOf: Readonly<Record<AlgorithmName, Slab>>;
  private readonly samples: number;
  private readonly random: () => number;
  private bytesUsed = 0;
  /** See `expirySlot`. */
  private expiryBase: number | undefined;
  private sweepSlab = 0;
  private sweepPosition = -1;

  constructor(private readonly options: CounterTableOptions) {
    this.samples = options.evictionSamples ?? 16;
    this.random = options.random ?? Math.random;
    const slabOf = {} as Record<AlgorithmName, Slab>;
    for (const slab of this.slabs) slabOf[LAYOUT_ORDER[slab.index]!] = slab;
    this.slabOf = slabOf;
  }

  get count(): number {
    return this.index.size;
  }

  /** Estimated bytes held: columns and index as allocated, keys, packed states. */
  get bytes(): number {
    return this.bytesUsed + this.index.bytes;
  }

  get maxBytes(): number {
    return this.options.maxBytes;
  }

  /** The state of `key`, or undefined when it holds none (an expired one is dropped here). */
  read(key: string, nowMs: number): unknown {
    const id = this.index.find(key, this.index.hash(key));
    if (id < 0) return undefined;
    const slab = this.slabs[id % SLABS]!;
    const position = (id - slab.index) / SLABS;
    if (this.expired(slab, position, nowMs)) {
      this.remove(slab, position);
      return undefined;
    }
    // A key names its algorithm, so the slab holding it is always its algorithm's.
    const layout = slab.layout;
    return layout.read(slab.fields, position * layout.fields, slab.packed[position]);
  }

  /** Stores `state` for `key` (inserting it if new). Does not evict: call `fit` after a batch. */
  write(key: string, algorithm: AlgorithmName, state: unknown, expiresAtMs: number, standing: CounterStanding): void {
    const h = this.index.hash(key);
    const id = this.index.find(key, h);
    let slab: Slab;
    let position: number;
    if (id < 0) {
      slab = this.slabOf[algorithm];
      const stored = flat(key);
      position = this.insert(slab, stored, h, standing.protect);
      this.bytesUsed += stringBytes(stored);
    } else {
      slab = this.slabs[id % SLABS]!;
      position = this.reclass(slab, (id - slab.index) / SLABS, standing.protect);
    }
    const layout = slab.layout;
    const packed = layout.write(state, slab.fields, position * layout.fields);
    if (layout.packed) {
      const before = slab.packed[position];
      if (before !== undefined) this.bytesUsed -= stringBytes(before);
      slab.packed[position] = packed;
      if (packed !== undefined) this.bytesUsed += stringBytes(packed);
    }
    slab.expires[position] = this.expirySlot(expiresAtMs);
    slab.hits[position] = hitsSlot(standing.hits);
  }

  /** Records a decision that charged nothing (a rejection) on a counter that exists. */
  mark(key: string, standing: CounterStanding): void {
    const id = this.index.find(key, this.index.hash(key));
    if (id < 0) return;
    const slab = this.slabs[id % SLABS]!;
    const position = this.reclass(slab, (id - slab.index) / SLABS, standing.protect);
    slab.hits[position] = hitsSlot(standing.hits);
  }

  /**
   * Evicts until the estimated bytes fit the budget. Counters whose keys are in `spare` (the
   * request just committed) go only when nothing else can.
   */
  makeRoom(nowMs: number, spare: ReadonlySet<string> | ReadonlyMap<string, unknown>): void {
    while (this.bytes > this.options.maxBytes && this.index.size > 0) {
      this.evictOne(nowMs, spare);
    }
  }

  /** Drops expired counters, `batch` positions per call, resuming where the last call stopped. */
  sweep(nowMs: number, batch: number): void {
    let budget = batch;
    while (budget > 0) {
      const slab = this.slabs[this.sweepSlab]!;
      if (this.sweepPosition >= slab.size) this.sweepPosition = slab.size - 1;
      if (this.sweepPosition < 0) {
        // Each slab is swept downwards, so whatever a removal moves into a position was examined already.
        this.sweepSlab = (this.sweepSlab + 1) % SLABS;
        this.sweepPosition = this.slabs[this.sweepSlab]!.size - 1;
        // One pass over every slab per call at most.
        if (this.sweepSlab === 0) return;
        continue;
      }
      if (this.expired(slab, this.sweepPosition, nowMs)) this.remove(slab, this.sweepPosition);
      this.sweepPosition--;
      budget--;
    }
  }

  /**
   * An expiry as the Uint32 column holds it: whole seconds (rounded up) after `expiryBase`, which
   * the first write sets 2^30 s (34 years) before its own instant. Out of range, it is clamped:
   * long past reads as expired, far future as never (eviction still applies).
   */
  private expirySlot(expiresAtMs: number): number {
    this.expiryBase ??= Math.floor(expiresAtMs / 1000) - 2 ** 30;
    const seconds = Math.ceil(expiresAtMs / 1000) - this.expiryBase;
    return seconds < 0 ? 0 : seconds > 0xffffffff ? 0xffffffff : seconds;
  }

  /** Problems with the table's own bookkeeping (none expected): for tests. */
  verify(): string[] {
    const problems: string[] = [];
    let total = 0;
    for (const slab of this.slabs) {
      total += slab.size;
      if (slab.ordinary > slab.size || slab.size > slab.capacity) problems.push(`slab ${slab.index}: ranges ${slab.ordinary}/${slab.size}/${slab.capacity}`);
      for (let position = 0; position < slab.size; position++) {
        const key = slab.keys[position];
        if (key === undefined) {
          problems.push(`slab ${slab.index} position ${position}: no key`);
          continue;
        }
        const id = this.index.find(key, this.index.hash(key));
        if (id !== position * SLABS + slab.index) problems.push(`${key}: index says ${id}, held at ${position * SLABS + slab.index}`);
      }
    }
    if (total !== this.index.size) problems.push(`index holds ${this.index.size} keys, slabs ${total}`);
    if (this.index.occupied() !== this.index.size) problems.push(`index has ${this.index.occupied()} slots taken for ${this.index.size} keys`);
    return problems;
  }

  clear(): void {
    this.index.clear();
    for (const slab of this.slabs) slab.reset();
    this.bytesUsed = 0;
  }

  private expired(slab: Slab, position: number, nowMs: number): boolean {
    return (slab.expires[position]! + (this.expiryBase ?? 0)) * 1000 <= nowMs;
  }

  private evictOne(nowMs: number, spare: ReadonlySet<string> | ReadonlyMap<string, unknown>): void {
    let ordinary = 0;
    for (const slab of this.slabs) ordinary += slab.ordinary;
    const fromProtected = ordinary === 0;
    const population = fromProtected ? this.index.size : ordinary;
    let best: Slab | undefined;
    let bestPosition = -1;
    let bestCost = Infinity;
    let fallback: Slab | undefined;
    let fallbackPosition = -1;
    for (let draw = 0; draw < this.samples; draw++) {
      let r = Math.floor(this.random() * population);
      for (const slab of this.slabs) {
        const span = fromProtected ? slab.size : slab.ordinary;
        if (r >= span) {
          r -= span;
          continue;
        }
        const position = r;
        const cost = this.expired(slab, position, nowMs) ? -1 : slab.hits[position]!;
        if (cost >= bestCost) break;
        if (spare.has(slab.keys[position]!)) {
          fallback ??= slab;
          if (fallback === slab) fallbackPosition = position;
        } else {
          best = slab;
          bestPosition = position;
          bestCost = cost;
        }
        break;
      }
      // Nothing is cheaper than an expired counter.
      if (bestCost < 0) break;
    }
    if (best === undefined) {
      // Every draw hit the request being committed: take any other counter, else one of those.
      const other = this.firstNotIn(spare, fromProtected);
      if (other !== undefined) [best, bestPosition] = other;
      else if (fallback !== undefined) [best, bestPosition] = [fallback, fallbackPosition];
      else return;
      bestCost = this.expired(best, bestPosition, nowMs) ? -1 : best.hits[bestPosition]!;
    }
    this.remove(best, bestPosition);
    this.options.onEvict?.(Math.max(0, bestCost));
  }

  private firstNotIn(spare: ReadonlySet<string> | ReadonlyMap<string, unknown>, fromProtected: boolean): [Slab, number] | undefined {
    for (const slab of this.slabs) {
      const end = fromProtected ? slab.size : slab.ordinary;
      for (let position = 0; position < end; position++) {
        if (!spare.has(slab.keys[position]!)) return [slab, position];
      }
    }
    return undefined;
  }

  private insert(slab: Slab, key: string, h: number, protect: boolean): number {
    this.index.reserve();
    if (slab.size === slab.capacity) {
      // Doubling, but near the budget only by what it can pay for (at least a step), so that a
      // growth never makes `fit` evict a large share of the store at once.
      const room = Math.floor((this.options.maxBytes - this.bytesUsed) / slab.columnBytes);
      const step = Math.max(INITIAL_CAPACITY, slab.capacity >> 3, Math.min(slab.capacity >> 1, room));
      this.bytesUsed += step * slab.columnBytes;
      slab.grow(slab.capacity + step);
    }
    let position = slab.size++;
    if (!protect) {
      // The first protected counter moves to the end; the new one takes its place.
      if (position !== slab.ordinary) this.move(slab, slab.ordinary, position);
      position = slab.ordinary;
      slab.ordinary++;
    }
    slab.keys[position] = key;
    slab.hashes[position] = h;
    if (slab.layout.packed) slab.packed[position] = undefined;
    this.index.insert(h, position * SLABS + slab.index);
    return position;
  }

  /** Moves a counter between the ordinary and protected ranges; returns its new position. */
  private reclass(slab: Slab, position: number, protect: boolean): number {
    const isProtected = position >= slab.ordinary;
    if (isProtected === protect) return position;
    if (protect) {
      const last = slab.ordinary - 1;
      this.swap(slab, position, last);
      slab.ordinary--;
      return last;
    }
    const first = slab.ordinary;
    this.swap(slab, position, first);
    slab.ordinary++;
    return first;
  }

  private remove(slab: Slab, position: number): void {
    const key = slab.keys[position]!;
    this.index.delete(slab.hashes[position]!, position * SLABS + slab.index);
    this.bytesUsed -= stringBytes(key);
    const packed = slab.layout.packed ? slab.packed[position] : undefined;
    if (packed !== undefined) this.bytesUsed -= stringBytes(packed);
    let hole = position;
    if (hole < slab.ordinary) {
      // Keep the ranges contiguous: the last ordinary fills the hole, the last counter fills its place.
      const lastOrdinary = slab.ordinary - 1;
      if (hole !== lastOrdinary) this.move(slab, lastOrdinary, hole);
      hole = lastOrdinary;
      slab.ordinary--;
    }
    const last = slab.size - 1;
    if (hole !== last) this.move(slab, last, hole);
    slab.keys[last] = undefined;
    if (slab.layout.packed) slab.packed[last] = undefined;
    slab.size--;
  }

  private swap(slab: Slab, a: number, b: number): void {
    if (a === b) return;
    const stride = slab.layout.fields;
    const f = slab.fields;
    for (let i = 0; i < stride; i++) {
      const t = f[a * stride + i]!;
      f[a * stride + i] = f[b * stride + i]!;
      f[b * stride + i] = t;
    }
    swapIn(slab.expires, a, b);
    swapIn(slab.hits, a, b);
    swapIn(slab.hashes, a, b);
    const keyA = slab.keys[a]!;
    const keyB = slab.keys[b]!;
    slab.keys[a] = keyB;
    slab.keys[b] = keyA;
    if (slab.layout.packed) {
      const packedA = slab.packed[a];
      slab.packed[a] = slab.packed[b];
      slab.packed[b] = packedA;
    }
    // Hashes already traded places with their keys.
    this.index.swap(slab.hashes[b]!, a * SLABS + slab.index, slab.hashes[a]!, b * SLABS + slab.index);
  }

  /** Copies the counter at `from` to `to` (whose counter is gone or moved). */
  private move(slab: Slab, from: number, to: number): void {
    const stride = slab.layout.fields;
    slab.fields.copyWithin(to * stride, from * stride, from * stride + stride);
    slab.expires[to] = slab.expires[from]!;
    slab.hits[to] = slab.hits[from]!;
    slab.hashes[to] = slab.hashes[from]!;
    slab.keys[to] = slab.keys[from]!;
    if (slab.layout.packed) slab.packed[to] = slab.packed[from];
    this.index.relocate(slab.hashes[to]!, from * SLABS + slab.index, to * SLABS + slab.index);
  }
}

function hitsSlot(hits: number): number {
  return hits >= 0xffff ? 0xffff : Math.ceil(hits);
}

function swapIn(column: Uint32Array | Uint16Array, a: number, b: number): void {
  const t = column[a]!;
  column[a] = column[b]!;
  column[b] = t;
}

/**
 * A flat copy of a key. Keys arrive built by concatenation (a tree of string pieces, about 30
 * bytes more than the characters); a Map keeps whatever it is given.
 */
function flat(key: string): string {
  const copy = Buffer.from(key, 'latin1').toString('latin1');
  return copy === key ? copy : key;
}

/** V8's size of a sequential string: a 16-byte header, characters of 1 byte (latin1) or 2, 8-aligned. */
function stringBytes(s: string): number {
  // eslint-disable-next-line no-control-regex
  const width = /[^\u0000-\u00ff]/.test(s) ? 2 : 1;
  return 16 + Math.ceil((s.length * width) / 8) * 8;
}
