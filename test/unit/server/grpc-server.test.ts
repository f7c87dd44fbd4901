import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { MessageTypeDefinition } from '@grpc/proto-loader';
import { FileDescriptorProto } from 'protobufjs/ext/descriptor';
import type { IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { InvalidArgumentError, StoreError, UnavailableError } from '../../../src/errors';
import { silentLogger } from '../../../src/logging/logger';
import { startGrpcServer } from '../../../src/server/grpc-server';
import { HealthState } from '../../../src/server/health';
import { RLS_SERVICE_NAME } from '../../../src/server/proto';
import type { RateLimitResponse } from '../../../src/service/types';
import { createRlsClient } from '../../support/rls-client';
import type { RlsClient } from '../../support/rls-client';
import { startTestServer } from './fake-service';
import type { TestServer } from './fake-service';

function errorOf(promise: Promise<unknown>): Promise<grpc.ServiceError> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (err: grpc.ServiceError) => err,
  );
}

const MAX_RECEIVE = 64 * 1024;

// One conformance suite for both transports: grpc-js serving every call, and the lean transport
// serving ShouldRateLimit on grpc-js's servers (health, reflection and shutdown stay grpc-js's).
describe.each(['grpc-js', 'lean'] as const)('gRPC server (GRPC_TRANSPORT=%s)', (transport) => {
  let t: TestServer;
  let client: RlsClient;

  beforeEach(async () => {
    t = await startTestServer({ transport, maxReceiveMessageLength: MAX_RECEIVE });
    expect(t.server.transport).toBe(transport);
    client = createRlsClient(t.address);
  });

  afterEach(async () => {
    client.close();
    await t.server.shutdown(100);
  });

  describe('request conversion', () => {
    it('hands the service domain, entries, request hits_addend and limit override', async () => {
      await client.shouldRateLimit({
        domain: 'oauth2',
        hits_addend: 3,
        descriptors: [
          { entries: [{ key: 'client_id', value: 'abc' }, { key: 'user_id', value: 'u=1,2' }] },
          { entries: [{ key: 'route', value: '' }], limit: { requests_per_unit: 42, unit: 'HOUR' } },
        ],
      });
      expect(t.service.requests).toEqual([
        {
          domain: 'oauth2',
          hitsAddend: 3,
          descriptors: [
            {
              entries: [
                { key: 'client_id', value: 'abc' },
                { key: 'user_id', value: 'u=1,2' },
              ],
            },
            { entries: [{ key: 'route', value: '' }], limitOverride: { requestsPerUnit: 42, unit: 3 } },
          ],
        },
      ]);
    });

    it('keeps the presence of the per-descriptor hits_addend wrapper, explicit 0 included', async () => {
      await client.shouldRateLimit({
        domain: 'd',
        descriptors: [
          { entries: [{ key: 'a', value: '1' }] },
          { entries: [{ key: 'a', value: '2' }], hits_addend: { value: 0 } },
          { entries: [{ key: 'a', value: '3' }], hits_addend: {} },
          { entries: [{ key: 'a', value: '4' }], hits_addend: { value: 7 } },
        ],
      });
      const descriptors = t.service.requests[0]?.descriptors ?? [];
      expect(descriptors.map((d) => ('hitsAddend' in d ? d.hitsAddend : 'absent'))).toEqual(['absent', 0, 0, 7]);
      // Request-level hits_addend unset on the wire arrives as 0 (the service reads 0 as 1).
      expect(t.service.requests[0]?.hitsAddend).toBe(0);
    });

    it('passes a descriptor with no entries as an empty list for the service to judge', async () => {
      await client.shouldRateLimit({ domain: 'd', descriptors: [{}] });
      expect(t.service.requests[0]?.descriptors).toEqual([{ entries: [] }]);
    });
  });

  describe('response conversion', () => {
    it('returns codes, current_limit with name, limit_remaining and duration_until_reset', async () => {
      t.service.answer = (): RateLimitResponse => ({
        overallCode: 'OVER_LIMIT',
        statuses: [
          {
            code: 'OVER_LIMIT',
            currentLimit: { requestsPerUnit: 10, unit: 'MINUTE', name: 'token_per_client' },
            limitRemaining: 0,
            durationUntilResetSeconds: 42,
          },
          { code: 'OK', currentLimit: { requestsPerUnit: 5, unit: 'WEEK' }, limitRemaining: 4, durationUntilResetSeconds: 0 },
          { code: 'OK', limitRemaining: 0 },
        ],
        responseHeadersToAdd: [{ key: 'ratelimit-remaining', value: '0' }],
      });
      const response = await client.shouldRateLimit({
        domain: 'd',
        descriptors: [{ entries: [{ key: 'a', value: '1' }] }, { entries: [{ key: 'b', value: '2' }] }, { entries: [{ key: 'c', value: '3' }] }],
      });
      expect(response).toEqual({
        overall_code: 'OVER_LIMIT',
        statuses: [
          {
            code: 'OVER_LIMIT',
            current_limit: { requests_per_unit: 10, unit: 'MINUTE', name: 'token_per_client' },
            limit_remaining: 0,
            duration_until_reset: { seconds: 42 },
          },
          { code: 'OK', current_limit: { requests_per_unit: 5, unit: 'WEEK' }, limit_remaining: 4, duration_until_reset: { seconds: 0 } },
          { code: 'OK', limit_remaining: 0 },
        ],
        response_headers_to_add: [{ key: 'ratelimit-remaining', value: '0' }],
      });
      // Field presence, stated on its own: no limit ⇒ no current_limit, no reset; no name ⇒ no name.
      const [, weekly, unmatched] = response.statuses ?? [];
      expect(unmatched).not.toHaveProperty('current_limit');
      expect(unmatched).not.toHaveProperty('duration_until_reset');
      expect(weekly?.current_limit).not.toHaveProperty('name');
    });
  });

  describe('errors', () => {
    it('maps InvalidArgumentError to INVALID_ARGUMENT with its message', async () => {
      t.service.answer = () => Promise.reject(new InvalidArgumentError('descriptors[1].entries[0].key is empty'));
      const err = await errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toBe('descriptors[1].entries[0].key is empty');
    });

    it('maps UnavailableError and StoreError to UNAVAILABLE', async () => {
      t.service.answer = () => Promise.reject(new UnavailableError('no rate limit configuration loaded'));
      const first = await errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }));
      expect(first.code).toBe(grpc.status.UNAVAILABLE);
      expect(first.details).toBe('no rate limit configuration loaded');

      t.service.answer = () => Promise.reject(new StoreError('redis: connection refused', true));
      const second = await errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }));
      expect(second.code).toBe(grpc.status.UNAVAILABLE);
      expect(second.details).toBe('redis: connection refused');
    });

    it('maps a plain Error, thrown synchronously or rejected, to INTERNAL and keeps serving', async () => {
      t.service.answer = () => {
        throw new Error('boom');
      };
      const thrown = await errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }));
      expect(thrown.code).toBe(grpc.status.INTERNAL);
      expect(thrown.details).toBe('internal error: boom');

      t.service.answer = () => Promise.reject(new TypeError('x is undefined'));
      const rejected = await errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }));
      expect(rejected.code).toBe(grpc.status.INTERNAL);
      expect(rejected.details).toBe('internal error: x is undefined');

      t.service.answer = (request) => ({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 1 })), responseHeadersToAdd: [] });
      const after = await client.shouldRateLimit({ domain: 'd', descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] });
      expect(after.overall_code).toBe('OK');
    });
  });

  describe('transport', () => {
    it('carries a message with non-ASCII characters and % to the client unchanged', async () => {
      const message = 'descriptors[0].entries[0].value "über 100%\tcafé" is not allowed';
      t.service.answer = () => Promise.reject(new InvalidArgumentError(message));
      const err = await errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }));
      expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(err.details).toBe(message);
    });

    it('hands the service the call deadline, and a call whose answer comes after it ends DEADLINE_EXCEEDED', async () => {
      const before = Date.now();
      await client.shouldRateLimit({ domain: 'd', descriptors: [{}] }, { deadlineMs: 3000 });
      expect(t.service.deadlines[0]).toBeGreaterThanOrEqual(before + 2900);
      expect(t.service.deadlines[0]).toBeLessThanOrEqual(Date.now() + 3000);

      t.service.answer = (request) =>
        new Promise<RateLimitResponse>((resolve) =>
          setTimeout(() => resolve({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 1 })), responseHeadersToAdd: [] }), 150),
        );
      const err = await errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }, { deadlineMs: 50 }));
      expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      // The server carries on once the late answer is ready.
      await new Promise((r) => setTimeout(r, 150));
      t.service.answer = (request) => ({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 1 })), responseHeadersToAdd: [] });
      expect((await client.shouldRateLimit({ domain: 'd', descriptors: [{}] })).overall_code).toBe('OK');
    });

    it('refuses a request over maxReceiveMessageLength with RESOURCE_EXHAUSTED naming the sizes, and reads one at the limit', async () => {
      // The domain's field tag and length take 4 bytes of the message.
      const over = await errorOf(client.shouldRateLimit({ domain: 'x'.repeat(MAX_RECEIVE - 3), descriptors: [] }));
      expect(over.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(over.details).toMatch(new RegExp(`${MAX_RECEIVE + 1}.*${MAX_RECEIVE}`));
      await client.shouldRateLimit({ domain: 'x'.repeat(MAX_RECEIVE - 4), descriptors: [] });
      expect(t.service.requests).toHaveLength(1);
    });
  });

  describe('health', () => {
    it('reports SERVING for "" and the RLS name only while config is loaded, the store ok and not draining', async () => {
      expect(await client.health('')).toBe('SERVING');
      expect(await client.health(RLS_SERVICE_NAME)).toBe('SERVING');

      t.health.setStoreOk(false);
      expect(await client.health('')).toBe('NOT_SERVING');
      expect(await client.health(RLS_SERVICE_NAME)).toBe('NOT_SERVING');

      t.health.setStoreOk(true);
      expect(await client.health('')).toBe('SERVING');

      t.health.setDraining(true);
      expect(await client.health(RLS_SERVICE_NAME)).toBe('NOT_SERVING');
    });

    it('starts NOT_SERVING (never NOT_FOUND) before anything is reported', async () => {
      const health = new HealthState();
      const server = await startGrpcServer({ service: t.service, health, host: '127.0.0.1', port: 0, logger: silentLogger() });
      const fresh = createRlsClient(`127.0.0.1:${server.port}`);
      try {
        expect(await fresh.health('')).toBe('NOT_SERVING');
        expect(await fresh.health(RLS_SERVICE_NAME)).toBe('NOT_SERVING');
        expect(health.notReadyReasons()).toEqual(['config not loaded', 'store unavailable']);
        health.setConfigLoaded(true);
        expect(await fresh.health('')).toBe('NOT_SERVING');
        health.setStoreOk(true);
        expect(await fresh.health('')).toBe('SERVING');
        expect(health.isServing()).toBe(true);
      } finally {
        fresh.close();
        await server.shutdown(100);
      }
    });

    it('answers NOT_FOUND for a service name it does not know', async () => {
      const err = await errorOf(client.health('no.such.Service'));
      expect(err.code).toBe(grpc.status.NOT_FOUND);
    });
  });

  describe('reflection', () => {
    // A minimal grpc.reflection.v1 client from the proto @grpc/reflection ships.
    const reflectionProto = path.join(
      path.dirname(require.resolve('@grpc/reflection')),
      '..',
      'proto',
      'grpc',
      'reflection',
      'v1',
      'reflection.proto',
    );
    const reflectionPackage = loadSync(reflectionProto, { keepCase: true, longs: Number, enums: String, oneofs: true });
    const messageType = (name: string): MessageTypeDefinition<object, object> => {
      const definition = reflectionPackage[`grpc.reflection.v1.${name}`];
      if (definition === undefined || definition.format !== 'Protocol Buffer 3 DescriptorProto') {
        throw new Error(`reflection.proto has no message ${name}`);
      }
      return definition as MessageTypeDefinition<object, object>;
    };
    const requestType = messageType('ServerReflectionRequest');
    const responseType = messageType('ServerReflectionResponse');

    interface ReflectionResponse {
      list_services_response?: { service?: { name?: string }[] };
      file_descriptor_response?: { file_descriptor_proto?: Buffer[] };
      error_response?: { error_code?: number; error_message?: string };
    }

    function reflect(address: string, request: object): Promise<ReflectionResponse> {
      const channel = new grpc.Client(address, grpc.credentials.createInsecure());
      return new Promise<ReflectionResponse>((resolve, reject) => {
        const call = channel.makeBidiStreamRequest(
          '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
          (value: object) => requestType.serialize(value),
          (bytes: Buffer) => responseType.deserialize(bytes) as ReflectionResponse,
          new grpc.Metadata(),
          { deadline: Date.now() + 5000 },
        );
        call.on('data', (response: ReflectionResponse) => {
          resolve(response);
          call.end();
        });
        call.on('error', (err) => reject(err));
        call.on('close', () => channel.close());
        call.write(request);
      });
    }

    it('lists the RLS service, health, and reflection itself (v1 and v1alpha)', async () => {
      const response = await reflect(t.address, { list_services: '' });
      const names = (response.list_services_response?.service ?? []).map((s) => s.name);
      expect(names.sort()).toEqual([
        RLS_SERVICE_NAME,
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
      ]);
    });

    it('serves the RLS file under its real name with every file it imports (Envoy files and well-known types)', async () => {
      const response = await reflect(t.address, { file_containing_symbol: RLS_SERVICE_NAME });
      expect(response.error_response).toBeUndefined();
      const files = (response.file_descriptor_response?.file_descriptor_proto ?? []).map(
        (bytes) => FileDescriptorProto.decode(bytes) as IFileDescriptorProto,
      );
      // Strict clients (grpcurl, C++/Python pools) link a file only through its declared
      // dependencies, by the names protoc gives them; src/server/reflection.ts rebuilds both.
      expect(Object.fromEntries(files.map((f) => [f.name, f.dependency]))).toEqual({
        'envoy/service/ratelimit/v3/rls.proto': [
          'envoy/config/core/v3/base.proto',
          'envoy/extensions/common/ratelimit/v3/ratelimit.proto',
          'google/protobuf/duration.proto',
          'google/protobuf/struct.proto',
          'google/protobuf/timestamp.proto',
        ],
        'envoy/extensions/common/ratelimit/v3/ratelimit.proto': ['envoy/type/v3/ratelimit_unit.proto', 'google/protobuf/wrappers.proto'],
        'envoy/config/core/v3/base.proto': [],
        'envoy/type/v3/ratelimit_unit.proto': [],
        'google/protobuf/duration.proto': [],
        'google/protobuf/struct.proto': [],
        'google/protobuf/timestamp.proto': [],
        'google/protobuf/wrappers.proto': [],
      });
      // Type references are fully qualified, map entries carry protoc's `<Field>Entry` name, and
      // the bundled Value's camelCase fields get their real snake_case names.
      const rls = files.find((f) => f.name === 'envoy/service/ratelimit/v3/rls.proto');
      const request = rls?.messageType?.find((m) => m.name === 'RateLimitRequest');
      expect(request?.field?.find((f) => f.name === 'descriptors')?.typeName).toBe(
        '.envoy.extensions.common.ratelimit.v3.RateLimitDescriptor',
      );
      const struct = files.find((f) => f.name === 'google/protobuf/struct.proto');
      const structMessage = struct?.messageType?.find((m) => m.name === 'Struct');
      expect(structMessage?.nestedType?.map((n) => n.name)).toEqual(['FieldsEntry']);
      expect(structMessage?.field?.[0]?.typeName).toBe('.google.protobuf.Struct.FieldsEntry');
      expect(struct?.messageType?.find((m) => m.name === 'Value')?.field?.map((f) => f.name)).toEqual([
        'null_value',
        'number_value',
        'string_value',
        'bool_value',
        'struct_value',
        'list_value',
      ]);
    });

    it('answers a lookup by the real file name', async () => {
      const response = await reflect(t.address, { file_by_filename: 'envoy/service/ratelimit/v3/rls.proto' });
      expect(response.error_response).toBeUndefined();
      const first = FileDescriptorProto.decode(response.file_descriptor_response?.file_descriptor_proto?.[0] ?? Buffer.alloc(0));
      expect((first as IFileDescriptorProto).name).toBe('envoy/service/ratelimit/v3/rls.proto');
    });
  });

  describe('shutdown', () => {
    it('lets an in-flight slow call finish, then refuses new calls', async () => {
      let release!: () => void;
      const started = new Promise<void>((resolveStarted) => {
        t.service.answer = (request) => {
          resolveStarted();
          return new Promise<RateLimitResponse>((resolve) => {
            release = () =>
              resolve({ overallCode: 'OK', statuses: request.descriptors.map(() => ({ code: 'OK', limitRemaining: 9 })), responseHeadersToAdd: [] });
          });
        };
      });
      const inFlight = client.shouldRateLimit({ domain: 'd', descriptors: [{ entries: [{ key: 'a', value: 'b' }] }] });
      await started;
      const stopped = t.server.shutdown(5000);
      setTimeout(() => release(), 50);
      const response = await inFlight;
      expect(response.statuses?.[0]?.limit_remaining).toBe(9);
      await stopped;
      expect(t.health.isServing()).toBe(false);

      const late = createRlsClient(t.address);
      try {
        const err = await errorOf(late.shouldRateLimit({ domain: 'd', descriptors: [{}] }, { deadlineMs: 1000 }));
        expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(err.code);
      } finally {
        late.close();
      }
    });

    it('cuts a call that outlives the grace period', async () => {
      t.service.answer = () => new Promise<RateLimitResponse>(() => undefined);
      const inFlight = errorOf(client.shouldRateLimit({ domain: 'd', descriptors: [{}] }));
      await new Promise((r) => setTimeout(r, 50));
      const before = Date.now();
      await t.server.shutdown(100);
      expect(Date.now() - before).toBeLessThan(2000);
      const err = await inFlight;
      expect(err.code).not.toBe(grpc.status.OK);
    });
  });
});
