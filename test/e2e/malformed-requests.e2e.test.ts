import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RLS_SERVICE_NAME, shouldRateLimitMethod } from '../../src/server/proto';
import { type SluiceProcess, startSluiceProcess } from '../support/sluice-process';

/**
 * Requests whose bytes Go's protobuf (the reference service's) refuses are refused here too, over
 * a real socket, with INVALID_ARGUMENT and a message naming what was wrong — never decided.
 */

const CONFIG = `
domain: bytes
descriptors:
  - key: user_id
    rate_limit: { unit: hour, requests_per_unit: 1 }
`;

// Both transports (GRPC_TRANSPORT): grpc-js, and the lean one on grpc-js's servers.
describe.each(['grpc-js', 'lean'] as const)('GRPC_TRANSPORT=%s', (transport) => {
  let configDir: string;
  let sluice: SluiceProcess;
  let client: grpc.Client;

  beforeAll(async () => {
    configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bytes-'));
    fs.writeFileSync(path.join(configDir, 'bytes.yaml'), CONFIG);
    sluice = await startSluiceProcess(configDir, { GRPC_TRANSPORT: transport });
    client = new grpc.Client(`127.0.0.1:${sluice.grpcPort}`, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await sluice?.stop();
    fs.rmSync(configDir, { recursive: true, force: true });
  });

  /** Sends `bytes` as the request message; the overall code, or `<status>: <details>`. */
  function send(bytes: Buffer): Promise<string> {
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        `/${RLS_SERVICE_NAME}/ShouldRateLimit`,
        (b: Buffer) => b,
        (b: Buffer) => b,
        bytes,
        { deadline: Date.now() + 5_000 },
        (err, reply) => {
          if (err) resolve(`${grpc.status[err.code]}: ${err.details}`);
          else resolve(String(shouldRateLimitMethod.deserialize(reply!).overall_code));
        },
      );
    });
  }

  /** A request for domain `bytes` with one descriptor user_id=<value bytes>. */
  function withValue(value: readonly number[]): Buffer {
    const entry = [0x0a, 7, ...Buffer.from('user_id'), 0x12, value.length, ...value];
    const descriptor = [0x0a, entry.length, ...entry];
    return Buffer.from([0x0a, 5, ...Buffer.from('bytes'), 0x12, descriptor.length, ...descriptor]);
  }

  test('a value that is not UTF-8 is refused naming the field; 0xFF and 0xFE never share a counter with each other or U+FFFD', async () => {
    expect(await send(withValue([0x61, 0xff]))).toBe('INVALID_ARGUMENT: descriptors[0].entries[0].value is not valid UTF-8');
    expect(await send(withValue([0x61, 0xfe]))).toBe('INVALID_ARGUMENT: descriptors[0].entries[0].value is not valid UTF-8');
    // The real U+FFFD is a valid value with its own counter (limit 1 per hour).
    const replacement = [0x61, ...Buffer.from('\ufffd')];
    expect(await send(withValue(replacement))).toBe('OK');
    expect(await send(withValue(replacement))).toBe('OVER_LIMIT');
    expect(await send(withValue([...Buffer.from('zoë')]))).toBe('OK');
  });

  test.each<[string, number[], string]>([
    ['a length that overruns the message', [0x0a, 50, 0x62], 'INVALID_ARGUMENT: malformed request: the length of domain (50 bytes) overruns its message'],
    ['a varint of ten 0xff bytes', [0x18, ...Array<number>(10).fill(0xff)], 'INVALID_ARGUMENT: malformed request: hits_addend is a varint over 64 bits'],
    ['field number 0', [0x02, 0x01, 0x61], 'INVALID_ARGUMENT: malformed request: field number 0'],
    ['a wrong wire type', [0x08, 0x05], 'INVALID_ARGUMENT: malformed request: domain has wire type 0, not 2'],
  ])('%s is refused, not decided', async (_name, bytes, answer) => {
    expect(await send(Buffer.from(bytes))).toBe(answer);
  });
});
