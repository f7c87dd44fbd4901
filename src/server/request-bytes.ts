/**
 * A strict check of a `RateLimitRequest`'s bytes before protobufjs decodes them, so that sluice
 * refuses what Go's protobuf (the reference service's) refuses instead of deciding it:
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
    readMessage(new Cursor(bytes, 0, bytes.length), REQUEST, '');
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

class Cursor {
  constructor(
    readonly bytes: Uint8Array,
    public at: number,
    readonly end: number,
  ) {}
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true });

function readMessage(cursor: Cursor, shape: MessageShape, path: string): void {
  const counts = new Map<number, number>();
  while (cursor.at < cursor.end) {
    const tag = readVarint(cursor, path === '' ? 'a field tag' : `a field tag in ${path}`);
    const fieldNumber = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (fieldNumber === 0) throw new MalformedBytes(`malformed request: field number 0${path === '' ? '' : ` in ${path}`}`);
    const known = shape.get(fieldNumber);
    const index = counts.get(fieldNumber) ?? 0;
    counts.set(fieldNumber, index + 1);
    const fieldPath = known === undefined ? `${join(path, `field ${fieldNumber}`)}` : join(path, known.repeated === true ? `${known.name}[${index}]` : known.name);
    if (known !== undefined && wireType !== known.wireType) {
      throw new MalformedBytes(`malformed request: ${fieldPath} has wire type ${wireType}, not ${known.wireType}`);
    }
    switch (wireType) {
      case VARINT:
        readVarint(cursor, fieldPath);
        break;
      case I64:
        skip(cursor, 8, fieldPath);
        break;
      case I32:
        skip(cursor, 4, fieldPath);
        break;
      case LEN: {
        const length = readVarint(cursor, `the length of ${fieldPath}`);
        if (length > cursor.end - cursor.at) {
          throw new MalformedBytes(`malformed request: the length of ${fieldPath} (${length} bytes) overruns its message`);
        }
        const start = cursor.at;
        cursor.at += length;
        if (known?.utf8 === true) checkUtf8(cursor.bytes, start, cursor.at, fieldPath);
        else if (known?.message !== undefined) readMessage(new Cursor(cursor.bytes, start, cursor.at), known.message, fieldPath);
        break;
      }
      default:
        throw new MalformedBytes(`malformed request: ${fieldPath} has wire type ${wireType}, which this message does not use`);
    }
  }
}

function join(path: string, field: string): string {
  return path === '' ? field : `${path}.${field}`;
}

/** A varint of at most 10 bytes (64 bits); its value, exact up to 2^53, is only used for tags and lengths. */
function readVarint(cursor: Cursor, what: string): number {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (cursor.at >= cursor.end) throw new MalformedBytes(`malformed request: ${what} is cut off`);
    const byte = cursor.bytes[cursor.at++]!;
    if (i === 9 && byte > 1) throw new MalformedBytes(`malformed request: ${what} is a varint over 64 bits`);
    value += (byte & 0x7f) * scale;
    scale *= 128;
    if (byte < 0x80) return value;
  }
  throw new MalformedBytes(`malformed request: ${what} is a varint longer than 10 bytes`);
}

function skip(cursor: Cursor, length: number, what: string): void {
  if (cursor.end - cursor.at < length) throw new MalformedBytes(`malformed request: ${what} is cut off`);
  cursor.at += length;
}

function checkUtf8(bytes: Uint8Array, start: number, end: number, what: string): void {
  // Descriptor keys and values are nearly always ASCII: no decoder needed for those.
  for (let i = start; i < end; i++) {
    if (bytes[i]! >= 0x80) {
      try {
        STRICT_UTF8.decode(bytes.subarray(start, end));
      } catch {
        throw new MalformedBytes(`${what} is not valid UTF-8`);
      }
      return;
    }
  }
}
