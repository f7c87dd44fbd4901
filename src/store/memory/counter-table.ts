import type { AlgorithmName } from '../../config/types';
import { BytePools } from './byte-pools';
import { decodeKey, encodedKey, encodeKey, heldKeyEquals, keyByteLength } from './key-bytes';
import { KeyIndex } from './key-index';
import { PackedWriter } from './packed-numbers';
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
/** Packed states up to this many bytes are copied by a loop. */
const SHORT_COPY = 256;
/** Slots of the found-ids cache (a power of two): more than the checks of most requests. */
const FOUND_SLOTS = 16;
/** A record id is `position * SLABS + slab`. */
const SLABS = 4;

/**
 * Counters of one algorithm in columns: where its key's bytes are, the state's doubles, its
 * expiry, what its loss would forgive, and (variable-length states) where its packed bytes are.
 * Keys and packed states live in the table's byte pools, off the heap; the columns are typed
 * arrays, so a slab of any size is a handful of heap objects. Positions [0, ordinary) hold
 * ordinary counters, [ordinary, size) protected ones, so eviction can pick among ordinary ones
 * only, and knows in O(1) whether any exist.
 */
class Slab {
  capacity = 0;
  size = 0;
  ordinary = 0;
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
  /** The key's block in the byte pools, and its coded length (key-bytes.ts). */
  keyAddress = new Float64Array(0);
  keyLength = new Uint32Array(0);
  /** Packed layouts only: the state's block (when its length is not 0) and its length in bytes. */
  packedAddress = new Float64Array(0);
  packedLength = new Uint32Array(0);

  constructor(
    readonly index: number,
    readonly layout: StateLayout,
  ) {}

  /** Bytes of the columns per position. */
  get columnBytes(): number {
    return 8 * this.layout.fields + 4 + 2 + 4 + 8 + 4 + (this.layout.packed ? 12 : 0);
  }

  reset(): void {
    this.size = 0;
    this.ordinary = 0;
    this.capacity = 0;
    this.fields = new Float64Array(0);
    this.expires = new Uint32Array(0);
    this.hits = new Uint16Array(0);
    this.hashes = new Uint32Array(0);
    this.keyAddress = new Float64Array(0);
    this.keyLength = new Uint32Array(0);
    this.packedAddress = new Float64Array(0);
    this.packedLength = new Uint32Array(0);
  }

  grow(capacity: number): void {
    this.fields = grown(this.fields, capacity * this.layout.fields);
    this.expires = grown(this.expires, capacity);
    this.hits = grown(this.hits, capacity);
    this.hashes = grown(this.hashes, capacity);
    this.keyAddress = grown(this.keyAddress, capacity);
    this.keyLength = grown(this.keyLength, capacity);
    if (this.layout.packed) {
      this.packedAddress = grown(this.packedAddress, capacity);
      this.packedLength = grown(this.packedLength, capacity);
    }
    this.capacity = capacity;
  }
}

type Column = Float64Array | Uint32Array | Uint16Array;

function grown<T extends Column>(column: T, length: number): T {
  const next = new (column.constructor as new (length: number) => T)(length);
  next.set(column);
  return next;
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
    (id, key) => this.holdsKey(id, key),
    (id) => this.slabs[id % SLABS]!.hashes[(id - (id % SLABS)) / SLABS]!,
    (visit) => {
      for (const slab of this.slabs) {
        const hashes = slab.hashes;
        for (let position = 0; position < slab.size; position++) visit(position * SLABS + slab.index, hashes[position]!);
      }
    },
  );
  private readonly slabs: Slab[] = LAYOUT_ORDER.map((name, i) => new Slab(i, LAYOUTS[name]));
  /** Keys and packed states; a block's owner is its record's id times 2, plus 1 for a packed state. */
  private readonly pools = new BytePools((owner, address) => this.blockMoved(owner, address));
  /**
   * The ids `find` found last, by hash: a request reads each of its counters and then writes or
   * marks it, so the second lookup is one comparison. An entry holds while `moves` is what it was
   * when the entry was made: any record that moves, leaves or trades places bumps it.
   */
  private readonly foundKeys = new Array<string | undefined>(FOUND_SLOTS).fill(undefined);
  private readonly foundIds = new Int32Array(FOUND_SLOTS);
  private readonly foundAt = new Float64Array(FOUND_SLOTS).fill(-1);
  private moves = 0;
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

  /** Estimated bytes held: columns and index as allocated, the blocks of keys and packed states. */
  get bytes(): number {
    return this.bytesUsed + this.index.bytes + this.pools.bytes;
  }

  get maxBytes(): number {
    return this.options.maxBytes;
  }

  /** Whether the table holds more than its budget: `makeRoom` has counters to evict. */
  get overBudget(): boolean {
    return this.bytes > this.options.maxBytes;
  }

  /** The hash the table files `key` under: pass it to `read`, `write` and `mark` to hash a key once per request. */
  hash(key: string): number {
    return this.index.hash(key);
  }

  /** The state of `key` (hash `h`), or undefined when it holds none (an expired one is dropped here). */
  read(key: string, nowMs: number, h = this.index.hash(key)): unknown {
    const id = this.find(key, h);
    if (id < 0) return undefined;
    const slab = this.slabs[id % SLABS]!;
    const position = (id - slab.index) / SLABS;
    if (this.expired(slab, position, nowMs)) {
      this.remove(slab, position);
      return undefined;
    }
    // A key names its algorithm, so the slab holding it is always its algorithm's.
    const layout = slab.layout;
    if (!layout.packed) return layout.read(slab.fields, position * layout.fields, EMPTY, 0, 0);
    const length = slab.packedLength[position]!;
    if (length === 0) return layout.read(slab.fields, position * layout.fields, EMPTY, 0, 0);
    const address = slab.packedAddress[position]!;
    const start = this.pools.offsetOf(address);
    return layout.read(slab.fields, position * layout.fields, this.pools.chunkOf(address), start, start + length);
  }

  /** Stores `state` for `key` (inserting it if new). Does not evict: call `makeRoom` after a batch. */
  write(key: string, algorithm: AlgorithmName, state: unknown, expiresAtMs: number, standing: CounterStanding, h = this.index.hash(key)): void {
    const id = this.find(key, h);
    let slab: Slab;
    let position: number;
    if (id < 0) {
      slab = this.slabOf[algorithm];
      position = this.insert(slab, encodeKey(key), h, standing.protect);
      this.remember(key, h, position * SLABS + slab.index);
    } else {
      slab = this.slabs[id % SLABS]!;
      position = this.reclass(slab, (id - slab.index) / SLABS, standing.protect);
    }
    const layout = slab.layout;
    const length = layout.write(state, slab.fields, position * layout.fields);
    if (layout.packed) this.storePacked(slab, position, length);
    slab.expires[position] = this.expirySlot(expiresAtMs);
    slab.hits[position] = hitsSlot(standing.hits);
  }

  /** Records a decision that charged nothing (a rejection) on a counter that exists. */
  mark(key: string, standing: CounterStanding, h = this.index.hash(key)): void {
    const id = this.find(key, h);
    if (id < 0) return;
    const slab = this.slabs[id % SLABS]!;
    const position = this.reclass(slab, (id - slab.index) / SLABS, standing.protect);
    slab.hits[position] = hitsSlot(standing.hits);
  }

  /**
   * Evicts until the estimated bytes fit the budget. Counters whose keys are in `spare` (the
   * request just committed) go only when nothing else can.
   */
  makeRoom(nowMs: number, spare: ReadonlySet<string>): void {
    if (!this.overBudget) return;
    const spareHashes = new Set<number>();
    for (const key of spare.keys()) spareHashes.add(this.index.hash(key));
    const isSpare = (slab: Slab, position: number): boolean =>
      spareHashes.has(slab.hashes[position]!) && spare.has(this.keyAt(slab, position));
    while (this.bytes > this.options.maxBytes && this.index.size > 0) {
      this.evictOne(nowMs, isSpare);
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
        const id = position * SLABS + slab.index;
        const key = this.keyAt(slab, position);
        const found = this.find(key, this.index.hash(key));
        if (found !== id) problems.push(`${key}: index says ${found}, held at ${id}`);
        if (this.pools.ownerOf(slab.keyAddress[position]!) !== id * 2) problems.push(`${key}: its key block names another owner`);
        if (slab.layout.packed && slab.packedLength[position] !== 0 && this.pools.ownerOf(slab.packedAddress[position]!) !== id * 2 + 1) {
          problems.push(`${key}: its packed block names another owner`);
        }
      }
    }
    let blocks = 0;
    for (const slab of this.slabs) {
      blocks += slab.size;
      if (slab.layout.packed) for (let position = 0; position < slab.size; position++) if (slab.packedLength[position] !== 0) blocks++;
    }
    if (blocks !== this.pools.blocks) problems.push(`pools hold ${this.pools.blocks} blocks, counters ${blocks}`);
    if (total !== this.index.size) problems.push(`index holds ${this.index.size} keys, slabs ${total}`);
    if (this.index.occupied() !== this.index.size) problems.push(`index has ${this.index.occupied()} slots taken for ${this.index.size} keys`);
    return problems;
  }

  clear(): void {
    this.moves++;
    this.index.clear();
    this.pools.clear();
    for (const slab of this.slabs) slab.reset();
    this.bytesUsed = 0;
  }

  /** Bytes of the byte pools' chunks as allocated (the estimate counts blocks held): for the bench. */
  get allocatedPoolBytes(): number {
    return this.pools.allocatedBytes;
  }

  /** The id of `key`, whose hash is `h`, or -1. */
  private find(key: string, h: number): number {
    const slot = h & (FOUND_SLOTS - 1);
    if (this.foundAt[slot] === this.moves && this.foundKeys[slot] === key) return this.foundIds[slot]!;
    const id = this.index.find(key, h);
    if (id >= 0) this.remember(key, h, id);
    return id;
  }

  private remember(key: string, h: number, id: number): void {
    const slot = h & (FOUND_SLOTS - 1);
    this.foundKeys[slot] = key;
    this.foundIds[slot] = id;
    this.foundAt[slot] = this.moves;
  }

  /** Whether record `id` holds `key`. */
  private holdsKey(id: number, key: string): boolean {
    const slab = this.slabs[id % SLABS]!;
    const position = (id - slab.index) / SLABS;
    const address = slab.keyAddress[position]!;
    return heldKeyEquals(this.pools.chunkOf(address), this.pools.offsetOf(address), slab.keyLength[position]!, key);
  }

  private keyAt(slab: Slab, position: number): string {
    const address = slab.keyAddress[position]!;
    return decodeKey(this.pools.chunkOf(address), this.pools.offsetOf(address), slab.keyLength[position]!);
  }

  /** Copies the packed state just written (`length` bytes of PackedWriter.bytes) into its block. */
  private storePacked(slab: Slab, position: number, length: number): void {
    const before = slab.packedLength[position]!;
    const owner = (position * SLABS + slab.index) * 2 + 1;
    if (before !== 0 && (length === 0 || !this.pools.fits(slab.packedAddress[position]!, length))) {
      this.pools.free(slab.packedAddress[position]!);
      slab.packedLength[position] = 0;
    }
    if (length === 0) return;
    if (slab.packedLength[position] === 0) slab.packedAddress[position] = this.pools.allocate(length, owner);
    const address = slab.packedAddress[position]!;
    const chunk = this.pools.chunkOf(address);
    const at = this.pools.offsetOf(address);
    const bytes = PackedWriter.bytes;
    // Most states are tens of bytes (a sliding window's 21 sub-windows: about 100): there, a loop
    // costs less than Buffer#copy's way into native code.
    if (length <= SHORT_COPY) for (let i = 0; i < length; i++) chunk[at + i] = bytes[i]!;
    else bytes.copy(chunk, at, 0, length);
    slab.packedLength[position] = length;
  }

  /** A block moved within the pools: its record learns its new address. */
  private blockMoved(owner: number, address: number): void {
    const packed = owner % 2;
    const id = (owner - packed) / 2;
    const slab = this.slabs[id % SLABS]!;
    const position = (id - slab.index) / SLABS;
    if (packed === 1) slab.packedAddress[position] = address;
    else slab.keyAddress[position] = address;
  }

  private expired(slab: Slab, position: number, nowMs: number): boolean {
    return (slab.expires[position]! + (this.expiryBase ?? 0)) * 1000 <= nowMs;
  }

  private evictOne(nowMs: number, isSpare: (slab: Slab, position: number) => boolean): void {
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
        if (isSpare(slab, position)) {
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
      const other = this.firstNotIn(isSpare, fromProtected);
      if (other !== undefined) [best, bestPosition] = other;
      else if (fallback !== undefined) [best, bestPosition] = [fallback, fallbackPosition];
      else return;
      bestCost = this.expired(best, bestPosition, nowMs) ? -1 : best.hits[bestPosition]!;
    }
    this.remove(best, bestPosition);
    this.options.onEvict?.(Math.max(0, bestCost));
  }

  private firstNotIn(isSpare: (slab: Slab, position: number) => boolean, fromProtected: boolean): [Slab, number] | undefined {
    for (const slab of this.slabs) {
      const end = fromProtected ? slab.size : slab.ordinary;
      for (let position = 0; position < end; position++) {
        if (!isSpare(slab, position)) return [slab, position];
      }
    }
    return undefined;
  }

  /** Inserts the key last encoded (`coded`: its coded length) with hash `h`; returns its position. */
  private insert(slab: Slab, coded: number, h: number, protect: boolean): number {
    // A full index doubles, unless that alone would pass the budget: then it fills further first
    // (7/8 instead of 3/4: longer probes, but no mass eviction to pay for the doubling).
    this.index.reserve(this.bytes + this.index.bytes > this.options.maxBytes);
    if (slab.size === slab.capacity) {
      // Half again, but near the budget only by what it can pay for, and at least a step: a growth
      // never makes `makeRoom` evict more than a step's worth of columns at once. Once the store is
      // full, evictions keep the slab below its capacity, so it stops growing.
      const room = Math.floor((this.options.maxBytes - this.bytes) / slab.columnBytes);
      const step = Math.max(INITIAL_CAPACITY, Math.min(slab.capacity >> 1, room));
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
    const id = position * SLABS + slab.index;
    const length = keyByteLength(coded);
    const address = this.pools.allocate(Math.max(1, length), id * 2);
    encodedKey().copy(this.pools.chunkOf(address), this.pools.offsetOf(address), 0, length);
    slab.keyAddress[position] = address;
    slab.keyLength[position] = coded;
    slab.hashes[position] = h;
    if (slab.layout.packed) slab.packedLength[position] = 0;
    this.index.insert(h, id);
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
    this.moves++;
    this.index.delete(slab.hashes[position]!, position * SLABS + slab.index);
    // Freeing may move another record's block, which updates that record's address column.
    this.pools.free(slab.keyAddress[position]!);
    if (slab.layout.packed && slab.packedLength[position] !== 0) this.pools.free(slab.packedAddress[position]!);
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
    slab.size--;
  }

  private swap(slab: Slab, a: number, b: number): void {
    if (a === b) return;
    this.moves++;
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
    swapIn(slab.keyAddress, a, b);
    swapIn(slab.keyLength, a, b);
    if (slab.layout.packed) {
      swapIn(slab.packedAddress, a, b);
      swapIn(slab.packedLength, a, b);
    }
    this.ownBlocks(slab, a);
    this.ownBlocks(slab, b);
    // Hashes already traded places with their keys.
    this.index.swap(slab.hashes[b]!, a * SLABS + slab.index, slab.hashes[a]!, b * SLABS + slab.index);
  }

  /** Tells the pools that the blocks of the record at `position` belong to that position's id. */
  private ownBlocks(slab: Slab, position: number): void {
    const id = position * SLABS + slab.index;
    this.pools.setOwner(slab.keyAddress[position]!, id * 2);
    if (slab.layout.packed && slab.packedLength[position] !== 0) this.pools.setOwner(slab.packedAddress[position]!, id * 2 + 1);
  }

  /** Copies the counter at `from` to `to` (whose counter is gone or moved). */
  private move(slab: Slab, from: number, to: number): void {
    this.moves++;
    const stride = slab.layout.fields;
    slab.fields.copyWithin(to * stride, from * stride, from * stride + stride);
    slab.expires[to] = slab.expires[from]!;
    slab.hits[to] = slab.hits[from]!;
    slab.hashes[to] = slab.hashes[from]!;
    slab.keyAddress[to] = slab.keyAddress[from]!;
    slab.keyLength[to] = slab.keyLength[from]!;
    if (slab.layout.packed) {
      slab.packedAddress[to] = slab.packedAddress[from]!;
      slab.packedLength[to] = slab.packedLength[from]!;
    }
    this.ownBlocks(slab, to);
    this.index.relocate(slab.hashes[to]!, from * SLABS + slab.index, to * SLABS + slab.index);
  }
}

function hitsSlot(hits: number): number {
  return hits >= 0xffff ? 0xffff : Math.ceil(hits);
}

function swapIn(column: Column, a: number, b: number): void {
  const t = column[a]!;
  column[a] = column[b]!;
  column[b] = t;
}

const EMPTY = new Uint8Array(0);
