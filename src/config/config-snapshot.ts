import { DescriptorLevel, DescriptorNode, LoadedRateLimitConfig } from './rate-limit-config';
import type { LimitRule } from './types';

/**
 * A checked config as UTF-8 JSON in a few buffers, so the reload worker can hand it on by transfer
 * and the reload host can send it to sluice a slice per IPC message, and the main thread can
 * re-link it a slice at a time. Slices, not one buffer: the IPC channel assembles each message in
 * one piece on the receiving thread, and filling 2.7 MB of fresh memory (the largest config the
 * bounds accept) took that thread 7-11 ms here, in one turn. A serialized copy of the config's
 * objects would be taken apart in one piece too (measured with structured clone: 29 ms for 10,000
 * rules, 120-180 ms for 40,000), and classes and their Maps do not survive one anyway.
 */
export interface ConfigSnapshot {
  readonly domains: readonly string[];
  /**
   * First the rules, SNAPSHOT_CHUNK per slice, each rule's `JSON.stringify` back to back, in file
   * order; then each slice of nodes as one JSON array of `SnapshotNode`s (pre-order walk of every
   * domain's tree).
   */
  readonly slices: readonly Uint8Array[];
  /** Where each rule's JSON ends within its slice. */
  readonly ruleEnds: Uint32Array;
}

/** What to list in postMessage's transfer list to hand `snapshot` over without a copy. */
export function transferablesOf(snapshot: ConfigSnapshot): ArrayBuffer[] {
  return [...snapshot.slices.map((slice) => slice.buffer), snapshot.ruleEnds.buffer] as ArrayBuffer[];
}

/** How many of `snapshot.slices` hold rules. */
function ruleSliceCount(snapshot: Pick<ConfigSnapshot, 'ruleEnds'>): number {
  return Math.ceil(snapshot.ruleEnds.length / SNAPSHOT_CHUNK);
}

/**
 * `[parent, key, value (null: none), shareThreshold, rule indices]`. `parent` ≥ 0 is the index of
 * an earlier node; -1 - d is the top level of domain d.
 */
export type SnapshotNode = readonly [number, string, string | null, boolean, readonly number[]];

/** Nodes per slice, and rules per slice on re-linking: 1-2 ms of main-thread work on an idle core. */
export const SNAPSHOT_CHUNK = 1_000;

/**
 * `config` as a snapshot. Nodes are listed per level key by key, exact (and pattern) values in
 * insertion order, then the value-less node: re-adding them in that order rebuilds each level's
 * maps and its wildcard order exactly as they were.
 */
export function snapshotOf(config: LoadedRateLimitConfig): ConfigSnapshot {
  const rules = config.rules();
  const ruleIndex = new Map<LimitRule, number>(rules.map((rule, i) => [rule, i]));
  const nodes: SnapshotNode[] = [];
  const walk = (level: DescriptorLevel, parent: number): void => {
    for (const key of level.keys()) {
      const bucket = level.nodesOf(key);
      if (bucket === undefined) continue;
      const members = bucket.valueless === undefined ? [...bucket.exact.values()] : [...bucket.exact.values(), bucket.valueless];
      for (const node of members) {
        const index = nodes.length;
        nodes.push([parent, node.key, node.value ?? null, node.shareThreshold, node.rules.map((rule) => ruleIndex.get(rule) ?? -1)]);
        walk(node.children, index);
      }
    }
  };
  const domains = config.domains();
  domains.forEach((name, d) => {
    const root = config.tree(name);
    if (root !== undefined) walk(root, -1 - d);
  });
  const encoder = new TextEncoder();
  const ruleEnds = new Uint32Array(rules.length);
  const slices: Uint8Array[] = [];
  for (let first = 0; first < rules.length; first += SNAPSHOT_CHUNK) {
    const pieces = rules.slice(first, first + SNAPSHOT_CHUNK).map((rule) => encoder.encode(JSON.stringify(rule)));
    let end = 0;
    pieces.forEach((piece, i) => {
      end += piece.length;
      ruleEnds[first + i] = end;
    });
    slices.push(joined(pieces, end));
  }
  for (let i = 0; i < nodes.length; i += SNAPSHOT_CHUNK) slices.push(encoder.encode(JSON.stringify(nodes.slice(i, i + SNAPSHOT_CHUNK))));
  return { domains: [...domains], slices, ruleEnds };
}

/** `pieces` in one buffer of its own (not Node's shared pool, so it can be transferred). */
function joined(pieces: readonly Uint8Array[], length: number): Uint8Array {
  const whole = new Uint8Array(length);
  let at = 0;
  for (const piece of pieces) {
    whole.set(piece, at);
    at += piece.length;
  }
  return whole;
}

/** A re-linked snapshot: the config, and each rule's JSON (what the reload log compares rules by). */
export interface RelinkedConfig {
  readonly config: LoadedRateLimitConfig;
  readonly ruleJson: readonly string[];
}

/**
 * The config a snapshot describes, re-linked a slice at a time with `pause()` between slices (the
 * main thread passes a turn of the event loop, so calls keep being answered meanwhile). Rejects if
 * the snapshot is not one `snapshotOf` made.
 */
export async function configFromSnapshot(snapshot: ConfigSnapshot, pause: () => Promise<void>): Promise<RelinkedConfig> {
  const decoder = new TextDecoder();
  const { slices, ruleEnds } = snapshot;
  const ruleSlices = ruleSliceCount(snapshot);
  const rules: LimitRule[] = [];
  const ruleJson: string[] = [];
  for (let s = 0; s < ruleSlices; s++) {
    // Before each slice, the first too: the turn that brought the reply does nothing more.
    await pause();
    const slice = slices[s];
    if (slice === undefined) throw new Error(`config snapshot: rule slice ${s} is missing`);
    let from = 0;
    for (let i = s * SNAPSHOT_CHUNK; i < Math.min(ruleEnds.length, (s + 1) * SNAPSHOT_CHUNK); i++) {
      const end = ruleEnds[i] as number;
      const json = decoder.decode(slice.subarray(from, end));
      from = end;
      ruleJson.push(json);
      rules.push(JSON.parse(json) as LimitRule);
    }
  }
  const roots = new Map<string, DescriptorLevel>(snapshot.domains.map((name) => [name, new DescriptorLevel()]));
  const levels = [...roots.values()];
  const built: DescriptorNode[] = [];
  for (const slice of slices.slice(ruleSlices)) {
    await pause();
    for (const [parent, key, value, shareThreshold, ruleIndices] of JSON.parse(decoder.decode(slice)) as SnapshotNode[]) {
      const nodeRules = ruleIndices.map((i) => {
        const rule = rules[i];
        if (rule === undefined) throw new Error(`config snapshot: rule ${i} does not exist`);
        return rule;
      });
      const node = new DescriptorNode(key, value ?? undefined, nodeRules, shareThreshold);
      const level = parent >= 0 ? built[parent]?.children : levels[-1 - parent];
      if (level === undefined || !level.add(node)) throw new Error(`config snapshot: node ${built.length} does not fit`);
      built.push(node);
    }
  }
  return { config: new LoadedRateLimitConfig(roots, rules), ruleJson };
}
