import { status } from '@grpc/grpc-js';
import { ConfigError, InvalidArgumentError, StoreError, UnavailableError } from '../../../src/errors';
import { toGrpcStatus } from '../../../src/server/grpc-status';
import { fromWireRequest, toWireResponse } from '../../../src/server/wire';

// What cannot be sent over a real socket (protobufjs only decodes well-typed objects) but must
// still not crash a handler.
describe('fromWireRequest on odd input', () => {
  it.each([undefined, null, 42, 'x', []])('turns %p into an empty request for the service to reject', (raw) => {
    expect(fromWireRequest(raw)).toEqual({ domain: '', descriptors: [], hitsAddend: 0 });
  });

  it('keeps a null or malformed entry in place as an empty key instead of dropping it', () => {
    const request = fromWireRequest({
      domain: 'd',
      descriptors: [{ entries: [{ key: 'a', value: '1' }, null, { key: 7 }] }, null, { entries: 'nope' }],
    });
    expect(request.descriptors).toEqual([
      {
        entries: [
          { key: 'a', value: '1' },
          { key: '', value: '' },
          { key: '', value: '' },
        ],
      },
      { entries: [] },
      { entries: [] },
    ]);
  });

  it('reads hits_addend wrappers and overrides in either long or enum representation', () => {
    const request = fromWireRequest({
      domain: 'd',
      hits_addend: '2',
      descriptors: [
        { entries: [], hits_addend: { value: '5' }, limit: { requests_per_unit: 3, unit: 'MINUTE' } },
        { entries: [], hits_addend: null, limit: { unit: 9 } },
        { entries: [], limit: { unit: 'toString' } },
      ],
    });
    expect(request.hitsAddend).toBe(2);
    expect(request.descriptors).toEqual([
      { entries: [], hitsAddend: 5, limitOverride: { requestsPerUnit: 3, unit: 2 } },
      { entries: [], limitOverride: { requestsPerUnit: 0, unit: 9 } },
      { entries: [], limitOverride: { requestsPerUnit: 0, unit: 0 } },
    ]);
  });
});

describe('toWireResponse', () => {
  it('clamps numbers protobufjs would wrap and rounds the reset up to whole seconds', () => {
    const wire = toWireResponse({
      overallCode: 'OK',
      statuses: [
        { code: 'OK', currentLimit: { requestsPerUnit: 1.5, unit: 'SECOND' }, limitRemaining: -1, durationUntilResetSeconds: 0.2 },
        { code: 'OK', limitRemaining: Number.POSITIVE_INFINITY },
      ],
      responseHeadersToAdd: [],
    });
    expect(wire.statuses).toEqual([
      { code: 'OK', current_limit: { requests_per_unit: 1, unit: 'SECOND' }, limit_remaining: 0, duration_until_reset: { seconds: 1 } },
      { code: 'OK', limit_remaining: 4294967295 },
    ]);
  });
});

describe('toGrpcStatus', () => {
  it('maps each error kind, keeping the message', () => {
    expect(toGrpcStatus(new InvalidArgumentError('domain is empty'))).toEqual({ code: status.INVALID_ARGUMENT, details: 'domain is empty' });
    expect(toGrpcStatus(new UnavailableError('no config'))).toEqual({ code: status.UNAVAILABLE, details: 'no config' });
    expect(toGrpcStatus(new StoreError('redis timeout', true))).toEqual({ code: status.UNAVAILABLE, details: 'redis timeout' });
    expect(toGrpcStatus(new ConfigError([{ file: 'a.yaml', path: '', reason: 'bad', message: 'a.yaml: bad' }]))).toEqual({
      code: status.INTERNAL,
      details: 'a.yaml: bad',
    });
  });

  it('calls anything else an internal error, whatever was thrown', () => {
    expect(toGrpcStatus(new RangeError('oops'))).toEqual({ code: status.INTERNAL, details: 'internal error: oops' });
    expect(toGrpcStatus('a string')).toEqual({ code: status.INTERNAL, details: 'internal error: a string' });
    const hostile = {
      toString(): string {
        throw new Error('no');
      },
    };
    expect(toGrpcStatus(hostile).code).toBe(status.INTERNAL);
  });

  it('cuts very long messages', () => {
    const details = toGrpcStatus(new InvalidArgumentError('x'.repeat(10_000))).details;
    expect(details.length).toBe(2048);
    expect(details.endsWith('…')).toBe(true);
  });
});
