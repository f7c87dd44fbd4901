import * as grpc from '@grpc/grpc-js';
import { applyStreamResetLimit, streamResetLimitSupported } from '../../../src/server/stream-reset-limit';

describe('streamResetLimitSupported', () => {
  test.each([
    ['20.20.2', false],
    ['22.9.0', false],
    ['22.10.0', true],
    ['23.0.0', true],
    ['24.22.3', true],
  ])('Node %s: %s', (version, supported) => {
    expect(streamResetLimitSupported(version)).toBe(supported);
  });
});

describe('applyStreamResetLimit', () => {
  const limit = { burst: 10_000, ratePerSecond: 5_000 };

  test('adds the limit to the node:http2 options this grpc-js passes when it creates its servers', () => {
    const server = new grpc.Server();
    expect(applyStreamResetLimit(server, limit, '24.22.3')).toBe(true);
    // If a grpc-js upgrade renames the field, this fails instead of the limit silently going away.
    expect((server as unknown as { commonServerOptions: object }).commonServerOptions).toMatchObject({
      streamResetBurst: 10_000,
      streamResetRate: 5_000,
    });
  });

  test('changes nothing on a Node that cannot take it', () => {
    const server = new grpc.Server();
    expect(applyStreamResetLimit(server, limit, '20.20.2')).toBe(false);
    expect((server as unknown as { commonServerOptions: object }).commonServerOptions).not.toHaveProperty('streamResetBurst');
  });
});
