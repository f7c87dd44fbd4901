import type { RateLimitConfig } from './types';

/**
 * Holds the config that serves requests. A request reads it once at its start, so a swap never
 * mixes two configs within one decision; a failed load never reaches `set`.
 */
export class ConfigHolder {
  private config: RateLimitConfig | undefined;

  current(): RateLimitConfig | undefined {
    return this.config;
  }

  set(config: RateLimitConfig): void {
    this.config = config;
  }
}
