import { PackedReader, PackedWriter } from '../../../src/store/memory/packed-numbers';

/** Writes `values`, each relative to the one before (0 first), and reads them back. */
function roundTrip(values: readonly number[]): { back: number[]; bytes: number } {
  const writer = new PackedWriter();
  let previous = 0;
  for (const value of values) {
    writer.put(value, previous);
    previous = value;
  }
  const bytes = writer.finish();
  const copy = Uint8Array.from(PackedWriter.bytes.subarray(0, bytes));
  const reader = new PackedReader(copy, 0, bytes);
  const back: number[] = [];
  previous = 0;
  while (!reader.done) {
    previous = reader.next(previous);
    back.push(previous);
  }
  return { back, bytes };
}

describe('packed numbers', () => {
  it.each([
    ['whole differences of every varint length', [0, 1, 128, 128 + 2 ** 13, 2 ** 20, 2 ** 20 + 2 ** 27, 2 ** 20 + 2 ** 27 + (2 ** 28 - 1)]],
    ['epoch instants a millisecond apart', [1_800_000_000_000, 1_800_000_000_001, 1_800_000_003_000]],
    ['a difference of 2^28 and more, negative, or fractional (raw doubles)', [2 ** 28, 5, 5.5, 1e300, -0, 0, -1, Number.MAX_SAFE_INTEGER + 2]],
    ['values a difference cannot give back exactly', [0.1, 0.30000000000000004, 2 ** 53, 2 ** 53 + 2]],
  ])('gives back %s bit for bit', (_name, values) => {
    const { back } = roundTrip(values);
    expect(back).toHaveLength(values.length);
    back.forEach((value, i) => expect(Object.is(value, values[i])).toBe(true));
  });

  it('spends 1 to 5 bytes on a whole difference below 2^28, and 9 on anything else', () => {
    expect(roundTrip([63]).bytes).toBe(1);
    expect(roundTrip([64]).bytes).toBe(2);
    expect(roundTrip([2 ** 27 - 1]).bytes).toBe(4);
    expect(roundTrip([2 ** 28 - 1]).bytes).toBe(5);
    expect(roundTrip([2 ** 28]).bytes).toBe(9);
    expect(roundTrip([0.5]).bytes).toBe(9);
  });
});
