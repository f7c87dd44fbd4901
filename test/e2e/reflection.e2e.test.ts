import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { type SluiceProcess, startSluiceProcess } from '../support/sluice-process';
import { DEBIAN_PYTHON } from '../support/grpcio-burst';

/**
 * Server reflection as an independent client sees it: Python's grpcio (C-core) with the protobuf
 * library's own DescriptorPool (test/support/reflection-client.py), against the built server.
 */

const CLIENT = path.join(__dirname, '../support/reflection-client.py');

const CONFIG = `
domain: api
descriptors:
  - key: client_id
    rate_limit: { unit: minute, requests_per_unit: 3 }
`;

interface Linked {
  added?: string[];
  reused?: string[];
  service?: { file: string; methods: Record<string, [string, string]> };
  error?: string;
}

interface ClientReport {
  services: string[];
  by_filename: Record<string, string[]>;
  by_symbol: string[];
  unknown_file: { code: number; message: string };
  unknown_symbol: { code: number; message: string };
  linked: Record<string, Linked>;
  should_rate_limit?: Record<string, unknown>;
}

function runClient(port: number, version: 'v1' | 'v1alpha', clientId: string): Promise<ClientReport> {
  return new Promise((resolve, reject) => {
    execFile(
      DEBIAN_PYTHON,
      [CLIENT, `127.0.0.1:${port}`, version, 'api', `client_id=${clientId}`],
      { timeout: 30_000 },
      (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as ClientReport)),
    );
  });
}

const RLS = 'envoy/service/ratelimit/v3/rls.proto';
const WELL_KNOWN = ['google/protobuf/duration.proto', 'google/protobuf/struct.proto', 'google/protobuf/timestamp.proto', 'google/protobuf/wrappers.proto'];
const ENVOY_FILES = [
  'envoy/config/core/v3/base.proto',
  'envoy/type/v3/ratelimit_unit.proto',
  'envoy/extensions/common/ratelimit/v3/ratelimit.proto',
  RLS,
];

let configDir: string;
let sluice: SluiceProcess;

beforeAll(async () => {
  configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-reflection-'));
  fs.writeFileSync(path.join(configDir, 'config.yaml'), CONFIG);
  sluice = await startSluiceProcess(configDir);
});

afterAll(async () => {
  await sluice?.stop();
  fs.rmSync(configDir, { recursive: true, force: true });
});

describe.each(['v1', 'v1alpha'] as const)('server reflection %s, from Python grpcio', (version) => {
  let report: ClientReport;

  beforeAll(async () => {
    report = await runClient(sluice.grpcPort, version, `reflect-${version}`);
  });

  it('lists every service served, the reflection service itself included', () => {
    expect(report.services).toEqual([
      'envoy.service.ratelimit.v3.RateLimitService',
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
    ]);
  });

  it('serves rls.proto by its real file name, with the files it imports under their real names', () => {
    // The imports are rls.proto's own (proto/envoy/service/ratelimit/v3/rls.proto), transitively.
    expect(report.by_filename).toEqual({
      [RLS]: [
        'envoy/config/core/v3/base.proto',
        'envoy/extensions/common/ratelimit/v3/ratelimit.proto',
        'google/protobuf/duration.proto',
        'google/protobuf/struct.proto',
        'google/protobuf/timestamp.proto',
      ],
      'envoy/config/core/v3/base.proto': [],
      'envoy/extensions/common/ratelimit/v3/ratelimit.proto': ['envoy/type/v3/ratelimit_unit.proto', 'google/protobuf/wrappers.proto'],
      'envoy/type/v3/ratelimit_unit.proto': [],
      ...Object.fromEntries(WELL_KNOWN.map((file) => [file, []])),
    });
  });

  it('serves the same files by symbol, the declaring file first', () => {
    expect(report.by_symbol[0]).toBe(RLS);
    expect([...report.by_symbol].sort()).toEqual(Object.keys(report.by_filename).sort());
  });

  it('answers NOT_FOUND for a file or symbol it does not have', () => {
    expect(report.unknown_file.code).toBe(5);
    expect(report.unknown_symbol.code).toBe(5);
  });

  it('links into a pool that already holds the standard google/protobuf files: ours are reused, not redefined', () => {
    const expected: Linked = {
      added: ENVOY_FILES,
      reused: WELL_KNOWN,
      service: {
        file: RLS,
        methods: { ShouldRateLimit: ['envoy.service.ratelimit.v3.RateLimitRequest', 'envoy.service.ratelimit.v3.RateLimitResponse'] },
      },
    };
    expect(report.linked.by_filename).toEqual(expected);
    expect(report.linked.by_symbol).toEqual(expected);
  });

  it('serves well-known files identical to the standard ones: a client that adds every file it gets is not refused', () => {
    // The C++ DescriptorPool accepts a second add of a file only when both copies are identical.
    expect(report.linked.by_symbol_add_all?.error).toBeUndefined();
    expect([...(report.linked.by_symbol_add_all?.added ?? [])].sort()).toEqual([...ENVOY_FILES, ...WELL_KNOWN].sort());
  });

  it('links into an empty pool too, taking the well-known files from the server', () => {
    expect(report.linked.by_symbol_empty_pool?.error).toBeUndefined();
    expect([...(report.linked.by_symbol_empty_pool?.added ?? [])].sort()).toEqual([...ENVOY_FILES, ...WELL_KNOWN].sort());
  });

  it('resolves health and reflection by symbol into real file names', () => {
    expect(report.linked['service grpc.health.v1.Health']?.service?.file).toBe('grpc/health/v1/health.proto');
    expect(report.linked['service grpc.reflection.v1.ServerReflection']?.service?.file).toBe('grpc/reflection/v1/reflection.proto');
    expect(report.linked['service grpc.reflection.v1alpha.ServerReflection']?.service?.file).toBe(
      'grpc/reflection/v1alpha/reflection.proto',
    );
    for (const [how, linked] of Object.entries(report.linked)) expect([how, linked.error]).toEqual([how, undefined]);
  });

  it('calls ShouldRateLimit with messages built from the reflected descriptors alone', () => {
    expect(report.should_rate_limit).toEqual({
      overall_code: 'OK',
      statuses: [
        {
          code: 'OK',
          current_limit: { requests_per_unit: 3, unit: 'MINUTE' },
          limit_remaining: 2,
          duration_until_reset: expect.stringMatching(/^\d+(\.\d+)?s$/) as unknown,
        },
      ],
    });
  });
});
