import { type LimitRule, type LimitSpec, type MatchedLimit, rulesOf } from '../config/types';
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
  constructor(
    private readonly store: CounterStore,
    private readonly options: LimiterOptions,
  ) {}

  /** `deadlineMs`: epoch ms by which the caller needs the answer (the gRPC deadline), passed to the store. */
  async decide(
    domain: string,
    plans: readonly DescriptorPlan[],
    context: { readonly deadlineMs?: number } = {},
  ): Promise<DescriptorDecision[]> {
    const replaced = replacedNames(plans);
    const decisions: DescriptorDecision[] = new Array<DescriptorDecision>(plans.length).fill(NONE);
    const checks: LimitCheck[] = [];
    const checkOwners: { readonly plan: number; readonly rule: LimitRule; readonly limit: LimitSpec }[] = [];

    plans.forEach((plan, i) => {
      const match = plan.match;
      if (match === undefined) return;
      for (const rule of rulesOf(match)) {
        if (rule.name !== undefined && replaced.has(rule.name)) continue;
        const limit = rule.limit;
        if (limit === undefined) {
          decisions[i] = { kind: 'unlimited', rule };
          continue;
        }
        checks.push({
          key: counterKey(this.options.keyPrefix ?? '', domain, match.counterEntries, limit),
          algorithm: limit.algorithm,
          limit: limit.requestsPerUnit,
          windowMs: limit.windowMs,
          ...(limit.burst !== undefined && { burst: limit.burst }),
          hits: plan.hits,
          // Shadow rules never block. A quota rule blocks only together with every other quota rule
          // of the request, which the response decides; to the store it is not blocking on its own.
          enforced: !rule.shadowMode && !rule.quotaMode,
          ...(rule.storeFailure !== undefined && { onStoreFailure: rule.storeFailure }),
        });
        checkOwners.push({ plan: i, rule, limit });
      }
    });

    if (checks.length === 0) return decisions;
    const outcomes = await this.store.decide(checks, {
      chargeRejectedHits: this.options.chargeRejectedHits,
      ...(context.deadlineMs !== undefined && { deadlineMs: context.deadlineMs }),
    });
    const byPlan = new Map<number, DecidedLimit[]>();
    checkOwners.forEach((owner, j) => {
      const decided = { rule: owner.rule, limit: owner.limit, outcome: outcomes[j]! };
      const list = byPlan.get(owner.plan);
      if (list === undefined) byPlan.set(owner.plan, [decided]);
      else list.push(decided);
    });
    for (const [plan, limits] of byPlan) {
      const reported = mostConstraining(limits);
      decisions[plan] = { kind: 'limited', rule: reported.rule, limit: reported.limit, outcome: reported.outcome, limits };
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
 * as in the reference). A limit with one of these names is dropped from the request: its status
 * is OK with no limit and its counter is not touched.
 */
function replacedNames(plans: readonly DescriptorPlan[]): ReadonlySet<string> {
  const names = new Set<string>();
  for (const plan of plans) {
    if (plan.match === undefined) continue;
    for (const rule of rulesOf(plan.match)) {
      for (const name of rule.replaces) names.add(name);
    }
  }
  return names;
}
