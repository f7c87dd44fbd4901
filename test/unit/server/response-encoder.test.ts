import { Random } from '../../../bench/accuracy/prng';
import type { Unit } from '../../../src/config/types';
import { rateLimitServiceDefinition } from '../../../src/server/proto';
import { encodeRateLimitResponse } from '../../../src/server/response-encoder';
import { toWireResponse } from '../../../src/server/wire';
import type { DescriptorStatus, RateLimitResponse } from '../../../src/service/types';

/** The encoder against what it replaces: `toWireResponse`, then protobufjs through proto-loader (as grpc-js encodes). */
const METHOD = rateLimitServiceDefinition.ShouldRateLimit!;
const protobufjsEncode = (response: RateLimitResponse): Buffer => METHOD.responseSerialize(toWireResponse(response));

/** The seeded PRNG the other property tests use: a failure reruns the same inputs. */
function random(seed: number): () => number {
  const rng = new Random(seed);
  return () => rng.next();
}

const UNITS: readonly Unit[] = ['SECOND', 'MINUTE', 'HOUR', 'DAY', 'WEEK', 'MONTH', 'YEAR'];
const NUMBERS = [0, 1, 127, 128, 16_383, 16_384, 4294967295, 4294967296, -1, 1.5, 0.2, 2 ** 40, Infinity, -Infinity, NaN];
const TEXTS = ['', 'per_client', 'zoë', '日本', '😀', 'n'.repeat(130), 'RateLimit-Limit', '100, 100;w=60'];

function randomResponse(next: () => number): RateLimitResponse {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const statuses: DescriptorStatus[] = Array.from({ length: Math.floor(next() * 70) }, () => ({
    code: next() < 0.5 ? 'OK' : 'OVER_LIMIT',
    limitRemaining: pick(NUMBERS),
    ...(next() < 0.7 && {
      currentLimit: { requestsPerUnit: pick(NUMBERS), unit: pick(UNITS), ...(next() < 0.4 && { name: pick(TEXTS) }) },
      durationUntilResetSeconds: pick(NUMBERS),
    }),
  }));
  const headers = Array.from({ length: Math.floor(next() * 5) }, () => ({ key: pick(TEXTS), value: pick(TEXTS) }));
  return { overallCode: next() < 0.5 ? 'OK' : 'OVER_LIMIT', statuses, responseHeadersToAdd: headers };
}

describe('encodeRateLimitResponse', () => {
  test('writes the bytes protobufjs writes for the same response (2,000 random responses)', () => {
    const next = random(3);
    for (let i = 0; i < 2_000; i++) {
      const response = randomResponse(next);
      expect(encodeRateLimitResponse(response).toString('hex')).toBe(protobufjsEncode(response).toString('hex'));
    }
  });

  test('leaves the prefix bytes free and fills exactly the rest', () => {
    const response = randomResponse(random(4));
    const framed = encodeRateLimitResponse(response, 5);
    expect(framed.length).toBe(5 + protobufjsEncode(response).length);
    expect(framed.subarray(5)).toEqual(protobufjsEncode(response));
  });

  test('an empty response, and one status with nothing but its code', () => {
    const empty: RateLimitResponse = { overallCode: 'OK', statuses: [], responseHeadersToAdd: [] };
    expect([...encodeRateLimitResponse(empty)]).toEqual([0x08, 0x01]);
    const bare: RateLimitResponse = { overallCode: 'OVER_LIMIT', statuses: [{ code: 'OK', limitRemaining: 0 }], responseHeadersToAdd: [] };
    expect(encodeRateLimitResponse(bare)).toEqual(protobufjsEncode(bare));
    expect(METHOD.responseDeserialize(encodeRateLimitResponse(bare))).toEqual({ overall_code: 'OVER_LIMIT', statuses: [{ code: 'OK', limit_remaining: 0 }] });
  });
});
