/**
 * Counter keys to record ids: an open-addressing table (linear probing, backward-shift deletion)
 * of 32-bit slots, at most 75 % full (87.5 % when memory is short): 5–11 bytes per key, where a JS Map spends 28–56 on its
 * entry. The keys and their full hashes stay in the store, compared through `sameKey` and read
 * through `hashOf`: a probe compares hashes before keys, and moving or deleting a record never
 * hashes a key again.
 *
 * The hash is FNV-1a over the key's characters from a random per-process basis, finished with
 * MurmurHash3's mixer: keys carry a SHA-256 tag of the client's first descriptor entry, so
 * clients cannot line their keys up into long probe runs without knowing the basis.
 */
export class KeyIndex {
  /** 0: empty; otherwise record id + 1. */
  private slots = new Int32Array(1024);
  private mask = 1023;
  private used = 0;
  private readonly basis = (Math.random() * 0x100000000) >>> 0;

  constructor(
    /** Whether record `id` holds `key` (asked only when the hashes agree). */
    private readonly sameKey: (id: number, key: string) => boolean,
    private readonly hashOf: (id: number) => number,
    /** Calls `visit` with every record's id and hash, in column order (a resize reads them in sequence). */
    private readonly eachRecord: (visit: (id: number, h: number) => void) => void,
  ) {}

  get size(): number {
    return this.used;
  }

  /** Bytes of the table as allocated. */
  get bytes(): number {
    return this.slots.length * 4;
  }

  /** The id of `key` (whose hash is `h`), or -1. */
  find(key: string, h: number): number {
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const slot = this.slots[i]!;
      if (slot === 0) return -1;
      if (this.hashOf(slot - 1) === h && this.sameKey(slot - 1, key)) return slot - 1;
    }
  }

  /**
   * Makes room for one more key: call before its record enters the columns (a resize reads the
   * columns, and must not see the newcomer it is about to be told of). The table doubles past 3/4
   * full, or past 7/8 when `tight` (memory is short: probes grow longer, but stay short).
   */
  reserve(tight = false): void {
    if ((this.used + 1) * 8 > this.slots.length * (tight ? 7 : 6)) this.resize(this.slots.length * 2);
  }

  /** Adds a key (not present) of hash `h` with `id`, after `reserve`. */
  insert(h: number, id: number): void {
    let i = h & this.mask;
    while (this.slots[i] !== 0) i = (i + 1) & this.mask;
    this.slots[i] = id + 1;
    this.used++;
  }

  /** The record of hash `h` moved from `from` to `to`. */
  relocate(h: number, from: number, to: number): void {
    this.slots[this.slotOf(h, from)] = to + 1;
  }

  /** The records `idA` and `idB` traded places (both found before either changes). */
  swap(hA: number, idA: number, hB: number, idB: number): void {
    const slotA = this.slotOf(hA, idA);
    const slotB = this.slotOf(hB, idB);
    this.slots[slotA] = idB + 1;
    this.slots[slotB] = idA + 1;
  }

  delete(h: number, id: number): void {
    let hole = this.slotOf(h, id);
    this.slots[hole] = 0;
    this.used--;
    // Backward shift: pull later entries of the run into the hole when their home allows it.
    for (let i = (hole + 1) & this.mask; this.slots[i] !== 0; i = (i + 1) & this.mask) {
      const home = this.hashOf(this.slots[i]! - 1) & this.mask;
      // Movable when home is not cyclically within (hole, i].
      if (((i - home) & this.mask) >= ((i - hole) & this.mask)) {
        this.slots[hole] = this.slots[i]!;
        this.slots[i] = 0;
        hole = i;
      }
    }
  }

  /** Occupied slots (equal to `size` unless the table is broken): for tests. */
  occupied(): number {
    let n = 0;
    for (const slot of this.slots) if (slot !== 0) n++;
    return n;
  }

  clear(): void {
    this.slots = new Int32Array(1024);
    this.mask = 1023;
    this.used = 0;
  }

  hash(key: string): number {
    let h = this.basis;
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
  }

  private slotOf(h: number, id: number): number {
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const slot = this.slots[i]!;
      if (slot === id + 1) return i;
      if (slot === 0) throw new Error('key index: record not found');
    }
  }

  private resize(length: number): void {
    const slots = new Int32Array(length);
    const mask = length - 1;
    // From the columns, not the old table: sequential reads instead of one random read per key.
    this.eachRecord((id, h) => {
      let i = h & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = id + 1;
    });
    this.slots = slots;
    this.mask = mask;
  }
}
