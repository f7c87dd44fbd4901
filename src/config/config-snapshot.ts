import { DescriptorLevel, DescriptorNode, LoadedRateLimitConfig } from './rate-limit-config';
import type { LimitRule } from './types';

/**
 * A checked config as UTF-8 JSON in one buffer, so the reload worker can hand it to the main
 * thread by transfer (no copy, nothing to take apart) and the main thread can re-link it a slice
 * at a time. A structured clone of the config's objects would be taken apart in one piece on the
 * main thread (measured: 29 ms for 10,000 rules, 120-180 ms for 40,000), and classes and their
 * Maps do not survive one anyway.
 */
export interface ConfigSnapshot {
  readonly domains: readonly string[];
  /** Each rule's `JSON.stringify`, in file order, then each slice of nodes as JSON, back to back. */
  readonly text: Uint8Array;
  /** Where each rule's JSON ends in `text`. */
  readonly ruleEnds: Uint32Array;
  /** Where each slice of `SnapshotNode`s ends in `text` (pre-order walk of every domain's tree). */
  readonly nodeChunkEnds: Uint32Array;
}

/** What to list in postMessage's transfer list to hand `snapshot` over without a copy. */
export function transferablesOf(snapshot: ConfigSnapshot): ArrayBuffer[] {
  return [snapshot.text.buffer, snapshot.ruleEnds.buffer, snapshot.nodeChunkEnds.buffer] as ArrayBuffer[];
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
  const pieces: Uint8Array[] = [];
  const encoder = new TextEncoder();
  let length = 0;
  const append = (json: string): number => {
    const bytes = encoder.encode(json);
    pieces.push(bytes);
    length += bytes.length;
    return length;
  };
  const ruleEnds = Uint32Array.from(rules, (rule) => append(JSON.stringify(rule)));
  const chunkEnds: number[] = [];
  for (let i = 0; i < nodes.length; i += SNAPSHOT_CHUNK) chunkEnds.push(append(JSON.stringify(nodes.slice(i, i + SNAPSHOT_CHUNK))));
  // One buffer of its own (not Node's shared pool), so it can be transferred.
  const text = new Uint8Array(length);
  let at = 0;
  for (const piece of pieces) {
    text.set(piece, at);
    at += piece.length;
  }
  return { domains: [...domains], text, ruleEnds, nodeChunkEnds: Uint32Array.from(chunkEnds) };
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
  const { text } = snapshot;
  let from = 0;
  const next = (end: number): string => {
    const json = decoder.decode(text.subarray(from, end));
    from = end;
    return json;
  };
  const rules: LimitRule[] = [];
  const ruleJson: string[] = [];
  for (let i = 0; i < snapshot.ruleEnds.length; i++) {
    const json = next(snapshot.ruleEnds[i] as number);
    ruleJson.push(json);
    rules.push(JSON.parse(json) as LimitRule);
    if ((i + 1) % SNAPSHOT_CHUNK === 0) await pause();
  }
  const roots = new Map<string, DescriptorLevel>(snapshot.domains.map((name) => [name, new DescriptorLevel()]));
  const levels = [...roots.values()];
  const built: DescriptorNode[] = [];
  for (const end of snapshot.nodeChunkEnds) {
    await pause();
    for (const [parent, key, value, shareThreshold, ruleIndices] of JSON.parse(next(end)) as SnapshotNode[]) {
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
