import { WildcardPattern } from '../config/rate-limit-config';
import type { DescriptorEntry, LimitRule } from '../config/types';

/**
 * Per-rule Prometheus labels in the scheme the reference's statsd → Prometheus mapping produces
 * (its `default_mapper.yaml`): the statsd key `ratelimit.service.rate_limit.<domain>.<l1>.<l2>…`
 * becomes `{domain, key1: <l1>}` for one level and `{domain, key1: <l1>, key2: <l2>}` for two or
 * more (deeper levels fold into their first two, as the mapping's regex does). Each level is
 * written as the config node's stats key: `key_value` for an exact value, `key_<pattern>` for a
 * wildcard (`path_/files/*`), and the bare `key` for a value-less node, so request values never
 * reach a label — except with `detailed_metric`, where every level carries the request's value
 * (`client_id_abc`), capped per rule (see `DetailedLabelCap`).
 */
export interface RuleLabels {
  readonly domain: string;
  readonly key1?: string;
  readonly key2?: string;
}

/** The label text of the value that stands for every value past the cap. */
export const OTHER_VALUE = '_other_';

/** How a config level matched: decides what its label shows. */
type LevelKind = 'exact' | 'wildcard' | 'valueless';

interface Level {
  readonly key: string;
  readonly kind: LevelKind;
  /** The node's value (exact) or pattern (wildcard); undefined when value-less. */
  readonly configValue?: string;
}

/**
 * The levels of a rule, read back from its id `<domain>.<k1>[_<v1>].<k2>…` with the matched
 * request's keys as guides, so dots inside values (paths, IPs, domains) do not split a level.
 * Undefined when the id does not have the expected shape (then the id is split on dots).
 */
export function ruleLevels(rule: LimitRule, entries: readonly DescriptorEntry[]): readonly Level[] | undefined {
  const prefix = `${rule.domain}.`;
  if (!rule.id.startsWith(prefix) || entries.length === 0) return undefined;
  let rest = rule.id.slice(prefix.length);
  const levels: Level[] = [];
  for (let i = 0; i < entries.length; i++) {
    const { key, value } = entries[i]!;
    if (!rest.startsWith(key)) return undefined;
    const after = rest.slice(key.length);
    const next = entries[i + 1];
    if (next === undefined) {
      if (after === '') levels.push({ key, kind: 'valueless' });
      else if (after === `_${value}`) levels.push({ key, kind: 'exact', configValue: value });
      else if (after.startsWith('_')) levels.push({ key, kind: 'wildcard', configValue: after.slice(1) });
      else return undefined;
      return levels;
    }
    if (after.startsWith('.')) {
      levels.push({ key, kind: 'valueless' });
      rest = after.slice(1);
    } else if (after.startsWith(`_${value}.${next.key}`)) {
      levels.push({ key, kind: 'exact', configValue: value });
      rest = after.slice(value.length + 2);
    } else if (after.startsWith('_')) {
      // A wildcard: the pattern ends at the first dot after which the next key follows and
      // which leaves a pattern that matches this request value.
      let end = after.indexOf('.', 1);
      while (end >= 0) {
        const pattern = after.slice(1, end);
        if (after.startsWith(next.key, end + 1) && WildcardPattern.isPattern(pattern) && new WildcardPattern(pattern).matches(value)) {
          break;
        }
        end = after.indexOf('.', end + 1);
      }
      if (end < 0) return undefined;
      levels.push({ key, kind: 'wildcard', configValue: after.slice(1, end) });
      rest = after.slice(end + 1);
    } else {
      return undefined;
    }
  }
  return undefined;
}

/** Labels from up to two level texts. */
function labelsOf(domain: string, texts: readonly string[]): RuleLabels {
  const [key1, key2] = texts;
  return {
    domain,
    ...(key1 !== undefined && { key1 }),
    ...(key2 !== undefined && { key2 }),
  };
}

/**
 * A rule's labels without request values. `entries` are any request that matched the rule (only
 * its keys, and its values at exact and wildcard levels, which the config fixes, are used).
 */
export function staticLabels(rule: LimitRule, entries: readonly DescriptorEntry[]): RuleLabels {
  const levels = ruleLevels(rule, entries);
  if (levels === undefined) {
    const prefix = `${rule.domain}.`;
    const rest = rule.id.startsWith(prefix) ? rule.id.slice(prefix.length) : rule.id.split('.').slice(1).join('.');
    return labelsOf(rule.domain, rest.split('.'));
  }
  return labelsOf(
    rule.domain,
    levels.slice(0, 2).map((level) => (level.configValue === undefined ? level.key : `${level.key}_${level.configValue}`)),
  );
}

/**
 * Labels with the request's values at every level (`detailed_metric`, and limits sent by Envoy in
 * the request). `capped`: past the cap, levels whose value comes from the request show
 * `_other_` instead; with `keepExact`, levels matched by an exact config value keep it (the config
 * bounds them). A limit sent in the request has no config behind it: every level is capped.
 */
export function detailedLabels(
  rule: LimitRule,
  entries: readonly DescriptorEntry[],
  capped: boolean,
  keepExact = true,
): RuleLabels {
  const levels = keepExact ? ruleLevels(rule, entries) : undefined;
  const texts = entries.slice(0, 2).map((entry, i) => {
    const exact = levels?.[i]?.kind === 'exact';
    return `${entry.key}_${capped && !exact ? OTHER_VALUE : entry.value}`;
  });
  return labelsOf(rule.domain, texts);
}

/**
 * Bounds the label sets of detailed rules: each rule (by id) gets at most `max` distinct sets; a
 * request with a new set past that is reported under the `_other_` set. Memory is bounded by the
 * number of rule ids ever loaded × `max`.
 */
export class DetailedLabelCap {
  private readonly seen = new Map<string, Set<string>>();

  constructor(private readonly max: number) {}

  /** Whether this label set (`identity`) must be folded into `_other_` for `ruleId`. */
  overCap(ruleId: string, identity: string): boolean {
    let sets = this.seen.get(ruleId);
    if (sets === undefined) {
      sets = new Set();
      this.seen.set(ruleId, sets);
    }
    if (sets.has(identity)) return false;
    if (sets.size >= this.max) return true;
    sets.add(identity);
    return false;
  }
}
