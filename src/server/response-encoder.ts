import { UNIT_NUMBERS } from '../config/types';
import type { DescriptorStatus, HeaderValue, RateLimitResponse } from '../service/types';
import { durationSeconds, uint32 } from './wire';

/**
 * The service's response → `RateLimitResponse` bytes, in one buffer sized up front, optionally
 * after `prefixBytes` left free (the lean transport writes the gRPC message prefix there, so the
 * message is not copied into a frame).
 *
 * Why by hand: every call encodes one, and protobufjs through proto-loader first converts an
 * object per status (`toWireResponse`), then builds a message per object (`fromObject`, a Long
 * per duration), then queues one operation object per field before writing. These bytes are the
 * ones protobufjs writes for the same response (a test compares them on many responses): fields
 * in field-number order, every field `toWireResponse` sets written even when zero.
 */
export function encodeRateLimitResponse(response: RateLimitResponse, prefixBytes = 0): Buffer {
  const { statuses, responseHeadersToAdd: headers } = response;
  // Sizes first: a status's or header's length prefix needs its size before its bytes.
  const statusSizes = new Array<number>(statuses.length);
  const headerSizes = new Array<number>(headers.length);
  let size = 2; // overall_code: tag and a one-byte enum
  for (let i = 0; i < statuses.length; i++) {
    const statusSize = sizeOfStatus(statuses[i]!);
    statusSizes[i] = statusSize;
    size += 1 + varintSize(statusSize) + statusSize;
  }
  for (let i = 0; i < headers.length; i++) {
    const headerSize = sizeOfHeader(headers[i]!);
    headerSizes[i] = headerSize;
    size += 1 + varintSize(headerSize) + headerSize;
  }

  const out = new Writer(Buffer.allocUnsafe(prefixBytes + size), prefixBytes);
  out.byte(0x08); // 1: overall_code
  out.varint(CODE_NUMBERS[response.overallCode]);
  for (let i = 0; i < statuses.length; i++) {
    out.byte(0x12); // 2: statuses
    out.varint(statusSizes[i]!);
    writeStatus(out, statuses[i]!);
  }
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i]!;
    out.byte(0x1a); // 3: response_headers_to_add
    out.varint(headerSizes[i]!);
    out.byte(0x0a); // HeaderValue 1: key
    out.string(header.key);
    out.byte(0x12); // HeaderValue 2: value
    out.string(header.value);
  }
  return out.bytes;
}

const CODE_NUMBERS = { OK: 1, OVER_LIMIT: 2 } as const;

function sizeOfStatus(status: DescriptorStatus): number {
  let size = 2 + 1 + varintSize(uint32(status.limitRemaining)); // code; limit_remaining
  const limit = status.currentLimit;
  if (limit !== undefined) {
    const limitSize = sizeOfLimit(limit.requestsPerUnit, limit.name);
    size += 1 + varintSize(limitSize) + limitSize;
  }
  if (status.durationUntilResetSeconds !== undefined) {
    const durationSize = 1 + varintSize(durationSeconds(status.durationUntilResetSeconds));
    size += 1 + varintSize(durationSize) + durationSize;
  }
  return size;
}

/** RateLimit: requests_per_unit (1), unit (2, one byte), name (3) when named. */
function sizeOfLimit(requestsPerUnit: number, name: string | undefined): number {
  return 1 + varintSize(uint32(requestsPerUnit)) + 2 + (name === undefined ? 0 : 1 + stringSize(name));
}

function sizeOfHeader(header: HeaderValue): number {
  return 1 + stringSize(header.key) + 1 + stringSize(header.value);
}

function writeStatus(out: Writer, status: DescriptorStatus): void {
  out.byte(0x08); // 1: code
  out.varint(CODE_NUMBERS[status.code]);
  const limit = status.currentLimit;
  if (limit !== undefined) {
    out.byte(0x12); // 2: current_limit
    out.varint(sizeOfLimit(limit.requestsPerUnit, limit.name));
    out.byte(0x08); // RateLimit 1: requests_per_unit
    out.varint(uint32(limit.requestsPerUnit));
    out.byte(0x10); // RateLimit 2: unit
    out.varint(UNIT_NUMBERS[limit.unit]);
    if (limit.name !== undefined) {
      out.byte(0x1a); // RateLimit 3: name
      out.string(limit.name);
    }
  }
  out.byte(0x18); // 3: limit_remaining
  out.varint(uint32(status.limitRemaining));
  if (status.durationUntilResetSeconds !== undefined) {
    const seconds = durationSeconds(status.durationUntilResetSeconds);
    out.byte(0x22); // 4: duration_until_reset
    out.varint(1 + varintSize(seconds));
    out.byte(0x08); // Duration 1: seconds
    out.varint(seconds);
  }
}

/** Bytes of a non-negative integer's varint (exact up to 2^53). */
function varintSize(value: number): number {
  let size = 1;
  while (value >= 128) {
    value = Math.floor(value / 128);
    size++;
  }
  return size;
}

/** A string's length prefix and UTF-8 bytes. */
function stringSize(text: string): number {
  const bytes = utf8Length(text);
  return varintSize(bytes) + bytes;
}

function utf8Length(text: string): number {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) >= 0x80) return Buffer.byteLength(text, 'utf8');
  }
  return text.length;
}

class Writer {
  constructor(
    readonly bytes: Buffer,
    private at: number,
  ) {}

  byte(value: number): void {
    this.bytes[this.at++] = value;
  }

  varint(value: number): void {
    const { bytes } = this;
    while (value >= 128) {
      bytes[this.at++] = (value % 128) | 0x80;
      value = Math.floor(value / 128);
    }
    bytes[this.at++] = value;
  }

  /** Length prefix and UTF-8 bytes (a lone surrogate as U+FFFD, as Buffer writes it). */
  string(text: string): void {
    const length = utf8Length(text);
    this.varint(length);
    if (length === text.length) {
      const { bytes } = this;
      for (let i = 0; i < length; i++) bytes[this.at++] = text.charCodeAt(i);
    } else {
      this.at += this.bytes.write(text, this.at, length, 'utf8');
    }
  }
}
