import type { Redis } from 'ioredis';

export interface StallWatchOptions {
  /** REDIS_TIMEOUT: how long a connection may hold replies back before it counts as stalled. */
  readonly windowMs: number;
  /** How often connections are sampled; default min(50 ms, window / 5). */
  readonly sampleMs?: number;
  /** Called when a connection starts or stops stalling. */
  readonly onChange: (stalled: boolean, description: string) => void;
}

interface Watched {
  readonly connection: Redis;
  readonly name: string;
  /** Reply bytes arrived since the last sample. */
  delivered: boolean;
  /** Consecutive samples with commands waiting and nothing delivered. */
  silentSamples: number;
  /** performance.now() of the last sample that saw progress (or nothing waiting). */
  progressAt: number;
  stalled: boolean;
  /** The socket whose 'data' events are counted (it changes on every reconnect). */
  socket: NodeJS.EventEmitter | undefined;
}

/**
 * Tells a sick Redis from a busy sluice.
 *
 * A connection is stalled when it has commands waiting for replies and has delivered no reply
 * bytes for `windowMs`, counted only over time in which sluice itself was free to read them:
 * sampling runs from a timer and then a `setImmediate`, i.e. after the event loop has read the
 * sockets, and the window must be covered by consecutive samples. So a sluice that is merely busy
 * (a long GC pause, a burst of calls, a big config being parsed) makes fewer samples, never a
 * false stall: whatever Redis sent meanwhile is read before the next sample looks. A frozen
 * (SIGSTOP), partitioned or hung server sends nothing while commands wait, and is caught after the
 * window. A killed one closes the connection, which the Redis store sees on its own.
 *
 * The commands waiting are ioredis's own queue of commands written and not yet answered
 * (`commandQueue`); the bytes are the connection socket's `data` events.
 */
export class StallWatch {
  private readonly watched: Watched[] = [];
  private readonly sampleMs: number;
  private readonly timer: NodeJS.Timeout;
  private sampling = false;
  private closed = false;

  constructor(private readonly options: StallWatchOptions) {
    this.sampleMs = options.sampleMs ?? Math.max(1, Math.min(50, Math.floor(options.windowMs / 5)));
    this.timer = setInterval(() => this.scheduleSample(), this.sampleMs);
    this.timer.unref();
  }

  /** Starts watching a connection (for a cluster, each node's), following it across reconnects. */
  watch(connection: Redis, name: string): void {
    if (this.watched.some((w) => w.connection === connection)) return;
    const watched: Watched = {
      connection,
      name,
      delivered: false,
      silentSamples: 0,
      progressAt: performance.now(),
      stalled: false,
      socket: undefined,
    };
    this.watched.push(watched);
    const onData = (): void => {
      watched.delivered = true;
    };
    const follow = (): void => {
      const socket = connection.stream as NodeJS.EventEmitter | undefined;
      if (socket === undefined || socket === watched.socket) return;
      watched.socket?.removeListener('data', onData);
      watched.socket = socket;
      socket.on('data', onData);
    };
    connection.on('connect', follow);
    follow();
  }

  /** Stops watching a connection (a cluster node that left). */
  unwatch(connection: Redis): void {
    const i = this.watched.findIndex((w) => w.connection === connection);
    if (i < 0) return;
    const [gone] = this.watched.splice(i, 1);
    if (gone!.stalled) this.options.onChange(false, gone!.name);
  }

  /** Whether any watched connection is stalled now, and a description of the first one. */
  stalled(): string | undefined {
    const first = this.watched.find((w) => w.stalled);
    return first === undefined ? undefined : this.describe(first);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  private scheduleSample(): void {
    if (this.sampling || this.closed) return;
    this.sampling = true;
    setImmediate(() => {
      this.sampling = false;
      if (!this.closed) this.sample(performance.now());
    });
  }

  private sample(now: number): void {
    const needed = Math.ceil(this.options.windowMs / this.sampleMs) + 1;
    for (const w of this.watched) {
      const waiting = w.connection.commandQueue.length > 0;
      if (!waiting || w.delivered) {
        w.delivered = false;
        w.silentSamples = 0;
        w.progressAt = now;
        if (w.stalled) {
          w.stalled = false;
          this.options.onChange(false, w.name);
        }
        continue;
      }
      w.silentSamples += 1;
      if (!w.stalled && w.silentSamples >= needed && now - w.progressAt >= this.options.windowMs) {
        w.stalled = true;
        this.options.onChange(true, this.describe(w));
      }
    }
  }

  private describe(w: Watched): string {
    const waiting = w.connection.commandQueue.length;
    return `no reply from ${w.name} for ${Math.round(performance.now() - w.progressAt)} ms with ${waiting} command${waiting === 1 ? '' : 's'} waiting`;
  }
}
