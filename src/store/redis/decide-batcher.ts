import { StoreError } from '../../errors';
import type { LimitCheck } from '../counter-store';

/**
 * Sends one decide.lua call: the key count, then one array holding the keys, then ARGV (ioredis
 * flattens it into the command: no spread of hundreds of arguments into a call).
 */
export type DecideSender = (numKeys: number, keysThenArgs: ReadonlyArray<string | number>) => Promise<unknown>;

/**
 * A request's slice of a batch's reply: `values[at]` is its `charged` flag, then 6 integers per
 * check (see lua/decide.lua). The whole reply is shared by the requests of the batch (no copy
 * per request).
 */
export interface BatchReply {
  readonly values: readonly number[];
  readonly at: number;
}

/** One request (or, on a cluster, the part of one request in one slot) waiting for its batch. */
interface Part extends BatchReply {
  readonly checks: readonly LimitCheck[];
  readonly chargeRejectedHits: boolean;
  values: readonly number[];
  at: number;
  resolve(reply: BatchReply): void;
  reject(err: unknown): void;
}

/**
 * Most checks in one script call: bounds the script's run time (Redis runs nothing else
 * meanwhile), its argument list and its reply. A larger turn is sent as several calls, in order.
 */
export const MAX_BATCH_CHECKS = 256;
/** Integers per check in decide.lua's reply. */
const REPLY_PER_CHECK = 6;
/** ARGV per spec (distinct check parameters), and per request ahead of its checks' spec indexes. */
const ARGS_PER_SPEC = 6;
const ARGS_PER_PART = 2;
/** Up to this many specs in a batch, a check's spec is found by scanning; beyond, by a map. */
const SCAN_SPECS = 16;
const NO_VALUES: readonly number[] = [];

/**
 * Coalesces the decide calls of one event-loop turn into one decide.lua call per slot (one per
 * process on a single Redis): N requests arriving together cost Redis one script call, not N.
 *
 * Requests are queued in arrival order and flushed from `setImmediate`, i.e. once the turn has
 * read every socket that had data, so every request decoded in this turn joins the batch, and
 * none waits for a later turn. Each request is still decided all-or-nothing and in arrival order
 * (decide.lua); the batch only shares the round trip and the script call.
 *
 * `submit` resolves with the request's slice of the reply (`BatchReply`).
 */
export class DecideBatcher {
  /**
   * Queued parts by slot (`-1` outside a cluster). A new Map each turn, never `clear()`: V8 leaves
   * a cleared Map's old table pointing at its new one, entries and all (for iterators still on
   * it). Once one turn's table outlived two scavenges, every later turn's table, and through its
   * parts every request of the batch, was kept alive by the garbage before it until a
   * mark-compact: `npm run bench:gc` measured 2.2 KB promoted per call on Redis with `clear()`.
   */
  private queued = new Map<number, Part[]>();
  private scheduled = false;
  private readonly flushNow = (): void => this.flush();

  constructor(
    private readonly send: DecideSender,
    /** ARGV[1]: '' (Redis TIME) or epoch ms, read when the batch is sent. */
    private readonly now: () => string,
  ) {}

  submit(slot: number | undefined, checks: readonly LimitCheck[], chargeRejectedHits: boolean): Promise<BatchReply> {
    return new Promise<BatchReply>((resolve, reject) => {
      const at = slot ?? -1;
      let parts = this.queued.get(at);
      if (parts === undefined) {
        parts = [];
        this.queued.set(at, parts);
      }
      parts.push({ checks, chargeRejectedHits, values: NO_VALUES, at: 0, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.flushNow);
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batches = this.queued;
    this.queued = new Map();
    for (const parts of batches.values()) {
      let start = 0;
      while (start < parts.length) {
        let end = start;
        let checks = 0;
        // At least one part per call, however large (a request is never split).
        while (end < parts.length && (end === start || checks + parts[end]!.checks.length <= MAX_BATCH_CHECKS)) {
          checks += parts[end]!.checks.length;
          end += 1;
        }
        this.sendBatch(start === 0 && end === parts.length ? parts : parts.slice(start, end), checks);
        start = end;
      }
    }
  }

  private sendBatch(parts: readonly Part[], checks: number): void {
    // The batch's distinct specs (check parameters), each sent once, and each check's index in
    // them: requests mostly repeat a few limits, so a check costs a key and an index.
    const specs: LimitCheck[] = [];
    const specOf = new Array<number>(checks);
    let byFields: Map<string, number> | undefined;
    let c = 0;
    for (const part of parts) {
      for (const check of part.checks) {
        let index = -1;
        if (byFields === undefined) {
          for (let s = 0; s < specs.length; s++) {
            if (sameSpec(specs[s]!, check)) {
              index = s;
              break;
            }
          }
          if (index < 0 && specs.length === SCAN_SPECS) byFields = specMap(specs);
        }
        if (byFields !== undefined) {
          const fields = specFields(check);
          index = byFields.get(fields) ?? -1;
          if (index < 0) byFields.set(fields, specs.length);
        }
        if (index < 0) {
          index = specs.length;
          specs.push(check);
        }
        specOf[c++] = index + 1;
      }
    }

    // One array, sized up front: the keys, then ARGV (see lua/decide.lua).
    const keysThenArgs = new Array<string | number>(checks + 2 + ARGS_PER_SPEC * specs.length + ARGS_PER_PART * parts.length + checks);
    let k = 0;
    let a = checks;
    keysThenArgs[a++] = this.now();
    keysThenArgs[a++] = specs.length;
    for (const spec of specs) {
      keysThenArgs[a++] = spec.algorithm;
      keysThenArgs[a++] = spec.limit;
      keysThenArgs[a++] = spec.windowMs;
      keysThenArgs[a++] = spec.hits;
      keysThenArgs[a++] = spec.enforced ? '1' : '0';
      keysThenArgs[a++] = spec.burst ?? '';
    }
    for (const part of parts) {
      const partChecks = part.checks;
      keysThenArgs[a++] = part.chargeRejectedHits ? '1' : '0';
      keysThenArgs[a++] = partChecks.length;
      for (const check of partChecks) {
        keysThenArgs[a++] = specOf[k]!;
        keysThenArgs[k++] = check.key;
      }
    }
    this.send(checks, keysThenArgs).then(
      (reply) => {
        const problem = replyProblem(reply, parts);
        if (problem !== undefined) {
          for (const part of parts) part.reject(new StoreError(`redis decide failed: ${problem}`, false));
          return;
        }
        const values = reply as number[];
        let at = 1;
        for (const part of parts) {
          part.values = values;
          part.at = at;
          part.resolve(part);
          at += 1 + REPLY_PER_CHECK * part.checks.length;
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
  if (!Array.isArray(reply) || reply.length !== expected) {
    return `unexpected script reply (wanted ${expected} integers)`;
  }
  for (let i = 0; i < expected; i++) {
    if (typeof reply[i] !== 'number') return `unexpected script reply (wanted ${expected} integers)`;
  }
  return undefined;
}

/** Whether two checks have the same spec: the fields decide.lua takes per spec. */
function sameSpec(a: LimitCheck, b: LimitCheck): boolean {
  return (
    a.algorithm === b.algorithm &&
    a.limit === b.limit &&
    a.windowMs === b.windowMs &&
    a.hits === b.hits &&
    a.enforced === b.enforced &&
    a.burst === b.burst
  );
}

/** A check's spec as one string, for batches with many distinct specs. */
function specFields(check: LimitCheck): string {
  return `${check.algorithm}|${check.limit}|${check.windowMs}|${check.hits}|${check.enforced ? 1 : 0}|${check.burst ?? ''}`;
}

function specMap(specs: readonly LimitCheck[]): Map<string, number> {
  const map = new Map<string, number>();
  specs.forEach((spec, i) => map.set(specFields(spec), i));
  return map;
}
