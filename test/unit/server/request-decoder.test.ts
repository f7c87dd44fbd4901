import { Random } from '../../../bench/accuracy/prng';
import { rateLimitServiceDefinition, shouldRateLimitMethod, type WireDescriptor, type WireRequestShape } from '../../../src/server/proto';
import { checkRequestBytes } from '../../../src/server/request-bytes';
import { decodeRateLimitRequest } from '../../../src/server/request-decoder';
import { fromWireRequest } from '../../../src/server/wire';

/**
 * The one-pass decoder against what it replaces: `checkRequestBytes`, then protobufjs (through
 * proto-loader, as grpc-js decodes), then `fromWireRequest`.
 */

const protobufjsDecode = (bytes: Buffer): unknown => rateLimitServiceDefinition.ShouldRateLimit!.requestDeserialize(bytes);

/** What the old path made of `bytes`: the request, or 'refused'. */
function oldPath(bytes: Buffer): ReturnType<typeof fromWireRequest> | 'refused' {
  return checkRequestBytes(bytes) === undefined ? fromWireRequest(protobufjsDecode(bytes)) : 'refused';
}

function newPath(bytes: Buffer): ReturnType<typeof fromWireRequest> | 'refused' {
  return decodeRateLimitRequest(bytes) ?? 'refused';
}

/** The seeded PRNG the other property tests use: a failure reruns the same inputs. */
function random(seed: number): () => number {
  const rng = new Random(seed);
  return () => rng.next();
}

const WORDS = ['', 'client_id', 'user_id', 'zoë', '\ufeffbom', '日本', '😀', 'x'.repeat(200), 'route', '/oauth/token'];

function randomRequest(next: () => number): WireRequestShape {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!;
  const descriptors: WireDescriptor[] = Array.from({ length: Math.floor(next() * 5) }, () => ({
    entries: Array.from({ length: Math.floor(next() * 4) }, () => ({ key: pick(WORDS), value: pick(WORDS) })),
    ...(next() < 0.2 && { limit: { requests_per_unit: pick([0, 1, 100, 4294967295]), unit: pick(['SECOND', 'MINUTE', 'YEAR', 'UNKNOWN'] as const) } }),
    ...(next() < 0.3 && { hits_addend: next() < 0.5 ? {} : { value: pick([0, 1, 5, 2 ** 40]) } }),
  }));
  return { domain: pick(WORDS), descriptors, ...(next() < 0.5 && { hits_addend: pick([0, 1, 7, 2 ** 33, 2 ** 60]) }) };
}

describe('decodeRateLimitRequest', () => {
  test('reads what protobufjs encodes as the old path did (500 random requests)', () => {
    const next = random(1);
    for (let i = 0; i < 500; i++) {
      const bytes = shouldRateLimitMethod.serialize(randomRequest(next));
      expect(newPath(bytes)).toEqual(oldPath(bytes));
    }
  });

  test('reads every short ASCII string exactly, however the strings it remembers collide, repeat or differ by a byte', () => {
    // 3,000 requests of strings from a 3-letter alphabet, 0–70 characters (around the 64 it
    // remembers at most): each string recurs, shares its table slot with others, and has
    // neighbours of the same length a byte apart.
    const next = random(3);
    const text = (): string => Array.from({ length: Math.floor(next() * 71) }, () => 'ab~'[Math.floor(next() * 3)]!).join('');
    const pool = Array.from({ length: 5_000 }, text);
    const pick = (): string => pool[Math.floor(next() * pool.length)]!;
    for (let i = 0; i < 3_000; i++) {
      const request: WireRequestShape = {
        domain: pick(),
        descriptors: [{ entries: Array.from({ length: 1 + Math.floor(next() * 4) }, () => ({ key: pick(), value: pick() })) }],
      };
      const bytes = shouldRateLimitMethod.serialize(request);
      const decoded = newPath(bytes);
      expect(decoded).toEqual(oldPath(bytes));
      expect(decoded).toMatchObject({ domain: request.domain, descriptors: [{ entries: request.descriptors![0]!.entries }] });
    }
  });

  test('refuses exactly what checkRequestBytes refuses, and reads the rest alike, on 20,000 mutated requests', () => {
    // Mutations write bytes below 0x80: they can end a varint early but never lengthen one, so
    // protobufjs (which misreads a uint32 varint over 5 bytes) stays a fair reference.
    const next = random(2);
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      const bytes = [...shouldRateLimitMethod.serialize(randomRequest(next))];
      for (let m = 1 + Math.floor(next() * 3); m > 0; m--) {
        const at = Math.floor(next() * (bytes.length + 1));
        const kind = next();
        if (kind < 0.5) bytes[at] = Math.floor(next() * 0x80);
        else if (kind < 0.7) bytes.splice(at, 1);
        else if (kind < 0.9) bytes.splice(at, 0, Math.floor(next() * 0x80));
        else bytes.length = at;
      }
      const mutated = Buffer.from(bytes);
      const expected = oldPath(mutated);
      if (expected === 'refused') refused++;
      expect({ bytes: mutated.toString('hex'), got: newPath(mutated) }).toEqual({ bytes: mutated.toString('hex'), got: expected });
    }
    // Both kinds were exercised.
    expect(refused).toBeGreaterThan(2_000);
    expect(refused).toBeLessThan(18_000);
  });

  test('a singular field sent twice is the last one, not a merge (as protobufjs reads it)', () => {
    const first = shouldRateLimitMethod.serialize({ domain: 'a', descriptors: [{ entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: 5, unit: 'MINUTE' } }] });
    const second = shouldRateLimitMethod.serialize({ domain: 'b', descriptors: [], hits_addend: 3 });
    const bytes = Buffer.concat([first, second]);
    expect(newPath(bytes)).toEqual(oldPath(bytes));
    expect(newPath(bytes)).toMatchObject({ domain: 'b', hitsAddend: 3 });
    // Inside a descriptor: the override's unit given twice.
    const override = Buffer.from([0x12, 0x06, 0x12, 0x04, 0x10, 0x01, 0x10, 0x03]);
    expect(newPath(override)).toEqual(oldPath(override));
  });

  test('keeps a leading byte-order mark, which TextDecoder drops unless told not to', () => {
    const bytes = shouldRateLimitMethod.serialize({ domain: '\ufeffd', descriptors: [{ entries: [{ key: 'k', value: '\ufeffé' }] }] });
    expect(newPath(bytes)).toEqual({ domain: '\ufeffd', descriptors: [{ entries: [{ key: 'k', value: '\ufeffé' }] }], hitsAddend: 0 });
  });

  test('reads ten-byte varints as protobufjs does: an int32, a uint32 and a uint64', () => {
    const ones = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    // The same ten bytes are unit -1 (int32), the descriptor's hits_addend 2^64 - 1 (UInt64Value)
    // and the request's hits_addend 2^32 - 1 (uint32: its low 32 bits).
    const descriptor = [0x12, ones.length + 1, 0x10, ...ones, 0x1a, ones.length + 1, 0x08, ...ones];
    const bytes = Buffer.from([0x12, descriptor.length, ...descriptor, 0x18, ...ones]);
    expect(newPath(bytes)).toEqual(oldPath(bytes));
    expect(newPath(bytes)).toEqual({
      domain: '',
      descriptors: [{ entries: [], limitOverride: { requestsPerUnit: 0, unit: -1 }, hitsAddend: 2 ** 64 }],
      hitsAddend: 2 ** 32 - 1,
    });
  });

  test('reads a uint32 varint longer than 5 bytes as its low 32 bits (protobufjs misreads what follows)', () => {
    // requests_per_unit = 5 in a 7-byte varint, then unit = MINUTE.
    const long = [0x85, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    const bytes = Buffer.from([0x12, 2 + long.length + 3, 0x12, long.length + 3, 0x08, ...long, 0x10, 0x02]);
    expect(checkRequestBytes(bytes)).toBeUndefined();
    expect(newPath(bytes)).toEqual({ domain: '', descriptors: [{ entries: [], limitOverride: { requestsPerUnit: 5, unit: 2 } }], hitsAddend: 0 });
  });

  test('skips unknown fields of every wire type', () => {
    const unknown = [0x48, 0x96, 0x01, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 2, 1, 2, 0x65, 1, 2, 3, 4];
    const bytes = Buffer.from([0x0a, 1, 0x64, ...unknown, 0x12, unknown.length, ...unknown]);
    expect(newPath(bytes)).toEqual({ domain: 'd', descriptors: [{ entries: [] }], hitsAddend: 0 });
  });
});
