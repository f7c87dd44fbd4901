import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { createGrpcClient, shouldRateLimitMethod, unaryCall } from '../../src/server/proto';
import { SettingsError, loadSettings } from '../../src/settings/settings';
import { subjectAltNames } from '../../src/server/tls';
import type { WireRequestShape } from '../support/rls-client';
import { type StartedSluice, startTestSluice } from '../support/start-sluice';

const CONFIG = 'domain: api\ndescriptors:\n  - key: client_id\n    rate_limit: { unit: minute, requests_per_unit: 100 }\n';
const REQUEST: WireRequestShape = { domain: 'api', descriptors: [{ entries: [{ key: 'client_id', value: 'tls' }] }] };

/** Test certificates made with the openssl CLI: a CA, a server cert for localhost, client certs. */
class TestPki {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-pki-'));

  constructor() {
    this.ca('ca');
    this.ca('rogue-ca');
    this.leaf('server', 'ca', 'DNS:localhost,IP:127.0.0.1');
    this.leaf('renewed-server', 'ca', 'DNS:localhost,IP:127.0.0.1');
    this.leaf('client', 'ca', 'DNS:envoy.client,URI:spiffe://cluster.local/ns/edge/sa/envoy');
    this.leaf('other-client', 'ca', 'DNS:someone.else');
    this.leaf('rogue-client', 'rogue-ca', 'DNS:envoy.client');
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  read(name: string): Buffer {
    return fs.readFileSync(this.file(name));
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  private openssl(...args: string[]): void {
    execFileSync('openssl', args, { cwd: this.dir, stdio: 'pipe' });
  }

  private ca(name: string): void {
    this.openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
  }

  private leaf(name: string, ca: string, san: string): void {
    this.openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    fs.writeFileSync(this.file(`${name}.ext`), `subjectAltName=${san}\n`);
    this.openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial',
      '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
}

type ClientIdentity = 'client' | 'other-client' | 'rogue-client' | undefined;

function tlsClient(pki: TestPki, port: number, identity: ClientIdentity): grpc.Client {
  const credentials =
    identity === undefined
      ? grpc.credentials.createSsl(pki.read('ca.crt'))
      : grpc.credentials.createSsl(pki.read('ca.crt'), pki.read(`${identity}.key`), pki.read(`${identity}.crt`));
  return new grpc.Client(`localhost:${port}`, credentials);
}

async function call(client: grpc.Client): Promise<{ ok: true } | { ok: false; code: grpc.status; details: string }> {
  try {
    const res = await unaryCall(client, shouldRateLimitMethod, REQUEST, 3000);
    expect(res.overall_code).toBe('OK');
    return { ok: true };
  } catch (err) {
    const { code, details } = err as grpc.ServiceError;
    return { ok: false, code, details };
  } finally {
    client.close();
  }
}

// Both transports: the lean one serves ShouldRateLimit on grpc-js's own TLS servers, and checks
// GRPC_CLIENT_TLS_SAN itself (grpc-js's interceptor does not run for it).
describe.each(['grpc-js', 'lean'] as const)('gRPC server TLS (GRPC_TRANSPORT=%s)', (transport) => {
  const pki = new TestPki();
  afterAll(() => pki.cleanup());

  const tlsEnv = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
    GRPC_TRANSPORT: transport,
    GRPC_SERVER_USE_TLS: 'true',
    GRPC_SERVER_TLS_CERT: pki.file('server.crt'),
    GRPC_SERVER_TLS_KEY: pki.file('server.key'),
    ...extra,
  });

  describe('server TLS', () => {
    let sluice: StartedSluice;
    beforeAll(async () => {
      sluice = await startTestSluice({ files: { 'api.yaml': CONFIG }, env: tlsEnv() });
    });
    afterAll(() => sluice.stop());

    it('answers a client that trusts the CA, with or without a client certificate', async () => {
      expect(await call(tlsClient(pki, sluice.app.grpcPort, undefined))).toEqual({ ok: true });
      expect(await call(tlsClient(pki, sluice.app.grpcPort, 'other-client'))).toEqual({ ok: true });
    });

    it('does not speak plaintext', async () => {
      const result = await call(createGrpcClient(`127.0.0.1:${sluice.app.grpcPort}`));
      expect(result.ok).toBe(false);
    });
  });

  describe('mutual TLS (GRPC_CLIENT_TLS_CACERT)', () => {
    let sluice: StartedSluice;
    beforeAll(async () => {
      sluice = await startTestSluice({
        files: { 'api.yaml': CONFIG },
        env: tlsEnv({ GRPC_CLIENT_TLS_CACERT: pki.file('ca.crt') }),
      });
    });
    afterAll(() => sluice.stop());

    it('answers a client whose certificate the CA signed', async () => {
      expect(await call(tlsClient(pki, sluice.app.grpcPort, 'client'))).toEqual({ ok: true });
    });

    it('refuses a client without a certificate, or with one from another CA', async () => {
      for (const identity of [undefined, 'rogue-client'] as const) {
        const result = await call(tlsClient(pki, sluice.app.grpcPort, identity));
        expect(result).toMatchObject({ ok: false, code: grpc.status.UNAVAILABLE });
      }
    });
  });

  describe('client SAN check (GRPC_CLIENT_TLS_SAN)', () => {
    let sluice: StartedSluice;
    beforeAll(async () => {
      sluice = await startTestSluice({
        files: { 'api.yaml': CONFIG },
        env: tlsEnv({ GRPC_CLIENT_TLS_CACERT: pki.file('ca.crt'), GRPC_CLIENT_TLS_SAN: 'envoy.client' }),
      });
    });
    afterAll(() => sluice.stop());

    it('answers the client whose certificate names the SAN, and refuses another client of the same CA', async () => {
      expect(await call(tlsClient(pki, sluice.app.grpcPort, 'client'))).toEqual({ ok: true });
      expect(await call(tlsClient(pki, sluice.app.grpcPort, 'other-client'))).toEqual({
        ok: false,
        code: grpc.status.UNAUTHENTICATED,
        details: "client certificate does not name 'envoy.client' (GRPC_CLIENT_TLS_SAN)",
      });
    });
  });

  describe('certificate rotation (GRPC_SERVER_TLS_RELOAD_INTERVAL)', () => {
    // The files sluice reads, in a directory of their own, rewritten as a rotation would.
    const live = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-live-tls-'));
    const install = (cert: string, key: string): void => {
      fs.copyFileSync(pki.file(cert), path.join(live, 'tls.crt'));
      fs.copyFileSync(pki.file(key), path.join(live, 'tls.key'));
    };
    let sluice: StartedSluice;
    beforeAll(async () => {
      install('server.crt', 'server.key');
      sluice = await startTestSluice({
        files: { 'api.yaml': CONFIG },
        env: tlsEnv({
          GRPC_SERVER_TLS_CERT: path.join(live, 'tls.crt'),
          GRPC_SERVER_TLS_KEY: path.join(live, 'tls.key'),
          GRPC_SERVER_TLS_RELOAD_INTERVAL: '50ms',
        }),
      });
    });
    afterAll(async () => {
      await sluice.stop();
      fs.rmSync(live, { recursive: true, force: true });
    });

    /** The common name of the certificate a new connection is handed. */
    const servedName = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = tls.connect({ host: '127.0.0.1', port: sluice.app.grpcPort, servername: 'localhost', ca: pki.read('ca.crt'), ALPNProtocols: ['h2'] }, () => {
          const name = socket.getPeerCertificate().subject.CN;
          socket.destroy();
          resolve(String(name));
        });
        socket.on('error', reject);
      });
    const eventually = async (want: string): Promise<void> => {
      for (let i = 0; i < 100 && (await servedName()) !== want; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await servedName()).toBe(want);
    };

    it('hands new connections the renewed certificate, keeps the last good one while the files do not check out, and keeps answering', async () => {
      expect(await servedName()).toBe('server');
      install('renewed-server.crt', 'renewed-server.key');
      await eventually('renewed-server');
      expect(await call(tlsClient(pki, sluice.app.grpcPort, undefined))).toEqual({ ok: true });

      // Halfway through a rotation the certificate is new and the key still old: refused whole.
      install('server.crt', 'renewed-server.key');
      await new Promise((r) => setTimeout(r, 300));
      expect(await servedName()).toBe('renewed-server');
      // Unreadable, then garbage: the same.
      fs.rmSync(path.join(live, 'tls.key'));
      await new Promise((r) => setTimeout(r, 200));
      fs.writeFileSync(path.join(live, 'tls.key'), 'not a key');
      await new Promise((r) => setTimeout(r, 200));
      expect(await servedName()).toBe('renewed-server');
      expect(await call(tlsClient(pki, sluice.app.grpcPort, undefined))).toEqual({ ok: true });

      // The rotation completes.
      install('server.crt', 'server.key');
      await eventually('server');
      expect(await call(tlsClient(pki, sluice.app.grpcPort, undefined))).toEqual({ ok: true });
    });
  });

  describe('client CA rotation (mutual TLS)', () => {
    const live = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-live-ca-'));
    let sluice: StartedSluice;
    beforeAll(async () => {
      fs.copyFileSync(pki.file('ca.crt'), path.join(live, 'client-ca.crt'));
      sluice = await startTestSluice({
        files: { 'api.yaml': CONFIG },
        env: tlsEnv({ GRPC_CLIENT_TLS_CACERT: path.join(live, 'client-ca.crt'), GRPC_SERVER_TLS_RELOAD_INTERVAL: '50ms' }),
      });
    });
    afterAll(async () => {
      await sluice.stop();
      fs.rmSync(live, { recursive: true, force: true });
    });

    it('trusts client certificates of the new CA once the CA file changes', async () => {
      expect(await call(tlsClient(pki, sluice.app.grpcPort, 'client'))).toEqual({ ok: true });
      expect(await call(tlsClient(pki, sluice.app.grpcPort, 'rogue-client'))).toMatchObject({ ok: false });
      fs.copyFileSync(pki.file('rogue-ca.crt'), path.join(live, 'client-ca.crt'));
      let rogue = await call(tlsClient(pki, sluice.app.grpcPort, 'rogue-client'));
      for (let i = 0; i < 100 && !rogue.ok; i++) {
        await new Promise((r) => setTimeout(r, 20));
        rogue = await call(tlsClient(pki, sluice.app.grpcPort, 'rogue-client'));
      }
      expect(rogue).toEqual({ ok: true });
      expect(await call(tlsClient(pki, sluice.app.grpcPort, 'client'))).toMatchObject({ ok: false });
    });
  });

  it('reads DNS and URI subject alt names', () => {
    expect(subjectAltNames({ subjectaltname: 'DNS:a.b, URI:spiffe://x/y, IP Address:127.0.0.1' } as never)).toEqual([
      'a.b',
      'spiffe://x/y',
    ]);
    expect(subjectAltNames(undefined)).toEqual([]);
  });

  it('reports missing, unreadable, mismatched and orphan TLS settings at start', () => {
    const problems = (env: NodeJS.ProcessEnv): readonly string[] => {
      try {
        loadSettings(env, []);
        return [];
      } catch (err) {
        if (err instanceof SettingsError) return err.problems;
        throw err;
      }
    };
    expect(problems({ GRPC_SERVER_USE_TLS: 'true' })).toEqual([
      'GRPC_SERVER_TLS_CERT: required when GRPC_SERVER_USE_TLS is true',
      'GRPC_SERVER_TLS_KEY: required when GRPC_SERVER_USE_TLS is true',
    ]);
    expect(problems({ GRPC_CLIENT_TLS_CACERT: pki.file('ca.crt') })).toEqual([
      'GRPC_CLIENT_TLS_CACERT: is set, but GRPC_SERVER_USE_TLS is false',
    ]);
    expect(problems(tlsEnv({ GRPC_SERVER_TLS_KEY: pki.file('client.key') }))).toEqual([
      expect.stringMatching(/^GRPC_SERVER_TLS_CERT\/GRPC_SERVER_TLS_KEY: unusable TLS material: /),
    ]);
    expect(problems(tlsEnv({ GRPC_SERVER_TLS_CERT: pki.file('missing.crt') }))).toEqual([
      `GRPC_SERVER_TLS_CERT: cannot read '${pki.file('missing.crt')}': ENOENT`,
    ]);
    expect(problems(tlsEnv({ GRPC_CLIENT_TLS_SAN: 'x' }))).toEqual([
      'GRPC_CLIENT_TLS_SAN: needs GRPC_CLIENT_TLS_CACERT (client certificates are only asked for with a CA)',
    ]);
    expect(loadSettings(tlsEnv(), []).grpcTls).toMatchObject({ certChain: pki.read('server.crt') });
  });
});

describe.each(['grpc-js', 'lean'] as const)('gRPC max connection age (GRPC_TRANSPORT=%s)', (transport) => {
  let sluice: StartedSluice;
  beforeAll(async () => {
    sluice = await startTestSluice({
      files: { 'api.yaml': CONFIG },
      env: { GRPC_TRANSPORT: transport, GRPC_MAX_CONNECTION_AGE: '300ms', GRPC_MAX_CONNECTION_AGE_GRACE: '200ms' },
    });
  });
  afterAll(() => sluice.stop());

  it('defaults to 24h and 1h, as the reference', () => {
    const settings = loadSettings({}, []);
    expect([settings.grpcMaxConnectionAgeMs, settings.grpcMaxConnectionAgeGraceMs]).toEqual([86_400_000, 3_600_000]);
  });

  it('sends GOAWAY once a connection is older than the max age, then closes it after the grace', async () => {
    const session = http2.connect(`http://127.0.0.1:${sluice.app.grpcPort}`);
    const opened = Date.now();
    const goaway = new Promise<number>((resolve) => session.once('goaway', () => resolve(Date.now() - opened)));
    const closed = new Promise<number>((resolve) => session.once('close', () => resolve(Date.now() - opened)));
    session.on('error', () => undefined);
    const goawayAfter = await goaway;
    // 300 ms ± 10% jitter, then the grace.
    expect(goawayAfter).toBeGreaterThanOrEqual(250);
    expect(goawayAfter).toBeLessThan(2000);
    expect(await closed).toBeLessThan(3000);
  });

  it('keeps answering a client across its reconnections', async () => {
    for (let i = 0; i < 4; i++) {
      const res = await sluice.client.shouldRateLimit(REQUEST);
      expect(res.overall_code).toBe('OK');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  });
});
