import { Cluster } from 'ioredis';
import { StoreError } from '../../errors';
import { keyPrefixProblem } from '../../limiter/counter-key';
import type { Logger } from '../../logging/logger';
import { type Clock, systemClock } from '../../util/clock';
import { setIoFairTimeout } from '../../util/io-fair-timer';
import type { CounterStore, DecideOptions, LimitCheck, LimitOutcome } from '../counter-store';
import { type RedisClient, createRedisClient, describeRedisTarget } from './connection';
import { isTransientRedisError, toStoreError } from './errors';
import { keySlot } from './key-slot';
import type { RedisStoreOptions } from './options';
import { defineScripts } from './scripts';

export interface RedisStore extends CounterStore {
  /** True once connected and scripts can run; false while disconnected. */
  isAvailable(): boolean;
  /** Called with true/false whenever availability changes (health wiring). */
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
  return new RedisCounterStore(client, options.type === 'cluster', options.clock, log, describeRedisTarget(options));
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
 * Availability follows the connection ('ready' plus a probe that runs the decide script; false on
 * close/reconnect, or when a probe after a transient failure fails too).
 */
class RedisCounterStore implements RedisStore {
  private available = false;
  private closed = false;
  private readonly listeners: Array<(available: boolean) => void> = [];
  private probing = false;
  private probeTimer: NodeJS.Timeout | undefined;
  /** One warning per outage; the rest of the reconnect errors go to debug. */
  private errorLogged = false;

  constructor(
    private readonly client: RedisClient,
    private readonly isCluster: boolean,
    private readonly clock: Clock | undefined,
    private readonly logger: Logger,
    private readonly target: string,
  ) {
    defineScripts(client);
    client.on('error', (err: unknown) => this.onClientError(err));
    if (isCluster) client.on('node error', (err: unknown, node: unknown) => this.onClientError(err, String(node)));
    client.on('ready', () => this.probe());
    for (const event of ['close', 'reconnecting', 'end']) client.on(event, () => this.setAvailable(false));
  }

  isAvailable(): boolean {
    return this.available;
  }

  onAvailabilityChange(listener: (available: boolean) => void): void {
    this.listeners.push(listener);
  }

  async decide(checks: readonly LimitCheck[], options: DecideOptions): Promise<readonly LimitOutcome[]> {
    if (checks.length === 0) return [];
    const deadline = options.deadlineMs;
    if (deadline !== undefined && systemClock.nowMs() >= deadline) {
      throw new StoreError('redis decide: the deadline had passed before the call', true);
    }
    // Whole milliseconds: the script's replies are integers. Real clocks (Date.now) already are.
    const now = this.clock === undefined ? '' : String(Math.floor(this.clock.nowMs()));
    const work = this.run(checks, options, now);
    if (deadline === undefined) return (await work).outcomes;
    return this.withDeadline(work, deadline, options);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.probeTimer);
    this.setAvailable(false);
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

  private async run(checks: readonly LimitCheck[], options: DecideOptions, now: string): Promise<Decision> {
    const groups = this.group(checks);
    const settled = await Promise.allSettled(groups.map((g) => this.callDecide(g, now, options.chargeRejectedHits)));
    const replies: GroupReply[] = [];
    let failure: unknown;
    for (const result of settled) {
      if (result.status === 'fulfilled') replies.push(result.value);
      else failure ??= result.reason;
    }

    if (failure !== undefined) {
      this.noteFailure(failure);
      if (!options.chargeRejectedHits) await this.undo(replies, options.deadlineMs, 'another slot failed');
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
    await this.undo(replies, options.deadlineMs, 'another slot rejected the request');
    return { outcomes, standing: [] };
  }

  /** Outside a cluster: one group. In a cluster: one group per slot, in first-seen order. */
  private group(checks: readonly LimitCheck[]): SlotGroup[] {
    if (!this.isCluster) return [{ indexes: checks.map((_, i) => i), checks, slot: undefined }];
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

  private async callDecide(group: SlotGroup, now: string, chargeRejectedHits: boolean): Promise<GroupReply> {
    const what = describeGroup('decide', group);
    const keys: string[] = [];
    const args: Array<string | number> = [now, chargeRejectedHits ? '1' : '0'];
    for (const check of group.checks) {
      keys.push(check.key);
      args.push(check.algorithm, check.limit, check.windowMs, check.hits, check.enforced ? '1' : '0', check.burst ?? '');
    }
    let reply: unknown;
    try {
      reply = await this.client.sluiceDecide(keys.length, ...keys, ...args);
    } catch (err) {
      throw toStoreError(what, err);
    }
    return parseDecideReply(reply, group, what);
  }

  /**
   * Takes back what the given calls charged (all-or-nothing mode only). Waits for it at most
   * until the deadline: the decision is already known, and a late refund still lands. A refund
   * that fails leaves a brief over-count (under-admission); it is logged, never thrown.
   */
  private async undo(replies: readonly GroupReply[], deadlineMs: number | undefined, why: string): Promise<void> {
    const charged = replies.filter((r) => r.charged);
    if (charged.length === 0) return;
    const refunds = Promise.all(charged.map((r) => this.callRefund(r, why)));
    if (deadlineMs === undefined) {
      await refunds;
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, Math.max(0, deadlineMs - systemClock.nowMs()));
    });
    await Promise.race([refunds, deadline]);
    clearTimeout(timer);
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
      await this.client.sluiceRefund(keys.length, ...keys, ...args);
    } catch (err) {
      const error = toStoreError(describeGroup('refund', reply.group), err);
      this.logger.warn({ err: error, why }, 'could not refund a charge; the counters over-count until their windows pass');
    }
  }

  /** Races the work against the caller's deadline; a late answer that charged is taken back. */
  private withDeadline(work: Promise<Decision>, deadlineMs: number, options: DecideOptions): Promise<readonly LimitOutcome[]> {
    return new Promise((resolve, reject) => {
      let expired = false;
      const waitMs = deadlineMs - systemClock.nowMs();
      const cancel = setIoFairTimeout(() => {
        expired = true;
        reject(new StoreError(`redis decide: no answer within the deadline (${Math.max(0, Math.round(waitMs))} ms)`, true));
      }, Math.max(0, waitMs));
      work.then(
        (decision) => {
          if (!expired) {
            cancel();
            resolve(decision.outcomes);
          } else if (!options.chargeRejectedHits) {
            // The caller was told the store failed; a charge it never saw must not stand.
            void this.undo(decision.standing, undefined, 'the answer came after the deadline');
          }
        },
        (err: unknown) => {
          if (!expired) {
            cancel();
            reject(err);
          }
        },
      );
    });
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
      .then(() => this.client.sluiceDecide(0, '', '0'))
      .then(
        () => {
          this.probing = false;
          this.setAvailable(true);
        },
        (err: unknown) => {
          this.probing = false;
          this.setAvailable(false);
          this.onClientError(err);
          // Connected but not answering (slow, loading, scripts refused): ask again. Disconnected:
          // the next 'ready' probes.
          if (!this.closed && this.client.status === 'ready') {
            this.probeTimer = setTimeout(() => this.probe(), PROBE_RETRY_MS);
            this.probeTimer.unref();
          }
        },
      );
  }

  private setAvailable(available: boolean): void {
    if (available === this.available || (available && this.closed)) return;
    this.available = available;
    if (available) {
      this.errorLogged = false;
      this.logger.info({ target: this.target }, 'redis store available');
    } else if (!this.closed) {
      this.logger.warn({ target: this.target }, 'redis store unavailable');
    }
    for (const listener of this.listeners) {
      try {
        listener(available);
      } catch (err) {
        this.logger.error({ err }, 'availability listener failed');
      }
    }
  }
}

function describeGroup(op: string, group: SlotGroup): string {
  const checks = `${group.indexes.length} check${group.indexes.length === 1 ? '' : 's'}`;
  return group.slot === undefined ? `${op} (${checks})` : `${op} (${checks}, slot ${group.slot})`;
}

/** Checks the script's reply shape (see lua/decide.lua) and turns it into typed outcomes. */
function parseDecideReply(reply: unknown, group: SlotGroup, what: string): GroupReply {
  const expected = 2 + DECIDE_FIELDS * group.indexes.length;
  if (!Array.isArray(reply) || reply.length !== expected || !reply.every((v) => typeof v === 'number')) {
    throw new StoreError(`redis ${what} failed: unexpected script reply (wanted ${expected} integers)`, false);
  }
  const values = reply as number[];
  const checks: CheckReply[] = [];
  for (let j = 0; j < group.indexes.length; j++) {
    const at = 2 + DECIDE_FIELDS * j;
    const admitted = values[at] === 1;
    checks.push({
      admitted,
      reported: { admitted, remaining: values[at + 1]!, resetMs: values[at + 2]! },
      uncharged: { admitted, remaining: values[at + 3]!, resetMs: values[at + 4]! },
      window: values[at + 5]!,
    });
  }
  return { group, charged: values[1] === 1, checks };
}
