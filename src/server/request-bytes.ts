/**
 * A strict check of a `RateLimitRequest`'s bytes, so that sluice refuses what Go's protobuf (the
 * reference service's) refuses instead of deciding it. The one-pass decoder (request-decoder.ts)
 * accepts exactly what this accepts; this is where what is wrong is worded, for the requests it
 * refuses:
 *
 * - structure: a length that overruns its message, a varint longer than 10 bytes or cut off,
 *   field number 0, a wire type that is not one, or the wrong one for a field we know;
 * - strings that are not valid UTF-8 (proto3 `string` fields must be): protobufjs would decode
 *   each bad byte as U+FFFD, so the values "a\xff", "a\xfe" and "a\ufffd" would share a counter.
 *
 * Unknown fields are skipped (proto3 forward compatibility), after their structure is checked.
 * Returns what is wrong, naming the field, or undefined.
 */
export function checkRequestBytes(bytes: Uint8Array): string | undefined {
  try {
    readMessage(new Cursor(bytes, 0, bytes.length), REQUEST, undefined);
    return undefined;
  } catch (err) {
    if (err instanceof MalformedBytes) return err.message;
    throw err;
  }
}

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

/** A field we know: its wire type, and for LEN fields whether it is a string or which message. */
interface KnownField {
  readonly name: string;
  readonly wireType: number;
  readonly utf8?: boolean;
  readonly message?: MessageShape;
  readonly repeated?: boolean;
}

type MessageShape = ReadonlyMap<number, KnownField>;

const UINT64_VALUE: MessageShape = new Map([[1, { name: 'value', wireType: VARINT }]]);
const OVERRIDE: MessageShape = new Map([
  [1, { name: 'requests_per_unit', wireType: VARINT }],
  [2, { name: 'unit', wireType: VARINT }],
]);
const ENTRY: MessageShape = new Map([
  [1, { name: 'key', wireType: LEN, utf8: true }],
  [2, { name: 'value', wireType: LEN, utf8: true }],
]);
const DESCRIPTOR: MessageShape = new Map<number, KnownField>([
  [1, { name: 'entries', wireType: LEN, message: ENTRY, repeated: true }],
  [2, { name: 'limit', wireType: LEN, message: OVERRIDE }],
  [3, { name: 'hits_addend', wireType: LEN, message: UINT64_VALUE }],
]);
const REQUEST: MessageShape = new Map<number, KnownField>([
  [1, { name: 'domain', wireType: LEN, utf8: true }],
  [2, { name: 'descriptors', wireType: LEN, message: DESCRIPTOR, repeated: true }],
  [3, { name: 'hits_addend', wireType: VARINT }],
]);

class MalformedBytes extends Error {}

/**
 * Where a field sits, for error messages only: built as a chain per nested message and turned
 * into a path (`descriptors[1].entries[0].value`) only when something is wrong, so a good request
 * builds no strings.
 */
interface Where {
  readonly parent: Where | undefined;
  readonly fieldNumber: number;
  readonly known: KnownField | undefined;
  /** Occurrence of a repeated field. */
  readonly index: number;
}

/** The path of a field of the message at `parent` (built only for an error message). */
function fieldPath(parent: Where | undefined, fieldNumber: number, known: KnownField | undefined, index: number): string {
  return pathOf({ parent, fieldNumber, known, index });
}

function pathOf(where: Where | undefined): string {
  if (where === undefined) return '';
  const { known } = where;
  const field = known === undefined ? `field ${where.fieldNumber}` : known.repeated === true ? `${known.name}[${where.index}]` : known.name;
  return join(pathOf(where.parent), field);
}

/** Why a varint could not be read (the caller says whose it was). */
class VarintProblem {
  constructor(readonly problem: string) {}
}

const CUT_OFF = new VarintProblem('is cut off');
const OVER_64_BITS = new VarintProblem('is a varint over 64 bits');
const OVER_10_BYTES = new VarintProblem('is a varint longer than 10 bytes');

class Cursor {
  constructor(
    readonly bytes: Uint8Array,
    public at: number,
    readonly end: number,
  ) {}
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

function readMessage(cursor: Cursor, shape: MessageShape, parent: Where | undefined): void {
  // Each message shape has at most one repeated field: its occurrences so far.
  let repeated = 0;
  while (cursor.at < cursor.end) {
    const tag = readVarint(cursor);
    if (tag instanceof VarintProblem) {
      const path = pathOf(parent);
      throw new MalformedBytes(`malformed request: ${path === '' ? 'a field tag' : `a field tag in ${path}`} ${tag.problem}`);
    }
    const fieldNumber = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (fieldNumber === 0) {
      const path = pathOf(parent);
      throw new MalformedBytes(`malformed request: field number 0${path === '' ? '' : ` in ${path}`}`);
    }
    const known = shape.get(fieldNumber);
    const index = known?.repeated === true ? repeated++ : 0;
    if (known !== undefined && wireType !== known.wireType) {
      throw new MalformedBytes(`malformed request: ${fieldPath(parent, fieldNumber, known, index)} has wire type ${wireType}, not ${known.wireType}`);
    }
    switch (wireType) {
      case VARINT: {
        const value = readVarint(cursor);
        if (value instanceof VarintProblem) throw new MalformedBytes(`malformed request: ${fieldPath(parent, fieldNumber, known, index)} ${value.problem}`);
        break;
      }
      case I64:
      case I32:
        if (!skip(cursor, wireType === I64 ? 8 : 4)) throw new MalformedBytes(`malformed request: ${fieldPath(parent, fieldNumber, known, index)} is cut off`);
        break;
      case LEN: {
        const length = readVarint(cursor);
        if (length instanceof VarintProblem) throw new MalformedBytes(`malformed request: the length of ${fieldPath(parent, fieldNumber, known, index)} ${length.problem}`);
        if (length > cursor.end - cursor.at) {
          throw new MalformedBytes(`malformed request: the length of ${fieldPath(parent, fieldNumber, known, index)} (${length} bytes) overruns its message`);
        }
        const start = cursor.at;
        cursor.at += length;
        if (known?.utf8 === true) {
          if (!validUtf8(cursor.bytes, start, cursor.at)) throw new MalformedBytes(`${fieldPath(parent, fieldNumber, known, index)} is not valid UTF-8`);
        } else if (known?.message !== undefined) readMessage(new Cursor(cursor.bytes, start, cursor.at), known.message, { parent, fieldNumber, known, index });
        break;
      }
      default:
        throw new MalformedBytes(`malformed request: ${fieldPath(parent, fieldNumber, known, index)} has wire type ${wireType}, which this message does not use`);
    }
  }
}

function join(path: string, field: string): string {
  return path === '' ? field : `${path}.${field}`;
}

/** A varint of at most 10 bytes (64 bits); its value, exact up to 2^53, is only used for tags and lengths. */
function readVarint(cursor: Cursor): number | VarintProblem {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (cursor.at >= cursor.end) return CUT_OFF;
    const byte = cursor.bytes[cursor.at++]!;
    if (i === 9 && byte > 1) return OVER_64_BITS;
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if (byte < 0x80) return value;
  }
  return OVER_10_BYTES;
}

/** Moves past `length` bytes; false when the message ends first. */
function skip(cursor: Cursor, length: number): boolean {
  if (cursor.end - cursor.at < length) return false;
  cursor.at += length;
  return true;
}

function validUtf8(bytes: Uint8Array, start: number, end: number): boolean {
  // Descriptor keys and values are nearly always ASCII: no decoder needed for those.
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) {
      try {
        STRICT_UTF8.decode(bytes.subarray(start, end));
        return true;
      } catch {
        return false;
      }
    }
  }
  return true;
}
