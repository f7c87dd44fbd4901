import { existsSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { MethodDefinition, PackageDefinition, ServiceDefinition } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type { ReflectedProto } from './reflection';

/**
 * The protos, loaded once. Everything that speaks the wire (server, CLI client, test client) uses
 * this one package definition, so every side decodes with the same options.
 */

export const RLS_SERVICE_NAME = 'envoy.service.ratelimit.v3.RateLimitService';
export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

const RLS_PROTO = 'envoy/service/ratelimit/v3/rls.proto';
const HEALTH_PROTO = 'health/v1/health.proto';

/**
 * The options decide the shapes below, so they are pinned here and nowhere else.
 * - keepCase: field names stay snake_case, as in the .proto (and in grpcurl / Envoy docs).
 * - longs Number: the UInt64Value `hits_addend` and Duration `seconds` arrive as numbers; both are
 *   capped far below 2^53 by the service, so no precision that matters is lost.
 * - enums String: `Code` and `Unit` travel as their names ('OVER_LIMIT', 'WEEK'); an enum number
 *   this proto does not know arrives as the number.
 * - defaults false: an unset field is absent, so the presence of the `hits_addend` wrapper (and
 *   of `limit`) is visible. Consequence: an empty repeated field or a zero scalar sent unset is
 *   absent too — readers must default them.
 * - oneofs true: `Quota.expiration_specifier` names the set member.
 */
const LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: false,
  oneofs: true,
} as const;

/**
 * The directory holding `proto/envoy/...`. This file runs from `src/server/` under ts-jest and
 * from `dist/src/server/` once compiled (and from `node_modules/sluice/dist/src/server/` when
 * installed), so walk up instead of assuming a depth.
 */
function findProtoRoot(start: string): string {
  let dir = start;
  for (;;) {
    const candidate = path.join(dir, 'proto');
    if (existsSync(path.join(candidate, RLS_PROTO))) {
      return candidate;
    }
    const parent = path.dirname(dir);
    if (parent === dir) {
      throw new Error(`proto: cannot find proto/${RLS_PROTO} in ${start} or any parent directory`);
    }
    dir = parent;
  }
}

export const PROTO_ROOT = findProtoRoot(__dirname);

/** grpc-health-check ships health.proto at `<pkg>/proto/health/v1/health.proto`. */
const HEALTH_PROTO_ROOT = path.resolve(path.dirname(healthProtoPath), '..', '..');

/**
 * The RLS and health services as the server and clients encode them. The RLS file pulls in the
 * trimmed HeaderValue, RateLimitDescriptor and RateLimitUnit files and the Google well-known types
 * (resolved from protobufjs's bundled copies). Reflection serves REFLECTED_PROTOS below instead.
 */
export const packageDefinition: PackageDefinition = loadSync([RLS_PROTO, HEALTH_PROTO], {
  ...LOADER_OPTIONS,
  includeDirs: [PROTO_ROOT, HEALTH_PROTO_ROOT],
});

/** `@grpc/reflection` ships grpc's reflection protos at `<pkg>/build/proto/grpc/reflection/...`. */
const REFLECTION_PROTO_ROOT = path.resolve(path.dirname(require.resolve('@grpc/reflection')), '..', 'proto');

/**
 * What server reflection serves, under the names protoc-built servers use: the RLS file (and,
 * through its imports, the Envoy files and `google/protobuf/*.proto`), health, and reflection
 * itself (v1 and v1alpha, both served). grpc-health-check ships health.proto outside its canonical
 * `grpc/health/v1/` path.
 */
export const REFLECTED_PROTOS: readonly ReflectedProto[] = [
  { includeDir: PROTO_ROOT, file: RLS_PROTO },
  { includeDir: HEALTH_PROTO_ROOT, file: HEALTH_PROTO, servedAs: 'grpc/health/v1/health.proto' },
  { includeDir: REFLECTION_PROTO_ROOT, file: 'grpc/reflection/v1/reflection.proto' },
  { includeDir: REFLECTION_PROTO_ROOT, file: 'grpc/reflection/v1alpha/reflection.proto' },
];

// ---------------------------------------------------------------------------------------------
// Wire shapes, exactly as proto-loader produces and accepts them with the options above. Every
// field is optional on the way in: proto3 leaves zero values unset and `defaults: false` leaves
// unset fields absent.

export type WireCode = 'UNKNOWN' | 'OK' | 'OVER_LIMIT';
/** `RateLimitResponse.RateLimit.Unit` names; `WEEK` = 7 exists only in the response enum. */
export type WireUnit = 'UNKNOWN' | 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY' | 'MONTH' | 'YEAR' | 'WEEK';

export interface WireEntry {
  key?: string;
  value?: string;
}

export interface WireRateLimitOverride {
  requests_per_unit?: number;
  /** `envoy.type.v3.RateLimitUnit` name; a number when the value is not in our enum. */
  unit?: Exclude<WireUnit, 'WEEK'> | number;
}

/** `google.protobuf.UInt64Value`: `{}` is a present wrapper holding 0. */
export interface WireUInt64Value {
  value?: number;
}

export interface WireDescriptor {
  entries?: WireEntry[];
  limit?: WireRateLimitOverride | null;
  /** Absent (or null) ⇒ use the request-level addend; `{}` or `{value: 0}` ⇒ check only. */
  hits_addend?: WireUInt64Value | null;
}

export interface WireRequestShape {
  domain?: string;
  descriptors?: WireDescriptor[];
  hits_addend?: number;
}

export interface WireHeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

export interface WireRateLimit {
  name?: string;
  requests_per_unit?: number;
  unit?: WireUnit | number;
}

export interface WireDuration {
  seconds?: number;
  nanos?: number;
}

export interface WireDescriptorStatus {
  code?: WireCode | number;
  current_limit?: WireRateLimit | null;
  limit_remaining?: number;
  duration_until_reset?: WireDuration | null;
}

export interface WireResponseShape {
  overall_code?: WireCode | number;
  statuses?: WireDescriptorStatus[];
  response_headers_to_add?: WireHeaderValue[];
  request_headers_to_add?: WireHeaderValue[];
  raw_body?: Buffer;
  /** `google.protobuf.Struct` in its proto-loader object form; sluice does not set it yet. */
  dynamic_metadata?: Record<string, unknown> | null;
}

export interface WireHealthCheckRequest {
  service?: string;
}

export type WireServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

export interface WireHealthCheckResponse {
  status?: WireServingStatus | number;
}

// ---------------------------------------------------------------------------------------------
// Typed handles.

function serviceDefinition(name: string): ServiceDefinition {
  const definition = packageDefinition[name];
  // Message and enum definitions carry a `format` string; services are plain method maps.
  if (definition === undefined || typeof definition.format === 'string') {
    throw new Error(`proto: ${name} is not a service in the loaded protos`);
  }
  return definition as ServiceDefinition;
}

export const rateLimitServiceDefinition: ServiceDefinition = serviceDefinition(RLS_SERVICE_NAME);
export const healthServiceDefinition: ServiceDefinition = serviceDefinition(HEALTH_SERVICE_NAME);

/** What a client needs to call one unary method. */
export interface WireMethod<Req, Res> {
  readonly path: string;
  readonly serialize: (request: Req) => Buffer;
  readonly deserialize: (bytes: Buffer) => Res;
}

function unaryMethod<Req, Res>(service: ServiceDefinition, serviceName: string, method: string): WireMethod<Req, Res> {
  const definition: MethodDefinition<object, object> | undefined = service[method];
  if (definition === undefined || definition.requestStream || definition.responseStream) {
    throw new Error(`proto: ${serviceName}.${method} is not a unary method in the loaded protos`);
  }
  return {
    path: definition.path,
    // The only unchecked step: proto-loader types its (de)serializers as `object`; the shapes above
    // are what protobufjs produces for these messages with LOADER_OPTIONS.
    serialize: (request: Req): Buffer => definition.requestSerialize(request as object),
    deserialize: (bytes: Buffer): Res => definition.responseDeserialize(bytes) as Res,
  };
}

export const shouldRateLimitMethod: WireMethod<WireRequestShape, WireResponseShape> = unaryMethod(
  rateLimitServiceDefinition,
  RLS_SERVICE_NAME,
  'ShouldRateLimit',
);

export const healthCheckMethod: WireMethod<WireHealthCheckRequest, WireHealthCheckResponse> = unaryMethod(
  healthServiceDefinition,
  HEALTH_SERVICE_NAME,
  'Check',
);

/** A plaintext grpc-js channel to `host:port` (Envoy talks h2c to us by default; so do our tools). */
export function createGrpcClient(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure());
}

/**
 * One unary call, as a promise. Rejects with the grpc-js `ServiceError`, so callers can read
 * `code` and `details`.
 */
export function unaryCall<Req, Res>(
  client: grpc.Client,
  method: WireMethod<Req, Res>,
  request: Req,
  deadlineMs: number,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    client.makeUnaryRequest(
      method.path,
      method.serialize,
      method.deserialize,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (error: grpc.ServiceError | null, response?: Res) => {
        if (error) {
          reject(error);
        } else if (response === undefined) {
          reject(new Error(`${method.path}: empty response`));
        } else {
          resolve(response);
        }
      },
    );
  });
}
