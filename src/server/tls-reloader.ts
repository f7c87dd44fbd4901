import type * as grpc from '@grpc/grpc-js';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { type TlsFiles, type TlsMaterial, tlsMaterialProblem } from '../settings/tls-settings';

type CertificateProvider = grpc.experimental.CertificateProvider;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;
type CaListener = grpc.experimental.CaCertificateUpdateListener;

export interface TlsReloaderOptions {
  readonly files: TlsFiles;
  /** What was read and checked at start: served until something newer checks out. */
  readonly initial: TlsMaterial;
  readonly intervalMs: number;
  readonly logger: Logger;
}

/**
 * Serves the gRPC server's certificate, key and client CA, re-reading the files every interval so
 * that a rotated certificate (cert-manager, a kubelet secret swap) is used by new connections
 * without a restart. Connections already open keep the material they were made with.
 *
 * grpc-js has a file-watching provider, but it hands over whatever it read: a key that no longer
 * matches the certificate (a rotation caught halfway), or a missing file, makes the server drop
 * every new connection until the files are right again. Here new material is handed over only once
 * it checks out as a whole (tlsMaterialProblem, the check made at start); until then the last good
 * material keeps serving and the problem is logged once per distinct content.
 */
export class TlsReloader implements CertificateProvider {
  private current: TlsMaterial;
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly caListeners = new Set<CaListener>();
  private readonly timer: NodeJS.Timeout;
  /** The content last refused, so a broken file is reported once, not every interval. */
  private refused: string | undefined;
  private checking: Promise<void> | undefined;

  constructor(private readonly options: TlsReloaderOptions) {
    this.current = options.initial;
    this.timer = setInterval(() => void this.reloadNow(), options.intervalMs);
    this.timer.unref();
  }

  /** Re-reads the files now; resolves once any new material has been handed over (or refused). */
  reloadNow(): Promise<void> {
    this.checking ??= this.check().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  close(): void {
    clearInterval(this.timer);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    process.nextTick(listener, this.identityUpdate());
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    process.nextTick(listener, this.caUpdate());
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  private identityUpdate(): grpc.experimental.IdentityCertificateUpdate {
    return { certificate: this.current.certChain, privateKey: this.current.privateKey };
  }

  private caUpdate(): grpc.experimental.CaCertificateUpdate | null {
    return this.current.clientCa === undefined ? null : { caCertificate: this.current.clientCa };
  }

  private async check(): Promise<void> {
    const { files, logger } = this.options;
    let next: TlsMaterial;
    try {
      const [certChain, privateKey, clientCa] = await Promise.all([
        readFile(files.certChain),
        readFile(files.privateKey),
        files.clientCa === undefined ? undefined : readFile(files.clientCa),
      ]);
      next = { certChain, privateKey, ...(clientCa !== undefined && { clientCa }) };
    } catch (err) {
      this.refuse(`cannot read: ${(err as Error).message}`, String((err as Error).message));
      return;
    }
    if (sameMaterial(next, this.current)) {
      this.refused = undefined;
      return;
    }
    const problem = tlsMaterialProblem(next);
    if (problem !== undefined) {
      this.refuse(`unusable TLS material: ${problem}`, fingerprint(next));
      return;
    }
    this.refused = undefined;
    const caChanged = !sameBuffer(next.clientCa, this.current.clientCa);
    this.current = next;
    for (const listener of this.identityListeners) listener(this.identityUpdate());
    if (caChanged) for (const listener of this.caListeners) listener(this.caUpdate());
    logger.info({ files }, 'gRPC TLS material reloaded: new connections use it');
  }

  private refuse(reason: string, content: string): void {
    if (this.refused === content) return;
    this.refused = content;
    this.options.logger.error({ files: this.options.files }, `gRPC TLS material not reloaded, the last good one keeps serving: ${reason}`);
  }
}

function sameBuffer(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

function sameMaterial(a: TlsMaterial, b: TlsMaterial): boolean {
  return sameBuffer(a.certChain, b.certChain) && sameBuffer(a.privateKey, b.privateKey) && sameBuffer(a.clientCa, b.clientCa);
}

function fingerprint(material: TlsMaterial): string {
  return [material.certChain, material.privateKey, material.clientCa ?? Buffer.alloc(0)].map((b) => b.toString('base64')).join('|');
}
