import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { ROOT } from './envoy-model';
import type { PathPart } from './envoy-schema';

/**
 * Kubernetes, Istio, kustomize and Compose files against their published schemas, vendored in
 * test/vendor/manifest-schemas (refetched by scripts/vendor-manifest-schemas.sh): Kubernetes'
 * OpenAPI as JSON schemas (strict: unknown fields are errors, as `kubectl apply`'s default
 * server-side field validation makes them), Istio's CRD structural schemas (unknown fields
 * pruned and rejected the same way unless `x-kubernetes-preserve-unknown-fields`), SchemaStore's
 * kustomization schema and the Compose spec. Istio's CEL rules (`x-kubernetes-validations`) are
 * not evaluated; list-map keys and list sets are checked for duplicates, as the API server does.
 */

export const SCHEMA_DIR = path.join(ROOT, 'test/vendor/manifest-schemas');

export interface ManifestProblem {
  readonly path: readonly PathPart[];
  readonly message: string;
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Extensions Kubernetes schemas carry that only annotate (merge strategy, GVK, CEL we cannot run). */
const ANNOTATIONS = [
  'x-kubernetes-group-version-kind',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-patch-merge-key',
  'x-kubernetes-patch-strategy',
  'x-kubernetes-unions',
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-validations',
];

/** The key of a list-map item: the values of its `x-kubernetes-list-map-keys`. */
function listKey(item: unknown, keys: readonly string[]): string {
  return JSON.stringify(keys.map((k) => (isObject(item) ? item[k] : item) ?? null));
}

/** A CRD's structural schema, closed as the API server closes it: no field it does not declare. */
function closeStructural(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(closeStructural);
  if (!isObject(schema)) return schema;
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) out[k] = k === 'enum' || k === 'default' ? v : closeStructural(v);
  if (isObject(out['properties']) && out['additionalProperties'] === undefined && out['x-kubernetes-preserve-unknown-fields'] !== true) {
    out['additionalProperties'] = false;
  }
  return out;
}

function withoutMetaSchema(schema: Json): Json {
  const { $schema: _ignored, ...rest } = schema;
  return rest;
}

export class ManifestSchemas {
  private readonly validators = new Map<string, ValidateFunction>();

  private constructor(
    private readonly ajv: Ajv,
    private readonly index: Readonly<Record<string, string>>,
    private readonly dir: string,
  ) {}

  static load(dir: string = SCHEMA_DIR): ManifestSchemas {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, strictTypes: false, strictRequired: false, allowUnionTypes: true, validateSchema: false });
    addFormats(ajv);
    for (const keyword of ANNOTATIONS) ajv.addKeyword({ keyword });
    ajv.addKeyword({
      keyword: 'x-kubernetes-list-type',
      type: 'array',
      schemaType: 'string',
      // `map` lists have one item per key, `set` lists no repeated item: the API server refuses duplicates.
      compile(listType: string, parentSchema) {
        const keys = (parentSchema as Json)['x-kubernetes-list-map-keys'];
        return (data: unknown) => {
          if (!Array.isArray(data) || (listType !== 'map' && listType !== 'set')) return true;
          const seen = data.map((item) => (listType === 'map' && Array.isArray(keys) ? listKey(item, keys as string[]) : JSON.stringify(item)));
          return new Set(seen).size === seen.length;
        };
      },
    });
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as Record<string, string>;
    return new ManifestSchemas(ajv, index, dir);
  }

  /** The `apiVersion kind` pairs that have a schema. */
  kinds(): string[] {
    return Object.keys(this.index).filter((k) => k !== 'compose');
  }

  private validator(key: string): ValidateFunction | undefined {
    const cached = this.validators.get(key);
    if (cached !== undefined) return cached;
    const file = this.index[key];
    if (file === undefined) return undefined;
    const raw = JSON.parse(fs.readFileSync(path.join(this.dir, file), 'utf8')) as Json;
    let schema: Json;
    if (file.startsWith('istio/')) {
      const [apiVersion, kind] = key.split(' ');
      const objectMeta = this.objectMeta();
      const closed = closeStructural(raw) as Json;
      schema = {
        ...closed,
        required: ['apiVersion', 'kind', 'metadata', 'spec'],
        properties: {
          ...(closed['properties'] as Json),
          apiVersion: { const: apiVersion },
          kind: { const: kind },
          metadata: objectMeta,
        },
        additionalProperties: false,
      };
    } else {
      schema = withoutMetaSchema(raw);
      if (typeof schema['$id'] === 'string') delete schema['$id'];
    }
    const validate = this.ajv.compile(schema);
    this.validators.set(key, validate);
    return validate;
  }

  /** Kubernetes' ObjectMeta, for CRD documents (a CRD schema leaves metadata to the API server). */
  private objectMeta(): Json {
    const configMap = JSON.parse(fs.readFileSync(path.join(this.dir, this.index['v1 ConfigMap'] ?? 'kubernetes/configmap-v1.json'), 'utf8')) as Json;
    return (configMap['properties'] as Json)['metadata'] as Json;
  }

  /** Problems of one Kubernetes/Istio/kustomize document; a kind without a schema is one. */
  checkManifest(doc: unknown): ManifestProblem[] {
    if (!isObject(doc)) return [{ path: [], message: 'not a mapping' }];
    const key = `${String(doc['apiVersion'])} ${String(doc['kind'])}`;
    const validate = this.validator(key);
    if (validate === undefined) return [{ path: [], message: `no schema vendored for ${key}: rerun scripts/vendor-manifest-schemas.sh` }];
    return validate(doc) ? [] : problems(validate.errors ?? []);
  }

  checkCompose(doc: unknown): ManifestProblem[] {
    const validate = this.validator('compose');
    if (validate === undefined) throw new Error('no Compose schema vendored');
    return validate(doc) ? [] : problems(validate.errors ?? []);
  }
}

/** Ajv's errors as paths into the document and a sentence; one line per distinct problem. */
function problems(errors: readonly ErrorObject[]): ManifestProblem[] {
  const out = new Map<string, ManifestProblem>();
  for (const e of errors) {
    const at: PathPart[] = e.instancePath
      .split('/')
      .slice(1)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
      .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    let message = e.message ?? e.keyword;
    if (e.keyword === 'additionalProperties') {
      const extra = String((e.params as { additionalProperty: string }).additionalProperty);
      at.push(extra);
      message = 'unknown field';
    } else if (e.keyword === 'enum') {
      message = `must be one of ${JSON.stringify((e.params as { allowedValues: unknown[] }).allowedValues)}`;
    } else if (e.keyword === 'x-kubernetes-list-type') {
      message = 'duplicate item in a list keyed by ' + JSON.stringify(e.parentSchema?.['x-kubernetes-list-map-keys'] ?? 'value');
    }
    const problem = { path: at, message };
    out.set(`${at.join('/')}|${message}`, problem);
  }
  return [...out.values()];
}
