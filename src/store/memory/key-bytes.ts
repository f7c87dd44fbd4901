/**
 * Counter keys as the memory store's byte pools hold them. An ASCII key (every key sluice builds
 * from ASCII descriptors) takes one byte per character; any other key is held as UTF-16LE, which
 * gives back every JS string exactly (UTF-8 would not: lone surrogates all become U+FFFD, and two
 * different keys would meet in one counter).
 *
 * A key's "coded length" is its byte length times two, plus 1 when it is UTF-16: two keys can only
 * be equal when their coded lengths are.
 */

let scratch = Buffer.alloc(4096);

/** Encodes `key` into `encodedKey()` (to store it), and returns its coded length. */
export function encodeKey(key: string): number {
  const ascii = Buffer.byteLength(key, 'utf8') === key.length;
  const length = ascii ? key.length : key.length * 2;
  if (length > scratch.length) scratch = Buffer.alloc(Math.max(length, scratch.length * 2));
  scratch.write(key, 0, length, ascii ? 'latin1' : 'utf16le');
  return length * 2 + (ascii ? 0 : 1);
}

/** The bytes of the key last encoded (valid until the next `encodeKey`). */
export function encodedKey(): Buffer {
  return scratch;
}

/** Bytes of a key of coded length `coded`. */
export function keyByteLength(coded: number): number {
  return Math.floor(coded / 2);
}

/** The key of coded length `coded` held at `offset` of `chunk`. */
export function decodeKey(chunk: Buffer, offset: number, coded: number): string {
  return chunk.toString(coded % 2 === 0 ? 'latin1' : 'utf16le', offset, offset + keyByteLength(coded));
}

/**
 * Whether the key of coded length `coded` held at `offset` of `chunk` is `key`, compared character
 * by character without encoding `key` (a lookup reads a key far more often than it stores one). A
 * one-byte key holds ASCII only, so a character beyond it never equals one of its bytes.
 */
export function heldKeyEquals(chunk: Uint8Array, offset: number, coded: number, key: string): boolean {
  const length = key.length;
  if (coded % 2 === 0) {
    if (coded !== length * 2) return false;
    for (let i = 0; i < length; i++) if (chunk[offset + i] !== key.charCodeAt(i)) return false;
    return true;
  }
  if (coded !== length * 4 + 1) return false;
  for (let i = 0, at = offset; i < length; i++, at += 2) {
    if ((chunk[at]! | (chunk[at + 1]! << 8)) !== key.charCodeAt(i)) return false;
  }
  return true;
}
