import type { LimitRule, LimitSpec, MatchedLimit } from '../config/types';
import type { CounterStore, LimitCheck, LimitOutcome } from '../store/counter-store';
import { counterKey } from './counter-key';

/** One request descriptor, matched against the config, with the hits it adds. */
export interface DescriptorPlan {
  readonly match: MatchedLimit | undefined;
  readonly hits: number;
}

/** What was decided for one descriptor. */
export type DescriptorDecision =
  /** No limit applies: unmatched, or replaced by another limit of the same request. */
  | { readonly kind: 'none' }
  | { readonly kind: 'unlimited'; readonly rule: LimitRule }
  | { readonly kind: 'limited'; readonly rule: LimitRule; readonly limit: LimitSpec; readonly outcome: LimitOutcome };

const NONE: DescriptorDecision = { kind: 'none' };

export interface LimiterOptions {
  /** The reference's counting: charge every matched limit, over-limit ones too. */
  readonly chargeRejectedHits: boolean;
  /** CACHE_KEY_PREFIX, put in front of every counter key ('' when unset). */
  readonly keyPrefix?: string;
}

/**
 * Turns the matched limits of one request into one store call: applies `replaces` and
 * `unlimited`, builds the counter checks, and pairs each outcome with its descriptor.
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
    const checkOwners: number[] = [];

    plans.forEach((plan, i) => {
      const rule = plan.match?.rule;
      if (plan.match === undefined || rule === undefined) return;
      if (rule.name !== undefined && replaced.has(rule.name)) return;
      if (rule.limit === undefined) {
        decisions[i] = { kind: 'unlimited', rule };
        return;
      }
      checks.push({
        key: counterKey(this.options.keyPrefix ?? '', domain, plan.match.counterEntries, rule.limit),
        algorithm: rule.limit.algorithm,
        limit: rule.limit.requestsPerUnit,
        windowMs: rule.limit.windowMs,
        hits: plan.hits,
        // Shadow rules never block. A quota rule blocks only together with every other quota rule
        // of the request, which the response decides; to the store it is not blocking on its own.
        enforced: !rule.shadowMode && !rule.quotaMode,
        ...(rule.storeFailure !== undefined && { onStoreFailure: rule.storeFailure }),
      });
      checkOwners.push(i);
    });

    if (checks.length === 0) return decisions;
    const outcomes = await this.store.decide(checks, {
      chargeRejectedHits: this.options.chargeRejectedHits,
      ...(context.deadlineMs !== undefined && { deadlineMs: context.deadlineMs }),
    });
    checkOwners.forEach((owner, j) => {
      const rule = plans[owner]!.match!.rule;
      decisions[owner] = { kind: 'limited', rule, limit: rule.limit!, outcome: outcomes[j]! };
    });
    return decisions;
  }
}

/**
 * Every name listed in a `replaces` of a limit matched by this request (unlimited ones included,
 * as in the reference). A limit with one of these names is dropped from the request: its status
 * is OK with no limit and its counter is not touched.
 */
function replacedNames(plans: readonly DescriptorPlan[]): ReadonlySet<string> {
  const names = new Set<string>();
  for (const plan of plans) {
    for (const name of plan.match?.rule.replaces ?? []) names.add(name);
  }
  return names;
}
