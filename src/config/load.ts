import * as fs from 'node:fs';
import * as path from 'node:path';
import { isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type YAMLError, type YAMLMap } from 'yaml';
import { ConfigError } from '../errors';
import type { StoreFailureMode } from '../store/counter-store';
import { DescriptorLevel, DescriptorNode, LoadedRateLimitConfig, WildcardPattern } from './rate-limit-config';
import {
  SLIDING_LOG_MAX_REQUESTS,
  UNIT_SECONDS,
  type AlgorithmName,
  type ConfigProblem,
  type LimitRule,
  type LimitSpec,
  type RateLimitConfig,
  type Unit,
} from './types';

export interface ConfigFileRef {
  /** The reference's file name for messages: path relative to the config dir's parent, `/` → `.`. */
  readonly name: string;
  readonly path: string;
}

export interface ConfigFileContent {
  readonly name: string;
  readonly content: string;
}

export interface ParsedConfigFiles {
  /** Undefined whenever `problems` is not empty: a file set is accepted or rejected whole. */
  readonly config: RateLimitConfig | undefined;
  readonly problems: ConfigProblem[];
}

export interface ReadConfigDirectory {
  readonly files: (ConfigFileRef & ConfigFileContent)[];
  readonly problems: ConfigProblem[];
}

// Reasons shared by several checks; the texts are the reference's, so existing runbooks still match.
const EMPTY_DOMAIN = 'config file cannot have empty domain';
const EMPTY_KEY = 'descriptor has empty key';
const CHECK_FAILED = 'error checking config';
const UNLIMITED_WITH_UNIT = 'should not specify rate limit unit when unlimited';
const UNLIMITED_WITH_WINDOW = 'should not specify unit_multiplier or algorithm when unlimited';
const REPLACES_SELF = 'replaces should not contain name of same descriptor';
const REPLACES_EMPTY = 'should not have an empty replaces entry';
const REQUESTS_RANGE = 'requests_per_unit must be an integer between 0 and 4294967295';
const MULTIPLIER_RANGE = 'unit_multiplier must be a positive integer';
const WINDOW_TOO_LONG = `unit_multiplier is too large: the window must be at most ${Number.MAX_SAFE_INTEGER} ms`;
const UNLIMITED_WITH_BURST = 'should not specify burst when unlimited';
const BURST_RANGE = 'burst must be an integer between 1 and 4294967295';
const BURST_WITHOUT_BUCKET = 'burst is only valid with algorithm token_bucket';
const BUCKET_TOO_LARGE =
  `token_bucket is too large for the window: (burst + 1) × the window in ms must be at most ${Number.MAX_SAFE_INTEGER} ` +
  '(burst defaults to requests_per_unit)';
const SLIDING_LOG_TOO_LARGE =
  `requests_per_unit must be at most ${SLIDING_LOG_MAX_REQUESTS} with algorithm sliding_log ` +
  '(it keeps one entry per hit in the window); use sliding_window or token_bucket for larger limits';
const BOTH_RATE_LIMITS = 'should not specify both rate_limit and rate_limits';
const RATE_LIMITS_EMPTY = 'rate_limits should not be empty';
const UNLIMITED_IN_LIST = 'unlimited is not allowed in rate_limits; use rate_limit: {unlimited: true}';

const MAX_REQUESTS_PER_UNIT = 4294967295n;

const TOP_LEVEL_KEYS: ReadonlySet<string> = new Set(['domain', 'descriptors']);
const DESCRIPTOR_KEYS: ReadonlySet<string> = new Set([
  'key',
  'value',
  'rate_limit',
  'rate_limits',
  'descriptors',
  'shadow_mode',
  'quota_mode',
  'detailed_metric',
  'value_to_metric',
  'share_threshold',
  'metadata',
]);
const RATE_LIMIT_KEYS: ReadonlySet<string> = new Set([
  'unit',
  'requests_per_unit',
  'unlimited',
  'name',
  'replaces',
  'algorithm',
  'burst',
  'unit_multiplier',
  'store_failure',
]);
const REPLACES_KEYS: ReadonlySet<string> = new Set(['name']);

const UNITS_BY_NAME: ReadonlyMap<string, Unit> = new Map(
  (Object.keys(UNIT_SECONDS) as Unit[]).map((unit) => [unit, unit]),
);
const ALGORITHMS: ReadonlySet<string> = new Set<AlgorithmName>(['sliding_window', 'fixed_window', 'sliding_log', 'token_bucket']);
const DEFAULT_ALGORITHM: AlgorithmName = 'sliding_window';
const STORE_FAILURE_MODES: ReadonlySet<string> = new Set<StoreFailureMode>(['error', 'allow', 'deny', 'local']);

/**
 * YAML 1.1 because the reference parses with go-yaml v2: `yes`/`on` are booleans and `<<` merge keys
 * work there, and existing ConfigMaps must load unchanged. Integers as bigint so `10` and `10.0` stay
 * distinguishable (a float `requests_per_unit` is an error) and huge values are range-checked exactly.
 */
const YAML_OPTIONS = { version: '1.1', intAsBigInt: true, merge: true, uniqueKeys: true, prettyErrors: true } as const;

export function configProblem(file: string, yamlPath: string, reason: string): ConfigProblem {
  return {
    file,
    path: yamlPath,
    reason,
    message: yamlPath === '' ? `${file}: ${reason}` : `${file}: ${yamlPath}: ${reason}`,
  };
}

/**
 * Every regular file under `dir`, recursively and through symlinks (ConfigMap volumes are symlinks),
 * sorted by path. Like the reference's runtime loader, any file counts, not only `*.yaml`.
 * Throws `ConfigError` when a directory cannot be read.
 */
export function listConfigFiles(dir: string, options: { ignoreDotFiles: boolean }): ConfigFileRef[] {
  const problems: ConfigProblem[] = [];
  const files = collectConfigFiles(dir, options, problems);
  if (problems.length > 0) {
    throw new ConfigError(problems);
  }
  return files;
}

/** Lists and reads the files under `dir`, collecting problems instead of throwing. */
export function readConfigDirectory(dir: string, options: { ignoreDotFiles: boolean }): ReadConfigDirectory {
  const problems: ConfigProblem[] = [];
  const files: (ConfigFileRef & ConfigFileContent)[] = [];
  for (const file of collectConfigFiles(dir, options, problems)) {
    try {
      files.push({ ...file, content: fs.readFileSync(file.path, 'utf8') });
    } catch (error) {
      problems.push(configProblem(file.name, '', `cannot read config file: ${errorText(error)}`));
    }
  }
  return { files, problems };
}

/**
 * Validates a whole file set and builds the lookup tree. Pure: no I/O. Reports every problem in
 * every file rather than stopping at the first, so one `check-config` run shows all of them.
 */
export function parseConfigFiles(
  files: readonly ConfigFileContent[],
  options: { mergeDomainConfig: boolean },
): ParsedConfigFiles {
  const problems: ConfigProblem[] = [];
  const set = new FileSetBuilder(options.mergeDomainConfig);
  for (const file of files) {
    new FileParser(file.name, set, problems).parse(file.content);
  }
  return problems.length > 0 ? { config: undefined, problems } : { config: set.build(), problems };
}

/** Loads `dir` as one config; throws `ConfigError` listing every problem. No files ⇒ no domains. */
export function loadConfigDirectory(
  dir: string,
  options: { ignoreDotFiles: boolean; mergeDomainConfig: boolean },
): RateLimitConfig {
  const read = readConfigDirectory(dir, options);
  const parsed = parseConfigFiles(read.files, options);
  const problems = [...read.problems, ...parsed.problems];
  if (problems.length > 0 || parsed.config === undefined) {
    throw new ConfigError(problems);
  }
  return parsed.config;
}

function collectConfigFiles(
  dir: string,
  options: { ignoreDotFiles: boolean },
  problems: ConfigProblem[],
): ConfigFileRef[] {
  const root = path.resolve(dir);
  const base = path.dirname(root);
  const found: ConfigFileRef[] = [];
  // Real paths of the directories being walked: a symlink back to one of them would never end.
  const ancestors = new Set<string>();

  const walk = (current: string, label: string): void => {
    let real: string;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(current, { withFileTypes: true });
      real = fs.realpathSync(current);
    } catch (error) {
      problems.push(configProblem(label, '', `cannot read config directory: ${errorText(error)}`));
      return;
    }
    if (ancestors.has(real)) {
      return;
    }
    ancestors.add(real);
    for (const entry of entries) {
      // Skips the kubelet's `..data` link and `..<timestamp>` directory, which hold a second copy.
      if (options.ignoreDotFiles && entry.name.startsWith('.')) {
        continue;
      }
      const full = path.join(current, entry.name);
      let isDirectory = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        try {
          const target = fs.statSync(full);
          isDirectory = target.isDirectory();
          isFile = target.isFile();
        } catch {
          // A dangling link (e.g. mid-swap of `..data`) has nothing to load.
          continue;
        }
      }
      if (isDirectory) {
        walk(full, full);
      } else if (isFile) {
        found.push({ name: path.relative(base, full).split(path.sep).join('.'), path: full });
      }
    }
    ancestors.delete(real);
  };

  walk(root, dir);
  return found.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** The error's own message. Not `instanceof Error`: errors from another realm (vm, jest) fail that test. */
export function errorText(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'message' in error && typeof error.message === 'string') {
    return error.message;
  }
  return String(error);
}

/** The domain roots and rules of a file set under construction. */
class FileSetBuilder {
  private readonly roots = new Map<string, DescriptorLevel>();
  private readonly rules: LimitRule[] = [];

  constructor(private readonly mergeDomains: boolean) {}

  /** The root level for `domain`, or undefined when another file already owns it and merging is off. */
  claimDomain(domain: string): DescriptorLevel | undefined {
    const existing = this.roots.get(domain);
    if (existing !== undefined) {
      return this.mergeDomains ? existing : undefined;
    }
    const level = new DescriptorLevel();
    this.roots.set(domain, level);
    return level;
  }

  addRule(rule: LimitRule): void {
    this.rules.push(rule);
  }

  build(): RateLimitConfig {
    return new LoadedRateLimitConfig(this.roots, this.rules);
  }
}

/** Marks a leaf of the wrong type; the problem is already reported when this is returned. */
const INVALID: unique symbol = Symbol('invalid');
type Invalid = typeof INVALID;

/** A value found under an allowed key: the alias-resolved node (null/undefined when empty) and its path. */
interface Field {
  readonly node: unknown;
  readonly path: string;
}

/** What a `rate_limit` block's node inherits from its descriptor. */
interface RuleContext {
  readonly id: string;
  readonly domain: string;
  readonly shadowMode: boolean;
  readonly quotaMode: boolean;
  readonly detailedMetric: boolean;
}

function childPath(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

function isEmpty(node: unknown): boolean {
  return node === null || node === undefined || (isScalar(node) && node.value === null);
}

/** How a node is shown in a message: scalars as written, collections in flow style. */
function describeNode(node: unknown): string {
  if (isEmpty(node)) {
    return isScalar(node) && node.source ? node.source : 'null';
  }
  if (isScalar(node)) {
    return node.source ?? String(node.value);
  }
  return String(node);
}

function describeYamlError(error: YAMLError): string {
  // With prettyErrors the first line is `<message> at line L, column C:` and a source excerpt follows.
  const firstLine = (error.message.split('\n')[0] ?? '').replace(/:$/, '');
  if (error.code === 'MULTIPLE_DOCS') {
    // The library's text tells the *programmer* to call parseAllDocuments; say what the author must fix.
    const at = firstLine.lastIndexOf(' at line ');
    return `multiple YAML documents in one file are not supported${at >= 0 ? firstLine.slice(at) : ''}`;
  }
  return firstLine;
}

/** Validates one file into the shared set, appending problems; never throws on bad input. */
class FileParser {
  private doc: Document.Parsed | undefined;

  constructor(
    private readonly file: string,
    private readonly set: FileSetBuilder,
    private readonly problems: ConfigProblem[],
  ) {}

  parse(content: string): void {
    const doc = parseDocument(content, YAML_OPTIONS);
    const syntaxError = doc.errors[0];
    if (syntaxError !== undefined) {
      this.report('', `error loading config file: ${describeYamlError(syntaxError)}`);
      return;
    }
    this.doc = doc;
    const root = this.resolve(doc.contents);
    // An empty or comments-only file has no domain, like the reference's zero-value struct.
    if (isEmpty(root)) {
      this.report('domain', EMPTY_DOMAIN);
      return;
    }
    if (!isMap(root)) {
      this.report('', CHECK_FAILED);
      return;
    }
    const fields = this.readMap(root, '', TOP_LEVEL_KEYS);
    const domain = this.readString(fields.get('domain'));
    let level: DescriptorLevel | undefined;
    if (domain === undefined || domain === '') {
      this.report('domain', EMPTY_DOMAIN);
    } else if (domain !== INVALID) {
      level = this.set.claimDomain(domain);
      if (level === undefined) {
        this.report('domain', `duplicate domain '${domain}' in config file`);
      }
    }
    // A rejected domain still gets its descriptors checked, in a detached tree, so all problems show.
    const domainName = typeof domain === 'string' ? domain : '';
    this.readDescriptors(fields.get('descriptors'), level ?? new DescriptorLevel(), domainName, domainName, new Set());
  }

  private report(yamlPath: string, reason: string): void {
    this.problems.push(configProblem(this.file, yamlPath, reason));
  }

  private resolve(node: unknown): unknown {
    return isAlias(node) && this.doc !== undefined ? node.resolve(this.doc) : node;
  }

  /**
   * The allowed keys of one map level. Unknown keys are rejected here, per level, so `unit` on a
   * descriptor is an error (the reference's flat allow-list lets it pass and silently whitelists).
   */
  private readMap(map: YAMLMap, mapPath: string, allowed: ReadonlySet<string>): Map<string, Field> {
    const fields = new Map<string, Field>();
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

  /** A string leaf. Numbers and booleans count as their source text, as go-yaml does for string fields. */
  private readString(field: Field | undefined): string | undefined | Invalid {
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

  private readBool(field: Field | undefined): boolean | undefined | Invalid {
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
  private readNumber(field: Field | undefined): bigint | number | undefined | Invalid {
    if (field === undefined || isEmpty(field.node)) {
      return undefined;
    }
    if (isScalar(field.node) && (typeof field.node.value === 'bigint' || typeof field.node.value === 'number')) {
      return field.node.value;
    }
    this.report(field.path, CHECK_FAILED);
    return INVALID;
  }

  private readDescriptors(
    field: Field | undefined,
    level: DescriptorLevel,
    parentId: string,
    domain: string,
    ancestors: Set<YAMLMap>,
  ): void {
    if (field === undefined || isEmpty(field.node)) {
      return;
    }
    if (!isSeq(field.node)) {
      this.report(field.path, CHECK_FAILED);
      return;
    }
    field.node.items.forEach((item, index) => {
      const itemPath = `${field.path}[${index}]`;
      const node = this.resolve(item);
      if (!isMap(node)) {
        this.report(itemPath, `config error, yaml file contains list of type other than map: ${describeNode(node)}`);
      } else if (ancestors.has(node)) {
        // An alias to an enclosing descriptor would describe an infinitely deep tree.
        this.report(itemPath, CHECK_FAILED);
      } else {
        ancestors.add(node);
        this.readDescriptor(node, itemPath, level, parentId, domain, ancestors);
        ancestors.delete(node);
      }
    });
  }

  private readDescriptor(
    map: YAMLMap,
    nodePath: string,
    level: DescriptorLevel,
    parentId: string,
    domain: string,
    ancestors: Set<YAMLMap>,
  ): void {
    const fields = this.readMap(map, nodePath, DESCRIPTOR_KEYS);
    const key = this.readString(fields.get('key'));
    const rawValue = this.readString(fields.get('value'));
    const shadowMode = this.readBool(fields.get('shadow_mode')) === true;
    const quotaMode = this.readBool(fields.get('quota_mode')) === true;
    const detailedMetric = this.readBool(fields.get('detailed_metric')) === true;
    this.readBool(fields.get('value_to_metric'));
    const shareField = fields.get('share_threshold');
    const shareThreshold = this.readBool(shareField) === true;
    const metadata = fields.get('metadata');
    if (metadata !== undefined && !isEmpty(metadata.node) && !isMap(metadata.node)) {
      this.report(metadata.path, CHECK_FAILED);
    }

    if (key === undefined || key === '') {
      this.report(nodePath, EMPTY_KEY);
    }
    const keyText = typeof key === 'string' ? key : '';
    // An empty value is no value, as in the reference (its finalKey is then just the key).
    const value = typeof rawValue === 'string' && rawValue !== '' ? rawValue : undefined;
    const finalKey = value === undefined ? keyText : `${keyText}_${value}`;
    const id = `${parentId}.${finalKey}`;

    if (shareThreshold && shareField !== undefined && (value === undefined || !WildcardPattern.isPattern(value))) {
      this.report(
        shareField.path,
        `share_threshold can only be used with wildcard values (containing '*'), but found key '${finalKey}'`,
      );
    }

    const context: RuleContext = { id, domain, shadowMode, quotaMode, detailedMetric };
    const single = fields.get('rate_limit');
    const list = fields.get('rate_limits');
    if (single !== undefined && !isEmpty(single.node) && list !== undefined && !isEmpty(list.node)) {
      this.report(nodePath, BOTH_RATE_LIMITS);
    }
    const rule = this.readRateLimit(single, context);
    const listed = this.readRateLimits(list, context);
    const rules = rule === undefined ? listed : [rule];
    const node = new DescriptorNode(keyText, value, rules, shareThreshold);
    if (keyText !== '' && !level.add(node)) {
      this.report(nodePath, `duplicate descriptor composite key '${id}'`);
    }
    for (const each of rules) {
      this.set.addRule(each);
    }
    this.readDescriptors(fields.get('descriptors'), node.children, id, domain, ancestors);
  }

  private readRateLimit(field: Field | undefined, context: RuleContext): LimitRule | undefined {
    if (field === undefined || isEmpty(field.node)) {
      return undefined;
    }
    if (!isMap(field.node)) {
      this.report(field.path, CHECK_FAILED);
      return undefined;
    }
    const fields = this.readMap(field.node, field.path, RATE_LIMIT_KEYS);
    const unlimited = this.readBool(fields.get('unlimited')) === true;
    const name = this.readString(fields.get('name'));
    const ownName = typeof name === 'string' && name !== '' ? name : undefined;
    const replaces = this.readReplaces(fields.get('replaces'), new Set(ownName === undefined ? [] : [ownName]));
    const storeFailure = this.readStoreFailure(fields.get('store_failure'));

    let limit: LimitSpec | undefined;
    if (unlimited) {
      const isSet = (key: string): boolean => !isEmpty(fields.get(key)?.node);
      if (isSet('unit')) {
        this.report(field.path, UNLIMITED_WITH_UNIT);
      }
      if (isSet('unit_multiplier') || isSet('algorithm')) {
        this.report(field.path, UNLIMITED_WITH_WINDOW);
      }
      if (isSet('burst')) {
        this.report(field.path, UNLIMITED_WITH_BURST);
      }
      // Ignored when unlimited (as in the reference), but a wrong type is still a mistake worth naming.
      this.readNumber(fields.get('requests_per_unit'));
    } else {
      limit = this.readLimitSpec(fields, field.path);
      if (limit === undefined) {
        return undefined;
      }
    }
    return Object.freeze({
      id: context.id,
      domain: context.domain,
      limit,
      unlimited,
      name: ownName,
      replaces: Object.freeze(replaces),
      shadowMode: context.shadowMode,
      quotaMode: context.quotaMode,
      detailedMetric: context.detailedMetric,
      ...(storeFailure !== undefined && { storeFailure }),
    });
  }

  /**
   * `rate_limits:` — several finite limits on one node, all decided for every request that
   * matches it. Each item is a `rate_limit` block (same keys and checks, but never `unlimited`)
   * and becomes a rule of its own sharing the node's id and flags; its `name` is its own (echoed
   * in current_limit.name, target of `replaces`), unique on the node, and no item may replace a
   * name of its own node. Items with the same algorithm and window get distinct counters
   * (`counterVariant`).
   */
  private readRateLimits(field: Field | undefined, context: RuleContext): LimitRule[] {
    if (field === undefined || isEmpty(field.node)) {
      return [];
    }
    if (!isSeq(field.node)) {
      this.report(field.path, CHECK_FAILED);
      return [];
    }
    if (field.node.items.length === 0) {
      this.report(field.path, RATE_LIMITS_EMPTY);
      return [];
    }
    const items: { readonly fields: Map<string, Field>; readonly path: string; readonly index: number; readonly name: string | undefined }[] = [];
    const names = new Set<string>();
    field.node.items.forEach((item, index) => {
      const itemPath = `${field.path}[${index}]`;
      const node = this.resolve(item);
      if (!isMap(node)) {
        this.report(itemPath, `config error, yaml file contains list of type other than map: ${describeNode(node)}`);
        return;
      }
      const fields = this.readMap(node, itemPath, RATE_LIMIT_KEYS);
      const nameField = fields.get('name');
      const name = this.readString(nameField);
      const ownName = typeof name === 'string' && name !== '' ? name : undefined;
      if (ownName !== undefined) {
        if (names.has(ownName)) {
          this.report(nameField!.path, `duplicate rate limit name '${ownName}' in rate_limits`);
        }
        names.add(ownName);
      }
      items.push({ fields, path: itemPath, index, name: ownName });
    });

    const rules: LimitRule[] = [];
    const sameCounter = new Map<string, number>();
    for (const item of items) {
      const unlimitedField = item.fields.get('unlimited');
      if (unlimitedField !== undefined && !isEmpty(unlimitedField.node)) {
        this.report(unlimitedField.path, UNLIMITED_IN_LIST);
      }
      const replaces = this.readReplaces(item.fields.get('replaces'), names);
      const storeFailure = this.readStoreFailure(item.fields.get('store_failure'));
      const spec = this.readLimitSpec(item.fields, item.path);
      if (spec === undefined) {
        continue;
      }
      const identity = `${spec.algorithm}:${spec.windowMs}`;
      const variant = sameCounter.get(identity) ?? 0;
      sameCounter.set(identity, variant + 1);
      const limit = variant === 0 ? spec : Object.freeze({ ...spec, counterVariant: variant });
      rules.push(
        Object.freeze({
          id: context.id,
          domain: context.domain,
          limit,
          unlimited: false,
          name: item.name,
          replaces: Object.freeze(replaces),
          shadowMode: context.shadowMode,
          quotaMode: context.quotaMode,
          detailedMetric: context.detailedMetric,
          ...(storeFailure !== undefined && { storeFailure }),
          limitIndex: item.index,
        }),
      );
    }
    return rules;
  }

  /**
   * `store_failure`: this rule's answer when the store cannot give one (overrides
   * STORE_FAILURE_MODE). Checked even on an unlimited rule, which never asks the store, so that a
   * typo is still caught.
   */
  private readStoreFailure(field: Field | undefined): StoreFailureMode | undefined {
    const text = this.readString(field);
    if (text === undefined || text === INVALID) {
      return undefined;
    }
    if (!STORE_FAILURE_MODES.has(text)) {
      this.report(field!.path, `invalid store_failure '${text}'`);
      return undefined;
    }
    return text as StoreFailureMode;
  }

  /** The finite limit of a `rate_limit` block, or undefined when any part of it is invalid (reported). */
  private readLimitSpec(fields: Map<string, Field>, rateLimitPath: string): LimitSpec | undefined {
    let valid = true;

    const unitField = fields.get('unit');
    const unitText = this.readString(unitField);
    let unit: Unit | undefined;
    if (unitText === INVALID) {
      valid = false;
    } else {
      unit = UNITS_BY_NAME.get((unitText ?? '').toUpperCase());
      if (unit === undefined) {
        this.report(unitField?.path ?? childPath(rateLimitPath, 'unit'), `invalid rate limit unit '${unitText ?? ''}'`);
        valid = false;
      }
    }

    // Omitted means 0, which blocks every request (reference behaviour, used for "block" rules).
    let requestsPerUnit = 0;
    const requestsField = fields.get('requests_per_unit');
    const requests = this.readNumber(requestsField);
    if (requests === INVALID) {
      valid = false;
    } else if (typeof requests === 'number') {
      this.report(requestsField?.path ?? rateLimitPath, CHECK_FAILED);
      valid = false;
    } else if (typeof requests === 'bigint') {
      if (requests < 0n || requests > MAX_REQUESTS_PER_UNIT) {
        this.report(requestsField?.path ?? rateLimitPath, REQUESTS_RANGE);
        valid = false;
      } else {
        requestsPerUnit = Number(requests);
      }
    }

    let algorithm: AlgorithmName = DEFAULT_ALGORITHM;
    const algorithmField = fields.get('algorithm');
    const algorithmText = this.readString(algorithmField);
    if (algorithmText === INVALID) {
      valid = false;
    } else if (algorithmText !== undefined) {
      if (ALGORITHMS.has(algorithmText)) {
        algorithm = algorithmText as AlgorithmName;
      } else {
        this.report(algorithmField?.path ?? rateLimitPath, `invalid rate limit algorithm '${algorithmText}'`);
        valid = false;
      }
    }

    if (algorithm === 'sliding_log' && requestsPerUnit > SLIDING_LOG_MAX_REQUESTS) {
      this.report(requestsField?.path ?? rateLimitPath, SLIDING_LOG_TOO_LARGE);
      valid = false;
    }

    let burst: number | undefined;
    const burstField = fields.get('burst');
    const burstValue = this.readNumber(burstField);
    if (burstValue === INVALID) {
      valid = false;
    } else if (burstValue !== undefined) {
      if (typeof burstValue !== 'bigint' || burstValue < 1n || burstValue > MAX_REQUESTS_PER_UNIT) {
        this.report(burstField!.path, BURST_RANGE);
        valid = false;
      } else if (algorithm !== 'token_bucket') {
        // Only reported once the algorithm itself is valid, so a typo there is the one message.
        if (algorithmText !== INVALID && (algorithmText === undefined || ALGORITHMS.has(algorithmText))) {
          this.report(burstField!.path, BURST_WITHOUT_BUCKET);
        }
        valid = false;
      } else {
        burst = Number(burstValue);
      }
    }

    let unitMultiplier = 1;
    const multiplierField = fields.get('unit_multiplier');
    const multiplier = this.readNumber(multiplierField);
    if (multiplier === INVALID) {
      valid = false;
    } else if (multiplier !== undefined) {
      if (typeof multiplier === 'bigint' && multiplier >= 1n) {
        unitMultiplier = Number(multiplier);
      } else {
        this.report(multiplierField?.path ?? rateLimitPath, MULTIPLIER_RANGE);
        valid = false;
      }
    }

    if (!valid || unit === undefined) {
      return undefined;
    }
    const windowMs = unitMultiplier * UNIT_SECONDS[unit] * 1000;
    // Past 2^53 ms (~285,000 years) window arithmetic stops being exact; no real limit gets near it.
    if (!Number.isSafeInteger(windowMs)) {
      this.report(multiplierField?.path ?? rateLimitPath, WINDOW_TOO_LONG);
      return undefined;
    }
    // A token bucket keeps its debt in units of hits × window ms: exact only below 2^53.
    if (algorithm === 'token_bucket' && ((burst ?? requestsPerUnit) + 1) * windowMs > Number.MAX_SAFE_INTEGER) {
      this.report(burstField?.path ?? requestsField?.path ?? rateLimitPath, BUCKET_TOO_LARGE);
      return undefined;
    }
    return Object.freeze({
      requestsPerUnit,
      unit,
      unitMultiplier,
      algorithm,
      windowMs,
      ...(burst !== undefined && { burst }),
    });
  }

  /** `ownNames`: the names of the node's own limits, which it may not replace. */
  private readReplaces(field: Field | undefined, ownNames: ReadonlySet<string>): string[] {
    const names: string[] = [];
    if (field === undefined || isEmpty(field.node)) {
      return names;
    }
    if (!isSeq(field.node)) {
      this.report(field.path, CHECK_FAILED);
      return names;
    }
    field.node.items.forEach((item, index) => {
      const itemPath = `${field.path}[${index}]`;
      const node = this.resolve(item);
      if (!isMap(node)) {
        this.report(itemPath, `config error, yaml file contains list of type other than map: ${describeNode(node)}`);
        return;
      }
      const name = this.readString(this.readMap(node, itemPath, REPLACES_KEYS).get('name'));
      if (name === INVALID) {
        return;
      }
      if (name === undefined || name === '') {
        this.report(itemPath, REPLACES_EMPTY);
      } else if (ownNames.has(name)) {
        this.report(itemPath, REPLACES_SELF);
      } else {
        names.push(name);
      }
    });
    return names;
  }
}
