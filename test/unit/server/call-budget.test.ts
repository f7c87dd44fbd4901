import { EventEmitter } from 'node:events';
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import {
  CALM_BEFORE_LIFTING_MS,
  ConnectionCallShares,
  grpcTimeoutMs,
  MIN_CALLS_HELD,
  TARGET_WAIT_MS,
  shareCallsAmongConnections,
  tolerateRefusedStreams,
} from '../../../src/server/call-budget';
import { ManualClock } from '../../../src/util/clock';

/** Outside overload a connection may have four times the budget open (64 here). */
const LIFTED = 4 * 64;

/** A session as the shares see it: records the SETTINGS_MAX_CONCURRENT_STREAMS it is sent. */
class RecordingSession extends EventEmitter {
  destroyed = false;
  closed = false;
  readonly sent: number[] = [];
  settings(settings: http2.Settings): void {
    this.sent.push(settings.maxConcurrentStreams ?? -1);
  }
  end(): void {
    this.closed = true;
    this.emit('close');
  }
}

function setup(budget = { total: 64, minPerConnection: 4 }): { shares: ConnectionCallShares; clock: ManualClock; changes: [boolean, number][] } {
  const clock = new ManualClock(1_000_000);
  const changes: [boolean, number][] = [];
  const shares = new ConnectionCallShares(budget, clock, (overloaded, limit) => changes.push([overloaded, limit]));
  return { shares, clock, changes };
}

/** `n` calls (streams) read. */
function start(shares: ConnectionCallShares, n: number): void {
  for (let i = 0; i < n; i++) shares.streamOpened();
}

/** `n` calls (streams) closed. */
function end(shares: ConnectionCallShares, n: number): void {
  for (let i = 0; i < n; i++) shares.streamClosed();
}

/** A call answered past its deadline, another sent in its place: what a look at an overloaded sluice finds. */
function lateAnswers(shares: ConnectionCallShares, clock: ManualClock): void {
  shares.streamClosed(clock.nowMs() - 1);
  shares.streamOpened();
}

/** Two looks in a row that each find calls answered late (with more than the budget open, overload). */
function twoLateLooks(shares: ConnectionCallShares, clock: ManualClock): void {
  for (let i = 0; i < 2; i++) {
    lateAnswers(shares, clock);
    shares.check();
  }
}

describe('ConnectionCallShares', () => {
  test('outside overload no connection is held to a share, and none is sent a SETTINGS frame', () => {
    const { shares, clock } = setup();
    const a = new RecordingSession();
    shares.add(a);
    // The budget open and calls answered late: not more than the budget.
    start(shares, 64);
    twoLateLooks(shares, clock);
    // More than the budget, calls answered late at one look only: a pause, not overload.
    start(shares, 1);
    lateAnswers(shares, clock);
    shares.check();
    shares.check();
    lateAnswers(shares, clock);
    shares.check();
    expect(shares.isOverloaded()).toBe(false);
    expect(shares.limit()).toBe(LIFTED);
    expect(a.sent).toEqual([]);
  });

  test('more than the budget open and calls answered late, at two checks in a row: every connection is offered its share, and the shares follow the connections', () => {
    const { shares, clock, changes } = setup();
    const a = new RecordingSession();
    const b = new RecordingSession();
    shares.add(a);
    shares.add(b);
    start(shares, 65);
    lateAnswers(shares, clock);
    shares.check();
    expect(shares.isOverloaded()).toBe(false);
    lateAnswers(shares, clock);
    shares.check();
    expect(shares.isOverloaded()).toBe(true);
    expect(changes).toEqual([[true, 32]]);
    expect([a.sent, b.sent]).toEqual([[32], [32]]);
    const c = new RecordingSession();
    shares.add(c);
    // 64 / 3 rounds down: the shares never add up to more than the budget.
    expect([a.sent, b.sent, c.sent]).toEqual([[32, 21], [32, 21], [21]]);
    b.end();
    expect([a.sent, c.sent]).toEqual([[32, 21, 32], [21, 32]]);
    expect(shares.connections()).toBe(2);
  });

  test('nor does a burst answered in time, however many are open (holding it would refuse streams already sent)', () => {
    const { shares, clock } = setup();
    shares.add(new RecordingSession());
    start(shares, 1000);
    for (let i = 0; i < 10; i++) {
      // Calls without a deadline, and calls answered before theirs.
      end(shares, 25);
      for (let j = 0; j < 25; j++) shares.streamClosed(clock.nowMs() + 1);
      start(shares, 50);
      shares.check();
    }
    expect(shares.isOverloaded()).toBe(false);
  });

  test(`lifts the shares once the clients have left them unfilled (under 3/4) for ${CALM_BEFORE_LIFTING_MS} ms`, () => {
    const { shares, clock, changes } = setup();
    const a = new RecordingSession();
    shares.add(a);
    start(shares, 100);
    twoLateLooks(shares, clock);
    // The clients fill their shares: still overloaded however long it lasts.
    end(shares, 100 - 64);
    clock.advance(5000);
    shares.check();
    expect(shares.isOverloaded()).toBe(true);
    end(shares, 64 - 44);
    shares.check();
    clock.advance(CALM_BEFORE_LIFTING_MS - 1);
    shares.check();
    expect(shares.isOverloaded()).toBe(true);
    // One look at filled shares restarts the calm, from the next look at unfilled ones.
    start(shares, 10);
    shares.check();
    end(shares, 10);
    shares.check();
    clock.advance(CALM_BEFORE_LIFTING_MS - 1);
    shares.check();
    expect(shares.isOverloaded()).toBe(true);
    clock.advance(1);
    shares.check();
    expect(shares.isOverloaded()).toBe(false);
    expect(a.sent).toEqual([64, LIFTED]);
    expect(changes).toEqual([
      [true, 64],
      [false, LIFTED],
    ]);
  });

  test(`while the clients fill their shares, holds open what sluice answers in ${TARGET_WAIT_MS} ms: at least ${MIN_CALLS_HELD}, at most the budget`, () => {
    const { shares, clock } = setup();
    const a = new RecordingSession();
    const b = new RecordingSession();
    shares.add(a);
    shares.add(b);
    start(shares, 65);
    twoLateLooks(shares, clock);
    expect(a.sent).toEqual([32]);
    end(shares, 1);
    /** One check 25 ms on, `answered` calls answered meanwhile and as many sent in their place. */
    const busyCheck = (answered: number): void => {
      end(shares, answered);
      start(shares, answered);
      clock.advance(25);
      shares.check();
    };
    // 2 answers per ms: 20 held open (10 per connection).
    for (let i = 0; i < 20; i++) busyCheck(50);
    expect(a.sent.at(-1)).toBe(10);
    expect(b.sent.at(-1)).toBe(10);
    // Clients keep the 20 open; sluice slows to 0.25 per ms: the floor of 16 (8 each).
    end(shares, 64 - 20);
    for (let i = 0; i < 20; i++) busyCheck(6);
    expect(a.sent.at(-1)).toBe(8);
    // Fast again (10 per ms would be 100): the budget, 64, is the most held.
    start(shares, 64 - 16);
    for (let i = 0; i < 20; i++) busyCheck(250);
    expect(a.sent.at(-1)).toBe(32);
    // A check that came late (the event loop blocked for a second) measures nothing.
    const before = a.sent.length;
    clock.advance(1000);
    shares.check();
    expect(a.sent.length).toBe(before);
    expect(shares.isOverloaded()).toBe(true);
  });

  test('never offers less than the minimum per connection, nor more than GRPC_MAX_CONCURRENT_STREAMS', () => {
    const floor = setup({ total: 16, minPerConnection: 4 });
    const sessions = Array.from({ length: 8 }, () => new RecordingSession());
    for (const s of sessions) floor.shares.add(s);
    start(floor.shares, 17);
    twoLateLooks(floor.shares, floor.clock);
    expect(floor.shares.limit()).toBe(4);

    const capped = setup({ total: 64, minPerConnection: 4, maxPerConnection: 20 } as { total: number; minPerConnection: number });
    const one = new RecordingSession();
    capped.shares.add(one);
    // Outside overload the cap is what the server's own SETTINGS already say: nothing is sent.
    expect(capped.shares.limit()).toBe(20);
    start(capped.shares, 65);
    twoLateLooks(capped.shares, capped.clock);
    expect(one.sent).toEqual([]);
  });

  test('sends nothing to a closing connection, and survives one that cannot take a SETTINGS frame', () => {
    const { shares, clock } = setup();
    const closing = new RecordingSession();
    const stuck = new RecordingSession();
    const fine = new RecordingSession();
    for (const s of [closing, stuck, fine]) shares.add(s);
    closing.destroyed = true;
    stuck.settings = () => {
      throw Object.assign(new Error('Maximum number of pending settings acknowledgements'), { code: 'ERR_HTTP2_MAX_PENDING_SETTINGS_ACK' });
    };
    start(shares, 65);
    lateAnswers(shares, clock);
    shares.check();
    lateAnswers(shares, clock);
    expect(() => shares.check()).not.toThrow();
    expect(closing.sent).toEqual([]);
    expect(fine.sent).toEqual([21]);
  });
});

describe('grpcTimeoutMs', () => {
  test.each([
    ['20m', 20],
    ['1S', 1000],
    ['2M', 120_000],
    ['1H', 3_600_000],
    ['5000u', 5],
    ['12345678n', 12.345678],
  ])('%s is %d ms', (header, ms) => {
    expect(grpcTimeoutMs(header)).toBeCloseTo(ms);
  });

  test.each([[undefined], [''], ['20'], ['m'], ['123456789m'], ['20x'], [['20m', '30m']]])('%p is no deadline', (header) => {
    expect(grpcTimeoutMs(header)).toBeUndefined();
  });
});

describe('over real connections', () => {
  let server: grpc.Server;
  let port: number;
  let stopChecks: (() => void) | undefined;
  const clients: http2.ClientHttp2Session[] = [];
  const clock = new ManualClock(0);
  const shares = new ConnectionCallShares({ total: 24, minPerConnection: 4 }, clock);

  beforeAll(async () => {
    server = new grpc.Server();
    // If a grpc-js upgrade renames its fields, these fail instead of the budget silently going away.
    expect(tolerateRefusedStreams(server, { total: 24, minPerConnection: 4 })).toBe(true);
    port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => {
        if (err) return reject(err);
        stopChecks = shareCallsAmongConnections(server, shares, clock);
        resolve(bound);
      });
    });
    expect(stopChecks).toBeDefined();
  });

  afterAll(() => {
    for (const c of clients.splice(0)) c.destroy();
    stopChecks?.();
    server.forceShutdown();
  });

  /** A client connection and the SETTINGS_MAX_CONCURRENT_STREAMS values the server sent it, in order. */
  function connect(): { session: http2.ClientHttp2Session; seen: number[] } {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    clients.push(session);
    const seen: number[] = [];
    session.on('remoteSettings', (s) => {
      if (s.maxConcurrentStreams !== undefined && seen[seen.length - 1] !== s.maxConcurrentStreams) seen.push(s.maxConcurrentStreams);
    });
    return { session, seen };
  }

  async function until(check: () => boolean): Promise<void> {
    for (let i = 0; i < 300 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
    expect(check()).toBe(true);
  }

  test('clients are told their shares under overload and the shares follow the connections; lifted, they are told so', async () => {
    const first = connect();
    const second = connect();
    await until(() => shares.connections() === 2);
    start(shares, 25);
    twoLateLooks(shares, clock);
    await until(() => first.seen.at(-1) === 12 && second.seen.at(-1) === 12);
    second.session.close();
    await until(() => first.seen.at(-1) === 24);
    end(shares, 25);
    shares.check();
    clock.advance(CALM_BEFORE_LIFTING_MS);
    shares.check();
    // Lifted: four times the budget of 24.
    await until(() => first.seen.at(-1) === 96);
  });
});
