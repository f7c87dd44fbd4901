import { isAlias, isMap, isScalar, isSeq, type Document, type YAMLMap } from 'yaml';
import { configProblem } from './config-problem';
import { CHECK_FAILED } from './config-schema';
import type { ConfigProblem } from './types';
import { INVALID, childPath, describeNode, isEmpty, type Field, type Invalid } from './yaml-nodes';

/**
 * The most map levels one file may expand to, each alias and merge key counted every time it is
 * expanded. A YAML file can name a map once and repeat it through aliases, each repeat naming the
 * level below ten times: 600 bytes then describe a million descriptors ("billion laughs"), which
 * froze the service for half a minute while it walked them. Real configs are far below this (the
 * bundled example has a few dozen maps; a config with a thousand descriptors, each with a
 * rate_limit, about 2,000); walking this many takes well under a second.
 */
export const MAX_MAPS_PER_FILE = 20_000;

/**
 * Reads one file's YAML map levels and leaves, reporting problems against the file; never throws
 * on bad input. The readers of each part of the format (rate-limit-reader.ts, file-parser.ts)
 * share one per file.
 */
export class YamlFieldReader {
  /** The parsed document, once there is one: aliases resolve against it. */
  doc: Document.Parsed | undefined;
  /** Map levels read so far, aliases and merge keys counted at each expansion. */
  private mapsRead = 0;
  /** Set once the file expanded past MAX_MAPS_PER_FILE: it is refused, and readers stop walking it. */
  exhausted: ConfigProblem | undefined;

  constructor(
    private readonly file: string,
    private readonly problems: ConfigProblem[],
  ) {}

  report(yamlPath: string, reason: string): void {
    this.problems.push(configProblem(this.file, yamlPath, reason));
  }

  resolve(node: unknown): unknown {
    return isAlias(node) && this.doc !== undefined ? node.resolve(this.doc) : node;
  }

  /**
   * The allowed keys of one map level. Unknown keys are rejected here, per level, so `unit` on a
   * descriptor is an error (the reference's flat allow-list lets it pass and silently whitelists).
   */
  readMap(map: YAMLMap, mapPath: string, allowed: ReadonlySet<string>): Map<string, Field> {
    const fields = new Map<string, Field>();
    if (this.exhausted !== undefined) return fields;
    if (++this.mapsRead > MAX_MAPS_PER_FILE) {
      this.exhausted = configProblem(
        this.file,
        mapPath,
        `config error, the file expands to more than ${MAX_MAPS_PER_FILE} maps (YAML aliases or merge keys repeat ` +
          'parts of it); refused without reading further',
      );
      this.problems.push(this.exhausted);
      return fields;
    }
    const merged: YAMLMap[] = [];
    for (const pair of map.items) {
      if (isScalar(pair.key) && typeof pair.key.value === 'symbol') {
        this.collectMergeSources(pair.value, mapPath, merged);
        continue;
      }
      const key = this.resolve(pair.key);
      if (!isScalar(key) || typeof key.value !== 'string') {
        this.report(mapPath, `config error, key is not of type string: ${describeNode(key)}`);
        continue;
      }
      const fieldPath = childPath(mapPath, key.value);
      if (!allowed.has(key.value)) {
        this.report(fieldPath, `config error, unknown key '${key.value}'`);
        continue;
      }
      fields.set(key.value, { node: this.resolve(pair.value), path: fieldPath });
    }
    // `<<: *base` fills in only keys the map does not set itself; earlier sources win, per YAML 1.1.
    for (const source of merged) {
      for (const [name, field] of this.readMap(source, mapPath, allowed)) {
        if (!fields.has(name)) {
          fields.set(name, field);
        }
      }
    }
    return fields;
  }

  private collectMergeSources(value: unknown, mapPath: string, into: YAMLMap[]): void {
    const node = this.resolve(value);
    const sources = isSeq(node) ? node.items.map((item) => this.resolve(item)) : [node];
    for (const source of sources) {
      if (isMap(source)) {
        into.push(source);
      } else {
        this.report(mapPath, CHECK_FAILED);
      }
    }
  }

  /**
   * The map items of a list field, each with its path and index: the reference's lists of
   * descriptors, `rate_limits` and `replaces`. A field that is not a list is reported; an item that
   * is not a map is reported when reached and skipped, so problems keep the file's order. Absent or
   * null: no items.
   */
  *mapItems(field: Field | undefined): Generator<{ readonly node: YAMLMap; readonly path: string; readonly index: number }> {
    if (field === undefined || isEmpty(field.node)) {
      return;
    }
    if (!isSeq(field.node)) {
      this.report(field.path, CHECK_FAILED);
      return;
    }
    for (const [index, item] of field.node.items.entries()) {
      const path = `${field.path}[${index}]`;
      const node = this.resolve(item);
      if (isMap(node)) {
        yield { node, path, index };
      } else {
        this.report(path, `config error, yaml file contains list of type other than map: ${describeNode(node)}`);
      }
    }
  }

  /** A string leaf. Numbers and booleans count as their source text, as go-yaml does for string fields. */
  readString(field: Field | undefined): string | undefined | Invalid {
    if (field === undefined || isEmpty(field.node)) {
      return undefined;
    }
    if (!isScalar(field.node)) {
      this.report(field.path, CHECK_FAILED);
      return INVALID;
    }
    const value = field.node.value;
    return typeof value === 'string' ? value : (field.node.source ?? String(value));
  }

  readBool(field: Field | undefined): boolean | undefined | Invalid {
    if (field === undefined || isEmpty(field.node)) {
      return undefined;
    }
    if (isScalar(field.node) && typeof field.node.value === 'boolean') {
      return field.node.value;
    }
    this.report(field.path, CHECK_FAILED);
    return INVALID;
  }

  /** bigint for an integer, number for any other numeric (a float); wrong types are reported here. */
  readNumber(field: Field | undefined): bigint | number | undefined | Invalid {
    if (field === undefined || isEmpty(field.node)) {
      return undefined;
    }
    if (isScalar(field.node) && (typeof field.node.value === 'bigint' || typeof field.node.value === 'number')) {
      return field.node.value;
    }
    this.report(field.path, CHECK_FAILED);
    return INVALID;
  }
}
