import { isMap, isSeq } from 'yaml';
import type { StoreFailureMode } from '../store/counter-store';
import {
  ALGORITHMS,
  BUCKET_TOO_LARGE,
  BURST_RANGE,
  BURST_WITHOUT_BUCKET,
  CHECK_FAILED,
  DEFAULT_ALGORITHM,
  MAX_REQUESTS_PER_UNIT,
  MULTIPLIER_RANGE,
  RATE_LIMITS_EMPTY,
  RATE_LIMIT_KEYS,
  REPLACES_EMPTY,
  REPLACES_KEYS,
  REPLACES_SELF,
  REQUESTS_RANGE,
  SLIDING_LOG_TOO_LARGE,
  STORE_FAILURE_MODES,
  UNITS_BY_NAME,
  UNLIMITED_IN_LIST,
  UNLIMITED_WITH_BURST,
  UNLIMITED_WITH_UNIT,
  UNLIMITED_WITH_WINDOW,
  WINDOW_TOO_LONG,
} from './config-schema';
import { SLIDING_LOG_MAX_REQUESTS, UNIT_SECONDS, type AlgorithmName, type LimitRule, type LimitSpec, type Unit } from './types';
import type { YamlFieldReader } from './yaml-field-reader';
import { INVALID, childPath, isEmpty, type Field } from './yaml-nodes';

/** What a `rate_limit` block's node inherits from its descriptor. */
export interface RuleContext {
  readonly id: string;
  readonly domain: string;
  readonly shadowMode: boolean;
  readonly quotaMode: boolean;
  readonly detailedMetric: boolean;
}

/** Reads `rate_limit` and `rate_limits` blocks into LimitRules, reporting problems; never throws on bad input. */
export class RateLimitReader {
  constructor(private readonly yaml: YamlFieldReader) {}

  readRateLimit(field: Field | undefined, context: RuleContext): LimitRule | undefined {
    if (field === undefined || isEmpty(field.node)) {
      return undefined;
    }
    if (!isMap(field.node)) {
      this.yaml.report(field.path, CHECK_FAILED);
      return undefined;
    }
    const fields = this.yaml.readMap(field.node, field.path, RATE_LIMIT_KEYS);
    const unlimited = this.yaml.readBool(fields.get('unlimited')) === true;
    const name = this.yaml.readString(fields.get('name'));
    const ownName = typeof name === 'string' && name !== '' ? name : undefined;
    const replaces = this.readReplaces(fields.get('replaces'), new Set(ownName === undefined ? [] : [ownName]));
    const storeFailure = this.readStoreFailure(fields.get('store_failure'));

    let limit: LimitSpec | undefined;
    if (unlimited) {
      const isSet = (key: string): boolean => !isEmpty(fields.get(key)?.node);
      if (isSet('unit')) {
        this.yaml.report(field.path, UNLIMITED_WITH_UNIT);
      }
      if (isSet('unit_multiplier') || isSet('algorithm')) {
        this.yaml.report(field.path, UNLIMITED_WITH_WINDOW);
      }
      if (isSet('burst')) {
        this.yaml.report(field.path, UNLIMITED_WITH_BURST);
      }
      // Ignored when unlimited (as in the reference), but a wrong type is still a mistake worth naming.
      this.yaml.readNumber(fields.get('requests_per_unit'));
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
  readRateLimits(field: Field | undefined, context: RuleContext): LimitRule[] {
    if (field !== undefined && isSeq(field.node) && field.node.items.length === 0) {
      this.yaml.report(field.path, RATE_LIMITS_EMPTY);
      return [];
    }
    const items: { readonly fields: Map<string, Field>; readonly path: string; readonly index: number; readonly name: string | undefined }[] = [];
    const names = new Set<string>();
    for (const { node, path, index } of this.yaml.mapItems(field)) {
      const fields = this.yaml.readMap(node, path, RATE_LIMIT_KEYS);
      const nameField = fields.get('name');
      const name = this.yaml.readString(nameField);
      const ownName = typeof name === 'string' && name !== '' ? name : undefined;
      if (ownName !== undefined) {
        if (names.has(ownName)) {
          this.yaml.report(nameField!.path, `duplicate rate limit name '${ownName}' in rate_limits`);
        }
        names.add(ownName);
      }
      items.push({ fields, path, index, name: ownName });
    }

    const rules: LimitRule[] = [];
    const sameCounter = new Map<string, number>();
    for (const item of items) {
      const unlimitedField = item.fields.get('unlimited');
      if (unlimitedField !== undefined && !isEmpty(unlimitedField.node)) {
        this.yaml.report(unlimitedField.path, UNLIMITED_IN_LIST);
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
    const text = this.yaml.readString(field);
    if (text === undefined || text === INVALID) {
      return undefined;
    }
    if (!STORE_FAILURE_MODES.has(text)) {
      this.yaml.report(field!.path, `invalid store_failure '${text}'`);
      return undefined;
    }
    return text as StoreFailureMode;
  }

  /** The finite limit of a `rate_limit` block, or undefined when any part of it is invalid (reported). */
  private readLimitSpec(fields: Map<string, Field>, rateLimitPath: string): LimitSpec | undefined {
    let valid = true;

    const unitField = fields.get('unit');
    const unitText = this.yaml.readString(unitField);
    let unit: Unit | undefined;
    if (unitText === INVALID) {
      valid = false;
    } else {
      unit = UNITS_BY_NAME.get((unitText ?? '').toUpperCase());
      if (unit === undefined) {
        this.yaml.report(unitField?.path ?? childPath(rateLimitPath, 'unit'), `invalid rate limit unit '${unitText ?? ''}'`);
        valid = false;
      }
    }

    // Omitted means 0, which blocks every request (reference behaviour, used for "block" rules).
    let requestsPerUnit = 0;
    const requestsField = fields.get('requests_per_unit');
    const requests = this.yaml.readNumber(requestsField);
    if (requests === INVALID) {
      valid = false;
    } else if (typeof requests === 'number') {
      this.yaml.report(requestsField?.path ?? rateLimitPath, CHECK_FAILED);
      valid = false;
    } else if (typeof requests === 'bigint') {
      if (requests < 0n || requests > MAX_REQUESTS_PER_UNIT) {
        this.yaml.report(requestsField?.path ?? rateLimitPath, REQUESTS_RANGE);
        valid = false;
      } else {
        requestsPerUnit = Number(requests);
      }
    }

    let algorithm: AlgorithmName = DEFAULT_ALGORITHM;
    const algorithmField = fields.get('algorithm');
    const algorithmText = this.yaml.readString(algorithmField);
    if (algorithmText === INVALID) {
      valid = false;
    } else if (algorithmText !== undefined) {
      if (ALGORITHMS.has(algorithmText)) {
        algorithm = algorithmText as AlgorithmName;
      } else {
        this.yaml.report(algorithmField?.path ?? rateLimitPath, `invalid rate limit algorithm '${algorithmText}'`);
        valid = false;
      }
    }

    if (algorithm === 'sliding_log' && requestsPerUnit > SLIDING_LOG_MAX_REQUESTS) {
      this.yaml.report(requestsField?.path ?? rateLimitPath, SLIDING_LOG_TOO_LARGE);
      valid = false;
    }

    let burst: number | undefined;
    const burstField = fields.get('burst');
    const burstValue = this.yaml.readNumber(burstField);
    if (burstValue === INVALID) {
      valid = false;
    } else if (burstValue !== undefined) {
      if (typeof burstValue !== 'bigint' || burstValue < 1n || burstValue > MAX_REQUESTS_PER_UNIT) {
        this.yaml.report(burstField!.path, BURST_RANGE);
        valid = false;
      } else if (algorithm !== 'token_bucket') {
        // Only reported once the algorithm itself is valid, so a typo there is the one message.
        if (algorithmText !== INVALID && (algorithmText === undefined || ALGORITHMS.has(algorithmText))) {
          this.yaml.report(burstField!.path, BURST_WITHOUT_BUCKET);
        }
        valid = false;
      } else {
        burst = Number(burstValue);
      }
    }

    let unitMultiplier = 1;
    const multiplierField = fields.get('unit_multiplier');
    const multiplier = this.yaml.readNumber(multiplierField);
    if (multiplier === INVALID) {
      valid = false;
    } else if (multiplier !== undefined) {
      if (typeof multiplier === 'bigint' && multiplier >= 1n) {
        unitMultiplier = Number(multiplier);
      } else {
        this.yaml.report(multiplierField?.path ?? rateLimitPath, MULTIPLIER_RANGE);
        valid = false;
      }
    }

    if (!valid || unit === undefined) {
      return undefined;
    }
    const windowMs = unitMultiplier * UNIT_SECONDS[unit] * 1000;
    // Past 2^53 ms (~285,000 years) window arithmetic stops being exact; no real limit gets near it.
    if (!Number.isSafeInteger(windowMs)) {
      this.yaml.report(multiplierField?.path ?? rateLimitPath, WINDOW_TOO_LONG);
      return undefined;
    }
    // A token bucket keeps its debt in units of hits × window ms: exact only below 2^53.
    if (algorithm === 'token_bucket' && ((burst ?? requestsPerUnit) + 1) * windowMs > Number.MAX_SAFE_INTEGER) {
      this.yaml.report(burstField?.path ?? requestsField?.path ?? rateLimitPath, BUCKET_TOO_LARGE);
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
    for (const { node, path } of this.yaml.mapItems(field)) {
      const name = this.yaml.readString(this.yaml.readMap(node, path, REPLACES_KEYS).get('name'));
      if (name === INVALID) {
        continue;
      }
      if (name === undefined || name === '') {
        this.yaml.report(path, REPLACES_EMPTY);
      } else if (ownNames.has(name)) {
        this.yaml.report(path, REPLACES_SELF);
      } else {
        names.push(name);
      }
    }
    return names;
  }
}
