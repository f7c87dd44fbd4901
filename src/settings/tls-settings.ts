import * as tls from 'node:tls';
import { type Sourced, readSettingFile } from './values';

// gRPC server TLS: GRPC_SERVER_USE_TLS and its companions → certificates for the server.

/** Certificate chain, private key and (mutual TLS) client CA, as PEM. */
export interface TlsMaterial {
  readonly certChain: Buffer;
  readonly privateKey: Buffer;
  /** GRPC_CLIENT_TLS_CACERT: when set, clients must present a certificate signed by this CA (mTLS). */
  readonly clientCa?: Buffer;
}

/** Where the material lives, so it can be read again. */
export interface TlsFiles {
  readonly certChain: string;
  readonly privateKey: string;
  readonly clientCa?: string;
}

/** The gRPC server's TLS material as read at start, and where to re-read it. */
export interface GrpcTlsSettings extends TlsMaterial {
  readonly files: TlsFiles;
  /** GRPC_CLIENT_TLS_SAN: when set, the client certificate must carry this DNS or URI subject alt name. */
  readonly clientSan?: string;
  /** GRPC_SERVER_TLS_RELOAD_INTERVAL; 0: never re-read. */
  readonly reloadIntervalMs: number;
}

export interface GrpcTlsSettingsInput {
  readonly useTls: boolean;
  readonly cert: Sourced;
  readonly key: Sourced;
  readonly clientCa: Sourced;
  readonly clientSan: Sourced;
  readonly reloadIntervalMs: number;
}

/**
 * Why TLS material cannot serve (the key does not match the certificate, a PEM does not parse),
 * or undefined when it can. The one check for material read at start and re-read later.
 */
export function tlsMaterialProblem(material: TlsMaterial): string | undefined {
  try {
    tls.createSecureContext({
      cert: material.certChain,
      key: material.privateKey,
      ...(material.clientCa !== undefined && { ca: material.clientCa }),
    });
    return undefined;
  } catch (err) {
    const { message } = err as { message?: unknown };
    return String(message ?? err);
  }
}

/**
 * Reads the server's certificate, key and client CA, and checks that they fit together (a key that
 * does not match the certificate is reported here, naming the variables, rather than as a failed
 * bind). A client CA or SAN without GRPC_SERVER_USE_TLS is a problem too: it would otherwise
 * serve plaintext to an operator who asked for mutual TLS.
 */
export function parseGrpcTlsSettings(
  input: GrpcTlsSettingsInput,
  io: { readFile(file: string): Buffer },
  problems: string[],
): GrpcTlsSettings | undefined {
  const before = problems.length;
  if (!input.useTls) {
    for (const option of [input.cert, input.key, input.clientCa, input.clientSan]) {
      if (option.value !== '') problems.push(`${option.source}: is set, but GRPC_SERVER_USE_TLS is false`);
    }
    return undefined;
  }
  const read = (file: Sourced, required: boolean): Buffer | undefined => {
    if (file.value === '' && required) problems.push(`${file.source}: required when GRPC_SERVER_USE_TLS is true`);
    return readSettingFile(file, (path) => io.readFile(path), problems);
  };
  const certChain = read(input.cert, true);
  const privateKey = read(input.key, true);
  const clientCa = read(input.clientCa, false);
  if (input.clientSan.value !== '' && input.clientCa.value === '') {
    problems.push(`${input.clientSan.source}: needs GRPC_CLIENT_TLS_CACERT (client certificates are only asked for with a CA)`);
  }
  if (problems.length > before || certChain === undefined || privateKey === undefined) return undefined;
  const material = { certChain, privateKey, ...(clientCa !== undefined && { clientCa }) };
  const problem = tlsMaterialProblem(material);
  if (problem !== undefined) {
    problems.push(
      `${input.cert.source}/${input.key.source}${clientCa !== undefined ? `/${input.clientCa.source}` : ''}: ` +
        `unusable TLS material: ${problem}`,
    );
    return undefined;
  }
  return {
    ...material,
    files: {
      certChain: input.cert.value,
      privateKey: input.key.value,
      ...(clientCa !== undefined && { clientCa: input.clientCa.value }),
    },
    ...(input.clientSan.value !== '' && { clientSan: input.clientSan.value }),
    reloadIntervalMs: input.reloadIntervalMs,
  };
}
