import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createLogger } from '../../../src/logging/logger';
import { TlsReloader } from '../../../src/server/tls-reloader';

/**
 * What the reloader hands to grpc-js and what it logs, without a server (the TLS e2e tests cover
 * connections): new material once it checks out, nothing while it does not, one error per bad
 * content rather than one per interval.
 */
describe('TlsReloader', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-reloader-'));
  const file = (name: string): string => path.join(dir, name);
  const selfSigned = (name: string): void => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`], { cwd: dir, stdio: 'pipe' });
  };
  selfSigned('a');
  selfSigned('b');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('hands over checked material to listeners, refuses a mismatched pair, and logs each bad content once', async () => {
    fs.copyFileSync(file('a.crt'), file('live.crt'));
    fs.copyFileSync(file('a.key'), file('live.key'));
    const lines: { level: number; msg: string }[] = [];
    const logger = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
    const reloader = new TlsReloader({
      files: { certChain: file('live.crt'), privateKey: file('live.key') },
      initial: { certChain: fs.readFileSync(file('a.crt')), privateKey: fs.readFileSync(file('a.key')) },
      intervalMs: 3_600_000,
      logger,
    });
    const served: string[] = [];
    reloader.addIdentityCertificateListener((update) => served.push(update === null ? 'none' : update.certificate.toString()));
    await new Promise((r) => process.nextTick(r));
    expect(served).toEqual([fs.readFileSync(file('a.crt'), 'utf8')]);

    // Halfway through a rotation: b's certificate with a's key. Refused, logged once over two checks.
    fs.copyFileSync(file('b.crt'), file('live.crt'));
    await reloader.reloadNow();
    await reloader.reloadNow();
    expect(served).toHaveLength(1);
    const errors = lines.filter((l) => l.level === 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toMatch(/^gRPC TLS material not reloaded, the last good one keeps serving: unusable TLS material: /);

    fs.copyFileSync(file('b.key'), file('live.key'));
    await reloader.reloadNow();
    expect(served).toEqual([fs.readFileSync(file('a.crt'), 'utf8'), fs.readFileSync(file('b.crt'), 'utf8')]);
    expect(lines.filter((l) => l.level === 50)).toHaveLength(1);
    reloader.close();
  });
});
