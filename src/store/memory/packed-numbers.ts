/**
 * Sequences of doubles packed into bytes, for counter states whose length varies (sliding_window's
 * sub-windows, sliding_log's instants): the memory store keeps them in its byte pools, outside the
 * heap, where an array of objects would be one object graph per counter for the collector to walk.
 *
 * Each value is written relative to a reference the caller picks (the previous instant, say): a
 * difference that is a whole number below 2^28 and gives the value back exactly is written as a
 * varint (1–5 bytes); anything else as its 8 raw bytes. Decoding therefore returns every double
 * bit for bit, so the algorithms decide exactly as they do on unpacked state (and as the Lua does).
 */

const INT_LIMIT = 2 ** 28;
const scratch = Buffer.alloc(64 * 1024);
const double = new Float64Array(1);
const doubleBytes = new Uint8Array(double.buffer);

/** Appends values to a scratch buffer (`PackedWriter.bytes`); `finish()` returns their length. */
export class PackedWriter {
  /** Where every writer writes: valid until the next writer starts. */
  static readonly bytes: Buffer = scratch;

  private length = 0;

  /** Writes `value`, stored relative to `reference`. */
  put(value: number, reference: number): void {
    const diff = value - reference;
    if (Number.isInteger(diff) && diff >= 0 && diff < INT_LIMIT && Object.is(reference + diff, value)) {
      // Low bit 0 marks a varint difference, 1 a raw double.
      this.varint(diff * 2);
      return;
    }
    this.varint(1);
    double[0] = value;
    for (let i = 0; i < 8; i++) scratch[this.length++] = doubleBytes[i]!;
  }

  finish(): number {
    return this.length;
  }

  /** `n` below 2^29 (a difference times two, or the raw marker): small integer arithmetic throughout. */
  private varint(n: number): void {
    let rest = n;
    while (rest >= 0x80) {
      scratch[this.length++] = (rest & 0x7f) | 0x80;
      rest >>>= 7;
    }
    scratch[this.length++] = rest;
  }
}

/** Reads back what a PackedWriter wrote, value by value, with the same references. */
export class PackedReader {
  constructor(
    private readonly bytes: Uint8Array,
    private offset: number,
    private readonly end: number,
  ) {}

  get done(): boolean {
    return this.offset >= this.end;
  }

  next(reference: number): number {
    const n = this.varint();
    if ((n & 1) === 0) return reference + n / 2;
    for (let i = 0; i < 8; i++) doubleBytes[i] = this.bytes[this.offset++]!;
    return double[0]!;
  }

  /** At most 5 bytes (the writer's values are below 2^29), so the shifts stay within 32 bits. */
  private varint(): number {
    const bytes = this.bytes;
    let byte = bytes[this.offset++]!;
    let n = byte & 0x7f;
    for (let shift = 7; byte >= 0x80; shift += 7) {
      byte = bytes[this.offset++]!;
      n |= (byte & 0x7f) << shift;
    }
    return n >>> 0;
  }
}
