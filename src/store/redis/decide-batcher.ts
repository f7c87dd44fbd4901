import { StoreError } from '../../errors';
import type { LimitCheck } from '../counter-store';

/** Sends one decide.lua call: the key count, then the keys, then ARGV. */
export type DecideSender = (numKeys: number, keysThenArgs: Array<string | number>) => Promise<unknown>;

/** One request (or, on a cluster, the part of one request in one slot) waiting for its batch. */
interface Part {
  readonly checks: readonly LimitCheck[];
  readonly chargeRejectedHits: boolean;
  resolve(values: readonly number[]): void;
  reject(err: unknown): void;
}

/**
 * Most checks in one script call: bounds the script's run time (Redis runs nothing else
 * meanwhile), its argument list and its reply. A larger turn is sent as several calls, in order.
 */
export const MAX_BATCH_CHECKS = 256;
/** Integers per check in decide.lua's reply. */
const REPLY_PER_CHECK = 6;

/**
 * Coalesces the decide calls of one event-loop turn into one decide.lua call per slot (one per
 * process on a single Redis): N requests arriving together cost Redis one script call, not N.
 *
 * Requests are queued in arrival order and flushed from `setImmediate`, i.e. once the turn has
 * read every socket that had data, so every request decoded in this turn joins the batch, and
 * none waits for a later turn. Each request is still decided all-or-nothing and in arrival order
 * (decide.lua); the batch only shares the round trip and the script call.
 *
 * `submit` resolves with the request's slice of the reply: `charged`, then 6 integers per check
 * (see lua/decide.lua).
 */
export class DecideBatcher {
  /** Queued parts by slot (`-1` outside a cluster). */
  private readonly queued = new Map<number, Part[]>();
  private scheduled = false;

  constructor(
    private readonly send: DecideSender,
    /** ARGV[1]: '' (Redis TIME) or epoch ms, read when the batch is sent. */
    private readonly now: () => string,
  ) {}

  submit(slot: number | undefined, checks: readonly LimitCheck[], chargeRejectedHits: boolean): Promise<readonly number[]> {
    return new Promise<readonly number[]>((resolve, reject) => {
      const at = slot ?? -1;
      let parts = this.queued.get(at);
      if (parts === undefined) {
        parts = [];
        this.queued.set(at, parts);
      }
      parts.push({ checks, chargeRejectedHits, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batches = [...this.queued.values()];
    this.queued.clear();
    for (const parts of batches) {
      let start = 0;
      while (start < parts.length) {
        let end = start;
        let checks = 0;
        // At least one part per call, however large (a request is never split).
        while (end < parts.length && (end === start || checks + parts[end]!.checks.length <= MAX_BATCH_CHECKS)) {
          checks += parts[end]!.checks.length;
          end += 1;
        }
        this.sendBatch(parts.slice(start, end), checks);
        start = end;
      }
    }
  }

  private sendBatch(parts: readonly Part[], checks: number): void {
    const keys: string[] = new Array<string>(checks);
    const args: Array<string | number> = [this.now()];
    let k = 0;
    for (const part of parts) {
      args.push(part.chargeRejectedHits ? '1' : '0', part.checks.length);
      for (const check of part.checks) {
        keys[k++] = check.key;
        args.push(check.algorithm, check.limit, check.windowMs, check.hits, check.enforced ? '1' : '0', check.burst ?? '');
      }
    }
    this.send(checks, [...keys, ...args]).then(
      (reply) => {
        const problem = replyProblem(reply, parts);
        if (problem !== undefined) {
          for (const part of parts) part.reject(new StoreError(`redis decide failed: ${problem}`, false));
          return;
        }
        const values = reply as number[];
        let at = 1;
        for (const part of parts) {
          const size = 1 + REPLY_PER_CHECK * part.checks.length;
          part.resolve(values.slice(at, at + size));
          at += size;
        }
      },
      (err: unknown) => {
        for (const part of parts) part.reject(err);
      },
    );
  }
}

/** Why a reply does not have decide.lua's shape for these parts, or undefined when it does. */
function replyProblem(reply: unknown, parts: readonly Part[]): string | undefined {
  let expected = 1;
  for (const part of parts) expected += 1 + REPLY_PER_CHECK * part.checks.length;
  if (!Array.isArray(reply) || reply.length !== expected || !reply.every((v) => typeof v === 'number')) {
    return `unexpected script reply (wanted ${expected} integers)`;
  }
  return undefined;
}
