import { UNIT_NUMBERS } from '../config/types';
import type { DescriptorEntry } from '../config/types';
import type {
  DescriptorStatus,
  RateLimitRequest,
  RateLimitResponse,
  RequestDescriptor,
} from '../service/types';
import type { WireDescriptorStatus, WireResponseShape } from './proto';

/**
 * Pure converters between proto-loader objects (snake_case, see `proto.ts` for the options) and
 * the service's plain data. They never throw: protobufjs already guarantees field types for
 * decoded messages, but the input is still treated as `unknown` so that no odd object (a null
 * entry, a missing array) can crash a handler. Odd input becomes something the service rejects
 * with a message naming the field — never something silently different: a bad entry stays in its
 * place as an empty key rather than being dropped, since dropping it would change which limit the
 * descriptor matches.
 */

type WireObject = Readonly<Record<string, unknown>>;

function asObject(value: unknown): WireObject | undefined {
  return typeof value === 'object' && value !== null ? (value as WireObject) : undefined;
}

function asArray(value: unknown): readonly unknown[] {
  return Array.isArray(value) ? value : [];
}

function asString(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** proto-loader gives numbers (longs: Number); a numeric string is accepted in case a caller hands us `longs: String` output. */
function asNumber(value: unknown): number {
  if (typeof value === 'number') {
    return value;
  }
  if (typeof value === 'string' && value.trim() !== '') {
    const parsed = Number(value);
    return Number.isNaN(parsed) ? 0 : parsed;
  }
  return 0;
}

/** `RateLimitUnit` name → wire number. The names 0–6 agree with the response enum, so one table serves. */
function unitNumber(value: unknown): number {
  if (typeof value === 'number') {
    return value;
  }
  if (typeof value === 'string' && Object.hasOwn(UNIT_NUMBERS, value)) {
    return UNIT_NUMBERS[value as keyof typeof UNIT_NUMBERS];
  }
  return UNIT_NUMBERS.UNKNOWN;
}

function entryFromWire(raw: unknown): DescriptorEntry {
  const entry = asObject(raw);
  // proto3 leaves an empty key/value unset; an empty key then fails the service's key check.
  return { key: asString(entry?.['key']), value: asString(entry?.['value']) };
}

function descriptorFromWire(raw: unknown): RequestDescriptor {
  const descriptor = asObject(raw);
  const entries = asArray(descriptor?.['entries']).map(entryFromWire);
  const limit = asObject(descriptor?.['limit']);
  const addend = asObject(descriptor?.['hits_addend']);
  return {
    entries,
    ...(limit !== undefined && {
      limitOverride: { requestsPerUnit: asNumber(limit['requests_per_unit']), unit: unitNumber(limit['unit']) },
    }),
    // Presence is the point: a wrapper holding 0 arrives as `{}` and means "check only".
    ...(addend !== undefined && { hitsAddend: asNumber(addend['value']) }),
  };
}

/** A decoded `RateLimitRequest` → the service's request. */
export function fromWireRequest(raw: unknown): RateLimitRequest {
  const request = asObject(raw);
  return {
    domain: asString(request?.['domain']),
    descriptors: asArray(request?.['descriptors']).map(descriptorFromWire),
    hitsAddend: asNumber(request?.['hits_addend']),
  };
}

const UINT32_MAX = 4294967295;

/**
 * protobufjs writes a uint32 as `value >>> 0`, so -1 would reach Envoy as 4294967295 remaining
 * and 1.5 as 1. Clamp and floor here instead of trusting every producer.
 */
export function uint32(value: number): number {
  if (!Number.isFinite(value)) {
    return value > 0 ? UINT32_MAX : 0;
  }
  return Math.min(UINT32_MAX, Math.max(0, Math.floor(value)));
}

function statusToWire(status: DescriptorStatus): WireDescriptorStatus {
  const wire: WireDescriptorStatus = { code: status.code, limit_remaining: uint32(status.limitRemaining) };
  if (status.currentLimit !== undefined) {
    const limit = status.currentLimit;
    wire.current_limit = {
      requests_per_unit: uint32(limit.requestsPerUnit),
      unit: limit.unit,
      ...(limit.name !== undefined && { name: limit.name }),
    };
  }
  if (status.durationUntilResetSeconds !== undefined) {
    wire.duration_until_reset = { seconds: durationSeconds(status.durationUntilResetSeconds) };
  }
  return wire;
}

/**
 * `duration_until_reset.seconds`: Envoy reads whole seconds only, so a fraction is rounded up (a
 * client that waits that long is past the reset); never negative, and at most 2^53 - 1.
 */
export function durationSeconds(seconds: number): number {
  return Number.isFinite(seconds) ? Math.min(Number.MAX_SAFE_INTEGER, Math.max(0, Math.ceil(seconds))) : 0;
}

/** The service's response → a `RateLimitResponse` object for proto-loader to encode. */
export function toWireResponse(response: RateLimitResponse): WireResponseShape {
  return {
    overall_code: response.overallCode,
    statuses: response.statuses.map(statusToWire),
    // Envoy's client reads only key and value (never raw_value), so value is always filled.
    response_headers_to_add: response.responseHeadersToAdd.map((h) => ({ key: h.key, value: h.value })),
  };
}
