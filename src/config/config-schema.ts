import type { StoreFailureMode } from '../store/counter-store';
import { SLIDING_LOG_MAX_REQUESTS, UNIT_SECONDS, type AlgorithmName, type Unit } from './types';

// Reasons shared by several checks; the texts are the reference's, so existing runbooks still match.
export const EMPTY_DOMAIN = 'config file cannot have empty domain';
export const EMPTY_KEY = 'descriptor has empty key';
export const CHECK_FAILED = 'error checking config';
export const UNLIMITED_WITH_UNIT = 'should not specify rate limit unit when unlimited';
export const UNLIMITED_WITH_WINDOW = 'should not specify unit_multiplier or algorithm when unlimited';
export const REPLACES_SELF = 'replaces should not contain name of same descriptor';
export const REPLACES_EMPTY = 'should not have an empty replaces entry';
export const REQUESTS_RANGE = 'requests_per_unit must be an integer between 0 and 4294967295';
export const MULTIPLIER_RANGE = 'unit_multiplier must be a positive integer';
export const WINDOW_TOO_LONG = `unit_multiplier is too large: the window must be at most ${Number.MAX_SAFE_INTEGER} ms`;
export const UNLIMITED_WITH_BURST = 'should not specify burst when unlimited';
export const BURST_RANGE = 'burst must be an integer between 1 and 4294967295';
export const BURST_WITHOUT_BUCKET = 'burst is only valid with algorithm token_bucket';
export const BUCKET_TOO_LARGE =
  `token_bucket is too large for the window: (burst + 1) × the window in ms must be at most ${Number.MAX_SAFE_INTEGER} ` +
  '(burst defaults to requests_per_unit)';
export const SLIDING_LOG_TOO_LARGE =
  `requests_per_unit must be at most ${SLIDING_LOG_MAX_REQUESTS} with algorithm sliding_log ` +
  '(it keeps one entry per hit in the window); use sliding_window or token_bucket for larger limits';
export const BOTH_RATE_LIMITS = 'should not specify both rate_limit and rate_limits';
export const RATE_LIMITS_EMPTY = 'rate_limits should not be empty';
export const UNLIMITED_IN_LIST = 'unlimited is not allowed in rate_limits; use rate_limit: {unlimited: true}';

export const MAX_REQUESTS_PER_UNIT = 4294967295n;

export const TOP_LEVEL_KEYS: ReadonlySet<string> = new Set(['domain', 'descriptors']);
export const DESCRIPTOR_KEYS: ReadonlySet<string> = new Set([
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
export const RATE_LIMIT_KEYS: ReadonlySet<string> = new Set([
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
export const REPLACES_KEYS: ReadonlySet<string> = new Set(['name']);

export const UNITS_BY_NAME: ReadonlyMap<string, Unit> = new Map(
  (Object.keys(UNIT_SECONDS) as Unit[]).map((unit) => [unit, unit]),
);
export const ALGORITHMS: ReadonlySet<string> = new Set<AlgorithmName>(['sliding_window', 'fixed_window', 'sliding_log', 'token_bucket']);
export const DEFAULT_ALGORITHM: AlgorithmName = 'sliding_window';
export const STORE_FAILURE_MODES: ReadonlySet<string> = new Set<StoreFailureMode>(['error', 'allow', 'deny', 'local']);
