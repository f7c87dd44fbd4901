import { InvalidArgumentError } from '../errors';
import type { RateLimitRequest } from './types';

/**
 * Caps on what one request may carry. Descriptor values come from token claims and headers, so
 * without caps one client could mint huge keys or charge another's counter with a huge addend.
 */
export interface RequestCaps {
  readonly maxDescriptors: number;
  readonly maxEntries: number;
  readonly maxKeyLength: number;
  readonly maxValueLength: number;
  readonly maxHitsAddend: number;
}

export const DEFAULT_REQUEST_CAPS: RequestCaps = {
  maxDescriptors: 64,
  maxEntries: 16,
  maxKeyLength: 256,
  maxValueLength: 1024,
  maxHitsAddend: 1_000_000,
};

/** Throws InvalidArgumentError naming the first field that breaks the protocol or a cap. */
export function validateRequest(request: RateLimitRequest, caps: RequestCaps): void {
  if (request.domain === '') fail('domain', 'must not be empty');
  checkLength('domain', request.domain, caps.maxValueLength, 'MAX_VALUE_LENGTH');
  checkHits('hits_addend', request.hitsAddend, caps);
  const { descriptors } = request;
  if (descriptors.length === 0) fail('descriptors', 'must not be empty');
  if (descriptors.length > caps.maxDescriptors) {
    fail('descriptors', `${descriptors.length} descriptors exceed the limit of ${caps.maxDescriptors} (MAX_DESCRIPTORS_PER_REQUEST)`);
  }
  descriptors.forEach((descriptor, i) => {
    const at = `descriptors[${i}]`;
    const { entries } = descriptor;
    if (entries.length === 0) fail(`${at}.entries`, 'must not be empty');
    if (entries.length > caps.maxEntries) {
      fail(`${at}.entries`, `${entries.length} entries exceed the limit of ${caps.maxEntries} (MAX_ENTRIES_PER_DESCRIPTOR)`);
    }
    entries.forEach((entry, j) => {
      if (entry.key === '') fail(`${at}.entries[${j}].key`, 'must not be empty');
      checkLength(`${at}.entries[${j}].key`, entry.key, caps.maxKeyLength, 'MAX_KEY_LENGTH');
      checkLength(`${at}.entries[${j}].value`, entry.value, caps.maxValueLength, 'MAX_VALUE_LENGTH');
    });
    if (descriptor.hitsAddend !== undefined) checkHits(`${at}.hits_addend`, descriptor.hitsAddend, caps);
  });
}

function checkLength(field: string, text: string, max: number, setting: string): void {
  if (text.length > max) fail(field, `${text.length} characters exceed the limit of ${max} (${setting})`);
}

function checkHits(field: string, hits: number, caps: RequestCaps): void {
  if (!Number.isInteger(hits) || hits < 0) fail(field, `must be a non-negative integer, got ${hits}`);
  if (hits > caps.maxHitsAddend) fail(field, `${hits} exceeds the limit of ${caps.maxHitsAddend} (MAX_HITS_ADDEND)`);
}

function fail(field: string, problem: string): never {
  throw new InvalidArgumentError(`${field}: ${problem}`);
}
