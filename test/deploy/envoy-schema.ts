import * as fs from 'node:fs';
import * as path from 'node:path';
import { Enum, type Field, MapField, Root, Type, util } from 'protobufjs';
import { LineCounter, isMap, isScalar, parseAllDocuments } from 'yaml';
import { ROOT } from './envoy-model';

/**
 * Envoy's own API, not our idea of it: decodes YAML/JSON against the v3 protos vendored from
 * envoyproxy/data-plane-api (test/vendor/envoy-api, refetched by scripts/vendor-envoy-protos.sh)
 * with proto3 JSON rules, as strictly as Envoy's loader does and a little more: unknown fields,
 * unresolvable `@type`s, unknown enum values, two members of a oneof, malformed durations and
 * wrong scalar types are problems, and so is every field or enum value marked `deprecated`, which
 * Envoy warns about and counts in `runtime.deprecated_feature_use`. PGV rules are not checked:
 * Istio MERGE patches are partial messages by design.
 */

export const VENDOR_DIR = path.join(ROOT, 'test/vendor/envoy-api');
/** The API of the Envoy release docker-compose.yml runs (envoyproxy/envoy:v1.34-latest). */
export const VENDOR_DIR_V1_34 = path.join(ROOT, 'test/vendor/envoy-api-v1.34');

export type PathPart = string | number;

export interface SchemaProblem {
  readonly path: readonly PathPart[];
  readonly kind: 'unknown-field' | 'deprecated' | 'invalid';
  readonly message: string;
}

export const BOOTSTRAP = 'envoy.config.bootstrap.v3.Bootstrap';

/** The message an Istio EnvoyFilter patch's `value` is, by its `applyTo`. */
export const ENVOY_FILTER_VALUE_TYPES: Readonly<Record<string, string>> = {
  LISTENER: 'envoy.config.listener.v3.Listener',
  FILTER_CHAIN: 'envoy.config.listener.v3.FilterChain',
  NETWORK_FILTER: 'envoy.config.listener.v3.Filter',
  HTTP_FILTER: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter',
  ROUTE_CONFIGURATION: 'envoy.config.route.v3.RouteConfiguration',
  VIRTUAL_HOST: 'envoy.config.route.v3.VirtualHost',
  HTTP_ROUTE: 'envoy.config.route.v3.Route',
  CLUSTER: 'envoy.config.cluster.v3.Cluster',
  EXTENSION_CONFIG: 'envoy.config.core.v3.TypedExtensionConfig',
  BOOTSTRAP,
  LISTENER_FILTER: 'envoy.config.listener.v3.ListenerFilter',
};

const INT_RANGES: Readonly<Record<string, readonly [bigint, bigint]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n],
  uint32: [0n, 2n ** 32n - 1n],
  fixed32: [0n, 2n ** 32n - 1n],
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
  fixed64: [0n, 2n ** 64n - 1n],
};

/** Wrapper types hold one scalar of this type in JSON. */
const WRAPPERS: Readonly<Record<string, string>> = {
  'google.protobuf.DoubleValue': 'double',
  'google.protobuf.FloatValue': 'float',
  'google.protobuf.Int64Value': 'int64',
  'google.protobuf.UInt64Value': 'uint64',
  'google.protobuf.Int32Value': 'int32',
  'google.protobuf.UInt32Value': 'uint32',
  'google.protobuf.BoolValue': 'bool',
  'google.protobuf.StringValue': 'string',
  'google.protobuf.BytesValue': 'bytes',
};

/** Types whose JSON form is not an object of fields; an Any holding one carries it in `value`. */
const SPECIAL_JSON = new Set([
  ...Object.keys(WRAPPERS),
  'google.protobuf.Duration',
  'google.protobuf.Timestamp',
  'google.protobuf.FieldMask',
  'google.protobuf.Struct',
  'google.protobuf.Value',
  'google.protobuf.ListValue',
  'google.protobuf.Any',
]);

const MAX_DURATION_SECONDS = 315_576_000_000;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const fullName = (t: Type | Enum): string => t.fullName.replace(/^\./, '');

/** The proto3 JSON name of a field: `json_name` if set, else lowerCamelCase of the proto name. */
function jsonName(field: Field): string {
  const explicit: unknown = field.options?.['json_name'];
  return typeof explicit === 'string' ? explicit : util.camelCase(field.name);
}

export class EnvoySchema {
  private readonly byJsonName = new Map<Type, Map<string, Field>>();

  private constructor(private readonly root: Root) {}

  /** Loads every root the vendoring script recorded (ROOTS.txt) and what they import. */
  static load(dir: string = VENDOR_DIR): EnvoySchema {
    const files = fs
      .readFileSync(path.join(dir, 'ROOTS.txt'), 'utf8')
      .split('\n')
      .map((line) => line.split(/\s+/)[0] ?? '')
      .filter((file) => file !== '');
    const root = new Root();
    root.resolvePath = (_origin, target) => path.join(dir, target);
    root.loadSync([...new Set(files)], { keepCase: true });
    root.resolveAll();
    return new EnvoySchema(root);
  }

  hasType(name: string): boolean {
    return this.root.lookup(name) instanceof Type;
  }

  /** Problems of `value` read as message `typeName`, with paths starting at `at`. */
  check(typeName: string, value: unknown, at: readonly PathPart[] = []): SchemaProblem[] {
    const problems: SchemaProblem[] = [];
    const type = this.root.lookupType(typeName);
    this.message(type, value, [...at], problems);
    return problems;
  }

  private fields(type: Type): Map<string, Field> {
    let names = this.byJsonName.get(type);
    if (names === undefined) {
      names = new Map();
      for (const field of type.fieldsArray) {
        names.set(field.name, field);
        names.set(jsonName(field), field);
      }
      this.byJsonName.set(type, names);
    }
    return names;
  }

  private message(type: Type, value: unknown, at: PathPart[], out: SchemaProblem[]): void {
    const name = fullName(type);
    if (SPECIAL_JSON.has(name)) {
      this.special(name, value, at, out);
      return;
    }
    if (!isObject(value)) {
      out.push({ path: at, kind: 'invalid', message: `${name}: expected a mapping, got ${describe(value)}` });
      return;
    }
    const fields = this.fields(type);
    const seen = new Map<Field, string>();
    for (const [key, fieldValue] of Object.entries(value)) {
      const where = [...at, key];
      const field = fields.get(key);
      if (field === undefined) {
        out.push({ path: where, kind: 'unknown-field', message: `${name} has no field '${key}'` });
        continue;
      }
      const earlier = seen.get(field);
      if (earlier !== undefined) out.push({ path: where, kind: 'invalid', message: `${name}.${field.name} is set twice ('${earlier}' and '${key}')` });
      seen.set(field, key);
      if (fieldValue === null) continue;
      if (field.options?.['deprecated'] === true) {
        out.push({ path: where, kind: 'deprecated', message: `${name}.${field.name} is deprecated` });
      }
      this.field(field, fieldValue, where, out);
    }
    for (const oneof of type.oneofsArray) {
      const set = oneof.fieldsArray.filter((f) => seen.has(f) && value[seen.get(f)!] !== null).map((f) => seen.get(f)!);
      if (set.length > 1) out.push({ path: at, kind: 'invalid', message: `${name}: oneof '${oneof.name}' holds ${set.join(' and ')}; it takes one` });
    }
  }

  private field(field: Field, value: unknown, at: PathPart[], out: SchemaProblem[]): void {
    if (field instanceof MapField) {
      if (!isObject(value)) {
        out.push({ path: at, kind: 'invalid', message: `${field.name}: expected a map, got ${describe(value)}` });
        return;
      }
      for (const [key, item] of Object.entries(value)) {
        if (field.keyType !== 'string') this.scalar(field.keyType, key, [...at, key], out, 'map key');
        this.single(field, item, [...at, key], out);
      }
      return;
    }
    if (field.repeated) {
      if (!Array.isArray(value)) {
        out.push({ path: at, kind: 'invalid', message: `${field.name}: expected a list, got ${describe(value)}` });
        return;
      }
      value.forEach((item, i) => this.single(field, item, [...at, i], out));
      return;
    }
    this.single(field, value, at, out);
  }

  private single(field: Field, value: unknown, at: PathPart[], out: SchemaProblem[]): void {
    const resolved = field.resolvedType;
    if (resolved instanceof Type) this.message(resolved, value, at, out);
    else if (resolved instanceof Enum) this.enumValue(resolved, value, at, out);
    else this.scalar(field.type, value, at, out, field.name);
  }

  private enumValue(enm: Enum, value: unknown, at: PathPart[], out: SchemaProblem[]): void {
    const name = fullName(enm);
    let valueName: string | undefined;
    if (typeof value === 'string') {
      if (!(value in enm.values)) {
        out.push({ path: at, kind: 'invalid', message: `${name} has no value '${value}' (${Object.keys(enm.values).join(', ')})` });
        return;
      }
      valueName = value;
    } else if (typeof value === 'number' && Number.isInteger(value)) {
      valueName = enm.valuesById[value];
      if (valueName === undefined) {
        out.push({ path: at, kind: 'invalid', message: `${name} has no value numbered ${value}` });
        return;
      }
    } else {
      out.push({ path: at, kind: 'invalid', message: `${name}: expected an enum name, got ${describe(value)}` });
      return;
    }
    const options: unknown = enm.valuesOptions?.[valueName];
    if (isObject(options) && options['deprecated'] === true) {
      out.push({ path: at, kind: 'deprecated', message: `${name}.${valueName} is deprecated` });
    }
  }

  private scalar(type: string, value: unknown, at: PathPart[], out: SchemaProblem[], what: string): void {
    const bad = (expected: string): void => {
      out.push({ path: at, kind: 'invalid', message: `${what}: expected ${expected}, got ${describe(value)}` });
    };
    const range = INT_RANGES[type];
    if (range !== undefined) {
      let n: bigint | undefined;
      if (typeof value === 'number' && Number.isInteger(value)) n = BigInt(value);
      else if (typeof value === 'string' && /^-?\d+$/.test(value)) n = BigInt(value);
      if (n === undefined) bad(`an integer (${type})`);
      else if (n < range[0] || n > range[1]) bad(`a ${type} in [${range[0]}, ${range[1]}]`);
      return;
    }
    switch (type) {
      case 'double':
      case 'float':
        if (typeof value === 'number') return;
        if (typeof value === 'string' && (/^(NaN|-?Infinity)$/.test(value) || (value.trim() !== '' && Number.isFinite(Number(value))))) return;
        bad(`a number (${type})`);
        return;
      case 'bool':
        if (typeof value !== 'boolean') bad('true or false');
        return;
      case 'string':
        if (typeof value !== 'string') bad('a string');
        return;
      case 'bytes':
        if (typeof value !== 'string' || !/^[A-Za-z0-9+/\-_]*={0,2}$/.test(value)) bad('base64 bytes');
        return;
      default:
        bad(`a value of unknown scalar type ${type}`);
    }
  }

  /** Well-known types with their own JSON form. */
  private special(name: string, value: unknown, at: PathPart[], out: SchemaProblem[]): void {
    const wrapped = WRAPPERS[name];
    if (wrapped !== undefined) {
      this.scalar(wrapped, value, at, out, name);
      return;
    }
    switch (name) {
      case 'google.protobuf.Duration': {
        const m = typeof value === 'string' ? /^(-)?(\d+)(\.\d{1,9})?s$/.exec(value) : null;
        if (m === null) out.push({ path: at, kind: 'invalid', message: `Duration: expected a string like "0.25s", got ${describe(value)}` });
        else if (Number(m[2]) > MAX_DURATION_SECONDS) out.push({ path: at, kind: 'invalid', message: `Duration ${String(value)} is out of range` });
        return;
      }
      case 'google.protobuf.Timestamp':
        if (typeof value !== 'string' || !/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$/.test(value)) {
          out.push({ path: at, kind: 'invalid', message: `Timestamp: expected RFC 3339, got ${describe(value)}` });
        }
        return;
      case 'google.protobuf.FieldMask':
        if (typeof value !== 'string') out.push({ path: at, kind: 'invalid', message: `FieldMask: expected a string, got ${describe(value)}` });
        return;
      case 'google.protobuf.Struct':
        if (!isObject(value)) out.push({ path: at, kind: 'invalid', message: `Struct: expected a mapping, got ${describe(value)}` });
        return;
      case 'google.protobuf.ListValue':
        if (!Array.isArray(value)) out.push({ path: at, kind: 'invalid', message: `ListValue: expected a list, got ${describe(value)}` });
        return;
      case 'google.protobuf.Value':
        return;
      case 'google.protobuf.Any':
        this.any(value, at, out);
        return;
      default:
        throw new Error(`no JSON rule for ${name}`);
    }
  }

  private any(value: unknown, at: PathPart[], out: SchemaProblem[]): void {
    if (!isObject(value)) {
      out.push({ path: at, kind: 'invalid', message: `Any: expected a mapping with "@type", got ${describe(value)}` });
      return;
    }
    const url = value['@type'];
    if (typeof url !== 'string' || !url.includes('/')) {
      out.push({ path: [...at, '@type'], kind: 'invalid', message: `Any: "@type" must be a type URL, got ${describe(url)}` });
      return;
    }
    const typeName = url.slice(url.lastIndexOf('/') + 1);
    const resolved = this.root.lookup(typeName);
    if (!(resolved instanceof Type)) {
      out.push({ path: [...at, '@type'], kind: 'invalid', message: `Any: no message ${typeName} in the vendored Envoy API (misspelled, or not vendored: rerun scripts/vendor-envoy-protos.sh)` });
      return;
    }
    const { ['@type']: _type, ...rest } = value;
    if (SPECIAL_JSON.has(typeName)) {
      const keys = Object.keys(rest);
      if (keys.length !== 1 || keys[0] !== 'value') out.push({ path: at, kind: 'invalid', message: `Any holding ${typeName}: expected only "value", got ${keys.join(', ')}` });
      else this.special(typeName, rest['value'], [...at, 'value'], out);
      return;
    }
    this.message(resolved, rest, at, out);
  }
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (isObject(value)) return 'a mapping';
  return JSON.stringify(value) ?? String(value);
}

/** `a.b[0]["@type"]`: the path as people read it. */
export function formatPath(parts: readonly PathPart[]): string {
  let out = '';
  for (const part of parts) {
    if (typeof part === 'number') out += `[${part}]`;
    else if (/^[A-Za-z_][\w]*$/.test(part)) out += out === '' ? part : `.${part}`;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

export interface YamlDocument {
  readonly value: unknown;
  /** 1-based line of the node at `path`, or of its nearest ancestor that the YAML spells out. */
  lineOf(path: readonly PathPart[]): number | undefined;
}

/** The documents of a YAML text, with a way back from a path to its line. */
export function yamlDocuments(text: string): YamlDocument[] {
  const lineCounter = new LineCounter();
  return parseAllDocuments(text, { lineCounter }).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('; '));
    const value: unknown = doc.toJS({ maxAliasCount: 100 });
    if (value === null || value === undefined) return [];
    return [
      {
        value,
        lineOf(parts: readonly PathPart[]): number | undefined {
          // A mapping key's own line (its value may start on the next one).
          const parent: unknown = parts.length > 0 ? doc.getIn(parts.slice(0, -1), true) : undefined;
          if (isMap(parent)) {
            const last = parts[parts.length - 1];
            const pair = parent.items.find((p) => isScalar(p.key) && String(p.key.value) === String(last));
            const offset = pair !== undefined && isScalar(pair.key) ? pair.key.range?.[0] : undefined;
            if (offset !== undefined) return lineCounter.linePos(offset).line;
          }
          for (let n = parts.length; n >= 0; n--) {
            const node: unknown = doc.getIn(parts.slice(0, n), true);
            if (isObject(node) && Array.isArray(node['range'])) {
              const offset: unknown = node['range'][0];
              if (typeof offset === 'number') return lineCounter.linePos(offset).line;
            }
          }
          return undefined;
        },
      },
    ];
  });
}

/** `file:line path: message` for a problem found in a YAML document. */
export function describeProblem(file: string, doc: YamlDocument, problem: SchemaProblem): string {
  const line = doc.lineOf(problem.path);
  return `${file}${line === undefined ? '' : `:${line}`} ${formatPath(problem.path)}: ${problem.kind}: ${problem.message}`;
}
