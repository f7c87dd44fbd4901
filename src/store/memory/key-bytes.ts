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
/** The key `scratch` holds, and its coded length: a store reads and then writes each key, so it is often asked again. */
let encoded = '';
let encodedCoded = 0;

/** Encodes `key` into `encodedKey()`, and returns its coded length. */
export function encodeKey(key: string): number {
  if (key === encoded) return encodedCoded;
  const ascii = Buffer.byteLength(key, 'utf8') === key.length;
  const length = ascii ? key.length : key.length * 2;
  if (length > scratch.length) scratch = Buffer.alloc(Math.max(length, scratch.length * 2));
  scratch.write(key, 0, length, ascii ? 'latin1' : 'utf16le');
  encoded = key;
  encodedCoded = length * 2 + (ascii ? 0 : 1);
  return encodedCoded;
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

/** Whether the key last encoded, of coded length `coded`, is the one held at `offset` of `chunk`. */
export function encodedKeyEquals(chunk: Buffer, offset: number, coded: number): boolean {
  const length = keyByteLength(coded);
  for (let i = 0; i < length; i++) if (scratch[i] !== chunk[offset + i]) return false;
  return true;
}
