import { checkRequestBytes } from '../../../src/server/request-bytes';
import { shouldRateLimitMethod } from '../../../src/server/proto';

/** Field bytes: tag (field number, wire type), then the payload as given. */
function field(fieldNumber: number, wireType: number, ...payload: number[]): number[] {
  return [fieldNumber * 8 + wireType, ...payload];
}

/** A LEN field holding `content`. */
function len(fieldNumber: number, content: readonly number[]): number[] {
  return field(fieldNumber, 2, content.length, ...content);
}

const ascii = (text: string): number[] => [...Buffer.from(text)];
const entry = (key: number[], value: number[]): number[] => len(1, [...len(1, key), ...len(2, value)]);
const descriptor = (...entries: number[][]): number[] => len(2, entries.flat());

describe('checkRequestBytes', () => {
  test('accepts what protobufjs itself encodes, and unknown fields of every wire type', () => {
    const encoded = shouldRateLimitMethod.serialize({
      domain: 'oauth2',
      descriptors: [{ entries: [{ key: 'user_id', value: 'zoë' }], hits_addend: { value: 3 } }, { entries: [{ key: 'client_id', value: 'web' }] }],
      hits_addend: 2,
    });
    expect(checkRequestBytes(encoded)).toBeUndefined();
    const unknown = [...field(9, 0, 0x96, 0x01), ...field(10, 1, 1, 2, 3, 4, 5, 6, 7, 8), ...len(11, [1, 2]), ...field(12, 5, 1, 2, 3, 4)];
    expect(checkRequestBytes(Buffer.from([...len(1, ascii('d')), ...unknown]))).toBeUndefined();
  });

  test.each<[string, number[], string]>([
    ['a length that overruns the message', [...field(1, 2, 50), ...ascii('abc')], 'malformed request: the length of domain (50 bytes) overruns its message'],
    ['a length that overruns its enclosing message', [...len(2, [...field(1, 2, 9), ...ascii('k')])], 'malformed request: the length of descriptors[0].entries[0] (9 bytes) overruns its message'],
    ['a varint of ten 0xff bytes', [...field(3, 0), ...Array<number>(10).fill(0xff)], 'malformed request: hits_addend is a varint over 64 bits'],
    ['a varint cut off', [...field(3, 0, 0x80)], 'malformed request: hits_addend is cut off'],
    ['field number 0', [0x02, 0x01, 0x61], 'malformed request: field number 0'],
    ['a string field sent as a varint', [...field(1, 0, 5)], 'malformed request: domain has wire type 0, not 2'],
    ['a group wire type', [...field(7, 3)], 'malformed request: field 7 has wire type 3, which this message does not use'],
    ['a domain that is not UTF-8', [...len(1, [0x61, 0xff])], 'domain is not valid UTF-8'],
    ['a key that is not UTF-8', [...descriptor(entry([0xfe], ascii('v')))], 'descriptors[0].entries[0].key is not valid UTF-8'],
    [
      'a value that is not UTF-8, in the second entry of the second descriptor',
      [...descriptor(entry(ascii('a'), ascii('b'))), ...descriptor(entry(ascii('k'), ascii('v')), entry(ascii('user_id'), [0x61, 0xc3]))],
      'descriptors[1].entries[1].value is not valid UTF-8',
    ],
  ])('refuses %s', (_name, bytes, problem) => {
    expect(checkRequestBytes(Buffer.from(bytes))).toBe(problem);
  });
});
