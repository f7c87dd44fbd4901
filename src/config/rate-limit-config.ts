import type { DescriptorEntry, LimitRule, MatchedLimit, RateLimitConfig } from './types';

/**
 * A `value` containing `*`, compiled once at load. Each `*` matches zero or more characters and the
 * literal pieces must appear in order (reference #1085), so `foo*` is a prefix rule, `*` matches
 * anything including the empty string, and `a*b*c` needs `a…b…c`.
 */
export class WildcardPattern {
  private readonly prefix: string;
  private readonly suffix: string;
  private readonly middles: readonly string[];
  private readonly minLength: number;

  constructor(readonly source: string) {
    const pieces = source.split('*');
    // split() on a string containing `*` always yields at least two pieces.
    this.prefix = pieces[0] ?? '';
    this.suffix = pieces[pieces.length - 1] ?? '';
    this.middles = pieces.slice(1, -1).filter((piece) => piece.length > 0);
    this.minLength = pieces.reduce((sum, piece) => sum + piece.length, 0);
  }

  static isPattern(value: string): boolean {
    return value.includes('*');
  }

  matches(value: string): boolean {
    if (value.length < this.minLength || !value.startsWith(this.prefix) || !value.endsWith(this.suffix)) {
      return false;
    }
    // The suffix is anchored at the end, so middles must fit strictly between prefix and suffix.
    let from = this.prefix.length;
    const end = value.length - this.suffix.length;
    for (const middle of this.middles) {
      const at = value.indexOf(middle, from);
      if (at < 0 || at + middle.length > end) {
        return false;
      }
      from = at + middle.length;
    }
    return true;
  }
}

/** One `descriptors[]` item of the config tree. */
export class DescriptorNode {
  readonly pattern: WildcardPattern | undefined;
  readonly children = new DescriptorLevel();

  constructor(
    readonly key: string,
    /** Undefined for a value-less node, which matches every value of `key`. */
    readonly value: string | undefined,
    /** The node's limits: none, its `rate_limit`, or the items of its `rate_limits` list. */
    readonly rules: readonly LimitRule[],
    readonly shareThreshold: boolean,
  ) {
    this.pattern = value !== undefined && WildcardPattern.isPattern(value) ? new WildcardPattern(value) : undefined;
  }
}

/** The nodes of one level that share a key; the three buckets are the three match steps. */
export interface KeyNodes {
  readonly exact: Map<string, DescriptorNode>;
  readonly wildcards: DescriptorNode[];
  valueless: DescriptorNode | undefined;
}

/**
 * The children of one node (or a domain's top level). Nodes are indexed by key, then by value, so
 * `a_b`/`c` and `a`/`b_c` never collide the way the reference's `key_value` strings do.
 */
export class DescriptorLevel {
  private readonly byKey = new Map<string, KeyNodes>();

  get isEmpty(): boolean {
    return this.byKey.size === 0;
  }

  /** Adds `node` unless a node with the same key and value already sits here; false means duplicate. */
  add(node: DescriptorNode): boolean {
    let nodes = this.byKey.get(node.key);
    if (nodes === undefined) {
      nodes = { exact: new Map(), wildcards: [], valueless: undefined };
      this.byKey.set(node.key, nodes);
    }
    if (node.value === undefined) {
      if (nodes.valueless !== undefined) {
        return false;
      }
      nodes.valueless = node;
      return true;
    }
    if (nodes.exact.has(node.value)) {
      return false;
    }
    // Patterns also go in the exact map: a request value that spells the pattern itself matches it
    // before any earlier, broader pattern, as in the reference.
    nodes.exact.set(node.value, node);
    if (node.pattern !== undefined) {
      nodes.wildcards.push(node);
    }
    return true;
  }

  /** Read-only, for `explain.ts`: the keys of this level, in file order. */
  keys(): readonly string[] {
    return [...this.byKey.keys()];
  }

  /**
   * Read-only, for `explain.ts`: the three match buckets of `key` (patterns sit in `exact` too, as
   * `match` looks them up). Undefined when no node here has that key.
   */
  nodesOf(key: string): Readonly<KeyNodes> | undefined {
    return this.byKey.get(key);
  }

  /** Exact value, then the first matching pattern in file order, then the value-less node. */
  match(key: string, value: string): DescriptorNode | undefined {
    const nodes = this.byKey.get(key);
    if (nodes === undefined) {
      return undefined;
    }
    const exact = nodes.exact.get(value);
    if (exact !== undefined) {
      return exact;
    }
    for (const node of nodes.wildcards) {
      if (node.pattern !== undefined && node.pattern.matches(value)) {
        return node;
      }
    }
    return nodes.valueless;
  }
}

/**
 * The loaded configuration. Built once by `load.ts`; nothing here mutates after construction, and
 * `getLimit` does only map lookups per entry plus one result object (and a copy of the entries only
 * when a `share_threshold` pattern rewrites one).
 */
export class LoadedRateLimitConfig implements RateLimitConfig {
  private readonly domainNames: readonly string[];
  private readonly ruleList: readonly LimitRule[];

  constructor(
    private readonly roots: ReadonlyMap<string, DescriptorLevel>,
    rules: readonly LimitRule[],
  ) {
    this.domainNames = Object.freeze([...roots.keys()]);
    this.ruleList = Object.freeze([...rules]);
  }

  hasDomain(domain: string): boolean {
    return this.roots.has(domain);
  }

  getLimit(domain: string, entries: readonly DescriptorEntry[]): MatchedLimit | undefined {
    let level = this.roots.get(domain);
    const last = entries.length - 1;
    if (level === undefined || last < 0) {
      return undefined;
    }
    let shared: DescriptorEntry[] | undefined;
    for (let i = 0; i <= last; i++) {
      const entry = entries[i] as DescriptorEntry;
      const node: DescriptorNode | undefined = level.match(entry.key, entry.value);
      if (node === undefined) {
        return undefined;
      }
      if (node.shareThreshold && node.value !== undefined) {
        shared ??= entries.slice();
        shared[i] = { key: entry.key, value: node.value };
      }
      if (i === last) {
        const rule = node.rules[0];
        if (rule === undefined) {
          return undefined;
        }
        const counterEntries = shared ?? entries;
        return rule.limitIndex === undefined ? { rule, counterEntries } : { rule, rules: node.rules, counterEntries };
      }
      if (node.children.isEmpty) {
        return undefined;
      }
      level = node.children;
    }
    return undefined;
  }

  rules(): readonly LimitRule[] {
    return this.ruleList;
  }

  /** Read-only, for `explain.ts`: the top level of `domain`'s tree; undefined for an unknown domain. */
  tree(domain: string): DescriptorLevel | undefined {
    return this.roots.get(domain);
  }

  domains(): readonly string[] {
    return this.domainNames;
  }
}
