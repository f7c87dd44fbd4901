import { hitStats, nearThreshold } from '../../../src/metrics/hit-stats';

const base = { limit: 10, nearLimitRatio: 0.8, shadowMode: false };

describe('per-rule hit arithmetic (the reference base_limiter)', () => {
  it('computes the near threshold as floor(limit × ratio)', () => {
    expect(nearThreshold(10, 0.8)).toBe(8);
    expect(nearThreshold(3, 0.8)).toBe(2);
    expect(nearThreshold(5, 0.6)).toBe(3);
    expect(nearThreshold(1, 0.8)).toBe(0);
    expect(nearThreshold(0, 0.8)).toBe(0);
  });

  it('counts single admitted hits as within, and those above the threshold also as near', () => {
    // Charged, admitted: remaining after the hit is 10 − count.
    const seq = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((count) =>
      hitStats({ ...base, hits: 1, admitted: true, remaining: 10 - count, charged: true }),
    );
    expect(seq.map((s) => s.withinLimit)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    expect(seq.map((s) => s.nearLimit)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    expect(seq.every((s) => s.overLimit === 0 && s.totalHits === 1)).toBe(true);
  });

  it('splits a bulk admitted addend at the threshold', () => {
    // 6 → 9: only the hit above 8 is near.
    expect(hitStats({ ...base, hits: 3, admitted: true, remaining: 1, charged: true })).toEqual({
      totalHits: 3,
      withinLimit: 3,
      nearLimit: 1,
      overLimit: 0,
      shadowMode: 0,
    });
  });

  it('splits an over-limit addend into near and over parts', () => {
    // Uncharged (sluice's default): remaining 3 before the request ⇒ before 7, after 12.
    expect(hitStats({ ...base, hits: 5, admitted: false, remaining: 3, charged: false })).toEqual({
      totalHits: 5,
      withinLimit: 0,
      nearLimit: 2,
      overLimit: 2,
      shadowMode: 0,
    });
  });

  it('counts every hit as over once the count is at the limit', () => {
    expect(hitStats({ ...base, hits: 4, admitted: false, remaining: 0, charged: false })).toMatchObject({
      overLimit: 4,
      nearLimit: 0,
    });
    // CHARGE_REJECTED_HITS: the count before is unknown (0 remaining); all hits count as over.
    expect(hitStats({ ...base, hits: 2, admitted: false, remaining: 0, charged: true })).toMatchObject({
      overLimit: 2,
      nearLimit: 0,
    });
  });

  it('mirrors the over part into shadow_mode for a shadow rule', () => {
    expect(hitStats({ ...base, shadowMode: true, hits: 5, admitted: false, remaining: 3, charged: false })).toMatchObject({
      overLimit: 2,
      shadowMode: 2,
    });
  });

  it('reads an admitted descriptor of a rejected request as uncharged', () => {
    // Another descriptor rejected the request: remaining still counts the hits as not taken.
    expect(hitStats({ ...base, hits: 1, admitted: true, remaining: 2, charged: false })).toMatchObject({
      withinLimit: 1,
      nearLimit: 1,
    });
  });

  it('adds nothing for a check-only descriptor (hits 0)', () => {
    expect(hitStats({ ...base, hits: 0, admitted: false, remaining: 0, charged: false })).toEqual({
      totalHits: 0,
      withinLimit: 0,
      nearLimit: 0,
      overLimit: 0,
      shadowMode: 0,
    });
  });
});
