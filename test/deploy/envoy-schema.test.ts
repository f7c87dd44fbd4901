import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { readRepoFile as read, yamlFilesIn as yamlFiles } from './repo-files';
import {
  BOOTSTRAP,
  ENVOY_FILTER_VALUE_TYPES,
  EnvoySchema,
  VENDOR_DIR,
  VENDOR_DIR_V1_34,
  type PathPart,
  type SchemaProblem,
  type YamlDocument,
  describeProblem,
  formatPath,
  yamlDocuments,
} from './envoy-schema';

/**
 * Our Envoy files against Envoy's own v3 API (vendored from envoyproxy/data-plane-api, see
 * test/vendor/envoy-api/README.md): envoy/envoy.yaml as a Bootstrap, every EnvoyFilter patch
 * value in deploy/istio as the message its `applyTo` names, and any Envoy config a Kubernetes
 * ConfigMap carries. No problems and no deprecated fields; and the checker is shown to catch a
 * misspelled field (with its path and line), deprecated fields and enum values, and bad values.
 */

let schema: EnvoySchema;
let schemaV134: EnvoySchema;

beforeAll(() => {
  schema = EnvoySchema.load(VENDOR_DIR);
  schemaV134 = EnvoySchema.load(VENDOR_DIR_V1_34);
});


const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Checks a Bootstrap document. */
function checkBootstrap(file: string, text: string, api: EnvoySchema = schema): string[] {
  return yamlDocuments(text).flatMap((doc) => api.check(BOOTSTRAP, doc.value).map((p) => describeProblem(file, doc, p)));
}

/** One Envoy message found inside a Kubernetes or Istio document. */
interface EmbeddedMessage {
  readonly type: string;
  readonly path: readonly PathPart[];
  readonly value: unknown;
}

/** Every EnvoyFilter patch value, as the message its `applyTo` names. */
function envoyFilterMessages(doc: unknown): EmbeddedMessage[] {
  if (!isObject(doc) || doc['kind'] !== 'EnvoyFilter') return [];
  const spec = doc['spec'];
  const patches = isObject(spec) && Array.isArray(spec['configPatches']) ? spec['configPatches'] : [];
  return patches.map((patch: unknown, i) => {
    const p = isObject(patch) ? patch : {};
    const applyTo = String(p['applyTo']);
    const type = ENVOY_FILTER_VALUE_TYPES[applyTo];
    if (type === undefined) throw new Error(`spec.configPatches[${i}]: applyTo ${applyTo} has no Envoy type here`);
    const value = isObject(p['patch']) ? p['patch']['value'] : undefined;
    return { type, path: ['spec', 'configPatches', i, 'patch', 'value'], value };
  });
}

/** The top-level keys that make a config file an Envoy bootstrap rather than anything else. */
const BOOTSTRAP_KEYS = ['static_resources', 'staticResources', 'dynamic_resources', 'dynamicResources', 'admin', 'node', 'layered_runtime', 'layeredRuntime'];

/** What a ConfigMap data entry is: Envoy config (checked here) or sluice config (checked in deploy-files.test.ts). */
function configMapEntries(doc: unknown): { key: string; kind: 'envoy' | 'sluice' | 'other'; value: unknown }[] {
  if (!isObject(doc) || doc['kind'] !== 'ConfigMap' || !isObject(doc['data'])) return [];
  return Object.entries(doc['data']).map(([key, text]) => {
    const value: unknown = typeof text === 'string' && /\.(ya?ml|json)$/.test(key) ? parseYaml(text) : undefined;
    if (isObject(value) && BOOTSTRAP_KEYS.some((k) => k in value)) return { key, kind: 'envoy' as const, value };
    if (isObject(value) && 'domain' in value && 'descriptors' in value) return { key, kind: 'sluice' as const, value };
    return { key, kind: 'other' as const, value };
  });
}

/** Envoy problems in one Kubernetes/Istio YAML file: EnvoyFilter patches and ConfigMaps holding Envoy config. */
function checkManifests(file: string, text: string, api: EnvoySchema = schema): { checked: string[]; problems: string[] } {
  const checked: string[] = [];
  const problems: string[] = [];
  const report = (doc: YamlDocument, list: SchemaProblem[]): void => {
    for (const p of list) problems.push(describeProblem(file, doc, p));
  };
  for (const doc of yamlDocuments(text)) {
    for (const m of envoyFilterMessages(doc.value)) {
      checked.push(`${formatPath(m.path)} as ${m.type}`);
      report(doc, api.check(m.type, m.value, m.path));
    }
    for (const entry of configMapEntries(doc.value)) {
      if (entry.kind === 'other') problems.push(`${file} data[${JSON.stringify(entry.key)}]: neither Envoy nor sluice config; teach this test what it is`);
      if (entry.kind !== 'envoy') continue;
      const at = ['data', entry.key];
      checked.push(`${formatPath(at)} as ${BOOTSTRAP}`);
      // The line is the block scalar's: paths inside it are relative to the embedded document.
      report(doc, api.check(BOOTSTRAP, entry.value, at));
    }
  }
  return { checked, problems };
}

const manifestFiles = [...yamlFiles('deploy/istio'), ...yamlFiles('deploy/kubernetes')];

describe.each([
  ['today', () => schema],
  ['Envoy 1.34, which docker-compose.yml runs', () => schemaV134],
])('Envoy files decode strictly against the Envoy v3 API of %s', (_name, api) => {
  it('envoy/envoy.yaml is a Bootstrap with no unknown, invalid or deprecated field', () => {
    expect(checkBootstrap('envoy/envoy.yaml', read('envoy/envoy.yaml'), api())).toEqual([]);
  });

  it.each(manifestFiles)('%s: every Envoy message (EnvoyFilter patches, ConfigMaps) checks out', (file) => {
    const { problems } = checkManifests(file, read(file), api());
    expect(problems).toEqual([]);
  });
});

describe('what the Envoy checks cover', () => {
  it('checks every EnvoyFilter patch of deploy/istio, by the type its applyTo names', () => {
    const checked = yamlFiles('deploy/istio').flatMap((f) => checkManifests(f, read(f)).checked);
    expect(checked).toHaveLength(8);
    expect(checked.filter((c) => c.endsWith('HttpFilter'))).toHaveLength(4);
    expect(checked.filter((c) => c.endsWith('v3.Route'))).toHaveLength(4);
  });

  it('knows every @type our files name (nothing resolved by luck)', () => {
    const names = new Set<string>();
    for (const file of ['envoy/envoy.yaml', ...manifestFiles]) {
      for (const m of read(file).matchAll(/type\.googleapis\.com\/([\w.]+)/g)) names.add(m[1]!);
    }
    expect(names.size).toBeGreaterThanOrEqual(10);
    expect([...names].filter((n) => !schema.hasType(n))).toEqual([]);
  });
});

describe('the checker bites', () => {
  const envoyYaml = (): string => read('envoy/envoy.yaml');

  it('reports a misspelled field with its YAML path and line', () => {
    const text = envoyYaml().replace('stat_prefix: edge', 'stat_prefx: edge');
    const line = text.split('\n').findIndex((l) => l.includes('stat_prefx')) + 1;
    expect(checkBootstrap('copy.yaml', text)).toEqual([
      `copy.yaml:${line} static_resources.listeners[0].filter_chains[0].filters[0].typed_config.stat_prefx: unknown-field: ` +
        'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager has no field \'stat_prefx\'',
    ]);
  });

  it('reports the deprecated fields this repo once used: rbac Principal.metadata and Cluster.dns_refresh_rate', () => {
    const [doc] = yamlDocuments(envoyYaml());
    const bootstrap = structuredClone(doc!.value) as Record<string, unknown>;
    const hcm = dig(bootstrap, ['static_resources', 'listeners', 0, 'filter_chains', 0, 'filters', 0, 'typed_config']);
    const routes = dig(hcm, ['route_config', 'virtual_hosts', 0, 'routes']) as unknown[];
    const r = routes.findIndex((route) => isObject(route) && isObject(route['typed_per_filter_config']) && 'envoy.filters.http.rbac' in route['typed_per_filter_config']);
    expect(r).toBeGreaterThanOrEqual(0);
    const principal = dig(routes, [r, 'typed_per_filter_config', 'envoy.filters.http.rbac', 'rbac', 'rules', 'policies', 'orders-write-scope', 'principals', 0]) as Record<string, unknown>;
    principal['metadata'] = dig(principal, ['sourced_metadata', 'metadata_matcher']);
    delete principal['sourced_metadata'];
    const cluster = dig(bootstrap, ['static_resources', 'clusters', 0]) as Record<string, unknown>;
    delete cluster['cluster_type'];
    cluster['type'] = 'STRICT_DNS';
    cluster['dns_refresh_rate'] = '5s';

    const problems = schema.check(BOOTSTRAP, bootstrap).map((p) => `${formatPath(p.path)}: ${p.kind}: ${p.message}`);
    expect(problems).toEqual([
      `static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[${r}].typed_per_filter_config["envoy.filters.http.rbac"].rbac.rules.policies["orders-write-scope"].principals[0].metadata: deprecated: envoy.config.rbac.v3.Principal.metadata is deprecated`,
      'static_resources.clusters[0].dns_refresh_rate: deprecated: envoy.config.cluster.v3.Cluster.dns_refresh_rate is deprecated',
    ]);
  });

  it('reports deprecated enum values, unknown enum values, two oneof members, bad durations, scalars and @types', () => {
    const check = (type: string, value: unknown): string[] => schema.check(type, value).map((p) => `${formatPath(p.path)}: ${p.kind}`);
    const rls = 'envoy.config.ratelimit.v3.RateLimitServiceConfig';
    expect(check(rls, { transport_api_version: 'V2', grpc_service: { envoy_grpc: { cluster_name: 'x' } } })).toEqual(['transport_api_version: deprecated']);
    expect(check(rls, { transport_api_version: 'V4' })).toEqual(['transport_api_version: invalid']);
    expect(check(rls, { grpc_service: { envoy_grpc: { cluster_name: 'x' }, google_grpc: { target_uri: 'y', stat_prefix: 'z' } } })).toEqual(['grpc_service: invalid']);
    expect(check(rls, { grpc_service: { timeout: '250ms' } })).toEqual(['grpc_service.timeout: invalid']);
    expect(check(rls, { grpc_service: { timeout: '0.25s', envoyGrpc: { clusterName: 'x' } } })).toEqual([]);
    const cluster = 'envoy.config.cluster.v3.Cluster';
    expect(check(cluster, { name: 'a', per_connection_buffer_limit_bytes: 'lots' })).toEqual(['per_connection_buffer_limit_bytes: invalid']);
    expect(check(cluster, { name: 'a', connect_timeout: 1 })).toEqual(['connect_timeout: invalid']);
    expect(check(cluster, { name: 'a', name_: 'b', connectTimeout: '1s', connect_timeout: '1s' })).toEqual(['name_: unknown-field', 'connect_timeout: invalid']);
    expect(
      check(cluster, { name: 'a', typed_extension_protocol_options: { x: { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOption' } } }),
    ).toEqual(['typed_extension_protocol_options.x["@type"]: invalid']);
    expect(
      check(cluster, { name: 'a', typed_extension_protocol_options: { x: { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http3: {} } } } }),
    ).toEqual(['typed_extension_protocol_options.x.explicit_http_config.http3: unknown-field']);
  });

  it('holds the files to the API of the Envoy release compose runs, not only to today\'s', () => {
    const image = /image: envoyproxy\/envoy:v(\d+\.\d+)-latest/.exec(read('docker-compose.yml'));
    expect(image?.[1]).toBe('1.34');
    expect(path.basename(VENDOR_DIR_V1_34)).toBe(`envoy-api-v${image![1]!}`);
    const hcm = 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
    // Added to the API after 1.34: fine today, unknown to the Envoy compose runs.
    const newer = { stat_prefix: 'edge', stream_flush_timeout: '1s' };
    expect(schema.check(hcm, newer)).toEqual([]);
    expect(schemaV134.check(hcm, newer).map((p) => `${formatPath(p.path)}: ${p.kind}`)).toEqual(['stream_flush_timeout: unknown-field']);
  });

  it('reports Envoy config inside a Kubernetes ConfigMap, with its path', () => {
    const bad = read('envoy/envoy.yaml').replace('connect_timeout: 0.25s', 'connect_timeout: 250ms');
    const configMap = `apiVersion: v1\nkind: ConfigMap\nmetadata: { name: envoy }\ndata:\n  envoy.yaml: ${JSON.stringify(bad)}\n`;
    const { checked, problems } = checkManifests('cm.yaml', configMap);
    expect(checked).toEqual([`data["envoy.yaml"] as ${BOOTSTRAP}`]);
    expect(problems).toEqual([
      'cm.yaml:5 data["envoy.yaml"].static_resources.clusters[0].connect_timeout: invalid: Duration: expected a string like "0.25s", got "250ms"',
    ]);
  });

  it('reports a misspelled field in an EnvoyFilter patch', () => {
    const text = read('deploy/istio/envoyfilter.yaml').replace('stat_prefix: token', 'statprefix: token');
    const line = text.split('\n').findIndex((l) => l.includes('statprefix')) + 1;
    expect(checkManifests('ef.yaml', text).problems).toEqual([
      `ef.yaml:${line} spec.configPatches[2].patch.value.typed_config.statprefix: unknown-field: envoy.extensions.filters.http.ratelimit.v3.RateLimit has no field 'statprefix'`,
    ]);
  });
});

function dig(value: unknown, parts: readonly PathPart[]): unknown {
  let node = value;
  for (const part of parts) {
    if (typeof part === 'number' ? !Array.isArray(node) : !isObject(node)) throw new Error(`no ${formatPath(parts)}`);
    node = (node as Record<string | number, unknown>)[part];
  }
  return node;
}
