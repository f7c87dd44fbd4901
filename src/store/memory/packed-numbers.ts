/**
 * Sequences of doubles packed into one one-byte string, for counter states whose length varies
 * (sliding_window's sub-windows, sliding_log's instants). A string is one heap object with a
 * 16-byte header, where an array of objects would be one object graph per counter.
 *
 * Each value is written relative to a reference the caller picks (the previous instant, say): a
 * difference that is a whole number below 2^28 and gives the value back exactly is written as a
 * varint (1–4 bytes); anything else as its 8 raw bytes. Decoding therefore returns every double
 * bit for bit, so the algorithms decide exactly as they do on unpacked state (and as the Lua does).
 */

const INT_LIMIT = 2 ** 28;
const scratch = Buffer.alloc(64 * 1024);
const double = new Float64Array(1);
const doubleBytes = new Uint8Array(double.buffer);

/** Appends values to a scratch buffer; `finish()` returns the packed string. */
export class PackedWriter {
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

  finish(): string {
    return scratch.toString('latin1', 0, this.length);
  }

  private varint(n: number): void {
    let rest = n;
    while (rest >= 0x80) {
      scratch[this.length++] = (rest & 0x7f) | 0x80;
      rest = Math.floor(rest / 0x80);
    }
    scratch[this.length++] = rest;
  }
}

/** Reads back what a PackedWriter wrote, value by value, with the same references. */
export class PackedReader {
  private offset = 0;

  constructor(private readonly packed: string) {}

  get done(): boolean {
    return this.offset >= this.packed.length;
  }

  next(reference: number): number {
    const n = this.varint();
    if ((n & 1) === 0) return reference + n / 2;
    for (let i = 0; i < 8; i++) doubleBytes[i] = this.packed.charCodeAt(this.offset++);
    return double[0]!;
  }

  private varint(): number {
    let n = 0;
    let scale = 1;
    for (;;) {
      const byte = this.packed.charCodeAt(this.offset++);
      n += (byte & 0x7f) * scale;
      if (byte < 0x80) return n;
      scale *= 0x80;
    }
  }
}
