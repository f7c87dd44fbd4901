import { InvalidArgumentError } from '../../../src/errors';
import { fromJsonRequest, toJsonResponse } from '../../../src/server/json-route';

describe('POST /json body (proto3 JSON RateLimitRequest)', () => {
  it('reads camelCase and snake_case names alike', () => {
    const expected = {
      domain: 'd',
      hitsAddend: 2,
      descriptors: [
        {
          entries: [{ key: 'k', value: 'v' }],
          limitOverride: { requestsPerUnit: 5, unit: 2 },
          hitsAddend: 0,
        },
      ],
    };
    expect(
      fromJsonRequest({
        domain: 'd',
        hitsAddend: 2,
        descriptors: [{ entries: [{ key: 'k', value: 'v' }], limit: { requestsPerUnit: 5, unit: 'MINUTE' }, hitsAddend: 0 }],
      }),
    ).toEqual(expected);
    expect(
      fromJsonRequest({
        domain: 'd',
        hits_addend: '2',
        descriptors: [{ entries: [{ key: 'k', value: 'v' }], limit: { requests_per_unit: '5', unit: 2 }, hits_addend: '0' }],
      }),
    ).toEqual(expected);
  });

  it('treats absent and null fields as proto3 defaults, keeping the presence of the descriptor addend', () => {
    expect(fromJsonRequest({ domain: 'd', descriptors: [{ entries: [{ key: 'k' }], hitsAddend: null }] })).toEqual({
      domain: 'd',
      hitsAddend: 0,
      descriptors: [{ entries: [{ key: 'k', value: '' }] }],
    });
    expect(fromJsonRequest({})).toEqual({ domain: '', hitsAddend: 0, descriptors: [] });
  });

  it.each([
    [[], 'body: must be a JSON object'],
    [{ domian: 'd' }, 'domian: unknown field'],
    [{ domain: 'd', hitsAddend: 1, hits_addend: 1 }, 'hits_addend: field given twice'],
    [{ domain: 5 }, 'domain: must be a string'],
    [{ hitsAddend: -1 }, 'hitsAddend: must be an integer from 0 to 4294967295'],
    [{ hitsAddend: 'many' }, 'hitsAddend: must be a non-negative integer'],
    [{ hitsAddend: 1.5 }, 'hitsAddend: must be an integer from 0 to 4294967295'],
    [{ descriptors: {} }, 'descriptors: must be an array'],
    [{ descriptors: [{ entries: [{ key: 'k', extra: 1 }] }] }, 'descriptors[0].entries[0].extra: unknown field'],
    [{ descriptors: [{ limit: { unit: 'FORTNIGHT' } }] }, 'descriptors[0].limit.unit: unknown rate limit unit "FORTNIGHT"'],
  ])('rejects %j with "%s"', (body, message) => {
    let error: unknown;
    try {
      fromJsonRequest(body);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toBe(message);
  });
});

describe('POST /json answer (proto3 JSON RateLimitResponse)', () => {
  it('writes camelCase, leaves zero values out and writes durations as seconds', () => {
    expect(
      toJsonResponse({
        overallCode: 'OVER_LIMIT',
        statuses: [
          { code: 'OVER_LIMIT', currentLimit: { requestsPerUnit: 3, unit: 'MINUTE', name: 'n' }, limitRemaining: 0, durationUntilResetSeconds: 58 },
          { code: 'OK', limitRemaining: 0 },
          { code: 'OK', currentLimit: { requestsPerUnit: 0, unit: 'SECOND' }, limitRemaining: 4294967295, durationUntilResetSeconds: 0 },
        ],
        responseHeadersToAdd: [{ key: 'RateLimit-Limit', value: '3' }],
      }),
    ).toEqual({
      overallCode: 'OVER_LIMIT',
      statuses: [
        { code: 'OVER_LIMIT', currentLimit: { name: 'n', requestsPerUnit: 3, unit: 'MINUTE' }, durationUntilReset: '58s' },
        { code: 'OK' },
        { code: 'OK', currentLimit: { unit: 'SECOND' }, limitRemaining: 4294967295, durationUntilReset: '0s' },
      ],
      responseHeadersToAdd: [{ key: 'RateLimit-Limit', value: '3' }],
    });
  });

  it('leaves out empty lists', () => {
    expect(toJsonResponse({ overallCode: 'OK', statuses: [], responseHeadersToAdd: [] })).toEqual({ overallCode: 'OK' });
  });
});
