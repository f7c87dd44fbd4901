import * as fs from 'node:fs';
import * as path from 'node:path';
import { LineCounter, isAlias, isMap, isNode, isScalar, isSeq, parseAllDocuments } from 'yaml';
import type { WireRequestShape, WireResponseShape } from '../../src/server/proto';

/**
 * A small model of what Envoy does with our deployment files: which HTTP filters run in which
 * order, and which rate limit descriptors each route's `rate_limits` produce for a request. It
 * interprets only the actions our files use and throws on anything else, so a file that starts
 * using an action this model cannot read fails the tests instead of being skipped.
 *
 * Semantics follow Envoy's router_ratelimit.cc as recorded in the shared protocol notes (§2.1):
 * actions run in order and each appends one entry; an action that fails drops the whole
 * descriptor; `metadata` reads string values only and falls back to `default_value`.
 */

export const ROOT = path.resolve(__dirname, '..', '..');

export function readYamlDocuments(relative: string): unknown[] {
  const text = fs.readFileSync(path.join(ROOT, relative), 'utf8');
  const docs = parseAllDocuments(text);
  const out: unknown[] = [];
  for (const doc of docs) {
    if (doc.errors.length > 0) throw new Error(`${relative}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (value !== null && value !== undefined) out.push(value);
  }
  return out;
}

export function readYaml(relative: string): unknown {
  const docs = readYamlDocuments(relative);
  if (docs.length !== 1) throw new Error(`${relative}: expected one YAML document, found ${docs.length}`);
  return docs[0];
}

// ---------------------------------------------------------------------------------------------
// Loose access to parsed YAML, failing loudly with the path when a shape is not what we expect.

export type Obj = Record<string, unknown>;

export function obj(value: unknown, where: string): Obj {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected a mapping`);
  return value as Obj;
}

export function arr(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${where}: expected a list`);
  return value;
}

export function str(value: unknown, where: string): string {
  if (typeof value !== 'string') throw new Error(`${where}: expected a string, got ${JSON.stringify(value)}`);
  return value;
}

// ---------------------------------------------------------------------------------------------
// Rate limit actions → descriptor entries.

export interface Entry {
  readonly key: string;
  readonly value: string;
}

/** What Envoy knows about one request when it builds descriptors. */
export interface RequestContext {
  /** The trusted client IP (`remote_address` action). */
  readonly remoteAddress?: string;
  /** Dynamic metadata: namespace → struct (jwt_authn payload, our Lua filter's values). */
  readonly metadata?: Readonly<Record<string, Obj>>;
  /** Request headers, lower-case names. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Query parameters of the request path, decoded. */
  readonly query?: Readonly<Record<string, string>>;
  /** This Envoy's `--service-cluster` (`source_cluster` action). */
  readonly sourceCluster?: string;
  /** The cluster the route picked (`destination_cluster` action). */
  readonly routeCluster?: string;
}

export interface BuildOptions {
  /**
   * Take every `header_value_match` / `query_parameter_value_match` as firing (appending its
   * entry) without a request to match: the descriptor the entry is written to produce.
   */
  readonly assumeValueMatches?: boolean;
}

/** A `metadata` action: where it reads and what it falls back to. */
export interface MetadataAction {
  readonly descriptorKey: string;
  readonly namespace: string;
  readonly path: readonly string[];
  readonly defaultValue: string | undefined;
  readonly skipIfAbsent: boolean;
}

export function metadataAction(action: Obj, where: string): MetadataAction {
  const metadata = obj(action['metadata'], where);
  const key = obj(metadata['metadata_key'], `${where}.metadata_key`);
  const source = metadata['source'];
  if (source !== undefined && source !== 'DYNAMIC') throw new Error(`${where}: only DYNAMIC metadata is modelled`);
  return {
    descriptorKey: str(metadata['descriptor_key'], `${where}.descriptor_key`),
    namespace: str(key['key'], `${where}.metadata_key.key`),
    path: arr(key['path'], `${where}.metadata_key.path`).map((p, i) => str(obj(p, `${where}.path[${i}]`)['key'], `${where}.path[${i}].key`)),
    defaultValue: metadata['default_value'] === undefined ? undefined : str(metadata['default_value'], `${where}.default_value`),
    skipIfAbsent: metadata['skip_if_absent'] === true,
  };
}

/** A string at `path` in a namespace's struct; anything else (number, list, struct, absent) is absent. */
function metadataString(ctx: RequestContext, namespace: string, keys: readonly string[]): string | undefined {
  let node: unknown = ctx.metadata?.[namespace];
  for (const key of keys) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined;
    node = (node as Obj)[key];
  }
  return typeof node === 'string' ? node : undefined;
}

/** Envoy's StringMatcher on one value (RE2 full match for safe_regex). */
function stringMatches(matcher: Obj, value: string, where: string): boolean {
  const ignoreCase = matcher['ignore_case'] === true;
  const v = ignoreCase ? value.toLowerCase() : value;
  const lit = (key: string): string => {
    const raw = str(matcher[key], `${where}.${key}`);
    return ignoreCase ? raw.toLowerCase() : raw;
  };
  if (matcher['exact'] !== undefined) return v === lit('exact');
  if (matcher['prefix'] !== undefined) return v.startsWith(lit('prefix'));
  if (matcher['suffix'] !== undefined) return v.endsWith(lit('suffix'));
  if (matcher['contains'] !== undefined) return v.includes(lit('contains'));
  if (matcher['safe_regex'] !== undefined) return fullMatch(str(obj(matcher['safe_regex'], where)['regex'], `${where}.safe_regex.regex`), value);
  throw new Error(`${where}: string matcher ${Object.keys(matcher).join(', ')} is not modelled`);
}

/** Envoy's HeaderMatcher (route_components.proto) on a set of values keyed by name. */
function headerMatches(raw: unknown, values: Readonly<Record<string, string>> | undefined, where: string): boolean {
  const matcher = obj(raw, where);
  const name = str(matcher['name'], `${where}.name`).toLowerCase();
  let value = values?.[name];
  if (value === undefined && matcher['treat_missing_header_as_empty'] === true) value = '';
  let matched: boolean;
  if (matcher['present_match'] !== undefined) matched = (value !== undefined) === (matcher['present_match'] === true);
  else if (value === undefined) matched = false;
  else if (matcher['string_match'] !== undefined) matched = stringMatches(obj(matcher['string_match'], where), value, `${where}.string_match`);
  else if (matcher['exact_match'] !== undefined) matched = value === str(matcher['exact_match'], where);
  else if (matcher['prefix_match'] !== undefined) matched = value.startsWith(str(matcher['prefix_match'], where));
  else if (matcher['suffix_match'] !== undefined) matched = value.endsWith(str(matcher['suffix_match'], where));
  else if (matcher['contains_match'] !== undefined) matched = value.includes(str(matcher['contains_match'], where));
  else if (matcher['safe_regex_match'] !== undefined) matched = fullMatch(str(obj(matcher['safe_regex_match'], where)['regex'], where), value);
  else if (Object.keys(matcher).every((k) => k === 'name' || k === 'invert_match' || k === 'treat_missing_header_as_empty')) matched = true;
  else throw new Error(`${where}: header matcher ${Object.keys(matcher).join(', ')} is not modelled`);
  // Envoy inverts the whole result, absent header included (present_match: false aside).
  return matcher['invert_match'] === true ? !matched : matched;
}

/** Envoy's QueryParameterMatcher: present, or a string match on the value. */
function queryParameterMatches(raw: unknown, query: Readonly<Record<string, string>> | undefined, where: string): boolean {
  const matcher = obj(raw, where);
  const value = query?.[str(matcher['name'], `${where}.name`)];
  if (matcher['present_match'] !== undefined) return (value !== undefined) === (matcher['present_match'] === true);
  if (value === undefined) return false;
  if (matcher['string_match'] === undefined) return true;
  return stringMatches(obj(matcher['string_match'], where), value, `${where}.string_match`);
}

/** `192.0.2.77` with a /24 mask → `192.0.2.0/24` (IPv4 only: our tests use IPv4 peers). */
function maskIPv4(address: string, bits: number, where: string): string {
  const octets = address.split('.').map(Number);
  if (octets.length !== 4 || octets.some((o) => !Number.isInteger(o) || o < 0 || o > 255)) throw new Error(`${where}: only IPv4 is modelled, got ${address}`);
  const n = octets.reduce((acc, o) => acc * 256 + o, 0);
  const masked = bits === 0 ? 0 : n - (n % 2 ** (32 - bits));
  return `${[24, 16, 8, 0].map((shift) => Math.floor(masked / 2 ** shift) % 256).join('.')}/${bits}`;
}

/**
 * The descriptor one `rate_limits` entry produces, or undefined when Envoy would drop it. Each
 * action appends what router_ratelimit.cc appends; `header_value_match` and
 * `query_parameter_value_match` append their `descriptor_value` when the request matches all
 * their matchers (or does not, with `expect_match: false`), else drop the descriptor.
 */
export function buildDescriptor(actions: readonly unknown[], ctx: RequestContext, where = 'actions', options: BuildOptions = {}): Entry[] | undefined {
  const entries: Entry[] = [];
  for (const [i, raw] of actions.entries()) {
    const action = obj(raw, `${where}[${i}]`);
    const kinds = Object.keys(action);
    if (kinds.length !== 1) throw new Error(`${where}[${i}]: one action per list item, got ${kinds.join(', ')}`);
    const kind = kinds[0]!;
    const spec = obj(action[kind], `${where}[${i}].${kind}`);
    switch (kind) {
      case 'generic_key':
        entries.push({
          key: spec['descriptor_key'] === undefined ? 'generic_key' : str(spec['descriptor_key'], `${where}[${i}].descriptor_key`),
          value: str(spec['descriptor_value'], `${where}[${i}].descriptor_value`),
        });
        break;
      case 'remote_address':
        if (ctx.remoteAddress === undefined) return undefined;
        entries.push({ key: 'remote_address', value: ctx.remoteAddress });
        break;
      case 'request_headers': {
        const value = ctx.headers?.[str(spec['header_name'], `${where}[${i}].header_name`).toLowerCase()];
        if (value === undefined) {
          if (spec['skip_if_absent'] === true) break;
          return undefined;
        }
        entries.push({ key: str(spec['descriptor_key'], `${where}[${i}].descriptor_key`), value });
        break;
      }
      case 'metadata': {
        const m = metadataAction(action, `${where}[${i}]`);
        const value = metadataString(ctx, m.namespace, m.path) ?? m.defaultValue;
        if (value === undefined) {
          if (m.skipIfAbsent) break;
          return undefined;
        }
        entries.push({ key: m.descriptorKey, value });
        break;
      }
      case 'source_cluster':
        if (ctx.sourceCluster === undefined) throw new Error(`${where}[${i}]: source_cluster needs the Envoy's --service-cluster`);
        entries.push({ key: 'source_cluster', value: ctx.sourceCluster });
        break;
      case 'destination_cluster':
        if (ctx.routeCluster === undefined) throw new Error(`${where}[${i}]: destination_cluster needs the route's cluster`);
        entries.push({ key: 'destination_cluster', value: ctx.routeCluster });
        break;
      case 'masked_remote_address': {
        if (ctx.remoteAddress === undefined) return undefined;
        const bits = spec['v4_prefix_mask_len'] === undefined ? 32 : Number(spec['v4_prefix_mask_len']);
        entries.push({ key: 'masked_remote_address', value: maskIPv4(ctx.remoteAddress, bits, `${where}[${i}]`) });
        break;
      }
      case 'query_parameters': {
        const value = ctx.query?.[str(spec['query_parameter_name'], `${where}[${i}].query_parameter_name`)];
        if (value === undefined) {
          if (spec['skip_if_absent'] === true) break;
          return undefined;
        }
        entries.push({ key: str(spec['descriptor_key'], `${where}[${i}].descriptor_key`), value });
        break;
      }
      case 'header_value_match':
      case 'query_parameter_value_match': {
        const headers = kind === 'header_value_match';
        const list = arr(spec[headers ? 'headers' : 'query_parameters'], `${where}[${i}].${kind}`);
        const expect = spec['expect_match'] !== false;
        const matched = list.every((m, j) =>
          headers ? headerMatches(m, ctx.headers, `${where}[${i}].headers[${j}]`) : queryParameterMatches(m, ctx.query, `${where}[${i}].query_parameters[${j}]`),
        );
        if (options.assumeValueMatches !== true && matched !== expect) return undefined;
        const defaultKey = headers ? 'header_match' : 'query_match';
        entries.push({
          key: spec['descriptor_key'] === undefined ? defaultKey : str(spec['descriptor_key'], `${where}[${i}].descriptor_key`),
          value: str(spec['descriptor_value'], `${where}[${i}].descriptor_value`),
        });
        break;
      }
      default:
        throw new Error(`${where}[${i}]: action '${kind}' is not modelled by test/deploy/envoy-model.ts`);
    }
  }
  return entries;
}

// ---------------------------------------------------------------------------------------------
// Envoy bootstrap (envoy/envoy.yaml) → filters, routes, clusters.

export interface RateLimitEntry {
  readonly stage: number;
  readonly actions: readonly unknown[];
}

export interface RouteModel {
  readonly name: string;
  readonly rateLimits: readonly RateLimitEntry[];
  readonly typedPerFilterConfig: Obj;
  readonly cluster: string | undefined;
}

export interface RateLimitFilterModel {
  readonly name: string;
  readonly config: Obj;
  readonly stage: number;
  readonly domain: string;
  readonly failureModeDeny: boolean;
  readonly clusterName: string;
}

export interface HttpFilterModel {
  readonly name: string;
  readonly type: string;
  readonly config: Obj;
}

export const RATE_LIMIT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit';
export const JWT_AUTHN_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
export const LUA_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua';
export const RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
export const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

export function httpFilter(raw: unknown, where: string): HttpFilterModel {
  const filter = obj(raw, where);
  const config = obj(filter['typed_config'], `${where}.typed_config`);
  return { name: str(filter['name'], `${where}.name`), type: str(config['@type'], `${where}.typed_config.@type`), config };
}

export function rateLimitFilter(filter: HttpFilterModel): RateLimitFilterModel {
  const where = `http filter ${filter.name}`;
  const service = obj(filter.config['rate_limit_service'], `${where}.rate_limit_service`);
  const grpc = obj(service['grpc_service'], `${where}.rate_limit_service.grpc_service`);
  const envoyGrpc = obj(grpc['envoy_grpc'], `${where}.rate_limit_service.grpc_service.envoy_grpc`);
  return {
    name: filter.name,
    config: filter.config,
    stage: typeof filter.config['stage'] === 'number' ? filter.config['stage'] : 0,
    domain: str(filter.config['domain'], `${where}.domain`),
    failureModeDeny: filter.config['failure_mode_deny'] === true,
    clusterName: str(envoyGrpc['cluster_name'], `${where}.envoy_grpc.cluster_name`),
  };
}

export function routeModel(raw: unknown, where: string): RouteModel {
  const route = obj(raw, where);
  const action = route['route'] === undefined ? undefined : obj(route['route'], `${where}.route`);
  const rateLimits = action?.['rate_limits'] === undefined ? [] : arr(action['rate_limits'], `${where}.route.rate_limits`);
  return {
    name: str(route['name'], `${where}.name`),
    cluster: action?.['cluster'] === undefined ? undefined : str(action['cluster'], `${where}.route.cluster`),
    typedPerFilterConfig: route['typed_per_filter_config'] === undefined ? {} : obj(route['typed_per_filter_config'], `${where}.typed_per_filter_config`),
    rateLimits: rateLimits.map((e, i) => {
      const entry = obj(e, `${where}.rate_limits[${i}]`);
      return {
        stage: typeof entry['stage'] === 'number' ? entry['stage'] : 0,
        actions: arr(entry['actions'], `${where}.rate_limits[${i}].actions`),
      };
    }),
  };
}

export interface ClusterModel {
  readonly name: string;
  readonly config: Obj;
  /** Every `socket_address` of the cluster's load assignment. */
  readonly addresses: readonly { host: string; port: number }[];
}

export interface EnvoyModel {
  readonly filters: readonly HttpFilterModel[];
  readonly rateLimitFilters: readonly RateLimitFilterModel[];
  readonly routes: ReadonlyMap<string, RouteModel>;
  readonly clusters: ReadonlyMap<string, ClusterModel>;
  readonly hcm: Obj;
}

export function loadEnvoyModel(relative = 'envoy/envoy.yaml'): EnvoyModel {
  const bootstrap = obj(readYaml(relative), relative);
  const resources = obj(bootstrap['static_resources'], 'static_resources');
  const listeners = arr(resources['listeners'], 'listeners');
  if (listeners.length !== 1) throw new Error('expected one listener');
  const chain = obj(arr(obj(listeners[0], 'listeners[0]')['filter_chains'], 'filter_chains')[0], 'filter_chains[0]');
  const network = obj(arr(chain['filters'], 'filter_chains[0].filters')[0], 'filters[0]');
  const hcm = obj(network['typed_config'], 'http_connection_manager');
  const filters = arr(hcm['http_filters'], 'http_filters').map((f, i) => httpFilter(f, `http_filters[${i}]`));
  const routes = new Map<string, RouteModel>();
  const vhosts = arr(obj(hcm['route_config'], 'route_config')['virtual_hosts'], 'virtual_hosts');
  for (const [v, vhost] of vhosts.entries()) {
    const vh = obj(vhost, `virtual_hosts[${v}]`);
    if (vh['rate_limits'] !== undefined) throw new Error(`virtual_hosts[${v}]: vhost rate_limits are hidden by any route entry (P7); put them on routes`);
    for (const [r, route] of arr(vh['routes'], `virtual_hosts[${v}].routes`).entries()) {
      const model = routeModel(route, `virtual_hosts[${v}].routes[${r}]`);
      routes.set(model.name, model);
    }
  }
  const clusters = new Map<string, ClusterModel>();
  for (const [i, raw] of arr(resources['clusters'], 'clusters').entries()) {
    const cluster = obj(raw, `clusters[${i}]`);
    const name = str(cluster['name'], `clusters[${i}].name`);
    const addresses: { host: string; port: number }[] = [];
    const assignment = obj(cluster['load_assignment'], `clusters[${i}].load_assignment`);
    for (const endpoints of arr(assignment['endpoints'], `${name}.endpoints`)) {
      for (const lb of arr(obj(endpoints, name)['lb_endpoints'], `${name}.lb_endpoints`)) {
        const address = obj(obj(obj(obj(lb, name)['endpoint'], name)['address'], name)['socket_address'], `${name}.socket_address`);
        addresses.push({ host: str(address['address'], `${name}.address`), port: address['port_value'] as number });
      }
    }
    clusters.set(name, { name, config: cluster, addresses });
  }
  return {
    filters,
    rateLimitFilters: filters.filter((f) => f.type === RATE_LIMIT_TYPE).map(rateLimitFilter),
    routes,
    clusters,
    hcm,
  };
}

// ---------------------------------------------------------------------------------------------
// One request through the modelled filter chain.

export type RlsCall = (request: WireRequestShape) => Promise<WireResponseShape>;

export interface SimulatedResponse {
  /** 200 when the request reached the router; else the local reply's status. */
  readonly status: number;
  /** Which filter answered (or 'router'). */
  readonly by: string;
  /** Every ShouldRateLimit sent, in order, with its answer (or the error). */
  readonly calls: readonly { filter: string; request: WireRequestShape; response?: WireResponseShape; error?: unknown }[];
}

/** Full-match RE2 semantics for the simple regexes our RBAC rules use. */
function fullMatch(regex: string, value: string): boolean {
  return new RegExp(`^(?:${regex})$`).test(value);
}

/** RBACPerRoute ALLOW rules with `sourced_metadata` principals on dynamic metadata (the only shape our files use). */
function rbacAllows(route: RouteModel, ctx: RequestContext): boolean {
  const perRoute = route.typedPerFilterConfig['envoy.filters.http.rbac'];
  if (perRoute === undefined) return true;
  const rules = obj(obj(obj(perRoute, 'rbac per route')['rbac'], 'rbac')['rules'], 'rbac.rules');
  if (rules['action'] !== 'ALLOW') throw new Error('only ALLOW rbac rules are modelled');
  return Object.values(obj(rules['policies'], 'rbac.policies')).some((policy) =>
    arr(obj(policy, 'policy')['principals'], 'principals').every((p) => {
      const sourced = obj(obj(p, 'principal')['sourced_metadata'], 'principal.sourced_metadata');
      if ((sourced['metadata_source'] ?? 'DYNAMIC') !== 'DYNAMIC') throw new Error('only dynamic metadata principals are modelled');
      const matcher = obj(sourced['metadata_matcher'], 'principal.sourced_metadata.metadata_matcher');
      const keys = arr(matcher['path'], 'principal.metadata.path').map((k) => str(obj(k, 'path')['key'], 'path.key'));
      const value = metadataString(ctx, str(matcher['filter'], 'principal.metadata.filter'), keys);
      const regex = str(obj(obj(obj(matcher['value'], 'value')['string_match'], 'string_match')['safe_regex'], 'safe_regex')['regex'], 'regex');
      return value !== undefined && fullMatch(regex, value);
    }),
  );
}

/** Does jwt_authn require a token on this path? (prefix rules only, as in our files). */
function jwtRequired(filter: HttpFilterModel, requestPath: string): boolean {
  for (const rule of arr(filter.config['rules'], 'jwt_authn.rules')) {
    const r = obj(rule, 'jwt_authn rule');
    const match = obj(r['match'], 'jwt_authn rule.match');
    const prefix = match['prefix'];
    if (typeof prefix === 'string' && requestPath.startsWith(prefix)) return r['requires'] !== undefined;
  }
  return false;
}

/**
 * Runs one request for `routeName` through the filter chain: each rate limit filter sends the
 * descriptors of the route's entries at its stage (one call, if any), a 429 or a fail-closed error
 * ends the request, jwt_authn answers 401 when a required token's payload is missing, and the
 * route's RBAC answers 403. `path` is the request path (for jwt_authn rules).
 */
export async function simulateRequest(
  model: EnvoyModel,
  routeName: string,
  requestPath: string,
  ctx: RequestContext,
  rls: RlsCall,
): Promise<SimulatedResponse> {
  const route = model.routes.get(routeName);
  if (route === undefined) throw new Error(`no route named ${routeName}`);
  const calls: { filter: string; request: WireRequestShape; response?: WireResponseShape; error?: unknown }[] = [];
  for (const filter of model.filters) {
    switch (filter.type) {
      case RATE_LIMIT_TYPE: {
        const rl = rateLimitFilter(filter);
        const descriptors = route.rateLimits
          .filter((e) => e.stage === rl.stage)
          .map((e, i) => buildDescriptor(e.actions, ctx, `${routeName}.rate_limits[${i}]`))
          .filter((d): d is Entry[] => d !== undefined);
        if (descriptors.length === 0) break;
        const request: WireRequestShape = { domain: rl.domain, descriptors: descriptors.map((entries) => ({ entries })) };
        try {
          const response = await rls(request);
          calls.push({ filter: rl.name, request, response });
          if (response.overall_code === 'OVER_LIMIT') return { status: 429, by: rl.name, calls };
        } catch (error) {
          calls.push({ filter: rl.name, request, error });
          if (rl.failureModeDeny) return { status: 503, by: rl.name, calls };
        }
        break;
      }
      case JWT_AUTHN_TYPE: {
        const providers = obj(filter.config['providers'], 'jwt_authn.providers');
        const keys = Object.values(providers).map((p) => obj(p, 'provider')['payload_in_metadata']);
        const payload = ctx.metadata?.['envoy.filters.http.jwt_authn'];
        const present = payload !== undefined && keys.some((k) => typeof k === 'string' && payload[k] !== undefined);
        if (jwtRequired(filter, requestPath) && !present) return { status: 401, by: filter.name, calls };
        break;
      }
      case RBAC_TYPE:
        if (!rbacAllows(route, ctx)) return { status: 403, by: filter.name, calls };
        break;
      case LUA_TYPE:
        // The Lua filter's output is part of `ctx.metadata['sluice.oauth2']` (the caller plays it).
        break;
      case ROUTER_TYPE:
        return { status: 200, by: 'router', calls };
      default:
        throw new Error(`http filter ${filter.name} (${filter.type}) is not modelled`);
    }
  }
  throw new Error('the filter chain has no router');
}

/** Dynamic metadata as jwt_authn writes it for a verified token (`payload_in_metadata: key`). */
export function jwtMetadata(claims: Obj, payloadKey = 'jwt_payload'): Record<string, Obj> {
  return { 'envoy.filters.http.jwt_authn': { [payloadKey]: claims } };
}

/** Dynamic metadata as our Lua filter writes it for a token or introspection request. */
export function tokenEndpointMetadata(values: { client_id?: string; grant_type?: string; username?: string }): Record<string, Obj> {
  const md: Obj = {};
  for (const [k, v] of Object.entries(values)) if (v !== undefined) md[k] = v;
  return { 'sluice.oauth2': md };
}

// ---------------------------------------------------------------------------------------------
// Every `rate_limits` list of a YAML file, wherever it is (route, virtual host, per-route config).

export interface RateLimitsEntryAt {
  /** Where the entry is, e.g. `...routes[3].route.rate_limits[1]`, in its YAML document. */
  readonly path: readonly (string | number)[];
  /** 1-based line of the entry in the file. */
  readonly line: number;
  readonly stage: number;
  readonly actions: readonly unknown[];
  /** The comment lines written just before the entry (and before its anchor, for an alias). */
  readonly comment: string;
  /** The `cluster` beside the list (a RouteAction's), for `destination_cluster`. */
  readonly routeCluster: string | undefined;
}

export function rateLimitEntries(text: string): RateLimitsEntryAt[] {
  const out: RateLimitsEntryAt[] = [];
  const lineCounter = new LineCounter();
  for (const doc of parseAllDocuments(text, { lineCounter })) {
    const walk = (node: unknown, at: (string | number)[]): void => {
      if (isSeq(node)) {
        node.items.forEach((item, i) => walk(item, [...at, i]));
        return;
      }
      if (!isMap(node)) return;
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : '';
        if (key === 'rate_limits' && isSeq(pair.value)) {
          const cluster = node.get('cluster');
          pair.value.items.forEach((item, i) => {
            const target = isAlias(item) ? item.resolve(doc) : item;
            const list = pair.value as { commentBefore?: string | null };
            const comments = [i === 0 ? list.commentBefore : undefined, (item as { commentBefore?: string }).commentBefore, (target as { commentBefore?: string } | undefined)?.commentBefore];
            const entry = obj(isNode(target) ? target.toJS(doc) : undefined, `${at.join('.')}.rate_limits[${i}]`);
            out.push({
              path: [...at, 'rate_limits', i],
              line: lineCounter.linePos(isNode(item) ? (item.range?.[0] ?? 0) : 0).line,
              stage: typeof entry['stage'] === 'number' ? entry['stage'] : 0,
              actions: arr(entry['actions'], `${at.join('.')}.rate_limits[${i}].actions`),
              comment: comments.filter((c): c is string => typeof c === 'string').join('\n'),
              routeCluster: typeof cluster === 'string' ? cluster : undefined,
            });
          });
        } else {
          walk(pair.value, [...at, key]);
        }
      }
    };
    walk(doc.contents, []);
  }
  return out;
}
