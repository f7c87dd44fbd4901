import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { loadConfigDirectory, parseConfigFiles } from '../../src/config/load';
import type { RateLimitConfig } from '../../src/config/types';
import { explainDescriptor, formatExplanation } from '../../src/config/explain';
import { LoadedRateLimitConfig } from '../../src/config/rate-limit-config';
import { RLS_SERVICE_NAME } from '../../src/server/proto';
import { SETTING_SPECS, loadSettings } from '../../src/settings/settings';
import { IMAGE_NODE_VERSION } from '../support/modern-node';
import { type Stage, all, copies, healthcheck, inBuildContext, last, readDockerfile } from './dockerfile-model';
import {
  type Entry,
  type EnvoyModel,
  LUA_TYPE,
  type Obj,
  RATE_LIMIT_TYPE,
  ROOT,
  type RateLimitFilterModel,
  type RequestContext,
  type RouteModel,
  rateLimitEntries,
  arr,
  buildDescriptor,
  httpFilter,
  loadEnvoyModel,
  metadataAction,
  obj,
  rateLimitFilter,
  readYaml,
  readYamlDocuments,
  routeModel,
  str,
} from './envoy-model';
import { formatPath } from './envoy-schema';

/**
 * The deployment files cannot run here (no Docker engine, Envoy or Kubernetes), so these tests
 * check what can drift: every file parses; ports, cluster and service names agree with each other
 * and with sluice's defaults; and every descriptor Envoy or Istio would send is one the example
 * config (examples/oauth2) limits — same keys, same order, same depth.
 */

const GRPC_PORT = Number(SETTING_SPECS.grpcPort.default);
const HTTP_PORT = Number(SETTING_SPECS.port.default);
const DEBUG_PORT = Number(SETTING_SPECS.debugPort.default);
const EXAMPLE = 'examples/oauth2/ratelimit.yaml';

/** Representative values, per descriptor key, for building the descriptors Envoy would send. */
const SAMPLE: Readonly<Record<string, string>> = {
  client_id: 'web',
  user_id: 'alice',
  username: 'alice@example.com',
  grant_type: 'authorization_code',
  scope: 'orders:read orders:write',
  remote_address: '203.0.113.7',
  source_cluster: 'edge',
};

/** Keys whose absence means "not that kind of request": Envoy drops the descriptor on purpose. */
const DROPPABLE_WHEN_ABSENT: ReadonlySet<string> = new Set(['username', 'grant_type']);

let config: RateLimitConfig;
let envoy: EnvoyModel;

beforeAll(() => {
  config = loadConfigDirectory(path.join(ROOT, 'examples/oauth2'), { ignoreDotFiles: false, mergeDomainConfig: false });
  envoy = loadEnvoyModel();
});

function listFiles(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(rel, ext));
    else if (ext.test(entry.name)) out.push(rel);
  }
  return out.sort();
}

/**
 * A request carrying a SAMPLE value wherever these actions read one: metadata at the path each
 * `metadata` action reads, headers for `request_headers`, query parameters for `query_parameters`.
 */
function sampleContext(actionLists: readonly (readonly unknown[])[]): RequestContext {
  const metadata: Record<string, Obj> = {};
  const headers: Record<string, string> = {};
  const query: Record<string, string> = {};
  const sample = (key: string): string => {
    const value = SAMPLE[key];
    if (value === undefined) throw new Error(`no SAMPLE value for descriptor key ${key}`);
    return value;
  };
  for (const actions of actionLists) {
    for (const [i, raw] of actions.entries()) {
      const action = obj(raw, `actions[${i}]`);
      if (action['metadata'] !== undefined) {
        const m = metadataAction(action, `actions[${i}]`);
        let node = (metadata[m.namespace] ??= {});
        for (const key of m.path.slice(0, -1)) node = (node[key] ??= {}) as Obj;
        node[m.path[m.path.length - 1]!] = sample(m.descriptorKey);
      } else if (action['request_headers'] !== undefined) {
        const spec = obj(action['request_headers'], 'request_headers');
        headers[str(spec['header_name'], 'header_name').toLowerCase()] = sample(str(spec['descriptor_key'], 'descriptor_key'));
      } else if (action['query_parameters'] !== undefined) {
        const spec = obj(action['query_parameters'], 'query_parameters');
        query[str(spec['query_parameter_name'], 'query_parameter_name')] = sample(str(spec['descriptor_key'], 'descriptor_key'));
      }
    }
  }
  return { remoteAddress: sample('remote_address'), sourceCluster: sample('source_cluster'), metadata, headers, query };
}

const describeEntries = (entries: readonly Entry[]): string => entries.map((e) => `${e.key}=${e.value}`).join(',');

/** A comment on a rate_limits entry that is meant to get no limit from the example config, and why. */
const NO_LIMIT_MARKER = /sluice: matches no limit: *(\S.*)/;

/** `sluice explain`'s verdict, and its printout for the problem message when there is no limit. */
function explainLimit(domain: string, descriptor: readonly Entry[]): { limited: boolean; printout: string } {
  if (!(config instanceof LoadedRateLimitConfig)) throw new Error('explain needs the loaded config tree');
  const explanation = explainDescriptor(config, domain, descriptor);
  const limited = explanation.verdict.kind === 'limited' && explanation.verdict.rules.some((r) => r.limit !== undefined);
  return { limited, printout: formatExplanation(explanation, 0).join('\n') };
}

/**
 * For every `rate_limits` entry anywhere in `text` (route, virtual host or per-route config): its
 * stage has one filter, and the descriptor it produces (every action firing, SAMPLE values) gets a
 * limit from the example config as `sluice explain` traces it; so does the one produced with every
 * value missing (default values), unless the entry is droppable by design. An entry whose comment
 * says `sluice: matches no limit: <why>` must get none.
 */
function checkRateLimitsAgainstConfig(file: string, text: string, filters: readonly RateLimitFilterModel[]): string[] {
  const problems: string[] = [];
  const entries = rateLimitEntries(text);
  const full = sampleContext(entries.map((e) => e.actions));
  for (const entry of entries) {
    const where = `${file}:${entry.line} ${formatPath(entry.path)}`;
    const stageFilters = filters.filter((f) => f.stage === entry.stage);
    if (stageFilters.length !== 1) {
      problems.push(`${where}: stage ${entry.stage} is evaluated by ${stageFilters.length} rate limit filters (want 1)`);
      continue;
    }
    const domain = stageFilters[0]!.domain;
    const ctx: RequestContext = { ...full, ...(entry.routeCluster === undefined ? {} : { routeCluster: entry.routeCluster }) };
    const descriptor = buildDescriptor(entry.actions, ctx, where, { assumeValueMatches: true });
    const meantForNone = NO_LIMIT_MARKER.exec(entry.comment);
    if (descriptor === undefined) {
      problems.push(`${where}: no descriptor even with every value present`);
      continue;
    }
    const verdict = explainLimit(domain, descriptor);
    if (meantForNone !== null) {
      if (verdict.limited) problems.push(`${where}: says it matches no limit (${meantForNone[1]}), but (${describeEntries(descriptor)}) is limited by ${EXAMPLE}`);
      continue;
    }
    if (!verdict.limited) {
      problems.push(`${where}: (${describeEntries(descriptor)}) has no limit in domain ${domain} of ${EXAMPLE}; sluice explain says:\n${verdict.printout}`);
      continue;
    }
    const empty: RequestContext = { remoteAddress: full.remoteAddress!, sourceCluster: full.sourceCluster!, ...(entry.routeCluster === undefined ? {} : { routeCluster: entry.routeCluster }) };
    const fallback = buildDescriptor(entry.actions, empty, where, { assumeValueMatches: true });
    if (fallback === undefined) {
      const keys = entry.actions
        .filter((a) => obj(a, where)['metadata'] !== undefined)
        .map((a) => metadataAction(obj(a, where), where))
        .filter((m) => m.defaultValue === undefined)
        .map((m) => m.descriptorKey);
      if (!keys.every((k) => DROPPABLE_WHEN_ABSENT.has(k))) {
        problems.push(`${where}: dropped when ${keys.join(', ')} is missing: give it a default_value (limiting must not switch off)`);
      }
    } else if (!explainLimit(domain, fallback).limited) {
      problems.push(`${where}: with claims missing, (${describeEntries(fallback)}) has no limit in ${EXAMPLE}; sluice explain says:\n${explainLimit(domain, fallback).printout}`);
    }
  }
  return problems;
}

describe('every deployment file parses', () => {
  const yamlFiles = [
    'docker-compose.yml',
    ...listFiles('envoy', /\.ya?ml$/),
    ...listFiles('deploy', /\.ya?ml$/),
    ...listFiles('examples', /\.ya?ml$/),
  ];
  it.each(yamlFiles)('%s', (file) => {
    expect(readYamlDocuments(file).length).toBeGreaterThan(0);
  });

  it('the JSON files parse too', () => {
    for (const file of [...listFiles('envoy', /\.json$/), ...listFiles('deploy', /\.json$/), 'package.json']) {
      expect(() => JSON.parse(fs.readFileSync(path.join(ROOT, file), 'utf8'))).not.toThrow();
    }
  });
});

describe('envoy/envoy.yaml', () => {
  it('reaches sluice over HTTP/2 on its default gRPC port, health-checked with the RLS service name', () => {
    const names = new Set(envoy.rateLimitFilters.map((f) => f.clusterName));
    expect([...names]).toEqual(['sluice']);
    const cluster = envoy.clusters.get('sluice')!;
    expect(cluster.addresses).toEqual([{ host: 'sluice', port: GRPC_PORT }]);
    expect(GRPC_PORT).toBe(8081);
    // STRICT_DNS through the DNS cluster extension, without the deprecated Cluster DNS fields.
    expect(cluster.config['type']).toBeUndefined();
    expect(cluster.config['dns_refresh_rate']).toBeUndefined();
    const clusterType = obj(cluster.config['cluster_type'], 'cluster_type');
    expect(clusterType['name']).toBe('envoy.cluster.dns');
    expect(obj(clusterType['typed_config'], 'DnsCluster')).toMatchObject({
      '@type': 'type.googleapis.com/envoy.extensions.clusters.dns.v3.DnsCluster',
      all_addresses_in_single_endpoint: false,
    });
    const options = obj(obj(cluster.config['typed_extension_protocol_options'], 'options')['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'], 'http options');
    expect(obj(options['explicit_http_config'], 'explicit_http_config')['http2_protocol_options']).toBeDefined();
    const health = arr(cluster.config['health_checks'], 'health_checks').map((h) => obj(obj(h, 'hc')['grpc_health_check'], 'grpc_health_check'));
    expect(health).toEqual([{ service_name: RLS_SERVICE_NAME }]);
  });

  it('configures every rate limit filter for V3, a timeout and a known domain; X-RateLimit headers from one filter per endpoint', () => {
    expect(envoy.rateLimitFilters.length).toBeGreaterThanOrEqual(2);
    for (const filter of envoy.rateLimitFilters) {
      expect(obj(filter.config['rate_limit_service'], 'rls')['transport_api_version']).toBe('V3');
      expect(filter.config['timeout']).toMatch(/^\d+(\.\d+)?s$/);
      expect(config.domains()).toContain(filter.domain);
    }
    // Stages 0 and 1 both limit the token endpoint: only stage 1 adds the headers, so a response
    // carries one set.
    const headers = Object.fromEntries(envoy.rateLimitFilters.map((f) => [f.stage, f.config['enable_x_ratelimit_headers']]));
    expect(headers).toEqual({ 0: undefined, 1: 'DRAFT_VERSION_03', 2: 'DRAFT_VERSION_03' });
    const stages = envoy.rateLimitFilters.map((f) => f.stage);
    expect(new Set(stages).size).toBe(stages.length);
  });

  it('sends only descriptors the example config limits, and keeps limiting when claims are missing', () => {
    const entries = rateLimitEntries(fs.readFileSync(path.join(ROOT, 'envoy/envoy.yaml'), 'utf8'));
    expect(entries.length).toBe([...envoy.routes.values()].reduce((n, r) => n + r.rateLimits.length, 0));
    expect(checkRateLimitsAgainstConfig('envoy/envoy.yaml', fs.readFileSync(path.join(ROOT, 'envoy/envoy.yaml'), 'utf8'), envoy.rateLimitFilters)).toEqual([]);
  });

  it('sends the two descriptors other tests rely on, to the named limits', () => {
    const ctx = sampleContext([...envoy.routes.values()].flatMap((r) => r.rateLimits.map((e) => e.actions)));
    const names = (route: string): (string | undefined)[] =>
      envoy.routes.get(route)!.rateLimits.map((e) => {
        const d = buildDescriptor(e.actions, ctx);
        return d === undefined ? undefined : config.getLimit('oauth2', d)?.rule.name;
      });
    expect(names('token')).toContain('token_per_client_user');
    const perUser = config.rules().find((r) => r.name === 'token_per_client_user')!;
    expect(perUser.limit).toMatchObject({ requestsPerUnit: 10, unit: 'MINUTE' });
    expect(names('api')).toContain('api_per_client_user');
    expect(names('orders-create')).toContain('api_per_client_user');
    expect(config.rules().find((r) => r.name === 'api_per_client_user')!.limit).toMatchObject({ requestsPerUnit: 100, unit: 'MINUTE' });
  });

  it('fails closed on the token endpoint and open on the API, per route', () => {
    const stageOf = (route: string): Set<number> => new Set(envoy.routes.get(route)!.rateLimits.map((e) => e.stage));
    const denies = (stage: number): boolean => envoy.rateLimitFilters.find((f) => f.stage === stage)!.failureModeDeny;
    for (const stage of stageOf('token')) expect(denies(stage)).toBe(true);
    for (const route of ['api', 'orders-create', 'introspect']) for (const stage of stageOf(route)) expect(denies(stage)).toBe(false);
    for (const f of envoy.rateLimitFilters.filter((f) => f.failureModeDeny)) {
      expect(f.config['status_on_error']).toEqual({ code: 'ServiceUnavailable' });
    }
  });

  it('limits per IP before the Lua filter reads a body, and by claims only after jwt_authn', () => {
    const order = envoy.filters.map((f) => f.name);
    const position = (name: string): number => order.indexOf(name);
    const stage0 = envoy.rateLimitFilters.find((f) => f.stage === 0)!;
    expect(position(stage0.name)).toBeLessThan(position('envoy.filters.http.lua'));
    const jwt = position('envoy.filters.http.jwt_authn');
    for (const route of envoy.routes.values()) {
      for (const entry of route.rateLimits) {
        const readsJwt = entry.actions.some((a) => {
          const m = obj(a, route.name)['metadata'];
          return m !== undefined && metadataAction(obj(a, route.name), route.name).namespace === 'envoy.filters.http.jwt_authn';
        });
        const filter = envoy.rateLimitFilters.find((f) => f.stage === entry.stage)!;
        if (readsJwt) expect(position(filter.name)).toBeGreaterThan(jwt);
      }
    }
    expect(order[order.length - 1]).toBe('envoy.filters.http.router');
  });

  it('reads claims from the metadata jwt_authn writes, and token-endpoint values from what the Lua filter sets', () => {
    const jwtFilter = envoy.filters.find((f) => f.name === 'envoy.filters.http.jwt_authn')!;
    const providers = Object.values(obj(jwtFilter.config['providers'], 'providers')).map((p) => obj(p, 'provider'));
    const payloadKeys = new Set(providers.map((p) => p['payload_in_metadata']));
    const lua = envoy.filters.find((f) => f.type === LUA_TYPE)!;
    const sources = obj(lua.config['source_codes'], 'source_codes');
    const luaKeys = new Set<string>();
    for (const code of Object.values(sources)) {
      for (const m of str(obj(code, 'source')['inline_string'], 'inline_string').matchAll(/set\(metadata, "([a-z_]+)"/g)) luaKeys.add(m[1]!);
    }
    expect([...luaKeys].sort()).toEqual(['client_id', 'grant_type', 'username']);
    for (const route of envoy.routes.values()) {
      let usesLua = false;
      for (const entry of route.rateLimits) {
        for (const action of entry.actions) {
          if (obj(action, route.name)['metadata'] === undefined) continue;
          const m = metadataAction(obj(action, route.name), route.name);
          if (m.namespace === 'envoy.filters.http.jwt_authn') {
            expect(payloadKeys.has(m.path[0])).toBe(true);
            expect(m.path).toHaveLength(2);
            expect(m.defaultValue).toBeDefined();
          } else {
            expect(m.namespace).toBe('sluice.oauth2');
            expect(m.path.length === 1 && luaKeys.has(m.path[0]!)).toBe(true);
            usesLua = true;
          }
        }
      }
      const perRoute = route.typedPerFilterConfig['envoy.filters.http.lua'];
      if (usesLua) expect(Object.keys(sources)).toContain(obj(perRoute, `${route.name} lua`)['name']);
      else expect(perRoute).toBeUndefined();
    }
  });

  it('takes no identity from request headers', () => {
    for (const route of envoy.routes.values()) {
      for (const entry of route.rateLimits) {
        for (const action of entry.actions) {
          expect(Object.keys(obj(action, route.name))).not.toContain('request_headers');
        }
      }
    }
    const jwtFilter = envoy.filters.find((f) => f.name === 'envoy.filters.http.jwt_authn')!;
    for (const provider of Object.values(obj(jwtFilter.config['providers'], 'providers'))) {
      expect(obj(provider, 'provider')['claim_to_headers']).toBeUndefined();
    }
  });

  it('trusts the TCP peer as the client address, not a client-sent X-Forwarded-For', () => {
    expect(envoy.hcm['use_remote_address']).toBe(true);
    expect(envoy.hcm['xff_num_trusted_hops'] ?? 0).toBe(0);
  });
});

describe('docker-compose.yml', () => {
  const compose = (): Obj => obj(readYaml('docker-compose.yml'), 'compose');
  const service = (name: string): Obj => obj(obj(compose()['services'], 'services')[name], `services.${name}`);
  const env = (name: string): Record<string, string> => {
    const e = service(name)['environment'];
    return e === undefined ? {} : (obj(e, `${name}.environment`) as Record<string, string>);
  };
  const mounts = (name: string): Map<string, string> =>
    new Map(
      arr(service(name)['volumes'] ?? [], `${name}.volumes`).map((v) => {
        const [from, to] = str(v, `${name}.volumes`).split(':');
        return [to!, from!];
      }),
    );
  /** The port each service listens on, as its own settings say. */
  const listenPort = (name: string): number => {
    if (name === 'sluice') return loadSettings(env('sluice'), []).grpcPort;
    if (name === 'redis') return 6379;
    return Number(env(name)['PORT']);
  };

  it('runs Envoy, sluice, Redis, the demo issuer and the demo API', () => {
    expect(Object.keys(obj(compose()['services'], 'services')).sort()).toEqual(['api', 'envoy', 'issuer', 'redis', 'sluice']);
  });

  it("points every Envoy cluster at a compose service and the port that service listens on", () => {
    for (const cluster of envoy.clusters.values()) {
      for (const address of cluster.addresses) {
        expect(Object.keys(obj(compose()['services'], 'services'))).toContain(address.host);
        expect({ cluster: cluster.name, port: address.port }).toEqual({ cluster: cluster.name, port: listenPort(address.host) });
      }
    }
    expect(listenPort('sluice')).toBe(GRPC_PORT);
  });

  it('mounts envoy/envoy.yaml where Envoy reads it, and the demo scripts where node runs them', () => {
    const command = arr(service('envoy')['command'], 'envoy.command').map((c) => str(c, 'command'));
    expect(mounts('envoy').get(command[command.indexOf('-c') + 1]!)).toBe('./envoy/envoy.yaml');
    for (const name of ['issuer', 'api']) {
      const [node, script] = arr(service(name)['command'], `${name}.command`).map((c) => str(c, 'command'));
      expect(node).toBe('node');
      const dir = path.posix.dirname(script!);
      expect(mounts(name).get(dir)).toBe('./envoy/demo');
      expect(fs.existsSync(path.join(ROOT, 'envoy/demo', path.posix.basename(script!)))).toBe(true);
    }
  });

  it('gives sluice the example config as its config directory, and Redis', () => {
    const command = arr(service('sluice')['command'], 'sluice.command').map((c) => str(c, 'command'));
    const settings = loadSettings(env('sluice'), command.slice(1));
    const mountedAt = [...mounts('sluice').entries()].find(([, from]) => from === './examples/oauth2')?.[0];
    expect(mountedAt).toBeDefined();
    expect(settings.configDir).toBe(path.resolve(mountedAt!));
    expect(settings.ignoreDotFiles).toBe(true);
    expect(settings.watchRoot).toBeUndefined();
    expect(settings.redis?.nodes).toEqual([{ host: 'redis', port: listenPort('redis') }]);
    expect(service('sluice')['ports']).toEqual([`127.0.0.1:${GRPC_PORT}:${GRPC_PORT}`, `127.0.0.1:${HTTP_PORT}:${HTTP_PORT}`, `127.0.0.1:${DEBUG_PORT}:${DEBUG_PORT}`]);
    const health = arr(obj(service('sluice')['healthcheck'], 'healthcheck')['test'], 'test').join(' ');
    expect(health).toContain(`:${HTTP_PORT}/healthcheck`);
  });

  it('builds sluice from the root Dockerfile and runs plain `serve`, so the mounted config applies', () => {
    expect(service('sluice')['build']).toEqual({ context: '.', dockerfile: 'Dockerfile' });
    const command = arr(service('sluice')['command'], 'sluice.command').map((c) => str(c, 'command'));
    expect(command[0]).toBe('serve');
    // The settings sluice would load: env plus the command's flags (not the image's default CMD).
    const settings = loadSettings(env('sluice'), command.slice(1));
    expect(settings.configDir).toBe(path.resolve('/data/ratelimit/config'));
  });

  it('tells the issuer the issuer and audience Envoy checks', () => {
    const jwtFilter = envoy.filters.find((f) => f.name === 'envoy.filters.http.jwt_authn')!;
    const [provider] = Object.values(obj(jwtFilter.config['providers'], 'providers')).map((p) => obj(p, 'provider'));
    expect(env('issuer')['ISSUER']).toBe(provider!['issuer']);
    expect(provider!['audiences']).toEqual([env('issuer')['AUDIENCE']]);
    const uri = new URL(str(obj(obj(provider!['remote_jwks'], 'remote_jwks')['http_uri'], 'http_uri')['uri'], 'uri'));
    expect({ host: uri.hostname, port: Number(uri.port) }).toEqual({ host: 'issuer', port: listenPort('issuer') });
  });
});

describe('deploy/kubernetes', () => {
  const docs = (file: string): Obj[] => readYamlDocuments(`deploy/kubernetes/${file}`).map((d) => obj(d, file));
  const kustomization = (): Obj => obj(readYaml('deploy/kubernetes/kustomization.yaml'), 'kustomization');
  const all = (): Obj[] => arr(kustomization()['resources'], 'resources').flatMap((f) => docs(str(f, 'resource')));
  const find = (kind: string, name: string): Obj => {
    const found = all().find((d) => d['kind'] === kind && obj(d['metadata'], 'metadata')['name'] === name);
    if (found === undefined) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
    return found;
  };
  const container = (): Obj => {
    const spec = obj(obj(obj(find('Deployment', 'sluice')['spec'], 'spec')['template'], 'template')['spec'], 'pod spec');
    return obj(arr(spec['containers'], 'containers')[0], 'container');
  };
  const containerEnv = (): Record<string, string> =>
    Object.fromEntries(arr(container()['env'], 'env').map((e) => [str(obj(e, 'env')['name'], 'name'), str(obj(e, 'env')['value'], 'value')]));

  it('lists every manifest in the kustomization, and every listed file exists', () => {
    const listed = arr(kustomization()['resources'], 'resources').map((f) => str(f, 'resource'));
    for (const file of listed) expect(fs.existsSync(path.join(ROOT, 'deploy/kubernetes', file))).toBe(true);
    const manifests = fs.readdirSync(path.join(ROOT, 'deploy/kubernetes')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    // networkpolicy.yaml is opt-in (it needs a label on the callers).
    expect(manifests.filter((f) => !listed.includes(f))).toEqual(['networkpolicy.yaml']);
  });

  it('ships the example config byte for byte, and it passes the validator', () => {
    const data = obj(find('ConfigMap', 'ratelimit-config')['data'], 'data');
    expect(Object.keys(data)).toEqual(['config.yaml']);
    expect(data['config.yaml']).toBe(fs.readFileSync(path.join(ROOT, EXAMPLE), 'utf8'));
    const parsed = parseConfigFiles([{ name: 'config.yaml', content: str(data['config.yaml'], 'config.yaml') }], { mergeDomainConfig: false });
    expect(parsed.problems).toEqual([]);
    expect(parsed.config!.domains()).toEqual(['oauth2']);
  });

  it("mounts the ConfigMap as a directory where sluice's settings look for its config", () => {
    const settings = loadSettings(containerEnv(), []);
    const mount = arr(container()['volumeMounts'], 'volumeMounts').map((m) => obj(m, 'mount')).find((m) => m['name'] === 'config')!;
    expect(mount['subPath']).toBeUndefined();
    expect(settings.configDir).toBe(path.resolve(str(mount['mountPath'], 'mountPath')));
    expect(settings.ignoreDotFiles).toBe(true);
    // Hot reload watches the mounted directory itself, where the kubelet swaps ..data.
    expect(settings.watchRoot).toBeUndefined();
    const spec = obj(obj(obj(find('Deployment', 'sluice')['spec'], 'spec')['template'], 'template')['spec'], 'pod spec');
    const volume = arr(spec['volumes'], 'volumes').map((v) => obj(v, 'volume')).find((v) => v['name'] === 'config')!;
    expect(obj(volume['configMap'], 'configMap')['name']).toBe('ratelimit-config');
  });

  it('sets only settings sluice knows, with valid values, and points REDIS_URL at the Redis Service', () => {
    const known = new Set<string>(Object.values(SETTING_SPECS).map((s) => s.env));
    expect(Object.keys(containerEnv()).filter((name) => !known.has(name))).toEqual([]);
    const settings = loadSettings(containerEnv(), []);
    const redisService = obj(find('Service', 'redis')['spec'], 'redis spec');
    const redisPort = obj(arr(redisService['ports'], 'ports')[0], 'port')['port'];
    expect(settings.redis?.nodes).toEqual([{ host: 'redis', port: redisPort }]);
  });

  it("exposes sluice's default ports and probes gRPC health on 8081 and /healthcheck on 8080", () => {
    const ports = Object.fromEntries(arr(container()['ports'], 'ports').map((p) => [obj(p, 'port')['name'], obj(p, 'port')['containerPort']]));
    expect(ports).toEqual({ grpc: GRPC_PORT, http: HTTP_PORT, 'http-debug': DEBUG_PORT });
    const probes = [container()['startupProbe'], container()['readinessProbe'], container()['livenessProbe']].map((p) => obj(p, 'probe'));
    expect(probes.some((p) => obj(p['grpc'] ?? {}, 'grpc')['port'] === GRPC_PORT)).toBe(true);
    expect(probes.some((p) => p['httpGet'] !== undefined && obj(p['httpGet'], 'httpGet')['port'] === HTTP_PORT && obj(p['httpGet'], 'httpGet')['path'] === '/healthcheck')).toBe(true);
    // Liveness must not fail when only Redis is down: neither gRPC health nor /healthcheck.
    expect(Object.keys(obj(container()['livenessProbe'], 'liveness'))).toContain('tcpSocket');
    expect(container()['resources']).toMatchObject({ requests: { cpu: expect.any(String), memory: expect.any(String) } });
  });

  it('drains on SIGTERM within the termination grace period', () => {
    const settings = loadSettings(containerEnv(), []);
    const spec = obj(obj(obj(find('Deployment', 'sluice')['spec'], 'spec')['template'], 'template')['spec'], 'pod spec');
    const preStop = arr(obj(obj(obj(container()['lifecycle'], 'lifecycle')['preStop'], 'preStop')['exec'], 'exec')['command'], 'command');
    expect(preStop[0]).toBe('sleep');
    const sleepMs = Number(preStop[1]) * 1000;
    // Longer than Envoy's DNS refresh and health check interval (5 s each in envoy/envoy.yaml).
    expect(sleepMs).toBeGreaterThan(5000);
    expect((spec['terminationGracePeriodSeconds'] as number) * 1000).toBeGreaterThan(sleepMs + settings.shutdownGraceMs);
  });

  it('has a headless Service for Envoy STRICT_DNS and a ClusterIP one, both on the gRPC port', () => {
    const headless = obj(find('Service', 'sluice-headless')['spec'], 'spec');
    expect(headless['clusterIP']).toBe('None');
    for (const name of ['sluice-headless', 'sluice']) {
      const spec = obj(find('Service', name)['spec'], 'spec');
      const grpc = arr(spec['ports'], 'ports').map((p) => obj(p, 'port')).find((p) => p['name'] === 'grpc')!;
      expect({ port: grpc['port'], targetPort: grpc['targetPort'], appProtocol: grpc['appProtocol'] }).toEqual({ port: GRPC_PORT, targetPort: 'grpc', appProtocol: 'grpc' });
      expect(spec['selector']).toEqual(obj(obj(find('Deployment', 'sluice')['spec'], 'spec')['selector'], 'selector')['matchLabels']);
    }
  });
});

describe('Dockerfile (the image compose builds and Kubernetes runs)', () => {
  const stages = (): Stage[] => readDockerfile();
  const runtime = (): Stage => stages()[stages().length - 1]!;
  const dockerignore = (): string => fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8');
  const composeSluice = (): Obj => obj(obj(obj(readYaml('docker-compose.yml'), 'compose')['services'], 'services')['sluice'], 'sluice');
  const k8sContainer = (): Obj => {
    const deployment = readYamlDocuments('deploy/kubernetes/deployment.yaml')
      .map((d) => obj(d, 'deployment.yaml'))
      .find((d) => d['kind'] === 'Deployment')!;
    const spec = obj(obj(obj(deployment['spec'], 'spec')['template'], 'template')['spec'], 'pod spec');
    return obj(arr(spec['containers'], 'containers').map((c) => obj(c, 'container')).find((c) => c['name'] === 'sluice'), 'sluice container');
  };
  const k8sPodSecurity = (): Obj => {
    const deployment = readYamlDocuments('deploy/kubernetes/deployment.yaml')
      .map((d) => obj(d, 'deployment.yaml'))
      .find((d) => d['kind'] === 'Deployment')!;
    return obj(obj(obj(obj(deployment['spec'], 'spec')['template'], 'template')['spec'], 'pod spec')['securityContext'], 'securityContext');
  };

  it('has a build stage and a runtime stage, both on node:24-alpine, the Node release the tests run the image\'s service on', () => {
    expect(stages().map((s) => ({ image: s.image, name: s.name }))).toEqual([
      { image: 'node:24-alpine', name: 'build' },
      { image: 'node:24-alpine', name: undefined },
    ]);
    // test/deploy/image-node.test.ts runs the runtime stage's files on Node IMAGE_NODE_VERSION.
    expect(IMAGE_NODE_VERSION.split('.')[0]).toBe('24');
    // engines is a floor (>=20: CI's Node); the image's release must satisfy it.
    const engines = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
    const floor = /^>=(\d+)$/.exec(engines);
    expect(floor).not.toBeNull();
    expect(24).toBeGreaterThanOrEqual(Number(floor![1]));
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(Number(floor![1]));
  });

  it('compiles in the build stage (npm ci, then tsc) and ships only production dependencies', () => {
    const [build] = stages();
    const buildRuns = all(build!, 'RUN').map((r) => r.raw);
    expect(buildRuns.some((r) => /\bnpm ci\b/.test(r))).toBe(true);
    expect(buildRuns.some((r) => r.includes('tsc -p tsconfig.build.json'))).toBe(true);
    const runtimeRuns = all(runtime(), 'RUN').map((r) => r.raw);
    // --ignore-scripts: the package's `prepare` (tsc) would fail without dev dependencies.
    expect(runtimeRuns.filter((r) => /\bnpm ci\b/.test(r))).toEqual([expect.stringMatching(/npm ci --omit=dev --ignore-scripts\b/)]);
    const fromBuild = copies(runtime()).filter((c) => c.from !== undefined);
    expect(fromBuild).toEqual([{ from: 'build', sources: ['/app/dist/src'], dest: './dist/src' }]);
    expect(JSON.stringify(copies(runtime()))).not.toContain('node_modules');
  });

  it('copies only files that exist and that .dockerignore keeps in the build context', () => {
    for (const stage of stages()) {
      for (const copy of copies(stage).filter((c) => c.from === undefined)) {
        for (const source of copy.sources) {
          expect({ source, exists: fs.existsSync(path.join(ROOT, source)), inContext: inBuildContext(source, dockerignore()) }).toEqual({
            source,
            exists: true,
            inContext: true,
          });
        }
      }
    }
    for (const kept of ['node_modules', 'dist', '.git', 'test']) expect({ kept, inContext: inBuildContext(kept, dockerignore()) }).toEqual({ kept, inContext: false });
  });

  it('runs as a non-root user, the uid and gid the Kubernetes pod runs as', () => {
    const user = last(runtime(), 'USER')?.raw;
    expect(user).toMatch(/^\d+:\d+$/);
    const [uid, gid] = user!.split(':').map(Number);
    expect(uid).not.toBe(0);
    expect({ uid, gid }).toEqual({ uid: k8sPodSecurity()['runAsUser'], gid: k8sPodSecurity()['runAsGroup'] });
    expect(k8sPodSecurity()['runAsNonRoot']).toBe(true);
  });

  it("EXPOSEs sluice's default ports: gRPC, HTTP and debug", () => {
    const exposed = all(runtime(), 'EXPOSE').flatMap((e) => e.raw.split(/\s+/)).map(Number).sort();
    expect(exposed).toEqual([GRPC_PORT, HTTP_PORT, DEBUG_PORT].sort());
  });

  it('health-checks /healthcheck on the HTTP port sluice listens on (PORT, default 8080)', () => {
    const check = healthcheck(runtime());
    expect(check).toBeDefined();
    const url = /http:\/\/127\.0\.0\.1:\$\{(\w+):-(\d+)\}(\/\S*?)"/.exec(check!.command);
    expect(url).not.toBeNull();
    const [, variable, fallback, route] = url!;
    expect({ variable, fallback: Number(fallback) }).toEqual({ variable: SETTING_SPECS.port.env, fallback: HTTP_PORT });
    // The route the HTTP server really serves (src/app.ts) and the probe Kubernetes uses.
    expect(fs.readFileSync(path.join(ROOT, 'src/app.ts'), 'utf8')).toContain(`'${route!}': healthcheckRoute(health)`);
    expect(obj(obj(k8sContainer()['startupProbe'], 'startupProbe')['httpGet'], 'httpGet')['path']).toBe(route);
    // The check itself is run against a live server in test/deploy/image-node.test.ts.
  });

  it('serves the bundled example config by default, through the built CLI', () => {
    expect(last(runtime(), 'ENTRYPOINT')?.exec).toEqual(['node', 'dist/src/cli/main.js']);
    const cmd = last(runtime(), 'CMD')?.exec;
    expect(cmd?.[0]).toBe('serve');
    const settings = loadSettings({}, cmd!.slice(1));
    const workdir = last(runtime(), 'WORKDIR')!.raw;
    const copied = copies(runtime()).find((c) => c.sources.includes('examples'));
    expect(path.posix.join(workdir, copied!.dest)).toBe(path.posix.join(workdir, 'examples'));
    expect(path.relative(process.cwd(), settings.configDir ?? '')).toBe('examples/oauth2');
    expect(fs.existsSync(path.join(ROOT, 'examples/oauth2/ratelimit.yaml'))).toBe(true);
  });

  it('is the image compose builds and names, and the one Kubernetes runs', () => {
    expect(obj(composeSluice()['build'], 'build')['dockerfile']).toBe('Dockerfile');
    expect(k8sContainer()['image']).toBe(composeSluice()['image']);
    expect(composeSluice()['image']).toBe(`sluice:${(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}`);
    // Both replace the default CMD with plain `serve`, so their RUNTIME_* settings apply.
    expect(k8sContainer()['args']).toEqual(['serve']);
    expect(composeSluice()['command']).toEqual(['serve']);
  });
});

describe('deploy/istio', () => {
  const docs = (): Obj[] => readYamlDocuments('deploy/istio/envoyfilter.yaml').map((d) => obj(d, 'envoyfilter'));
  const patches = (): Obj[] => docs().flatMap((d) => arr(obj(d['spec'], 'spec')['configPatches'], 'configPatches').map((p) => obj(p, 'patch')));

  /** The Istio gateway's rate limit filters, in the order INSERT_BEFORE router puts them. */
  const istioFilters = () =>
    patches()
      .filter((p) => p['applyTo'] === 'HTTP_FILTER')
      .map((p) => httpFilter(obj(p['patch'], 'patch')['value'], 'istio filter'));

  const istioRoutes = (): RouteModel[] =>
    patches()
      .filter((p) => p['applyTo'] === 'HTTP_ROUTE')
      .map((p) => {
        const name = str(obj(obj(obj(obj(p['match'], 'match')['routeConfiguration'], 'rc')['vhost'], 'vhost')['route'], 'route')['name'], 'route name');
        const value = obj(obj(p['patch'], 'patch')['value'], 'value');
        return routeModel({ ...value, name }, `istio route ${name}`);
      });

  it('is built on deploy/kubernetes, whose ConfigMap holds the domain every filter names', () => {
    const kustomization = obj(readYaml('deploy/istio/kustomization.yaml'), 'kustomization');
    const resources = arr(kustomization['resources'], 'resources').map((r) => str(r, 'resource'));
    expect(resources).toContain('../kubernetes');
    for (const r of resources) expect(fs.existsSync(path.join(ROOT, 'deploy/istio', r))).toBe(true);
    const configMap = readYamlDocuments('deploy/kubernetes/configmap.yaml').map((d) => obj(d, 'cm'))[0]!;
    const domain = obj(parseYaml(str(obj(configMap['data'], 'data')['config.yaml'], 'config.yaml')), 'config')['domain'];
    const filters = istioFilters().filter((f) => f.type === RATE_LIMIT_TYPE).map(rateLimitFilter);
    expect(filters.length).toBeGreaterThanOrEqual(2);
    for (const f of filters) expect(f.domain).toBe(domain);
  });

  it("points at the sluice Service's gRPC port through Istio's outbound cluster, over V3", () => {
    const namespace = obj(readYaml('deploy/kubernetes/kustomization.yaml'), 'k')['namespace'];
    const services = readYamlDocuments('deploy/kubernetes/service.yaml').map((d) => obj(d, 'svc'));
    const clusterIp = services.find((s) => obj(s['metadata'], 'm')['name'] === 'sluice')!;
    expect(obj(clusterIp['spec'], 'spec')['clusterIP']).toBeUndefined();
    for (const f of istioFilters().filter((f) => f.type === RATE_LIMIT_TYPE)) {
      const rl = rateLimitFilter(f);
      expect(rl.clusterName).toBe(`outbound|${GRPC_PORT}||sluice.${String(namespace)}.svc.cluster.local`);
      expect(obj(f.config['rate_limit_service'], 'rls')['transport_api_version']).toBe('V3');
    }
  });

  it('sends only descriptors the example config limits, with the same fail-open/closed split as envoy.yaml', () => {
    const filters = istioFilters().filter((f) => f.type === RATE_LIMIT_TYPE).map(rateLimitFilter);
    const text = fs.readFileSync(path.join(ROOT, 'deploy/istio/envoyfilter.yaml'), 'utf8');
    expect(rateLimitEntries(text).length).toBe(istioRoutes().reduce((n, r) => n + r.rateLimits.length, 0));
    expect(checkRateLimitsAgainstConfig('deploy/istio/envoyfilter.yaml', text, filters)).toEqual([]);
    const byStage = (fs: readonly RateLimitFilterModel[]) => fs.map((f) => [f.stage, f.failureModeDeny, f.domain]);
    expect(byStage(filters)).toEqual(byStage(envoy.rateLimitFilters));
    for (const route of istioRoutes()) {
      for (const entry of route.rateLimits) {
        for (const action of entry.actions) {
          if (obj(action, 'a')['metadata'] === undefined) continue;
          const m = metadataAction(obj(action, 'a'), route.name);
          // Istio's jwt_authn writes the payload under "payload".
          if (m.namespace === 'envoy.filters.http.jwt_authn') expect(m.path[0]).toBe('payload');
        }
      }
    }
  });

  it('matches route names the VirtualService defines, and runs the same Lua as envoy.yaml', () => {
    const vs = readYamlDocuments('deploy/istio/gateway.yaml').map((d) => obj(d, 'doc')).find((d) => d['kind'] === 'VirtualService')!;
    const names = arr(obj(vs['spec'], 'spec')['http'], 'http').map((h) => obj(h, 'http')['name']);
    for (const route of istioRoutes()) expect(names).toContain(route.name);
    const luaOf = (filters: readonly { type: string; config: Obj }[]): unknown =>
      obj(filters.find((f) => f.type === LUA_TYPE)!.config['source_codes'], 'source_codes');
    expect(luaOf(istioFilters())).toEqual(luaOf(envoy.filters));
  });
});

describe('rate_limits in the deployment files', () => {
  it('are found only in envoy/envoy.yaml and deploy/istio/envoyfilter.yaml, the two files checked above', () => {
    const files = [...listFiles('envoy', /\.ya?ml$/), ...listFiles('deploy', /\.ya?ml$/), 'docker-compose.yml'];
    const withRateLimits = files.filter((f) => rateLimitEntries(fs.readFileSync(path.join(ROOT, f), 'utf8')).length > 0);
    expect(withRateLimits).toEqual(['envoy/envoy.yaml', 'deploy/istio/envoyfilter.yaml'].sort((a, b) => files.indexOf(a) - files.indexOf(b)));
  });
});

describe('the descriptor check bites', () => {
  const istioText = (): string => fs.readFileSync(path.join(ROOT, 'deploy/istio/envoyfilter.yaml'), 'utf8');
  const istioFilters = (): RateLimitFilterModel[] =>
    readYamlDocuments('deploy/istio/envoyfilter.yaml')
      .flatMap((d) => arr(obj(obj(d, 'doc')['spec'], 'spec')['configPatches'], 'configPatches'))
      .map((p) => obj(p, 'patch'))
      .filter((p) => p['applyTo'] === 'HTTP_FILTER')
      .map((p) => httpFilter(obj(p['patch'], 'patch')['value'], 'filter'))
      .filter((f) => f.type === RATE_LIMIT_TYPE)
      .map(rateLimitFilter);
  /** The Istio file with one more entry on the token route, after `comment` lines. */
  const withEntry = (comment: string, action: string): string => {
    const anchor = '          route:\n            rate_limits:\n';
    expect(istioText()).toContain(anchor);
    const entry = `${comment}              - stage: 2\n                actions:\n                  - ${action}\n`;
    return istioText().replace(anchor, anchor + entry);
  };
  const probe = 'header_value_match: { descriptor_value: probe, headers: [{ name: x-probe, present_match: true }] }';

  it('reports an entry whose descriptor no rule limits, with what sluice explain says', () => {
    const problems = checkRateLimitsAgainstConfig('ef.yaml', withEntry('', probe), istioFilters());
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^ef\.yaml:253 spec\.configPatches\[0\]\.patch\.value\.route\.rate_limits\[0\]: \(header_match=probe\) has no limit in domain oauth2/);
    expect(problems[0]).toContain('⇒ no limit: header_match=probe matches no node at level 1');
  });

  it('accepts it when its comment says why it is meant to match none, and holds the comment to it', () => {
    const why = '              # sluice: matches no limit: counted by another service\n';
    expect(checkRateLimitsAgainstConfig('ef.yaml', withEntry(why, probe), istioFilters())).toEqual([]);
    const limited = 'generic_key: { descriptor_key: route, descriptor_value: orders-create }';
    const withScope = withEntry(why, limited).replace(`- ${limited}\n`, `- ${limited}\n                  - generic_key: { descriptor_key: scope, descriptor_value: "orders:write" }\n`);
    expect(checkRateLimitsAgainstConfig('ef.yaml', withScope, istioFilters())).toEqual([
      'ef.yaml:254 spec.configPatches[0].patch.value.route.rate_limits[0]: says it matches no limit (counted by another service), but (route=orders-create,scope=orders:write) is limited by examples/oauth2/ratelimit.yaml',
    ]);
  });
});

describe('rate limit actions produce what Envoy sends', () => {
  const one = (action: Obj, ctx: RequestContext): Entry[] | undefined => buildDescriptor([action], ctx);
  const base: RequestContext = { remoteAddress: '192.0.2.77', sourceCluster: 'edge', routeCluster: 'api', headers: { 'x-tier': 'gold' }, query: { plan: 'pro' } };

  it('source_cluster, destination_cluster, remote_address, masked_remote_address', () => {
    expect(one({ source_cluster: {} }, base)).toEqual([{ key: 'source_cluster', value: 'edge' }]);
    expect(one({ destination_cluster: {} }, base)).toEqual([{ key: 'destination_cluster', value: 'api' }]);
    expect(one({ remote_address: {} }, base)).toEqual([{ key: 'remote_address', value: '192.0.2.77' }]);
    expect(one({ masked_remote_address: { v4_prefix_mask_len: 24 } }, base)).toEqual([{ key: 'masked_remote_address', value: '192.0.2.0/24' }]);
    expect(one({ masked_remote_address: {} }, base)).toEqual([{ key: 'masked_remote_address', value: '192.0.2.77/32' }]);
  });

  it('request_headers and query_parameters: the value, or a dropped descriptor unless skip_if_absent', () => {
    expect(one({ request_headers: { header_name: 'X-Tier', descriptor_key: 'tier' } }, base)).toEqual([{ key: 'tier', value: 'gold' }]);
    expect(one({ request_headers: { header_name: 'x-none', descriptor_key: 'tier' } }, base)).toBeUndefined();
    expect(one({ request_headers: { header_name: 'x-none', descriptor_key: 'tier', skip_if_absent: true } }, base)).toEqual([]);
    expect(one({ query_parameters: { query_parameter_name: 'plan', descriptor_key: 'plan' } }, base)).toEqual([{ key: 'plan', value: 'pro' }]);
    expect(one({ query_parameters: { query_parameter_name: 'none', descriptor_key: 'plan' } }, base)).toBeUndefined();
  });

  it('header_value_match and query_parameter_value_match: descriptor_value when matched (or not, with expect_match false)', () => {
    const gold = { headers: [{ name: 'x-tier', string_match: { exact: 'gold' } }], descriptor_value: 'gold' };
    expect(one({ header_value_match: gold }, base)).toEqual([{ key: 'header_match', value: 'gold' }]);
    expect(one({ header_value_match: { ...gold, descriptor_key: 'tier' } }, base)).toEqual([{ key: 'tier', value: 'gold' }]);
    expect(one({ header_value_match: { ...gold, expect_match: false } }, base)).toBeUndefined();
    expect(one({ header_value_match: { ...gold, headers: [{ name: 'x-tier', string_match: { prefix: 'sil' } }] } }, base)).toBeUndefined();
    expect(one({ header_value_match: { ...gold, headers: [{ name: 'x-tier', string_match: { prefix: 'sil' } }], expect_match: false } }, base)).toEqual([{ key: 'header_match', value: 'gold' }]);
    expect(one({ header_value_match: { descriptor_value: 'anon', headers: [{ name: 'authorization', present_match: false }] } }, base)).toEqual([{ key: 'header_match', value: 'anon' }]);
    expect(one({ header_value_match: { descriptor_value: 'x', headers: [{ name: 'x-tier', invert_match: true, safe_regex_match: { regex: 'g.*' } }] } }, base)).toBeUndefined();
    const pro = { query_parameters: [{ name: 'plan', string_match: { exact: 'pro' } }], descriptor_value: 'pro' };
    expect(one({ query_parameter_value_match: pro }, base)).toEqual([{ key: 'query_match', value: 'pro' }]);
    expect(one({ query_parameter_value_match: pro }, { ...base, query: {} })).toBeUndefined();
  });

  it('throws on an action it does not model, so a new one cannot be skipped', () => {
    expect(() => one({ extension: { name: 'x' } }, base)).toThrow(/not modelled/);
  });
});
