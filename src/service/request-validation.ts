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
  if (request.domain.length > caps.maxValueLength) tooLong('domain', request.domain, caps.maxValueLength, 'MAX_VALUE_LENGTH');
  const requestHits = hitsProblem(request.hitsAddend, caps);
  if (requestHits !== undefined) fail('hits_addend', requestHits);
  const { descriptors } = request;
  if (descriptors.length === 0) fail('descriptors', 'must not be empty');
  if (descriptors.length > caps.maxDescriptors) {
    fail('descriptors', `${descriptors.length} descriptors exceed the limit of ${caps.maxDescriptors} (MAX_DESCRIPTORS_PER_REQUEST)`);
  }
  // Every call passes here: field names are built only for the one that fails.
  for (let i = 0; i < descriptors.length; i++) {
    const descriptor = descriptors[i]!;
    const { entries } = descriptor;
    if (entries.length === 0) fail(`descriptors[${i}].entries`, 'must not be empty');
    if (entries.length > caps.maxEntries) {
      fail(`descriptors[${i}].entries`, `${entries.length} entries exceed the limit of ${caps.maxEntries} (MAX_ENTRIES_PER_DESCRIPTOR)`);
    }
    for (let j = 0; j < entries.length; j++) {
      const { key, value } = entries[j]!;
      if (key === '') fail(`descriptors[${i}].entries[${j}].key`, 'must not be empty');
      if (key.length > caps.maxKeyLength) tooLong(`descriptors[${i}].entries[${j}].key`, key, caps.maxKeyLength, 'MAX_KEY_LENGTH');
      if (value.length > caps.maxValueLength) tooLong(`descriptors[${i}].entries[${j}].value`, value, caps.maxValueLength, 'MAX_VALUE_LENGTH');
    }
    const hits = descriptor.hitsAddend === undefined ? undefined : hitsProblem(descriptor.hitsAddend, caps);
    if (hits !== undefined) fail(`descriptors[${i}].hits_addend`, hits);
  }
}

function tooLong(field: string, text: string, max: number, setting: string): never {
  fail(field, `${text.length} characters exceed the limit of ${max} (${setting})`);
}

/** What is wrong with a hits addend, or undefined. */
function hitsProblem(hits: number, caps: RequestCaps): string | undefined {
  if (!Number.isInteger(hits) || hits < 0) return `must be a non-negative integer, got ${hits}`;
  if (hits > caps.maxHitsAddend) return `${hits} exceeds the limit of ${caps.maxHitsAddend} (MAX_HITS_ADDEND)`;
  return undefined;
}

function fail(field: string, problem: string): never {
  throw new InvalidArgumentError(`${field}: ${problem}`);
}
