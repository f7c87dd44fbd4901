import type { LimitRule, LimitSpec, MatchedLimit } from '../config/types';
import type { CounterStore, LimitCheck, LimitOutcome } from '../store/counter-store';
import { counterKey } from './counter-key';

/** One request descriptor, matched against the config, with the hits it adds. */
export interface DescriptorPlan {
  readonly match: MatchedLimit | undefined;
  readonly hits: number;
}

/** One limit of a descriptor and what it decided. */
export interface DecidedLimit {
  readonly rule: LimitRule;
  readonly limit: LimitSpec;
  readonly outcome: LimitOutcome;
}

/** What was decided for one descriptor. */
export type DescriptorDecision =
  /** No limit applies: unmatched, or every limit of its node replaced by another of the request. */
  | { readonly kind: 'none' }
  | { readonly kind: 'unlimited'; readonly rule: LimitRule }
  | {
      readonly kind: 'limited';
      /** The reported limit: the most constraining of `limits` (see `mostConstraining`). */
      readonly rule: LimitRule;
      readonly limit: LimitSpec;
      readonly outcome: LimitOutcome;
      /**
       * Every limit decided for the descriptor, in config order: one for a `rate_limit` node,
       * the items not replaced for a `rate_limits` node. All were decided in the same store call.
       */
      readonly limits: readonly DecidedLimit[];
    };

const NONE: DescriptorDecision = { kind: 'none' };

export interface LimiterOptions {
  /** The reference's counting: charge every matched limit, over-limit ones too. */
  readonly chargeRejectedHits: boolean;
  /** CACHE_KEY_PREFIX, put in front of every counter key ('' when unset). */
  readonly keyPrefix?: string;
}

/**
 * Turns the matched limits of one request into one store call: applies `replaces` and
 * `unlimited`, builds the counter checks (one per limit: a `rate_limits` node gives several),
 * and pairs the outcomes with their descriptor, reporting its most constraining limit.
 */
export class Limiter {
  /** The store's options for a call without a deadline (most of Envoy's), made once. */
  private readonly noDeadline: { readonly chargeRejectedHits: boolean };

  constructor(
    private readonly store: CounterStore,
    private readonly options: LimiterOptions,
  ) {
    this.noDeadline = { chargeRejectedHits: options.chargeRejectedHits };
  }

  /** `deadlineMs`: epoch ms by which the caller needs the answer (the gRPC deadline), passed to the store. */
  async decide(
    domain: string,
    plans: readonly DescriptorPlan[],
    context: { readonly deadlineMs?: number } = {},
  ): Promise<DescriptorDecision[]> {
    // Every call passes here: plain loops, and no per-call closure, Set, Map or one-rule array unless needed.
    const replaced = replacedNames(plans);
    const decisions = new Array<DescriptorDecision>(plans.length);
    // Sized for every rule matched (a few; arrays grown from empty would reserve 17 slots each).
    let most = 0;
    for (const plan of plans) if (plan.match !== undefined) most += plan.match.rules === undefined ? 1 : plan.match.rules.length;
    const checks = new Array<LimitCheck>(most);
    /** Per check: the descriptor it was built for, and its rule (whose limit it checks). */
    const ownerPlans = new Array<number>(most);
    const ownerRules = new Array<LimitRule>(most);
    let c = 0;
    const keyPrefix = this.options.keyPrefix ?? '';
    for (let i = 0; i < plans.length; i++) {
      decisions[i] = NONE;
      const plan = plans[i]!;
      const match = plan.match;
      if (match === undefined) continue;
      const rules = match.rules;
      const count = rules === undefined ? 1 : rules.length;
      for (let r = 0; r < count; r++) {
        const rule = rules === undefined ? match.rule : rules[r]!;
        if (replaced !== undefined && rule.name !== undefined && replaced.has(rule.name)) continue;
        const limit = rule.limit;
        if (limit === undefined) {
          decisions[i] = { kind: 'unlimited', rule };
          continue;
        }
        const key = counterKey(keyPrefix, domain, match.counterEntries, limit);
        // Shadow rules never block. A quota rule blocks only together with every other quota rule
        // of the request, which the response decides; to the store it is not blocking on its own.
        const enforced = !rule.shadowMode && !rule.quotaMode;
        const check: LimitCheck =
          limit.burst === undefined && rule.storeFailure === undefined
            ? { key, algorithm: limit.algorithm, limit: limit.requestsPerUnit, windowMs: limit.windowMs, hits: plan.hits, enforced }
            : {
                key,
                algorithm: limit.algorithm,
                limit: limit.requestsPerUnit,
                windowMs: limit.windowMs,
                ...(limit.burst !== undefined && { burst: limit.burst }),
                hits: plan.hits,
                enforced,
                ...(rule.storeFailure !== undefined && { onStoreFailure: rule.storeFailure }),
              };
        checks[c] = check;
        ownerPlans[c] = i;
        ownerRules[c] = rule;
        c += 1;
      }
    }
    // Fewer when `replaces` or `unlimited` left some rules out.
    checks.length = c;

    if (checks.length === 0) return decisions;
    const deadlineMs = context.deadlineMs;
    const outcomes = await this.store.decide(
      checks,
      deadlineMs === undefined ? this.noDeadline : { chargeRejectedHits: this.options.chargeRejectedHits, deadlineMs },
    );
    // The limits of each descriptor, in config order (a `rate_limits` node has several).
    const limitsOf = new Array<DecidedLimit[] | undefined>(plans.length);
    for (let j = 0; j < checks.length; j++) {
      const owner = ownerPlans[j]!;
      const rule = ownerRules[j]!;
      // A check exists only for a rule with a limit.
      const decided: DecidedLimit = { rule, limit: rule.limit!, outcome: outcomes[j]! };
      const limits = limitsOf[owner];
      if (limits === undefined) limitsOf[owner] = [decided];
      else limits.push(decided);
    }
    for (let i = 0; i < plans.length; i++) {
      const limits = limitsOf[i];
      if (limits === undefined) continue;
      const reported = mostConstraining(limits);
      decisions[i] = { kind: 'limited', rule: reported.rule, limit: reported.limit, outcome: reported.outcome, limits };
    }
    return decisions;
  }
}

/**
 * The limit a descriptor's status reports: the first (in config order) that rejected, else the
 * one with the fewest hits remaining (the first of equals). So a request held back by a
 * per-second burst reports that limit and its short retry, and an admitted one reports the limit
 * it is closest to running out of.
 */
export function mostConstraining(limits: readonly DecidedLimit[]): DecidedLimit {
  let best = limits[0]!;
  for (const candidate of limits) {
    if (!candidate.outcome.admitted) return candidate;
    if (candidate.outcome.remaining < best.outcome.remaining) best = candidate;
  }
  return best;
}

/**
 * Every name listed in a `replaces` of a limit matched by this request (unlimited ones included,
 * as in the reference), or undefined when there is none (most requests). A limit with one of
 * these names is dropped from the request: its status is OK with no limit and its counter is not
 * touched.
 */
function replacedNames(plans: readonly DescriptorPlan[]): ReadonlySet<string> | undefined {
  let names: Set<string> | undefined;
  for (const plan of plans) {
    const match = plan.match;
    if (match === undefined) continue;
    const rules = match.rules;
    const count = rules === undefined ? 1 : rules.length;
    for (let r = 0; r < count; r++) {
      const replaces = (rules === undefined ? match.rule : rules[r]!).replaces;
      if (replaces.length === 0) continue;
      names ??= new Set<string>();
      for (const name of replaces) names.add(name);
    }
  }
  return names;
}
