import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import type { Clock } from '../util/clock';
import { http2ServersOf } from './grpc-internals';

/**
 * How many calls the whole process lets its clients have open at once while it is overloaded,
 * offered to each connection as an equal share in HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS.
 *
 * Why: a call costs sluice about as much to read and answer (HTTP/2 frames, grpc-js's call
 * object, the response and its trailers) as to decide, and its deadline starts when its headers
 * are read. When calls arrive faster than sluice decides them and it reads every one, it reads
 * calls it cannot decide before their deadlines and spends its time answering them
 * DEADLINE_EXCEEDED: decisions per second collapse (0–1 % of the sustainable rate at 1.1–2 times
 * it, measured). Refusing such calls in JavaScript costs nearly as much as deciding them. A stream
 * beyond the connection's limit is never sent by a compliant client (Envoy, grpc-js, C-core, Go):
 * it waits in the client, where its deadline is not yet running on sluice, and is sent when a call
 * ends. (nghttp2 refuses, in C, the streams of a client that ignores the limit.) Keeping the calls
 * open at once near what sluice decides well within Envoy's 20 ms timeout keeps every call read a
 * call decided, whatever the offered rate.
 *
 * Why only under pressure: Node counts a stream against the limit until the event-loop turn after
 * it closed, so a client that cancels calls at its timeout and at once sends new ones in their
 * place (Envoy does, after a pause in sluice) can find the new ones refused with
 * ENHANCE_YOUR_CALM while the connection is at its limit. Outside overload no connection is held
 * to a share, so a pause costs only the calls that timed out.
 */
export interface CallBudget {
  /** Calls open at once over all connections under overload (the sum of the shares while the minimum does not bind). */
  readonly total: number;
  /** No connection's share goes below this. */
  readonly minPerConnection: number;
  /** No connection may ever have more open (GRPC_MAX_CONCURRENT_STREAMS); unbounded when undefined. */
  readonly maxPerConnection?: number;
}

/**
 * The least a connection is offered: a health Watch and a few calls side by side, and enough
 * for a client with many quiet connections to keep each one useful.
 */
export const MIN_CALLS_PER_CONNECTION = 4;
/** How often the calls open are looked at. */
export const PRESSURE_CHECK_MS = 25;
/** Under overload, the shares are lifted once the clients have left their shares unfilled this long. */
export const CALM_BEFORE_LIFTING_MS = 1000;
/**
 * Under overload, the calls held open at once are what sluice answers in this long (Little's law,
 * at the rate it answers them while its clients fill their shares), at most the budget: half of
 * Envoy's default 20 ms timeout, so that a call read is decided in time however slow the machine
 * is at the moment (a fixed 64 left 40 % of a flood past its deadline on a loaded 2-core machine).
 */
export const TARGET_WAIT_MS = 10;
/** ...and at least this many, so that a store slow to answer (its round trip) still gets calls to answer. */
export const MIN_CALLS_HELD = 16;
/** The clients fill their shares while at least this part of them is open. */
const FILLED = 0.75;
/** Weight of the newest check in the moving average of the rate of answers. */
const ALPHA = 0.3;
/** SETTINGS_MAX_CONCURRENT_STREAMS meaning "no limit" (the largest value, Node's default). */
const UNLIMITED = 2 ** 32 - 1;
/**
 * Outside overload each connection may have this many times the budget open: no legitimate client
 * is held (one connection can still carry four times what is decided well in time), but a client
 * that opens a thousand streams at once on each connection is read a bounded flood before the
 * shares are offered (h2load's open loop did: the first half-second went to answering ~4,000
 * calls late).
 */
const LIFTED_FACTOR = 4;

/** What a connection may have open outside overload: what the server announces in its initial SETTINGS. */
export function liftedCallsPerConnection(budget: CallBudget): number {
  return Math.min(budget.maxPerConnection ?? UNLIMITED, LIFTED_FACTOR * budget.total);
}

/** A connection the budget is shared with: what it needs of Node's server-side HTTP/2 session. */
export interface SharingSession {
  readonly destroyed: boolean;
  readonly closed: boolean;
  settings(settings: http2.Settings): void;
  once(event: 'close', listener: () => void): unknown;
}

/**
 * The budget at work: counts the calls open (HTTP/2 streams read and not yet closed, over all
 * connections: a call waiting for grpc-js to get to it counts, as do calls being decided), and
 * when at two checks in a row more than `total` are open and calls were answered past their
 * deadlines (calls arrive faster than they are decided), offers every connection its share of
 * the calls held open (at most `total`); while the clients fill
 * their shares, holds as many as sluice answers in TARGET_WAIT_MS (at most `total`); when the
 * clients have left their shares unfilled for CALM_BEFORE_LIFTING_MS, lifts the shares.
 */
export class ConnectionCallShares {
  /** Each open session and the limit it was last sent. */
  private readonly sessions = new Map<SharingSession, number>();
  private open = 0;
  /** Calls closed since the last check, those of them past their deadline, and when the last check was (epoch ms). */
  private closedSinceCheck = 0;
  private lateSinceCheck = 0;
  private lastCheckMs: number;
  /** Under overload: the calls held open at once, and the rate (per ms) at which they are answered (0: not measured yet). */
  private held: number;
  private answeredPerMs = 0;
  private overloaded = false;
  /** Whether the previous check found overload: more than `total` open, and calls answered late. */
  private lateAtLastCheck = false;
  /** Since when (epoch ms) the clients have left their shares unfilled, while overloaded. */
  private calmSince: number | undefined;

  constructor(
    private readonly budget: CallBudget,
    private readonly clock: Clock,
    /** Told when connections are held to their shares (true) or released (false), with the limit each gets. */
    private readonly onChange: (overloaded: boolean, limit: number) => void = () => undefined,
  ) {
    this.held = budget.total;
    this.lastCheckMs = clock.nowMs();
  }

  /** A call's stream was read (any method: a health Watch holds a stream too). */
  streamOpened(): void {
    this.open++;
  }

  /** A call's stream closed: answered, cancelled or reset; `deadlineMs` (epoch ms) when it had one. */
  streamClosed(deadlineMs?: number): void {
    this.open--;
    this.closedSinceCheck++;
    if (deadlineMs !== undefined && deadlineMs <= this.clock.nowMs()) this.lateSinceCheck++;
  }

  /** Whether connections are held to their shares now. */
  isOverloaded(): boolean {
    return this.overloaded;
  }

  /** What each connection may have open now. */
  limit(): number {
    const { minPerConnection, maxPerConnection } = this.budget;
    if (!this.overloaded) return this.liftedLimit();
    const share = Math.max(minPerConnection, Math.floor(this.held / Math.max(1, this.sessions.size)));
    return Math.min(maxPerConnection ?? UNLIMITED, share);
  }

  /** What a connection is offered outside overload: what the server's own settings announce. */
  private liftedLimit(): number {
    return liftedCallsPerConnection(this.budget);
  }

  /** Number of connections sharing the budget. */
  connections(): number {
    return this.sessions.size;
  }

  /** Shares the budget with a new connection, re-offering every connection its new share. */
  add(session: SharingSession): void {
    // A new connection already has the lifted limit from the server's initial SETTINGS.
    this.sessions.set(session, this.liftedLimit());
    session.once('close', () => {
      this.sessions.delete(session);
      this.offer();
    });
    this.offer();
  }

  /** Looks at the calls open (every PRESSURE_CHECK_MS) and holds connections to their shares, or lifts them. */
  check(): void {
    const { total } = this.budget;
    const now = this.clock.nowMs();
    const elapsed = now - this.lastCheckMs;
    const closed = this.closedSinceCheck;
    // Overload: more calls open than the budget, and some answered after their deadline (a
    // `grpc-timeout` the client sent), at two looks in a row. A burst of calls with time to spare
    // is not overload however many are open (holding the connections then would refuse streams
    // the clients had already sent), and a pause in sluice (a long GC) makes the calls it held
    // late at one look, not two. But as many answered late as the whole budget in one look is a
    // flood already read: holding at once saves what the next look would lose.
    const late = this.open > total && this.lateSinceCheck > 0;
    const flooded = late && this.lateSinceCheck >= total;
    this.lastCheckMs = now;
    this.closedSinceCheck = 0;
    this.lateSinceCheck = 0;
    if (!this.overloaded) {
      if (flooded || (late && this.lateAtLastCheck)) {
        this.overloaded = true;
        this.held = total;
        this.answeredPerMs = 0;
        this.calmSince = undefined;
        this.offer();
        this.onChange(true, this.limit());
      }
    } else if (this.open >= FILLED * this.held) {
      this.calmSince = undefined;
      // Saturated: the rate of answers is what sluice can do now. (A check that came late, the
      // event loop blocked, says nothing about it.)
      if (elapsed >= PRESSURE_CHECK_MS / 2 && elapsed <= 8 * PRESSURE_CHECK_MS) this.measure(closed / elapsed);
    } else {
      this.calmSince ??= now;
      if (now - this.calmSince >= CALM_BEFORE_LIFTING_MS) {
        this.overloaded = false;
        this.offer();
        this.onChange(false, this.limit());
      }
    }
    this.lateAtLastCheck = late;
  }

  /** Holds as many calls open as are answered in TARGET_WAIT_MS at `answeredPerMs`, re-offering the shares when that moved by a tenth. */
  private measure(answeredPerMs: number): void {
    this.answeredPerMs = this.answeredPerMs === 0 ? answeredPerMs : (1 - ALPHA) * this.answeredPerMs + ALPHA * answeredPerMs;
    const held = Math.min(this.budget.total, Math.max(MIN_CALLS_HELD, Math.round(this.answeredPerMs * TARGET_WAIT_MS)));
    if (Math.abs(held - this.held) >= Math.max(2, this.held / 10)) {
      this.held = held;
      this.offer();
    }
  }

  /** Sends each connection whose limit changed a SETTINGS frame with it. */
  private offer(): void {
    const limit = this.limit();
    for (const [session, offered] of this.sessions) {
      if (offered === limit || session.destroyed || session.closed) continue;
      try {
        session.settings({ maxConcurrentStreams: limit });
        this.sessions.set(session, limit);
      } catch {
        // Too many SETTINGS frames unacknowledged (a client that stopped reading): it keeps the
        // limit it last acknowledged, and gets the current one at the next change.
      }
    }
  }
}

/** The options grpc-js creates its HTTP/2 servers with (a private field of grpc.Server). */
interface WithServerOptions {
  commonServerOptions?: unknown;
}

/**
 * Node closes a connection on which more than 100 streams in a row were refused. Under overload a
 * client that cancels all its calls at its timeout and sends as many new ones in their place can
 * have each refused once (see `CallBudget`): allow twice a whole share in a row, so that such a
 * client keeps its connection. Call before `bindAsync`; false when grpc-js no longer has the field.
 */
export function tolerateRefusedStreams(server: grpc.Server, budget: CallBudget): boolean {
  const options = (server as unknown as WithServerOptions).commonServerOptions;
  if (typeof options !== 'object' || options === null) return false;
  const share = Math.min(budget.total, budget.maxPerConnection ?? budget.total);
  Object.assign(options, { maxSessionRejectedStreams: Math.max(100, 2 * share) });
  return true;
}

/**
 * Shares `shares`' budget with every connection `server` accepts from now on, and checks the
 * pressure every PRESSURE_CHECK_MS until `server` shuts down; call in `bindAsync`'s callback,
 * before the event loop can accept a connection. grpc-js has no hook for it, so this reads
 * grpc-js's servers (the version is pinned, and a test fails if the field goes away). Returns a
 * function that stops the checks, or undefined when it could not share the budget.
 */
export function shareCallsAmongConnections(server: grpc.Server, shares: ConnectionCallShares, clock: Clock): (() => void) | undefined {
  const servers = http2ServersOf(server);
  if (servers === undefined) return undefined;
  const closed = (): void => shares.streamClosed();
  for (const http2Server of servers) {
    http2Server.on('session', (session: http2.ServerHttp2Session) => shares.add(session));
    http2Server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
      shares.streamOpened();
      const timeoutMs = grpcTimeoutMs(headers['grpc-timeout']);
      if (timeoutMs === undefined) {
        stream.once('close', closed);
      } else {
        const deadlineMs = clock.nowMs() + timeoutMs;
        stream.once('close', () => shares.streamClosed(deadlineMs));
      }
    });
  }
  const timer = setInterval(() => shares.check(), PRESSURE_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}

const GRPC_TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** A `grpc-timeout` header ("20m": up to 8 digits and a unit) in ms; undefined when absent or malformed. */
export function grpcTimeoutMs(header: string | string[] | undefined): number | undefined {
  if (typeof header !== 'string') return undefined;
  const match = /^(\d{1,8})([HMSmun])$/.exec(header);
  return match === null ? undefined : Number(match[1]) * GRPC_TIMEOUT_UNIT_MS[match[2]!]!;
}
