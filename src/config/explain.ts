import { type DescriptorLevel, type DescriptorNode, type LoadedRateLimitConfig, WildcardPattern } from './rate-limit-config';
import type { DescriptorEntry, LimitRule } from './types';

/**
 * `sluice explain`: why a descriptor gets the limit it gets, or none. A trace of the matcher's
 * steps (`DescriptorLevel.match`, `LoadedRateLimitConfig.getLimit`) over the same tree, read
 * through its read-only accessors; pure, and never on the request path. Its verdict agrees with
 * `getLimit` by construction of the tests (test/unit/config/explain.test.ts).
 */

/** A config node as people write it: `key=value`, or plain `key` for a value-less node. */
export interface NodeLabel {
  readonly key: string;
  readonly value: string | undefined;
}

export interface WildcardTry {
  readonly pattern: string;
  readonly matched: boolean;
}

/** What was tried for one entry, at one level of the tree. */
export interface LevelTrace {
  /** 1-based, as people count the entries. */
  readonly level: number;
  readonly entry: DescriptorEntry;
  /** The keys at this level, in file order (for "no node has key k here"). */
  readonly keysHere: readonly string[];
  /** Whether any node at this level has the entry's key; false ⇒ nothing below was tried. */
  readonly keyKnown: boolean;
  /** The exact `key=value` node (a pattern spelled literally counts, as in the matcher). */
  readonly exactMatched: boolean;
  /** The patterns tried, in file order, up to the first that matched; none when exact matched. */
  readonly wildcards: readonly WildcardTry[];
  /** Undefined when not tried (exact or a pattern matched); else whether a value-less node exists. */
  readonly valuelessMatched: boolean | undefined;
  /** The node the entry matched; undefined ⇒ the trace ends here with no limit. */
  readonly node: NodeLabel | undefined;
}

/** A key path of the domain that carries at least one limit. */
export interface RulePath {
  readonly keys: readonly string[];
  readonly rules: readonly LimitRule[];
  /** The config nodes along the path, root first. */
  readonly nodes: readonly NodeLabel[];
}

export type Verdict =
  | { readonly kind: 'limited'; readonly rules: readonly LimitRule[] }
  | { readonly kind: 'unknown-domain'; readonly domains: readonly string[] }
  | { readonly kind: 'empty' }
  /** The entry at `level` matched no node. */
  | { readonly kind: 'no-match'; readonly level: number }
  /** The node matched at `level` has no children but the descriptor goes on. */
  | { readonly kind: 'too-deep'; readonly level: number; readonly node: NodeLabel }
  /** The descriptor ends at a node with neither a limit nor children: a whitelist entry. */
  | { readonly kind: 'whitelisted'; readonly level: number; readonly node: NodeLabel }
  /** The descriptor ends at a node without a limit of its own, whose limits are deeper (`deeper`). */
  | { readonly kind: 'stops-early'; readonly level: number; readonly node: NodeLabel; readonly deeper: readonly RulePath[] };

/**
 * Another limit of the domain that the descriptor's keys almost reach: the same keys in another
 * order, or a key path that is a prefix of the descriptor's (`shallower`) or extends it (`deeper`).
 */
export interface NearMiss {
  readonly kind: 'order' | 'shallower' | 'deeper';
  readonly path: RulePath;
}

export interface DescriptorExplanation {
  readonly domain: string;
  readonly entries: readonly DescriptorEntry[];
  readonly levels: readonly LevelTrace[];
  readonly verdict: Verdict;
  readonly nearMisses: readonly NearMiss[];
  /**
   * Names of the matched limits that another descriptor of the same request `replaces`, with the
   * index of that descriptor: in such a request those limits are dropped. Filled by `explainRequest`.
   */
  readonly replacedBy: readonly { readonly name: string; readonly descriptor: number }[];
}

/** Traces one descriptor through `domain`'s tree. */
export function explainDescriptor(
  config: LoadedRateLimitConfig,
  domain: string,
  entries: readonly DescriptorEntry[],
): DescriptorExplanation {
  const root = config.tree(domain);
  const base = { domain, entries, replacedBy: [] };
  if (root === undefined) {
    return { ...base, levels: [], verdict: { kind: 'unknown-domain', domains: config.domains() }, nearMisses: [] };
  }
  const paths = rulePaths(root);
  if (entries.length === 0) {
    return { ...base, levels: [], verdict: { kind: 'empty' }, nearMisses: nearMisses(paths, [], []) };
  }
  const levels: LevelTrace[] = [];
  let level: DescriptorLevel = root;
  let verdict: Verdict | undefined;
  for (let i = 0; i < entries.length && verdict === undefined; i++) {
    const entry = entries[i]!;
    const { trace, node } = traceLevel(level, i + 1, entry);
    levels.push(trace);
    if (node === undefined) {
      verdict = { kind: 'no-match', level: i + 1 };
    } else if (i === entries.length - 1) {
      if (node.rules.length > 0) verdict = { kind: 'limited', rules: node.rules };
      else if (node.children.isEmpty) verdict = { kind: 'whitelisted', level: i + 1, node: label(node) };
      else {
        const prefix = entries.slice(0, i + 1).map((e) => e.key);
        const walked = levels.map((t) => t.node!);
        const deeper = rulePaths(node.children).map((p) => ({
          keys: [...prefix, ...p.keys],
          rules: p.rules,
          nodes: [...walked, ...p.nodes],
        }));
        verdict = { kind: 'stops-early', level: i + 1, node: label(node), deeper };
      }
    } else if (node.children.isEmpty) {
      verdict = { kind: 'too-deep', level: i + 1, node: label(node) };
    } else {
      level = node.children;
    }
  }
  const final = verdict!;
  const mentioned = new Set<LimitRule>();
  if (final.kind === 'limited') final.rules.forEach((r) => mentioned.add(r));
  if (final.kind === 'stops-early') final.deeper.forEach((p) => p.rules.forEach((r) => mentioned.add(r)));
  return { ...base, levels, verdict: final, nearMisses: nearMisses(paths, entries, [...mentioned]) };
}

/** Traces every descriptor of one request, and notes limits that another of them `replaces`. */
export function explainRequest(
  config: LoadedRateLimitConfig,
  domain: string,
  descriptors: readonly (readonly DescriptorEntry[])[],
): DescriptorExplanation[] {
  const explained = descriptors.map((entries) => explainDescriptor(config, domain, entries));
  const replacers = new Map<string, number>();
  explained.forEach((e, i) => {
    // As the limiter: the `replaces` of every rule of the matched node (each item of a
    // `rate_limits:` list, unlimited ones included).
    for (const rule of matchedRules(e)) {
      for (const name of rule.replaces) if (!replacers.has(name)) replacers.set(name, i);
    }
  });
  return explained.map((e) => {
    const replacedBy = matchedRules(e).flatMap((rule) =>
      rule.name !== undefined && replacers.has(rule.name) ? [{ name: rule.name, descriptor: replacers.get(rule.name)! }] : [],
    );
    return replacedBy.length === 0 ? e : { ...e, replacedBy };
  });
}

function matchedRules(e: DescriptorExplanation): readonly LimitRule[] {
  return e.verdict.kind === 'limited' ? e.verdict.rules : [];
}

/** The matcher's three steps for one entry (DescriptorLevel.match), recorded. */
function traceLevel(level: DescriptorLevel, n: number, entry: DescriptorEntry): { trace: LevelTrace; node: DescriptorNode | undefined } {
  const keysHere = level.keys();
  const nodes = level.nodesOf(entry.key);
  const trace = { level: n, entry, keysHere };
  if (nodes === undefined) {
    return {
      trace: { ...trace, keyKnown: false, exactMatched: false, wildcards: [], valuelessMatched: undefined, node: undefined },
      node: undefined,
    };
  }
  const exact = nodes.exact.get(entry.value);
  if (exact !== undefined) {
    return {
      trace: { ...trace, keyKnown: true, exactMatched: true, wildcards: [], valuelessMatched: undefined, node: label(exact) },
      node: exact,
    };
  }
  const wildcards: WildcardTry[] = [];
  for (const candidate of nodes.wildcards) {
    const matched = candidate.pattern?.matches(entry.value) === true;
    wildcards.push({ pattern: candidate.value!, matched });
    if (matched) {
      return {
        trace: { ...trace, keyKnown: true, exactMatched: false, wildcards, valuelessMatched: undefined, node: label(candidate) },
        node: candidate,
      };
    }
  }
  const valueless = nodes.valueless;
  return {
    trace: {
      ...trace,
      keyKnown: true,
      exactMatched: false,
      wildcards,
      valuelessMatched: valueless !== undefined,
      node: valueless === undefined ? undefined : label(valueless),
    },
    node: valueless,
  };
}

function label(node: DescriptorNode): NodeLabel {
  return { key: node.key, value: node.value };
}

/** Every node of the tree under `level` that carries limits, as key paths, in file order. */
function rulePaths(level: DescriptorLevel, prefix: readonly DescriptorNode[] = []): RulePath[] {
  const out: RulePath[] = [];
  for (const key of level.keys()) {
    const nodes = level.nodesOf(key)!;
    const all = [...nodes.exact.values(), ...(nodes.valueless === undefined ? [] : [nodes.valueless])];
    for (const node of all) {
      const path = [...prefix, node];
      if (node.rules.length > 0) out.push({ keys: path.map((n) => n.key), rules: node.rules, nodes: path.map(label) });
      out.push(...rulePaths(node.children, path));
    }
  }
  return out;
}

/** Whether a node could take this value (any of the three steps, ignoring which would win). */
function couldMatch(node: NodeLabel, value: string): boolean {
  if (node.value === undefined || node.value === value) return true;
  return WildcardPattern.isPattern(node.value) && new WildcardPattern(node.value).matches(value);
}

/**
 * Limits whose key path is the descriptor's keys reordered, or one extending the other, and whose
 * nodes could take the descriptor's values for the keys they share (so `client_id=premium` is no
 * near miss of `client_id=web`).
 */
function nearMisses(
  paths: readonly RulePath[],
  entries: readonly DescriptorEntry[],
  mentioned: readonly LimitRule[],
): NearMiss[] {
  const keys = entries.map((e) => e.key);
  const out: NearMiss[] = [];
  const sorted = [...keys].sort().join('\u0000');
  const valueOf = (key: string): string => entries.find((e) => e.key === key)!.value;
  for (const path of paths) {
    if (path.rules.some((r) => mentioned.includes(r))) continue;
    const k = path.keys;
    if (sameList(k, keys)) continue;
    const shared = Math.min(k.length, keys.length);
    const prefixFits = (): boolean => path.nodes.slice(0, shared).every((node, j) => couldMatch(node, entries[j]!.value));
    if (k.length === keys.length && [...k].sort().join('\u0000') === sorted) {
      if (path.nodes.every((node) => couldMatch(node, valueOf(node.key)))) out.push({ kind: 'order', path });
    } else if (k.length < keys.length && sameList(k, keys.slice(0, k.length))) {
      if (prefixFits()) out.push({ kind: 'shallower', path });
    } else if (k.length > keys.length && keys.length > 0 && sameList(k.slice(0, keys.length), keys)) {
      if (prefixFits()) out.push({ kind: 'deeper', path });
    }
  }
  return out;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

// ---- text ----

export function formatNode(node: NodeLabel): string {
  return node.value === undefined ? node.key : `${node.key}=${node.value}`;
}

export function formatKeys(keys: readonly string[]): string {
  return `(${keys.join(', ')})`;
}

function formatRule(rule: LimitRule): string {
  const limit = rule.limit;
  const amount =
    limit === undefined
      ? 'unlimited'
      : `${limit.requestsPerUnit} per ${limit.unitMultiplier === 1 ? '' : `${limit.unitMultiplier} `}${limit.unit.toLowerCase()}` +
        `, ${limit.algorithm}${limit.burst !== undefined ? ` (burst ${limit.burst})` : ''}`;
  const flags = [`name ${rule.name ?? '-'}`, `shadow ${rule.shadowMode ? 'on' : 'off'}`];
  if (rule.quotaMode) flags.push('quota mode');
  const id = rule.limitIndex === undefined ? rule.id : `${rule.id}[${rule.limitIndex}]`;
  return `rule ${id}: ${amount}, ${flags.join(', ')}`;
}

function formatPathRules(path: RulePath): string {
  const ids = [...new Set(path.rules.map((r) => r.id))];
  return `${formatKeys(path.keys)} [${ids.join(', ')}]`;
}

/** Paths with the same keys as one, their rules together (`client_id` and `client_id=premium`). */
function byKeys<T extends { readonly path: RulePath }>(items: readonly T[]): T[] {
  const out: T[] = [];
  for (const item of items) {
    const same = out.findIndex((o) => sameList(o.path.keys, item.path.keys));
    if (same < 0) out.push(item);
    else {
      const had = out[same]!;
      out[same] = { ...had, path: { ...had.path, rules: [...had.path.rules, ...item.path.rules] } };
    }
  }
  return out;
}

function formatLevel(t: LevelTrace): string {
  const head = `level ${t.level}  ${t.entry.key}=${t.entry.value}: `;
  if (!t.keyKnown) {
    const shown = t.keysHere.length > 12 ? [...t.keysHere.slice(0, 12), '…'] : t.keysHere;
    return `${head}no node has key ${t.entry.key} at this level (keys here: ${shown.join(', ') || 'none'})`;
  }
  if (t.exactMatched) return `${head}exact node ${t.entry.key}=${t.entry.value} matched`;
  const parts = [`exact node ${t.entry.key}=${t.entry.value} absent`];
  if (t.wildcards.length === 0) parts.push('no wildcard patterns');
  else parts.push(`patterns ${t.wildcards.map((w) => `${w.pattern} ${w.matched ? 'matched' : 'no'}`).join(', ')}`);
  if (t.valuelessMatched !== undefined) {
    parts.push(`value-less node ${t.entry.key} ${t.valuelessMatched ? 'matched' : 'absent'}`);
  }
  return `${head}${parts.join('; ')}${t.node !== undefined ? ` ⇒ node ${formatNode(t.node)}` : ''}`;
}

function formatVerdict(e: DescriptorExplanation): string[] {
  const v = e.verdict;
  const n = e.entries.length;
  switch (v.kind) {
    case 'limited':
      return v.rules.map((rule) => `⇒ ${formatRule(rule)}`);
    case 'unknown-domain':
      return [`⇒ no limit: unknown domain "${e.domain}" (domains: ${v.domains.join(', ') || 'none'})`];
    case 'empty':
      return ['⇒ no limit: the descriptor has no entries'];
    case 'no-match': {
      const entry = e.entries[v.level - 1]!;
      return [`⇒ no limit: ${entry.key}=${entry.value} matches no node at level ${v.level}`];
    }
    case 'too-deep':
      return [
        `⇒ no limit: matched ${formatNode(v.node)} at level ${v.level} but the descriptor has ${n} entries ` +
          'and that node has no children',
      ];
    case 'whitelisted':
      return [`⇒ no limit: the descriptor ends at ${formatNode(v.node)}, which has no rate_limit (a whitelist entry)`];
    case 'stops-early':
      return [
        `⇒ no limit: ${formatNode(v.node)} at level ${v.level} has no limit of its own`,
        ...byKeys(v.deeper.map((path) => ({ path }))).map(
          ({ path }) => `   the limit is on ${formatPathRules(path)} but the descriptor stops at level ${v.level}`,
        ),
      ];
  }
}

/** The lines `sluice explain` prints for one descriptor (its index in the request is `index`). */
export function formatExplanation(e: DescriptorExplanation, index: number): string[] {
  const lines = [`descriptor [${index}] ${e.entries.map((x) => `${x.key}=${x.value}`).join(',')}`];
  for (const t of e.levels) lines.push(`  ${formatLevel(t)}`);
  for (const line of formatVerdict(e)) lines.push(`  ${line}`);
  for (const r of e.replacedBy) {
    lines.push(`  note: limit "${r.name}" is replaced by descriptor [${r.descriptor}] of this request ⇒ not applied with it`);
  }
  if (e.verdict.kind === 'limited' && e.verdict.rules.every((r) => r.shadowMode)) {
    lines.push('  note: shadow mode: counted and reported, never rejects');
  }
  if (e.nearMisses.length > 0) {
    lines.push('  near misses:');
    for (const miss of byKind(e.nearMisses)) {
      const path = formatPathRules(miss.path);
      switch (miss.kind) {
        case 'order':
          lines.push(`    entry order matters: a rule exists for ${path}`);
          break;
        case 'shallower':
          lines.push(`    depth: a rule exists for ${path}; it applies only to a descriptor that ends at level ${miss.path.keys.length}`);
          break;
        case 'deeper':
          lines.push(`    depth: a rule exists for ${path} but the descriptor stops at level ${n(e)}`);
          break;
      }
    }
  }
  return lines;
}

function byKind(misses: readonly NearMiss[]): NearMiss[] {
  const kinds: NearMiss['kind'][] = ['order', 'shallower', 'deeper'];
  return kinds.flatMap((kind) => byKeys(misses.filter((m) => m.kind === kind)));
}

function n(e: DescriptorExplanation): number {
  return e.entries.length;
}
