import { Random } from '../../../bench/accuracy/prng';
import { BytePools } from '../../../src/store/memory/byte-pools';
import { decodeKey, encodedKey, encodeKey, heldKeyEquals } from '../../../src/store/memory/key-bytes';

/** A model of the pools' users: owner → its bytes and the address the pools last told it. */
class Owners {
  readonly address = new Map<number, number>();
  readonly bytes = new Map<number, Buffer>();
  readonly pools = new BytePools((owner, address) => {
    if (!this.address.has(owner)) throw new Error(`moved a block of owner ${owner}, which holds none`);
    this.address.set(owner, address);
  });

  add(owner: number, bytes: Buffer): void {
    const address = this.pools.allocate(bytes.length, owner);
    bytes.copy(this.pools.chunkOf(address), this.pools.offsetOf(address));
    this.address.set(owner, address);
    this.bytes.set(owner, bytes);
  }

  remove(owner: number): void {
    this.pools.free(this.address.get(owner)!);
    this.address.delete(owner);
    this.bytes.delete(owner);
  }

  /** Every owner still finds its own bytes at its address, and is recorded as the owner there. */
  check(): void {
    for (const [owner, bytes] of this.bytes) {
      const address = this.address.get(owner)!;
      const start = this.pools.offsetOf(address);
      expect(this.pools.chunkOf(address).subarray(start, start + bytes.length).equals(bytes)).toBe(true);
      expect(this.pools.ownerOf(address)).toBe(owner);
    }
    expect(this.pools.blocks).toBe(this.bytes.size);
  }
}

describe('BytePools', () => {
  it.each([
    ['one byte', 1, 8],
    ['a class boundary', 64, 64],
    ['just past it', 65, 72],
    ['a typical counter key', 66, 72],
    ['a 1 KiB key', 1024, 1096],
    ['a block larger than a chunk', 100_000, 111_136],
  ])('rounds %s (%i bytes) up to its class (%i bytes)', (_name, length, block) => {
    expect(BytePools.blockBytes(length)).toBe(block + 4);
    const owners = new Owners();
    owners.add(7, Buffer.alloc(length, 0xab));
    owners.check();
    expect(owners.pools.bytes).toBe(block + 4);
  });

  it('keeps every owner told where its bytes are, through random frees of mixed sizes', () => {
    const random = new Random(12);
    const owners = new Owners();
    let next = 0;
    for (let step = 0; step < 20_000; step++) {
      if (owners.bytes.size > 0 && random.next() < 0.45) {
        const held = [...owners.bytes.keys()];
        owners.remove(held[Math.floor(random.next() * held.length)]!);
      } else {
        const length = 1 + Math.floor(random.next() * (random.next() < 0.1 ? 3_000 : 120));
        owners.add(next, Buffer.from(Array.from({ length }, (_, i) => (next + i) & 0xff)));
        next++;
      }
      if (step % 2_000 === 0) owners.check();
    }
    owners.check();
    let expected = 0;
    for (const bytes of owners.bytes.values()) expected += BytePools.blockBytes(bytes.length);
    expect(owners.pools.bytes).toBe(expected);
  });

  it('gives chunks back as a pool empties, keeping one spare', () => {
    const owners = new Owners();
    for (let owner = 0; owner < 10_000; owner++) owners.add(owner, Buffer.alloc(66, 1));
    const full = owners.pools.allocatedBytes;
    for (let owner = 0; owner < 10_000; owner++) owners.remove(owner);
    expect(owners.pools.bytes).toBe(0);
    expect(owners.pools.allocatedBytes).toBeLessThan(full / 10);
    expect(owners.pools.allocatedBytes).toBeGreaterThan(0);
  });
});

describe('key bytes', () => {
  it.each([
    ['ASCII', 'domain_user_id_u1000000:sliding_window:3600000'],
    ['Latin-1 beyond ASCII', 'user_id_café'],
    ['beyond Latin-1', 'user_id_ユーザー'],
    ['a lone surrogate', 'user_id_\ud800x'],
    ['another lone surrogate', 'user_id_\udbffx'],
    ['empty', ''],
  ])('gives %s keys back exactly, and tells them apart', (_name, key) => {
    const coded = encodeKey(key);
    const chunk = Buffer.from(encodedKey().subarray(0, Math.floor(coded / 2)));
    expect(decodeKey(chunk, 0, coded)).toBe(key);
    expect(encodeKey(key)).toBe(coded);
    expect(heldKeyEquals(chunk, 0, coded, key)).toBe(true);
    // A key that differs in its last character is a different key, even where UTF-8 would merge them.
    const other = key === '' ? 'x' : key.slice(0, -1) + String.fromCharCode(key.charCodeAt(key.length - 1) ^ 1);
    expect(heldKeyEquals(chunk, 0, coded, other)).toBe(false);
    // So is a prefix, and a key one character longer.
    if (key !== '') expect(heldKeyEquals(chunk, 0, coded, key.slice(0, -1))).toBe(false);
    expect(heldKeyEquals(chunk, 0, coded, `${key}a`)).toBe(false);
  });

  it('keeps lone surrogates apart (UTF-8 would make both U+FFFD)', () => {
    const a = encodeKey('k\ud800');
    const bytesA = Buffer.from(encodedKey().subarray(0, Math.floor(a / 2)));
    expect(encodeKey('k\udbff')).toBe(a);
    expect(heldKeyEquals(bytesA, 0, a, 'k\ud800')).toBe(true);
    expect(heldKeyEquals(bytesA, 0, a, 'k\udbff')).toBe(false);
  });

  it('tells a one-byte key from the same characters held as UTF-16, and from wider characters with the same low byte', () => {
    const ascii = encodeKey('ab');
    const asciiBytes = Buffer.from(encodedKey().subarray(0, Math.floor(ascii / 2)));
    // U+0161 has the low byte of 'a'.
    expect(heldKeyEquals(asciiBytes, 0, ascii, '\u0161b')).toBe(false);
    const wide = encodeKey('\u0161b');
    const wideBytes = Buffer.from(encodedKey().subarray(0, Math.floor(wide / 2)));
    expect(heldKeyEquals(wideBytes, 0, wide, '\u0161b')).toBe(true);
    expect(heldKeyEquals(wideBytes, 0, wide, 'ab')).toBe(false);
    expect(heldKeyEquals(wideBytes, 0, wide, 'ab\u0000\u0000')).toBe(false);
  });
});
