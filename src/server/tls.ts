import * as grpc from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import type { TlsReloader } from './tls-reloader';

/** The gRPC server's TLS material (see `GrpcTlsSettings`). */
export interface GrpcServerTls {
  readonly certChain: Buffer;
  readonly privateKey: Buffer;
  /** Clients must present a certificate signed by this CA (mutual TLS). */
  readonly clientCa?: Buffer;
  /** The client certificate must carry this DNS or URI subject alt name. */
  readonly clientSan?: string;
}

/**
 * Plaintext, TLS, or mutual TLS; with a client SAN, calls from other certificates fail
 * UNAUTHENTICATED. With a `reloader`, the material comes from it (and follows the files) instead
 * of staying as read at start.
 */
export function serverCredentials(tls: GrpcServerTls | undefined, reloader?: TlsReloader): grpc.ServerCredentials {
  if (tls === undefined) return grpc.ServerCredentials.createInsecure();
  const mutual = tls.clientCa !== undefined;
  const credentials =
    reloader === undefined
      ? grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ cert_chain: tls.certChain, private_key: tls.privateKey }], mutual)
      : // grpc-js 1.14 names these parameters (ca, identity) but uses the first as the identity
        // provider and the second (nullable) as the CA provider; one reloader serves both, and for
        // plain TLS the CA slot is null. The TLS e2e tests would fail if an upgrade changed this.
        grpc.experimental.createCertificateProviderServerCredentials(reloader, mutual ? reloader : null, mutual);
  if (tls.clientSan === undefined) return credentials;
  return grpc.experimental.createServerCredentialsWithInterceptors(credentials, [clientSanInterceptor(tls.clientSan)]);
}

/** `DNS:a, URI:spiffe://x, IP Address:1.2.3.4` → the DNS and URI names. */
export function subjectAltNames(certificate: PeerCertificate | undefined): string[] {
  const text = certificate?.subjectaltname;
  if (text === undefined || text === '') return [];
  return text
    .split(/,\s*/)
    .map((item) => /^(?:DNS|URI):(.*)$/.exec(item)?.[1])
    .filter((name): name is string => name !== undefined);
}

/**
 * Like the reference's GRPC_CLIENT_TLS_SAN: the TLS handshake already proved the client holds a
 * certificate from the CA; this also requires that certificate to name `san`. What is wrong, or
 * undefined when it does. Both transports check with this (the lean one per connection).
 */
export function clientSanProblem(san: string, certificate: PeerCertificate | undefined): string | undefined {
  return subjectAltNames(certificate).includes(san) ? undefined : `client certificate does not name '${san}' (GRPC_CLIENT_TLS_SAN)`;
}

/** `clientSanProblem` for grpc-js: checked once per call, before its request is read. */
function clientSanInterceptor(san: string): grpc.ServerInterceptor {
  return (_method, call) => {
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        const problem = clientSanProblem(san, call.getAuthContext().sslPeerCertificate);
        if (problem === undefined) {
          next(metadata);
        } else {
          call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: problem });
        }
      })
      .build();
    return new grpc.ServerInterceptingCall(call, { start: (next) => next(listener) });
  };
}
