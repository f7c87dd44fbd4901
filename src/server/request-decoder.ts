import type { DescriptorEntry } from '../config/types';
import type { RateLimitRequest, RequestDescriptor } from '../service/types';

/**
 * `RateLimitRequest` bytes → the service's request in one pass, with the strictness of
 * `checkRequestBytes` (structure, wire types, strict UTF-8) and protobufjs's reading of what it
 * accepts: repeated fields append, a singular field sent twice is the last one (not merged),
 * unknown fields are skipped, a uint32 is its low 32 bits and a uint64 is read as protobufjs
 * reads it with `longs: Number`.
 *
 * Why by hand: every call decodes one, and protobufjs through proto-loader builds a message
 * object per entry, then `fromWireRequest` a second set, and the strict check walks the bytes a
 * third time. This walks them once and builds only what the service keeps.
 *
 * Returns undefined for anything it does not accept; the caller then asks `checkRequestBytes`
 * what is wrong (the one place that words it). It never accepts what that check refuses (a
 * test holds it to that on mutated requests).
 *
 * One difference from protobufjs, deliberate: a uint32 or enum varint longer than 5 bytes (legal,
 * if never sent by protobuf encoders) is read as its low 32 bits, as Go and C++ read it;
 * protobufjs skips a fixed 5 more bytes there and misreads what follows.
 */
export function decodeRateLimitRequest(bytes: Buffer): RateLimitRequest | undefined {
  const reader = new Reader(bytes);
  return reader.request(bytes.length);
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

/** As `checkRequestBytes` validates, but keeping a leading U+FEFF as protobufjs does (TextDecoder drops it by default). */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Short ASCII strings decoded lately, one per slot of a table indexed by a hash of their bytes.
 * Envoy sends the same domain, entry keys and, for a busy client, the same values call after
 * call: a string found here costs no native call and no allocation, and V8 has already hashed it
 * for the Map lookups of config matching and counter keys. A miss (a new identity, or another
 * string in its slot) decodes as before and takes the slot. Bounded: INTERN_SLOTS strings of at
 * most INTERN_MAX_BYTES characters. Content is always compared, so a collision costs only a miss.
 */
const INTERN_SLOTS = 1024;
const INTERN_MASK = INTERN_SLOTS - 1;
const INTERN_MAX_BYTES = 64;
const interned = new Array<string | undefined>(INTERN_SLOTS).fill(undefined);

/** Thrown (and caught in `request`) for bytes this reader does not accept: never leaves the module. */
const REFUSED = Symbol('refused');

class Reader {
  private at = 0;
  /** The last varint read, as protobufjs's LongBits: its low and high 32 bits, unsigned. */
  private lo = 0;
  private hi = 0;

  constructor(private readonly bytes: Buffer) {}

  request(end: number): RateLimitRequest | undefined {
    try {
      let domain = '';
      let hitsAddend = 0;
      const descriptors: RequestDescriptor[] = [];
      while (this.at < end) {
        const wireType = this.tag(end);
        const field = this.fieldNumber;
        if (field === 1 && wireType === LEN) domain = this.string(end);
        else if (field === 2 && wireType === LEN) descriptors.push(this.descriptor(this.length(end)));
        else if (field === 3 && wireType === VARINT) {
          // uint32 (only the descriptor's own hits_addend is a UInt64Value).
          this.varint(end);
          hitsAddend = this.lo;
        } else if (field <= 3) throw REFUSED;
        else this.skip(wireType, end);
      }
      return { domain, descriptors, hitsAddend };
    } catch (err) {
      if (err === REFUSED) return undefined;
      throw err;
    }
  }

  private descriptor(end: number): RequestDescriptor {
    const entries: DescriptorEntry[] = [];
    let limitOverride: { requestsPerUnit: number; unit: number } | undefined;
    let hitsAddend: number | undefined;
    while (this.at < end) {
      const wireType = this.tag(end);
      const field = this.fieldNumber;
      if (wireType !== LEN) {
        if (field <= 3) throw REFUSED;
        this.skip(wireType, end);
      } else if (field === 1) entries.push(this.entry(this.length(end)));
      else if (field === 2) limitOverride = this.override(this.length(end));
      else if (field === 3) hitsAddend = this.uint64Value(this.length(end));
      else this.skip(wireType, end);
    }
    if (limitOverride === undefined && hitsAddend === undefined) return { entries };
    return {
      entries,
      ...(limitOverride !== undefined && { limitOverride }),
      ...(hitsAddend !== undefined && { hitsAddend }),
    };
  }

  private entry(end: number): DescriptorEntry {
    let key = '';
    let value = '';
    while (this.at < end) {
      const wireType = this.tag(end);
      const field = this.fieldNumber;
      if (field === 1 && wireType === LEN) key = this.string(end);
      else if (field === 2 && wireType === LEN) value = this.string(end);
      else if (field <= 2) throw REFUSED;
      else this.skip(wireType, end);
    }
    return { key, value };
  }

  private override(end: number): { requestsPerUnit: number; unit: number } {
    let requestsPerUnit = 0;
    let unit = 0;
    while (this.at < end) {
      const wireType = this.tag(end);
      const field = this.fieldNumber;
      if (field <= 2) {
        if (wireType !== VARINT) throw REFUSED;
        this.varint(end);
        // uint32 as `>>> 0` of the low bits; the enum as int32, as protobufjs reads them.
        if (field === 1) requestsPerUnit = this.lo;
        else unit = this.lo | 0;
      } else this.skip(wireType, end);
    }
    return { requestsPerUnit, unit };
  }

  private uint64Value(end: number): number {
    let value = 0;
    while (this.at < end) {
      const wireType = this.tag(end);
      if (this.fieldNumber === 1) {
        if (wireType !== VARINT) throw REFUSED;
        this.varint(end);
        value = this.uint64();
      } else this.skip(wireType, end);
    }
    return value;
  }

  /** The field number of the last tag read (exact up to 2^53; field numbers that large are unknown fields). */
  private fieldNumber = 0;

  /** Reads a tag; returns its wire type and sets `fieldNumber`. Field number 0 is refused. */
  private tag(end: number): number {
    this.varint(end);
    this.fieldNumber = (this.lo >>> 3) + this.hi * 0x20000000;
    if (this.fieldNumber === 0) throw REFUSED;
    return this.lo & 7;
  }

  /** Reads a length and returns where its bytes end; refused when they overrun `end`. */
  private length(end: number): number {
    this.varint(end);
    if (this.hi !== 0 || this.lo > end - this.at) throw REFUSED;
    return this.at + this.lo;
  }

  private string(end: number): string {
    const stop = this.length(end);
    const { bytes } = this;
    const start = this.at;
    this.at = stop;
    const length = stop - start;
    let h = length;
    for (let i = start; i < stop; i++) {
      const byte = bytes[i]!;
      if (byte >= 0x80) {
        try {
          return STRICT_UTF8.decode(bytes.subarray(start, stop));
        } catch {
          throw REFUSED;
        }
      }
      h = Math.imul(h ^ byte, 0x01000193);
    }
    if (length > INTERN_MAX_BYTES) return bytes.toString('latin1', start, stop);
    // ASCII: its bytes are its characters, so a held string is compared with them directly.
    const slot = (h ^ (h >>> 16)) & INTERN_MASK;
    const held = interned[slot];
    if (held !== undefined && held.length === length) {
      let same = true;
      for (let i = 0; i < length; i++) {
        if (held.charCodeAt(i) !== bytes[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return held;
    }
    const text = bytes.toString('latin1', start, stop);
    interned[slot] = text;
    return text;
  }

  /** A varint's value as protobufjs's `LongBits.toNumber(true)`: `longs: Number` for a uint64. */
  private uint64(): number {
    return this.lo + this.hi * 4294967296;
  }

  /** Reads a varint of at most 10 bytes into `lo`/`hi`; refused when cut off or over 64 bits. */
  private varint(end: number): void {
    const { bytes } = this;
    let lo = 0;
    let hi = 0;
    let at = this.at;
    for (let i = 0; i < 10; i++) {
      if (at >= end) throw REFUSED;
      const byte = bytes[at++]!;
      if (i < 4) lo |= (byte & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (byte & 0x0f) << 28;
        hi = (byte & 0x7f) >> 4;
      } else if (i === 9 && byte > 1) throw REFUSED;
      else hi |= (byte & 0x7f) << (7 * i - 32);
      if (byte < 0x80) {
        this.at = at;
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    throw REFUSED;
  }

  /** Skips an unknown field's payload, checking its structure as `checkRequestBytes` does. */
  private skip(wireType: number, end: number): void {
    switch (wireType) {
      case VARINT:
        this.varint(end);
        return;
      case I64:
      case I32: {
        const size = wireType === I64 ? 8 : 4;
        if (end - this.at < size) throw REFUSED;
        this.at += size;
        return;
      }
      case LEN:
        this.at = this.length(end);
        return;
      default:
        throw REFUSED;
    }
  }
}
