import { Cluster, type Redis } from 'ioredis';
import { StoreError } from '../../errors';
import { keyPrefixProblem } from '../../limiter/counter-key';
import type { Logger } from '../../logging/logger';
import type { Clock } from '../../util/clock';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../counter-store';
import type { StoreAvailability, StoreState } from '../resilient-store';
import { type RedisClient, createRedisClient, describeRedisTarget } from './connection';
import { isTransientRedisError, toStoreError } from './errors';
import { keySlot } from './key-slot';
import type { RedisStoreOptions } from './options';
import { type BatchReply, DecideBatcher } from './decide-batcher';
import { ScriptCaller } from './script-call';
import { loadScripts } from './scripts';
import { StallWatch } from './stall-watch';

export interface RedisStore extends CounterStore, StoreAvailability {
  /** True once connected and scripts can run, and no connection is stalled. */
  isAvailable(): boolean;
  /** Called with true/false whenever `isAvailable()` changes (tests, tools). */
  onAvailabilityChange(listener: (available: boolean) => void): void;
}

/**
 * A CounterStore over Redis single, Sentinel or Cluster. Throws at once (a permanent StoreError)
 * for a CACHE_KEY_PREFIX that would break cluster placement; connection problems never throw
 * here: the store starts unavailable and connects in the background.
 */
export function createRedisStore(options: RedisStoreOptions, logger: Logger): RedisStore {
  const problem = keyPrefixProblem(options.keyPrefix);
  if (problem !== undefined) throw new StoreError(`redis store: CACHE_KEY_PREFIX ${problem}`, false);
  const log = logger.child({ module: 'redis-store' });
  const client = createRedisClient(options);
  return new RedisCounterStore(client, options.type === 'cluster', options.clock, log, describeRedisTarget(options), options.replyTimeoutMs);
}

/** The checks of one request that share a cluster slot: one script call. */
interface SlotGroup {
  /** Indexes into the request's checks, in request order. */
  readonly indexes: readonly number[];
  /** The checks at those indexes. */
  readonly checks: readonly LimitCheck[];
  /** Undefined outside a cluster (everything is one group). */
  readonly slot: number | undefined;
}

/** One check as one script call decided it. */
interface CheckReply {
  readonly admitted: boolean;
  /** What to report from this call alone. */
  readonly reported: LimitOutcome;
  /** What to report when the request ends up charging nothing. */
  readonly uncharged: LimitOutcome;
  /** The window index its hits were charged to (for refunds). */
  readonly window: number;
}

interface GroupReply {
  readonly group: SlotGroup;
  /** True when the call wrote its checks' hits. */
  readonly charged: boolean;
  readonly checks: readonly CheckReply[];
}

interface Decision {
  readonly outcomes: readonly LimitOutcome[];
  /** Groups whose charges stand: to take back if the caller never receives the decision. */
  readonly standing: readonly GroupReply[];
}

const DECIDE_FIELDS = 6;
const PROBE_RETRY_MS = 1_000;
const CLOSE_TIMEOUT_MS = 1_000;

/**
 * Decides a request with one `lua/decide.lua` call per cluster slot its keys fall in:
 *
 * - Redis single and Sentinel: always exactly one call, whatever the keys.
 * - Cluster: one call when every key is in one slot — always the case for the limits of one
 *   request that share their first descriptor entry (counter-key.ts puts a hash of domain and
 *   first entry in the hash tag), e.g. (client_id=A) with (client_id=A, user_id=u).
 *   Checks in several slots: one call per slot, in parallel. Each call charges only if all its
 *   enforced checks admit. If every call charged, the request is admitted; if any rejected, the
 *   calls that charged are undone with `lua/refund.lua` and every check reports its uncharged
 *   outcome. Others may see the reservation meanwhile: the cluster may briefly under-admit,
 *   never over-admit. With chargeRejectedHits every call charges and nothing is undone.
 *
 * Its state (StoreAvailability) follows the store itself, never the time a call took:
 * - `starting` until the first verdict: the first connection, and a probe that runs the decide
 *   script, succeed (`up`), or the connection or the probe fails (`down`);
 * - `down` while disconnected (close/reconnect), after a probe that follows a transient failure
 *   fails too, and while any connection is stalled (StallWatch: commands waiting and no reply
 *   bytes for REDIS_TIMEOUT);
 * - `up` again once reconnected and probed, or once the stalled connection delivers.
 *
 * Calls carry no timer here: the caller (ResilientStore) waits up to its deadline, and when it
 * stops waiting it marks the call's ticket abandoned; an answer that comes after that has its
 * charges taken back (refund.lua), so a counter holds only the hits of answers that were given.
 */
class RedisCounterStore implements RedisStore {
  /** Probed since the last (re)connection. */
  private connected = false;
  /** A verdict was reached at least once (connected, or a connection or probe failed). */
  private decided = false;
  private downWhy = 'not connected';
  private current: StoreState = 'starting';
  private closed = false;
  private readonly listeners: Array<(state: StoreState) => void> = [];
  private readonly stalls: StallWatch;
  private readonly batcher: DecideBatcher;
  private readonly decideScript: ScriptCaller;
  private readonly refundScript: ScriptCaller;
  private probing = false;
  private probeTimer: NodeJS.Timeout | undefined;
  /** One warning per outage; the rest of the reconnect errors go to debug. */
  private errorLogged = false;

  constructor(
    private readonly client: RedisClient,
    private readonly isCluster: boolean,
    clock: Clock | undefined,
    private readonly logger: Logger,
    private readonly target: string,
    replyTimeoutMs: number,
  ) {
    const scripts = loadScripts();
    const decide = new ScriptCaller(scripts.decide);
    this.decideScript = decide;
    this.refundScript = new ScriptCaller(scripts.refund);
    this.batcher = new DecideBatcher(
      (numKeys, keysThenArgs) => decide.call(client, numKeys, keysThenArgs),
      // Whole milliseconds: the script's replies are integers. Real clocks (Date.now) already are.
      () => (clock === undefined ? '' : String(Math.floor(clock.nowMs()))),
    );
    this.stalls = new StallWatch({
      windowMs: replyTimeoutMs,
      onChange: (stalled, description) => {
        if (stalled) this.logger.warn({ target: this.target, stall: description }, 'redis connection stalled');
        else this.logger.info({ target: this.target, node: description }, 'redis connection delivering again');
        this.update();
      },
    });
    if (client instanceof Cluster) {
      client.on('+node', (node: Redis) => this.stalls.watch(node, `${node.options.host ?? '?'}:${node.options.port ?? '?'}`));
      client.on('-node', (node: Redis) => this.stalls.unwatch(node));
    } else {
      this.stalls.watch(client, target);
    }
    client.on('error', (err: unknown) => this.onClientError(err));
    if (isCluster) client.on('node error', (err: unknown, node: unknown) => this.onClientError(err, String(node)));
    client.on('ready', () => this.probe());
    for (const event of ['close', 'reconnecting', 'end']) client.on(event, () => this.setConnected(false, 'not connected'));
  }

  state(): StoreState {
    return this.current;
  }

  downReason(): string {
    return this.stalls.stalled() ?? this.downWhy;
  }

  onStateChange(listener: (state: StoreState) => void): void {
    this.listeners.push(listener);
  }

  isAvailable(): boolean {
    return this.current === 'up';
  }

  onAvailabilityChange(listener: (available: boolean) => void): void {
    let last = this.isAvailable();
    this.listeners.push(() => {
      const now = this.isAvailable();
      if (now !== last) {
        last = now;
        listener(now);
      }
    });
  }

  decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    if (checks.length === 0) return Promise.resolve([]);
    if (!this.isCluster) return this.decideInOneCall(undefined, checks, options);
    const slot = sharedSlot(checks);
    return slot === undefined ? this.decideGroups(checks, options) : this.decideInOneCall(slot, checks, options);
  }

  /**
   * Every check in one script call (one Redis, or one cluster slot): the request is admitted
   * exactly when that call charged, and decide.lua already reports the uncharged outcomes of a
   * call that charged nothing, so the outcomes are read straight from the batch's reply. A group
   * is built only for a refund.
   */
  private decideInOneCall(slot: number | undefined, checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    return this.batcher.submit(slot, checks, options.chargeRejectedHits).then(
      (reply) => {
        const values = reply.values;
        const outcomes = new Array<LimitOutcome>(checks.length);
        for (let j = 0, at = reply.at + 1; j < checks.length; j++, at += DECIDE_FIELDS) {
          outcomes[j] = { admitted: values[at] === 1, remaining: values[at + 1]!, resetMs: values[at + 2]! };
        }
        if (values[reply.at] === 1 && options.ticket?.abandoned === true && !options.chargeRejectedHits) {
          // As in `decideGroups`: a charge whose caller was answered without it must not stand.
          const group: SlotGroup = { indexes: checks.map((_, i) => i), checks, slot };
          void this.undo([parseDecideReply(reply, group)], 'the answer came after its caller stopped waiting');
        }
        return outcomes;
      },
      (err: unknown) => {
        const failure = toStoreError(describeChecks('decide', checks.length, slot), err);
        this.noteFailure(failure);
        throw failure;
      },
    );
  }

  /** Checks in several cluster slots: one script call per slot (see the class comment). */
  private async decideGroups(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    const decision = await this.run(checks, options);
    if (options.ticket?.abandoned === true && !options.chargeRejectedHits) {
      // The caller was answered without this decision (its deadline passed, or the store was
      // declared down meanwhile): a charge it never saw must not stand.
      void this.undo(decision.standing, 'the answer came after its caller stopped waiting');
    }
    return decision.outcomes;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.probeTimer);
    this.stalls.close();
    this.setConnected(false, 'closed');
    try {
      if (this.client.status === 'ready') {
        await Promise.race([this.client.quit(), new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref())]);
      }
    } catch {
      // Closing anyway.
    } finally {
      this.client.disconnect();
    }
  }

  private async run(checks: readonly LimitCheck[], options: DecideOptions): Promise<Decision> {
    const groups = this.group(checks);
    const settled = await Promise.allSettled(groups.map((g) => this.callDecide(g, options.chargeRejectedHits)));
    const replies: GroupReply[] = [];
    let failure: unknown;
    for (const result of settled) {
      if (result.status === 'fulfilled') replies.push(result.value);
      else failure ??= result.reason;
    }

    if (failure !== undefined) {
      this.noteFailure(failure);
      if (!options.chargeRejectedHits) await this.undo(replies, 'another slot failed');
      throw failure;
    }

    const outcomes = new Array<LimitOutcome>(checks.length);
    const admitted = options.chargeRejectedHits || replies.every((r) => r.charged);
    for (const reply of replies) {
      reply.group.indexes.forEach((index, j) => {
        const check = reply.checks[j]!;
        outcomes[index] = admitted ? check.reported : check.uncharged;
      });
    }
    if (options.chargeRejectedHits) return { outcomes, standing: [] };
    if (admitted) return { outcomes, standing: replies };
    await this.undo(replies, 'another slot rejected the request');
    return { outcomes, standing: [] };
  }

  /** One group per cluster slot, in first-seen order. */
  private group(checks: readonly LimitCheck[]): SlotGroup[] {
    const bySlot = new Map<number, { indexes: number[]; checks: LimitCheck[] }>();
    checks.forEach((check, i) => {
      const slot = keySlot(check.key);
      const group = bySlot.get(slot);
      if (group === undefined) {
        bySlot.set(slot, { indexes: [i], checks: [check] });
      } else {
        group.indexes.push(i);
        group.checks.push(check);
      }
    });
    return [...bySlot].map(([slot, group]) => ({ ...group, slot }));
  }

  private async callDecide(group: SlotGroup, chargeRejectedHits: boolean): Promise<GroupReply> {
    let reply: BatchReply;
    try {
      reply = await this.batcher.submit(group.slot, group.checks, chargeRejectedHits);
    } catch (err) {
      throw toStoreError(describeGroup('decide', group), err);
    }
    return parseDecideReply(reply, group);
  }

  /**
   * Takes back what the given calls charged (all-or-nothing mode only). A refund that fails
   * leaves a brief over-count (under-admission); it is logged, never thrown.
   */
  private async undo(replies: readonly GroupReply[], why: string): Promise<void> {
    const charged = replies.filter((r) => r.charged);
    if (charged.length === 0) return;
    await Promise.all(charged.map((r) => this.callRefund(r, why)));
  }

  private async callRefund(reply: GroupReply, why: string): Promise<void> {
    const keys: string[] = [];
    const args: Array<string | number> = [];
    reply.group.checks.forEach((check, j) => {
      const decided = reply.checks[j]!;
      keys.push(check.key);
      // Only admitted checks were charged (a shadow rejection in a charged call was not).
      args.push(check.algorithm, decided.window, decided.admitted ? check.hits : 0, check.limit, check.windowMs);
    });
    try {
      await this.refundScript.call(this.client, keys.length, [...keys, ...args]);
    } catch (err) {
      const error = toStoreError(describeGroup('refund', reply.group), err);
      this.logger.warn({ err: error, why }, 'could not refund a charge; the counters over-count until their windows pass');
    }
  }

  private onClientError(err: unknown, node?: string): void {
    const message = err instanceof Error ? err.message : String(err);
    if (!this.errorLogged) {
      this.errorLogged = true;
      this.logger.warn({ target: this.target, node, error: message }, 'redis connection error');
    } else {
      this.logger.debug({ target: this.target, node, error: message }, 'redis connection error');
    }
  }

  /** A transient failure of a call: check whether the store still answers. */
  private noteFailure(err: unknown): void {
    if (isTransientRedisError(err)) this.probe();
  }

  /**
   * Runs the decide script with no checks; availability follows the answer. On a cluster every
   * master is pinged first: node connections open lazily, and a burst of calls to a node still
   * connecting would fail fast ("Connection is closed.") instead of waiting.
   */
  private probe(): void {
    if (this.closed || this.probing) return;
    this.probing = true;
    clearTimeout(this.probeTimer);
    this.probeTimer = undefined;
    const nodes = this.client instanceof Cluster ? this.client.nodes('master') : [];
    Promise.all(nodes.map((node) => node.ping()))
      .then(() => this.decideScript.call(this.client, 0, ['', 0]))
      .then(
        () => {
          this.probing = false;
          this.setConnected(true);
        },
        (err: unknown) => {
          this.probing = false;
          this.setConnected(false, `probe failed: ${err instanceof Error ? err.message : String(err)}`);
          this.onClientError(err);
          // Connected but not answering (loading, scripts refused): ask again. Disconnected:
          // the next 'ready' probes.
          if (!this.closed && this.client.status === 'ready') {
            this.probeTimer = setTimeout(() => this.probe(), PROBE_RETRY_MS);
            this.probeTimer.unref();
          }
        },
      );
  }

  private setConnected(connected: boolean, why?: string): void {
    if (connected && this.closed) return;
    this.connected = connected;
    this.decided = true;
    if (why !== undefined) this.downWhy = why;
    this.update();
  }

  /** Recomputes the state from the connection and the stall watch; tells listeners of a change. */
  private update(): void {
    const next: StoreState = !this.decided ? 'starting' : this.connected && this.stalls.stalled() === undefined ? 'up' : 'down';
    if (next === this.current) return;
    this.current = next;
    if (next === 'up') {
      this.errorLogged = false;
      this.logger.info({ target: this.target }, 'redis store available');
    } else if (!this.closed) {
      this.logger.warn({ target: this.target, why: this.downReason() }, 'redis store unavailable');
    }
    for (const listener of this.listeners) {
      try {
        listener(next);
      } catch (err) {
        this.logger.error({ err }, 'availability listener failed');
      }
    }
  }
}

function describeGroup(op: string, group: SlotGroup): string {
  return describeChecks(op, group.indexes.length, group.slot);
}

function describeChecks(op: string, count: number, slot: number | undefined): string {
  const checks = `${count} check${count === 1 ? '' : 's'}`;
  return slot === undefined ? `${op} (${checks})` : `${op} (${checks}, slot ${slot})`;
}

/** The cluster slot every check's key is in, or undefined when they are in several. */
function sharedSlot(checks: readonly LimitCheck[]): number | undefined {
  const slot = keySlot(checks[0]!.key);
  for (let i = 1; i < checks.length; i++) if (keySlot(checks[i]!.key) !== slot) return undefined;
  return slot;
}

/** One request's slice of decide.lua's reply (`charged`, then 6 integers per check) as typed outcomes. */
function parseDecideReply(reply: BatchReply, group: SlotGroup): GroupReply {
  const values = reply.values;
  const checks: CheckReply[] = [];
  for (let j = 0; j < group.indexes.length; j++) {
    const at = reply.at + 1 + DECIDE_FIELDS * j;
    const admitted = values[at] === 1;
    checks.push({
      admitted,
      reported: { admitted, remaining: values[at + 1]!, resetMs: values[at + 2]! },
      uncharged: { admitted, remaining: values[at + 3]!, resetMs: values[at + 4]! },
      window: values[at + 5]!,
    });
  }
  return { group, charged: values[reply.at] === 1, checks };
}
