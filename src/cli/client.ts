import { parseArgs } from 'node:util';
import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { createGrpcClient, shouldRateLimitMethod, unaryCall } from '../server/proto';
import type { WireDescriptor, WireDescriptorStatus, WireEntry, WireResponseShape } from '../server/proto';

/** Where `sluice client` writes: injected so tests read the lines instead of stdout. */
export interface ClientIo {
  out(line: string): void;
  err(line: string): void;
}

export const CLIENT_USAGE = [
  'usage: sluice client --domain D --descriptor k=v[,k2=v2...] [--descriptor ...]',
  '                     [--hits N] [--addr host:port] [--timeout-ms N]',
  '  --descriptor  one RateLimitDescriptor; entries split at "," (write "\\," for a comma in a value),',
  '                key and value split at the first "="',
  '  --hits        request-level hits_addend (default 0, which the server counts as 1)',
  '  --addr        gRPC address of sluice (default 127.0.0.1:8081)',
  '  --timeout-ms  call deadline (default 2000)',
].join('\n');

const DEFAULT_ADDR = '127.0.0.1:8081';
const DEFAULT_TIMEOUT_MS = 2000;
const UINT32_MAX = 4294967295;

/** A bad command line; also thrown by `parseDescriptorEntries` (shared with `sluice explain`). */
export class UsageError extends Error {}

/** Not `instanceof Error`: Node's own errors (parseArgs) come from another realm under jest. */
function messageOf(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'message' in err && typeof err.message === 'string') {
    return err.message;
  }
  return String(err);
}

/** Splits at commas not preceded by a backslash; `\,` → `,` and `\\` → `\`. */
function splitEntries(spec: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < spec.length; i++) {
    const ch = spec[i];
    const next = spec[i + 1];
    if (ch === '\\' && (next === ',' || next === '\\')) {
      current += next;
      i++;
    } else if (ch === ',') {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  parts.push(current);
  return parts;
}

/**
 * One `--descriptor k=v,k2=v2` value as entries: split at unescaped commas, then at the first `=`.
 * Throws `UsageError` for an entry without a key.
 */
export function parseDescriptorEntries(spec: string): { key: string; value: string }[] {
  return splitEntries(spec).map((part) => {
    const eq = part.indexOf('=');
    if (eq <= 0) {
      throw new UsageError(`--descriptor ${JSON.stringify(spec)}: entry ${JSON.stringify(part)} is not key=value`);
    }
    return { key: part.slice(0, eq), value: part.slice(eq + 1) };
  });
}

function parseDescriptor(spec: string): WireDescriptor {
  const entries: WireEntry[] = parseDescriptorEntries(spec);
  return { entries };
}

function parseCount(flag: string, raw: string | undefined, fallback: number, min: number): number {
  if (raw === undefined) {
    return fallback;
  }
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > UINT32_MAX) {
    throw new UsageError(`${flag} ${JSON.stringify(raw)}: expected a whole number from ${min} to ${UINT32_MAX}`);
  }
  return Number(raw);
}

interface ClientArgs {
  readonly domain: string;
  readonly descriptors: WireDescriptor[];
  readonly hits: number;
  readonly addr: string;
  readonly timeoutMs: number;
}

const CLIENT_OPTIONS = {
  domain: { type: 'string' },
  descriptor: { type: 'string', multiple: true },
  hits: { type: 'string' },
  addr: { type: 'string' },
  'timeout-ms': { type: 'string' },
} as const;

function parseFlags(args: readonly string[]) {
  try {
    return parseArgs({ args: [...args], options: CLIENT_OPTIONS, strict: true, allowPositionals: false });
  } catch (err) {
    throw new UsageError(messageOf(err));
  }
}

function parseClientArgs(args: readonly string[]): ClientArgs {
  const parsed = parseFlags(args);
  const { values } = parsed;
  if (values.domain === undefined || values.domain === '') {
    throw new UsageError('--domain is required');
  }
  if (values.descriptor === undefined || values.descriptor.length === 0) {
    throw new UsageError('at least one --descriptor is required');
  }
  const addr = values.addr ?? DEFAULT_ADDR;
  if (addr === '') {
    throw new UsageError('--addr must not be empty');
  }
  return {
    domain: values.domain,
    descriptors: values.descriptor.map(parseDescriptor),
    hits: parseCount('--hits', values.hits, 0, 0),
    addr,
    timeoutMs: parseCount('--timeout-ms', values['timeout-ms'], DEFAULT_TIMEOUT_MS, 1),
  };
}

/** Prints entries the way `--descriptor` takes them, so a line can be pasted back. */
function formatEntries(descriptor: WireDescriptor): string {
  return (descriptor.entries ?? [])
    .map((e) => `${e.key ?? ''}=${e.value ?? ''}`.replace(/[\\,]/g, (c) => `\\${c}`))
    .join(',');
}

function formatLimit(s: WireDescriptorStatus): string {
  const limit = s.current_limit;
  if (limit === undefined || limit === null) {
    return 'no limit';
  }
  // proto3 leaves zeros unset and proto-loader (defaults: false) leaves them out: read absent as 0.
  let text = `limit ${limit.requests_per_unit ?? 0}/${limit.unit ?? 'UNKNOWN'}`;
  if (limit.name !== undefined && limit.name !== '') {
    text += ` (name ${limit.name})`;
  }
  text += `  remaining ${s.limit_remaining ?? 0}`;
  if (s.duration_until_reset !== undefined && s.duration_until_reset !== null) {
    text += `  reset ${s.duration_until_reset.seconds ?? 0}s`;
  }
  return text;
}

function formatResponse(descriptors: readonly WireDescriptor[], response: WireResponseShape): string[] {
  const statuses = response.statuses ?? [];
  const labels = descriptors.map(formatEntries);
  const width = Math.max(0, ...labels.map((l) => l.length));
  const lines = [`overall: ${response.overall_code ?? 'UNKNOWN'}`];
  // One status per descriptor, in order; say so if the server broke that rule.
  const rows = Math.max(descriptors.length, statuses.length);
  for (let i = 0; i < rows; i++) {
    const label = (labels[i] ?? '(no descriptor)').padEnd(width);
    const s = statuses[i];
    if (s === undefined) {
      lines.push(`[${i}] ${label}  (no status returned)`);
      continue;
    }
    lines.push(`[${i}] ${label}  ${String(s.code ?? 'UNKNOWN').padEnd('OVER_LIMIT'.length)}  ${formatLimit(s)}`);
  }
  for (const h of response.response_headers_to_add ?? []) {
    lines.push(`header ${h.key ?? ''}: ${h.value ?? ''}`);
  }
  return lines;
}

function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'number' && 'details' in err;
}

/**
 * `sluice client`: sends one ShouldRateLimit and prints the answer. Returns the exit code:
 * 0 answered (OK or OVER_LIMIT alike), 1 the call failed, 2 usage error.
 */
export async function runClient(args: readonly string[], io: ClientIo): Promise<number> {
  let parsed: ClientArgs;
  try {
    parsed = parseClientArgs(args);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`sluice client: ${err.message}`);
      io.err(CLIENT_USAGE);
      return 2;
    }
    throw err;
  }

  const client = createGrpcClient(parsed.addr);
  try {
    const response = await unaryCall(
      client,
      shouldRateLimitMethod,
      { domain: parsed.domain, descriptors: parsed.descriptors, hits_addend: parsed.hits },
      parsed.timeoutMs,
    );
    for (const line of formatResponse(parsed.descriptors, response)) {
      io.out(line);
    }
    return 0;
  } catch (err) {
    if (isServiceError(err)) {
      io.err(`${status[err.code] ?? `code ${err.code}`}: ${err.details} (${parsed.addr})`);
    } else {
      io.err(`error: ${messageOf(err)} (${parsed.addr})`);
    }
    return 1;
  } finally {
    client.close();
  }
}
