import type { AlgorithmName } from '../../config/types';
import type { Algorithm } from './algorithm';
import { fixedWindow } from './fixed-window';
import { slidingLog } from './sliding-log';
import { slidingWindow } from './sliding-window';
import { tokenBucket } from './token-bucket';

/**
 * Every algorithm by its config name. State is opaque to callers: a store keeps whatever the
 * algorithm returned and hands it back unchanged, keyed by a counter key that includes the
 * algorithm's name, so one algorithm never reads another's state.
 */
export const ALGORITHMS: Readonly<Record<AlgorithmName, Algorithm<unknown>>> = {
  sliding_window: slidingWindow as Algorithm<unknown>,
  fixed_window: fixedWindow as Algorithm<unknown>,
  sliding_log: slidingLog as Algorithm<unknown>,
  token_bucket: tokenBucket as Algorithm<unknown>,
};
