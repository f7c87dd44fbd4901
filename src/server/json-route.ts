import type * as http from 'node:http';
import { type DescriptorEntry, UNIT_NUMBERS } from '../config/types';
import { InvalidArgumentError, SluiceError } from '../errors';
import type { Logger } from '../logging/logger';
import type { RateLimitRequest, RateLimitResponse, RateLimitService, RequestDescriptor } from '../service/types';
import type { RouteHandler } from './http-server';
import type { WireDescriptorStatus, WireHeaderValue } from './proto';
import { toWireResponse } from './wire';

/**
 * `POST /json` on PORT: the reference's HTTP/1 front end for clients that cannot speak gRPC
 * (Lua, curl). Body and answer are the proto3 JSON mapping of RateLimitRequest/Response:
 * field names in lowerCamelCase or as in the .proto (`hitsAddend` or `hits_addend`), unknown
 * fields rejected, 64-bit and 32-bit integers as numbers or decimal strings, enums by name or
 * number; the answer in lowerCamelCase with zero values left out (`limitRemaining` absent when 0)
 * and durations as `"58s"`.
 *
 * Status codes: 200 with the body when OK, 429 with the body when OVER_LIMIT (as the reference);
 * 400 `Bad Request: <why>` for a body that is not a valid request and for a request the service
 * rejects (empty domain, caps); 405 for another method; 413 for a body over the size cap.
 * Deliberate deviation: when sluice cannot decide (no config, store unavailable with
 * STORE_FAILURE_MODE=error) the answer is 503 `Service Unavailable: <why>`, not the reference's
 * 400: the request was fine, and a client that retries or fails open must be able to tell.
 */
export function jsonRoute(service: RateLimitService, logger: Logger, maxBodyBytes: number): RouteHandler {
  return async (req, res) => {
    if (req.method !== 'POST') {
      sendText(res, 405, 'Method Not Allowed: use POST\n', { allow: 'POST' });
      return;
    }
    const body = await readBody(req, maxBodyBytes);
    if (body === undefined) {
      sendText(res, 413, `Payload Too Large: the body exceeds ${maxBodyBytes} bytes\n`, { connection: 'close' });
      return;
    }
    let request: RateLimitRequest;
    try {
      request = fromJsonRequest(parseJson(body));
    } catch (err) {
      logger.debug({ err }, 'POST /json: bad body');
      sendText(res, 400, `Bad Request: ${messageOf(err)}\n`);
      return;
    }
    let response: RateLimitResponse;
    try {
      response = await service.shouldRateLimit(request);
    } catch (err) {
      if (err instanceof SluiceError && err.kind === 'invalid_argument') {
        sendText(res, 400, `Bad Request: ${err.message}\n`);
      } else if (err instanceof SluiceError && (err.kind === 'unavailable' || err.kind === 'resource_exhausted')) {
        sendText(res, 503, `Service Unavailable: ${err.message}\n`);
      } else if (err instanceof SluiceError && err.kind === 'deadline_exceeded') {
        sendText(res, 504, `Gateway Timeout: ${err.message}\n`);
      } else {
        logger.warn({ err }, 'POST /json failed');
        sendText(res, 500, 'Internal Server Error\n');
      }
      return;
    }
    const json = JSON.stringify(toJsonResponse(response));
    res.writeHead(response.overallCode === 'OVER_LIMIT' ? 429 : 200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(json),
    });
    res.end(json);
  };
}

function sendText(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The whole body, or undefined when it grows past `max` bytes (the rest is not read). */
function readBody(req: http.IncomingMessage, max: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > max) {
        done = true;
        resolve(undefined);
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}

function parseJson(body: string): unknown {
  if (body.trim() === '') throw new InvalidArgumentError('empty body');
  try {
    return JSON.parse(body) as unknown;
  } catch (err) {
    throw new InvalidArgumentError(`invalid JSON: ${messageOf(err)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// proto3 JSON → RateLimitRequest

type JsonObject = Readonly<Record<string, unknown>>;

function bad(field: string, problem: string): never {
  throw new InvalidArgumentError(`${field}: ${problem}`);
}

/**
 * The fields of one message, by proto name, from a JSON object that may use either spelling.
 * Unknown fields and a field given twice are errors, as in protojson.
 */
function readFields(value: unknown, at: string, names: readonly string[]): Map<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) bad(at === '' ? 'body' : at, 'must be a JSON object');
  const byJsonName = new Map<string, string>();
  for (const name of names) {
    byJsonName.set(name, name);
    byJsonName.set(name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase()), name);
  }
  const fields = new Map<string, unknown>();
  for (const [key, field] of Object.entries(value as JsonObject)) {
    const name = byJsonName.get(key);
    const path = at === '' ? key : `${at}.${key}`;
    if (name === undefined) bad(path, 'unknown field');
    if (fields.has(name)) bad(path, 'field given twice');
    // proto3 JSON: null is the field's default.
    if (field !== null) fields.set(name, field);
  }
  return fields;
}

function readString(value: unknown, at: string): string {
  if (value === undefined) return '';
  if (typeof value !== 'string') bad(at, 'must be a string');
  return value;
}

/** An unsigned integer as a JSON number or a decimal string (protojson accepts both). */
function readUnsigned(value: unknown, at: string, max: number): number {
  if (value === undefined) return 0;
  let n: number;
  if (typeof value === 'number') n = value;
  else if (typeof value === 'string' && /^\d+$/.test(value.trim())) n = Number(value.trim());
  else bad(at, 'must be a non-negative integer');
  if (!Number.isInteger(n) || n < 0 || n > max) bad(at, `must be an integer from 0 to ${max}`);
  return n;
}

const UINT32_MAX = 4294967295;

function readList(value: unknown, at: string): readonly unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) bad(at, 'must be an array');
  return value;
}

function readUnit(value: unknown, at: string): number {
  if (value === undefined) return UNIT_NUMBERS.UNKNOWN;
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && Object.hasOwn(UNIT_NUMBERS, value)) return UNIT_NUMBERS[value as keyof typeof UNIT_NUMBERS];
  return bad(at, `unknown rate limit unit ${JSON.stringify(value)}`);
}

function readEntry(value: unknown, at: string): DescriptorEntry {
  const fields = readFields(value, at, ['key', 'value']);
  return { key: readString(fields.get('key'), `${at}.key`), value: readString(fields.get('value'), `${at}.value`) };
}

function readDescriptor(value: unknown, at: string): RequestDescriptor {
  const fields = readFields(value, at, ['entries', 'limit', 'hits_addend']);
  const entries = readList(fields.get('entries'), `${at}.entries`).map((entry, i) => readEntry(entry, `${at}.entries[${i}]`));
  const limitField = fields.get('limit');
  const addend = fields.get('hits_addend');
  let limitOverride: RequestDescriptor['limitOverride'];
  if (limitField !== undefined) {
    const limit = readFields(limitField, `${at}.limit`, ['requests_per_unit', 'unit']);
    limitOverride = {
      requestsPerUnit: readUnsigned(limit.get('requests_per_unit'), `${at}.limit.requestsPerUnit`, UINT32_MAX),
      unit: readUnit(limit.get('unit'), `${at}.limit.unit`),
    };
  }
  return {
    entries,
    ...(limitOverride !== undefined && { limitOverride }),
    // google.protobuf.UInt64Value is written as its bare value in JSON; present means present, 0 included.
    ...(addend !== undefined && { hitsAddend: readUnsigned(addend, `${at}.hitsAddend`, Number.MAX_SAFE_INTEGER) }),
  };
}

/** A parsed JSON body → the service's request. Throws InvalidArgumentError naming the field. */
export function fromJsonRequest(body: unknown): RateLimitRequest {
  const fields = readFields(body, '', ['domain', 'descriptors', 'hits_addend']);
  return {
    domain: readString(fields.get('domain'), 'domain'),
    descriptors: readList(fields.get('descriptors'), 'descriptors').map((d, i) => readDescriptor(d, `descriptors[${i}]`)),
    hitsAddend: readUnsigned(fields.get('hits_addend'), 'hitsAddend', UINT32_MAX),
  };
}

// ---------------------------------------------------------------------------------------------
// RateLimitResponse → proto3 JSON

export interface JsonDescriptorStatus {
  code?: string;
  currentLimit?: { name?: string; requestsPerUnit?: number; unit?: string };
  limitRemaining?: number;
  durationUntilReset?: string;
}

export interface JsonResponse {
  overallCode?: string;
  statuses?: JsonDescriptorStatus[];
  responseHeadersToAdd?: { key?: string; value?: string }[];
  requestHeadersToAdd?: { key?: string; value?: string }[];
}

function enumName(value: string | number | undefined): string | undefined {
  // Zero (UNKNOWN) is the default and is left out.
  return value === undefined || value === 'UNKNOWN' || value === 0 ? undefined : String(value);
}

function statusToJson(status: WireDescriptorStatus): JsonDescriptorStatus {
  const json: JsonDescriptorStatus = {};
  const code = enumName(status.code);
  if (code !== undefined) json.code = code;
  if (status.current_limit) {
    const limit = status.current_limit;
    const unit = enumName(limit.unit);
    json.currentLimit = {
      ...(limit.name ? { name: limit.name } : {}),
      ...(limit.requests_per_unit ? { requestsPerUnit: limit.requests_per_unit } : {}),
      ...(unit !== undefined ? { unit } : {}),
    };
  }
  if (status.limit_remaining) json.limitRemaining = status.limit_remaining;
  if (status.duration_until_reset) {
    const { seconds = 0, nanos = 0 } = status.duration_until_reset;
    // protojson: whole seconds, else 3, 6 or 9 fractional digits.
    const digits = String(nanos).padStart(9, '0');
    const fraction = digits.endsWith('000000') ? digits.slice(0, 3) : digits.endsWith('000') ? digits.slice(0, 6) : digits;
    json.durationUntilReset = nanos === 0 ? `${seconds}s` : `${seconds}.${fraction}s`;
  }
  return json;
}

function headersToJson(headers: readonly WireHeaderValue[] | undefined): { key?: string; value?: string }[] | undefined {
  if (headers === undefined || headers.length === 0) return undefined;
  return headers.map((h) => ({ ...(h.key ? { key: h.key } : {}), ...(h.value ? { value: h.value } : {}) }));
}

/** The proto3 JSON form of a response, as protojson writes it. */
export function toJsonResponse(response: RateLimitResponse): JsonResponse {
  const wire = toWireResponse(response);
  const json: JsonResponse = {};
  const overall = enumName(wire.overall_code);
  if (overall !== undefined) json.overallCode = overall;
  if (wire.statuses !== undefined && wire.statuses.length > 0) json.statuses = wire.statuses.map(statusToJson);
  const responseHeaders = headersToJson(wire.response_headers_to_add);
  if (responseHeaders !== undefined) json.responseHeadersToAdd = responseHeaders;
  const requestHeaders = headersToJson(wire.request_headers_to_add);
  if (requestHeaders !== undefined) json.requestHeadersToAdd = requestHeaders;
  return json;
}
