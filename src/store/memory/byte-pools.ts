/**
 * Variable-length byte strings (the memory store's counter keys and packed states) kept outside
 * the JS heap. Held as JS strings, a full store is hundreds of thousands of heap objects that every
 * major garbage collection marks: at a 192 MB heap that was 100 ms pauses, every few seconds of an
 * identity flood (the store evicts one string and allocates another per new identity). Here they
 * are bytes in 16 KiB Buffers, which the collector never walks.
 *
 * Layout: one pool per size class (8-byte steps up to 64, then about 1/8 apart), each a dense
 * sequence of blocks of its class's size, in chunks so that growing never copies. A block is
 * addressed by class and position. Freeing moves the pool's last block into the hole, so a pool
 * has no free space inside it whatever the pattern of frees (an attacker varying key lengths cannot
 * fragment it): the cost is that a block's address changes, which its owner is told about. Waste is
 * the rounding up to a class (at most 1/8) and each pool's last, partly filled chunk.
 */

const CHUNK_BYTES = 16 * 1024;
/** Classes are at most 1/8 apart above 64 bytes: a block wastes at most 1/9 of itself. */
const CLASS_SIZES: readonly number[] = classSizes();
const CLASS_COUNT = CLASS_SIZES.length;

function classSizes(): number[] {
  const sizes: number[] = [];
  for (let size = 8; size <= 2 ** 31; size = size < 64 ? size + 8 : Math.ceil((size * 1.125) / 8) * 8) sizes.push(size);
  return sizes;
}

/** The class of a block of `length` bytes (> 0): the smallest that holds it. */
function classOf(length: number): number {
  let low = 0;
  let high = CLASS_COUNT - 1;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (CLASS_SIZES[mid]! >= length) high = mid;
    else low = mid + 1;
  }
  return low;
}

class Pool {
  readonly blocksPerChunk: number;
  readonly chunks: Buffer[] = [];
  /** Per chunk, each block's owner (an opaque number the pools hand back on a move). */
  readonly owners: Uint32Array[] = [];
  count = 0;

  constructor(readonly blockSize: number) {
    this.blocksPerChunk = Math.max(1, Math.floor(CHUNK_BYTES / blockSize));
  }

  get chunkBytes(): number {
    return this.blocksPerChunk * (this.blockSize + 4);
  }
}

/** Called when the block of `owner` moved to `address`. */
export type BlockMoved = (owner: number, address: number) => void;

export class BytePools {
  private readonly pools: (Pool | undefined)[] = new Array<Pool | undefined>(CLASS_COUNT);
  private allocated = 0;
  private used = 0;

  constructor(private readonly moved: BlockMoved) {}

  /**
   * Bytes of the blocks held, owner column included. Chunks as allocated hold at most two chunks
   * more per size class in use (a pool's last chunk, partly filled, and one spare): see `allocatedBytes`.
   */
  get bytes(): number {
    return this.used;
  }

  /** Bytes of the chunks as allocated. */
  get allocatedBytes(): number {
    return this.allocated;
  }

  /** Bytes a block for `length` bytes takes, owner column included (for estimates). */
  static blockBytes(length: number): number {
    return CLASS_SIZES[classOf(length)]! + 4;
  }

  /** A block of at least `length` (> 0) bytes for `owner` (< 2^32); its contents are undefined. */
  allocate(length: number, owner: number): number {
    const cls = classOf(length);
    const pool = (this.pools[cls] ??= new Pool(CLASS_SIZES[cls]!));
    const position = pool.count++;
    this.used += pool.blockSize + 4;
    const chunk = Math.floor(position / pool.blocksPerChunk);
    if (chunk === pool.chunks.length) {
      pool.chunks.push(Buffer.alloc(pool.blocksPerChunk * pool.blockSize));
      pool.owners.push(new Uint32Array(pool.blocksPerChunk));
      this.allocated += pool.chunkBytes;
    }
    pool.owners[chunk]![position - chunk * pool.blocksPerChunk] = owner;
    return position * CLASS_COUNT + cls;
  }

  /**
   * Frees the block at `address`. The pool's last block moves into its place, and `moved` is told
   * (unless the freed block was the last).
   */
  free(address: number): void {
    const cls = address % CLASS_COUNT;
    const pool = this.pools[cls]!;
    const position = (address - cls) / CLASS_COUNT;
    const last = --pool.count;
    this.used -= pool.blockSize + 4;
    if (position !== last) {
      const size = pool.blockSize;
      const per = pool.blocksPerChunk;
      const fromChunk = Math.floor(last / per);
      const toChunk = Math.floor(position / per);
      const from = (last - fromChunk * per) * size;
      const to = (position - toChunk * per) * size;
      pool.chunks[fromChunk]!.copy(pool.chunks[toChunk]!, to, from, from + size);
      const owner = pool.owners[fromChunk]![last - fromChunk * per]!;
      pool.owners[toChunk]![position - toChunk * per] = owner;
      this.moved(owner, address);
    }
    // One empty chunk stays as a spare, so that a pool at a chunk boundary does not thrash.
    if (pool.chunks.length >= 2 && pool.count <= (pool.chunks.length - 2) * pool.blocksPerChunk) {
      pool.chunks.pop();
      pool.owners.pop();
      this.allocated -= pool.chunkBytes;
    }
  }

  /** Tells the block at `address` who owns it now. */
  setOwner(address: number, owner: number): void {
    const cls = address % CLASS_COUNT;
    const pool = this.pools[cls]!;
    const position = (address - cls) / CLASS_COUNT;
    const chunk = Math.floor(position / pool.blocksPerChunk);
    pool.owners[chunk]![position - chunk * pool.blocksPerChunk] = owner;
  }

  /** The Buffer holding the block at `address`; its bytes start at `offsetOf(address)`. */
  chunkOf(address: number): Buffer {
    const cls = address % CLASS_COUNT;
    const pool = this.pools[cls]!;
    return pool.chunks[Math.floor((address - cls) / CLASS_COUNT / pool.blocksPerChunk)]!;
  }

  offsetOf(address: number): number {
    const cls = address % CLASS_COUNT;
    const pool = this.pools[cls]!;
    const position = (address - cls) / CLASS_COUNT;
    return (position % pool.blocksPerChunk) * pool.blockSize;
  }

  /** Whether a block at `address` can hold `length` bytes (a rewrite may then stay in place). */
  fits(address: number, length: number): boolean {
    return CLASS_SIZES[address % CLASS_COUNT]! >= length;
  }

  /** Blocks held, for tests. */
  get blocks(): number {
    let n = 0;
    for (const pool of this.pools) n += pool?.count ?? 0;
    return n;
  }

  /** The owner recorded for the block at `address`, for tests. */
  ownerOf(address: number): number {
    const cls = address % CLASS_COUNT;
    const pool = this.pools[cls]!;
    const position = (address - cls) / CLASS_COUNT;
    const chunk = Math.floor(position / pool.blocksPerChunk);
    return pool.owners[chunk]![position - chunk * pool.blocksPerChunk]!;
  }

  clear(): void {
    this.pools.fill(undefined);
    this.allocated = 0;
    this.used = 0;
  }
}
