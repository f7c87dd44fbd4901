import * as grpc from '@grpc/grpc-js';
import { shouldRateLimitMethod, unaryCall } from '../server/proto';
import type { WireDescriptor, WireDescriptorStatus, WireRequestShape, WireResponseShape } from '../server/proto';

/**
 * `sluice/client`: call sluice (or any Envoy RateLimitService v3) directly, for services that are
 * not behind Envoy.
 *
 *   const limits = new RateLimitClient({ address: 'sluice:8081' });
 *   const decision = await limits.shouldRateLimit({
 *     domain: 'oauth2',
 *     descriptors: [{ entries: { client_id: 'web', user_id: 'alice' } }],
 *   });
 *   if (!decision.allowed) ...
 *
 * One call, one deadline (20 ms by default, Envoy's), no retries unless asked. When sluice cannot
 * answer in time, `failOpen` (the default, as in Envoy) lets the request through and says why in
 * `decision.error`; with `failOpen: false` the call rejects with a RateLimitError instead.
 */

export type RateLimitCode = 'OK' | 'OVER_LIMIT';

/** `RateLimitResponse.RateLimit.Unit`; 'UNKNOWN' stands for a unit this client does not know. */
export type RateLimitUnit = 'SECOND' | 'MINUTE' | 'HOUR' | 'DAY' | 'WEEK' | 'MONTH' | 'YEAR' | 'UNKNOWN';

/**
 * A descriptor's entries, in order (order matters for matching). As an object, the property order
 * is the entry order; JavaScript puts integer-like property names first, so use the list form
 * for keys such as "1".
 */
export type DescriptorEntries = Readonly<Record<string, string>> | readonly { readonly key: string; readonly value: string }[];

export interface RateLimitDescriptor {
  readonly entries: DescriptorEntries;
  /** Hits for this descriptor alone, instead of the request's; 0 checks without charging. */
  readonly hitsAddend?: number;
  /** A limit for this descriptor instead of the config's (the domain must still exist). */
  readonly limit?: { readonly requestsPerUnit: number; readonly unit: Exclude<RateLimitUnit, 'WEEK' | 'UNKNOWN'> };
}

export interface ShouldRateLimitRequest {
  readonly domain: string;
  readonly descriptors: readonly RateLimitDescriptor[];
  /** Hits this request adds to every descriptor without its own; default 1. */
  readonly hitsAddend?: number;
}

export interface RateLimitStatus {
  readonly code: RateLimitCode;
  /** Absent when no limit applies to this descriptor (unmatched, unlimited, replaced). */
  readonly currentLimit?: { readonly requestsPerUnit: number; readonly unit: RateLimitUnit; readonly name?: string };
  readonly limitRemaining: number;
  /** Whole seconds; absent when no limit applies. When OVER_LIMIT: until this request would fit. */
  readonly durationUntilResetSeconds?: number;
}

export interface HeaderPair {
  readonly key: string;
  readonly value: string;
}

export interface RateLimitDecision {
  /** false only when sluice answered OVER_LIMIT. */
  readonly allowed: boolean;
  /** 'UNKNOWN' when no answer came (and failOpen let the request through). */
  readonly overallCode: RateLimitCode | 'UNKNOWN';
  /** One per request descriptor, in order; empty when no answer came. */
  readonly statuses: readonly RateLimitStatus[];
  readonly responseHeadersToAdd: readonly HeaderPair[];
  readonly requestHeadersToAdd: readonly HeaderPair[];
  /** Why there is no answer, when failOpen let the request through. */
  readonly error?: RateLimitError;
}

/** sluice could not be asked, or refused the request: `code` is the gRPC status (grpc.status). */
export class RateLimitError extends Error {
  override readonly name = 'RateLimitError';
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    options?: { cause?: unknown },
  ) {
    super(`ShouldRateLimit failed: ${grpc.status[code] ?? code}: ${details}`, options);
  }
}

export interface RateLimitClientOptions {
  /** host:port of sluice's gRPC port (8081), or any grpc-js target (dns:///sluice-headless:8081). */
  readonly address: string;
  /** Per attempt; default 20 (Envoy's default rate limit timeout). */
  readonly deadlineMs?: number;
  /** Let requests through when sluice cannot answer (default true); false: shouldRateLimit rejects. */
  readonly failOpen?: boolean;
  /**
   * Extra attempts after UNAVAILABLE (sluice unreachable or its store down), each with a fresh
   * deadline; default 0. A timed-out call is never retried: it may have been counted.
   */
  readonly retries?: number;
  /** Default: plaintext (h2c), as Envoy talks to sluice unless a TLS transport socket is set. */
  readonly credentials?: grpc.ChannelCredentials;
  readonly channelOptions?: grpc.ChannelOptions;
  /** Sees every failure, also those failOpen hides. */
  readonly onError?: (error: RateLimitError) => void;
}

const UINT32_MAX = 4294967295;

function checkCount(value: number | undefined, what: string): void {
  if (value !== undefined && (!Number.isInteger(value) || value < 0 || value > UINT32_MAX)) {
    throw new TypeError(`${what}: expected an integer from 0 to ${UINT32_MAX}, got ${String(value)}`);
  }
}

function toWireEntries(entries: DescriptorEntries, where: string): { key: string; value: string }[] {
  const list = Array.isArray(entries)
    ? (entries as readonly { key: string; value: string }[]).map((e) => ({ key: e.key, value: e.value }))
    : Object.entries(entries as Record<string, string>).map(([key, value]) => ({ key, value }));
  for (const [i, e] of list.entries()) {
    if (typeof e.key !== 'string' || e.key === '' || typeof e.value !== 'string') {
      throw new TypeError(`${where}.entries[${i}]: key must be a non-empty string and value a string`);
    }
  }
  return list;
}

/** The request as proto-loader encodes it (snake_case, wrappers for presence). */
export function toWireRequest(request: ShouldRateLimitRequest): WireRequestShape {
  if (typeof request.domain !== 'string' || request.domain === '') throw new TypeError('domain: must be a non-empty string');
  if (!Array.isArray(request.descriptors)) throw new TypeError('descriptors: must be a list');
  checkCount(request.hitsAddend, 'hitsAddend');
  const descriptors: WireDescriptor[] = request.descriptors.map((d, i) => {
    checkCount(d.hitsAddend, `descriptors[${i}].hitsAddend`);
    return {
      entries: toWireEntries(d.entries, `descriptors[${i}]`),
      ...(d.hitsAddend !== undefined && { hits_addend: { value: d.hitsAddend } }),
      ...(d.limit !== undefined && { limit: { requests_per_unit: d.limit.requestsPerUnit, unit: d.limit.unit } }),
    };
  });
  return { domain: request.domain, descriptors, ...(request.hitsAddend !== undefined && { hits_addend: request.hitsAddend }) };
}

const UNITS: ReadonlySet<string> = new Set(['SECOND', 'MINUTE', 'HOUR', 'DAY', 'WEEK', 'MONTH', 'YEAR']);

function fromWireStatus(status: WireDescriptorStatus): RateLimitStatus {
  const limit = status.current_limit;
  return {
    code: status.code === 'OVER_LIMIT' ? 'OVER_LIMIT' : 'OK',
    ...(limit != null && {
      currentLimit: {
        requestsPerUnit: limit.requests_per_unit ?? 0,
        unit: typeof limit.unit === 'string' && UNITS.has(limit.unit) ? (limit.unit as RateLimitUnit) : 'UNKNOWN',
        ...(limit.name !== undefined && limit.name !== '' && { name: limit.name }),
      },
    }),
    limitRemaining: status.limit_remaining ?? 0,
    ...(status.duration_until_reset != null && { durationUntilResetSeconds: status.duration_until_reset.seconds ?? 0 }),
  };
}

/** The answer in this module's shape. Like Envoy, anything but OVER_LIMIT allows the request. */
export function fromWireResponse(response: WireResponseShape): RateLimitDecision {
  const overall = response.overall_code === 'OK' || response.overall_code === 'OVER_LIMIT' ? response.overall_code : 'UNKNOWN';
  const headers = (list: WireResponseShape['response_headers_to_add']): HeaderPair[] =>
    (list ?? []).map((h) => ({ key: h.key ?? '', value: h.value ?? '' }));
  return {
    allowed: overall !== 'OVER_LIMIT',
    overallCode: overall,
    statuses: (response.statuses ?? []).map(fromWireStatus),
    responseHeadersToAdd: headers(response.response_headers_to_add),
    requestHeadersToAdd: headers(response.request_headers_to_add),
  };
}

function isServiceError(error: unknown): error is grpc.ServiceError {
  return typeof error === 'object' && error !== null && 'code' in error && typeof (error as { code: unknown }).code === 'number';
}

export class RateLimitClient {
  private readonly client: grpc.Client;
  private readonly deadlineMs: number;
  private readonly failOpen: boolean;
  private readonly retries: number;
  private readonly onError: ((error: RateLimitError) => void) | undefined;

  constructor(options: RateLimitClientOptions) {
    this.deadlineMs = options.deadlineMs ?? 20;
    this.failOpen = options.failOpen ?? true;
    this.retries = options.retries ?? 0;
    this.onError = options.onError;
    if (!(this.deadlineMs > 0)) throw new TypeError(`deadlineMs: must be positive, got ${this.deadlineMs}`);
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new TypeError(`retries: must be a non-negative integer, got ${this.retries}`);
    this.client = new grpc.Client(options.address, options.credentials ?? grpc.credentials.createInsecure(), options.channelOptions ?? {});
  }

  /**
   * Asks for one decision. Rejects with a TypeError for a malformed request (a bug in the caller,
   * whatever failOpen says). Otherwise resolves with the decision; when sluice cannot answer,
   * resolves `{allowed: true, overallCode: 'UNKNOWN', error}` with failOpen, or rejects with the
   * RateLimitError without it.
   */
  async shouldRateLimit(request: ShouldRateLimitRequest): Promise<RateLimitDecision> {
    const wire = toWireRequest(request);
    for (let attempt = 0; ; attempt++) {
      try {
        return fromWireResponse(await unaryCall(this.client, shouldRateLimitMethod, wire, this.deadlineMs));
      } catch (cause) {
        const error = isServiceError(cause)
          ? new RateLimitError(cause.code, cause.details, { cause })
          : new RateLimitError(grpc.status.INTERNAL, cause instanceof Error ? cause.message : String(cause), { cause });
        if (error.code === grpc.status.UNAVAILABLE && attempt < this.retries) continue;
        this.onError?.(error);
        if (!this.failOpen) throw error;
        return { allowed: true, overallCode: 'UNKNOWN', statuses: [], responseHeadersToAdd: [], requestHeadersToAdd: [], error };
      }
    }
  }

  /** Resolves once the channel is connected (worth awaiting at start: the first connect can take longer than a 20 ms deadline). */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()));
    });
  }

  close(): void {
    this.client.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Middleware: rate limit each request by the claims of its verified access token.

/** The claims of a verified access token (whatever your JWT middleware produced). */
export type JwtClaims = Readonly<Record<string, unknown>>;

const FALLBACK = '-';

function stringClaim(claims: JwtClaims | undefined, ...names: string[]): string | undefined {
  for (const name of names) {
    const value = claims?.[name];
    if (typeof value === 'string' && value !== '') return value;
  }
  return undefined;
}

/**
 * The descriptors Envoy sends for an API route in envoy/envoy.yaml, built from claims:
 * (client_id), (client_id, user_id), (user_id), and with `route` also (route, scope).
 * client_id is the `client_id` claim (RFC 9068), else `azp`, else `cid`; user_id is `sub`; scope is
 * the `scope` string, or the `scp` list joined with spaces. A missing claim counts under "-", a
 * shared fallback bucket, so a token without it is still limited.
 */
export function defaultDescriptors(claims: JwtClaims | undefined, options: { route?: string } = {}): RateLimitDescriptor[] {
  const clientId = stringClaim(claims, 'client_id', 'azp', 'cid') ?? FALLBACK;
  const userId = stringClaim(claims, 'sub') ?? FALLBACK;
  const descriptors: RateLimitDescriptor[] = [
    { entries: [{ key: 'client_id', value: clientId }] },
    { entries: [{ key: 'client_id', value: clientId }, { key: 'user_id', value: userId }] },
    { entries: [{ key: 'user_id', value: userId }] },
  ];
  if (options.route !== undefined) {
    const scp = claims?.['scp'];
    const scope = stringClaim(claims, 'scope') ?? (Array.isArray(scp) && scp.every((s) => typeof s === 'string') && scp.length > 0 ? scp.join(' ') : FALLBACK);
    descriptors.push({ entries: [{ key: 'route', value: options.route }, { key: 'scope', value: scope }] });
  }
  return descriptors;
}

/** The response side the middleware needs: Node's ServerResponse (Express) or a Fastify reply. */
type NodeResponse = { statusCode: number; setHeader(name: string, value: string): unknown; end(body?: string): unknown };
type FastifyReply = { code(status: number): unknown; header(name: string, value: string): unknown; send(body?: unknown): unknown };

export interface RateLimitMiddlewareOptions<Req> {
  readonly client: Pick<RateLimitClient, 'shouldRateLimit'>;
  readonly domain: string;
  /** The verified claims of the request; default `req.auth` (express-jwt), else `req.user` (@fastify/jwt, passport). */
  readonly claims?: (req: Req) => JwtClaims | null | undefined;
  /** The descriptors to ask about; default `defaultDescriptors(claims, {route})`. */
  readonly descriptors?: (claims: JwtClaims | undefined, req: Req) => readonly RateLimitDescriptor[];
  /** Adds the (route, scope) descriptor to the defaults. */
  readonly route?: string | ((req: Req) => string | undefined);
  /** Hits per request (default 1). */
  readonly hitsAddend?: number | ((req: Req) => number);
  /** Send RateLimit-Limit / -Remaining / -Reset on every answered request (default true). */
  readonly headers?: boolean;
}

function defaultClaims(req: unknown): JwtClaims | undefined {
  const r = req as { auth?: unknown; user?: unknown };
  const claims = r.auth ?? r.user;
  return typeof claims === 'object' && claims !== null ? (claims as JwtClaims) : undefined;
}

/**
 * The status the RateLimit-* headers describe: when rejected, the over-limit one that frees last
 * (its reset is the Retry-After); otherwise the limited one with the least remaining.
 */
function headerStatus(decision: RateLimitDecision): RateLimitStatus | undefined {
  const limited = decision.statuses.filter((s) => s.currentLimit !== undefined);
  if (!decision.allowed) {
    const over = limited.filter((s) => s.code === 'OVER_LIMIT');
    return over.reduce<RateLimitStatus | undefined>(
      (best, s) => (best === undefined || (s.durationUntilResetSeconds ?? 0) > (best.durationUntilResetSeconds ?? 0) ? s : best),
      undefined,
    );
  }
  return limited.reduce<RateLimitStatus | undefined>((best, s) => (best === undefined || s.limitRemaining < best.limitRemaining ? s : best), undefined);
}

/** RateLimit-* (and, when rejected, Retry-After) headers for a decision; empty when no limit applied. */
export function rateLimitHeaders(decision: RateLimitDecision): Record<string, string> {
  const status = headerStatus(decision);
  if (status === undefined || status.currentLimit === undefined) return {};
  const reset = String(status.durationUntilResetSeconds ?? 0);
  return {
    'RateLimit-Limit': String(status.currentLimit.requestsPerUnit),
    'RateLimit-Remaining': String(status.limitRemaining),
    'RateLimit-Reset': reset,
    ...(!decision.allowed && { 'Retry-After': reset }),
  };
}

/**
 * `(req, res, next)` middleware (Express, Connect, node:http, Fastify's `onRequest` hook with a
 * reply): asks sluice about the request's descriptors; over the limit, answers 429 with
 * Retry-After and RateLimit-* headers and a JSON body, without calling `next`. When sluice cannot
 * answer, the client's failOpen decides: through (next()) or `next(error)`.
 */
export function rateLimitMiddleware<Req = unknown, Res = unknown>(
  options: RateLimitMiddlewareOptions<Req>,
): (req: Req, res: Res, next: (error?: unknown) => void) => void {
  const sendHeaders = options.headers ?? true;
  return (req, res, next) => {
    let called = false;
    const once = (error?: unknown): void => {
      if (called) return;
      called = true;
      if (error === undefined) next();
      else next(error);
    };
    const run = async (): Promise<void> => {
      const claims = (options.claims ?? defaultClaims)(req) ?? undefined;
      const route = typeof options.route === 'function' ? options.route(req) : options.route;
      const descriptors = options.descriptors
        ? options.descriptors(claims, req)
        : defaultDescriptors(claims, route === undefined ? {} : { route });
      const hits = typeof options.hitsAddend === 'function' ? options.hitsAddend(req) : options.hitsAddend;
      const decision = await options.client.shouldRateLimit({
        domain: options.domain,
        descriptors,
        ...(hits !== undefined && { hitsAddend: hits }),
      });
      const headers = decision.allowed && !sendHeaders ? {} : rateLimitHeaders(decision);
      const reply = res as unknown as Partial<NodeResponse & FastifyReply>;
      const setHeader = (name: string, value: string): void => {
        if (typeof reply.setHeader === 'function') reply.setHeader(name, value);
        else reply.header?.(name, value);
      };
      for (const [name, value] of Object.entries(headers)) setHeader(name, value);
      if (decision.allowed) {
        once();
        return;
      }
      const body = JSON.stringify({ error: 'rate_limited', retry_after: Number(headers['Retry-After'] ?? 0) });
      setHeader('Content-Type', 'application/json');
      if (typeof reply.setHeader === 'function' && typeof reply.end === 'function') {
        (reply as NodeResponse).statusCode = 429;
        reply.end(body);
      } else if (typeof reply.code === 'function' && typeof reply.send === 'function') {
        reply.code(429);
        reply.send(body);
      } else {
        throw new TypeError('rateLimitMiddleware: the response has neither setHeader/end (Node) nor code/send (Fastify)');
      }
    };
    run().catch((error: unknown) => once(error));
  };
}
