import { DescriptorLevel, LoadedRateLimitConfig } from './rate-limit-config';
import type { LimitRule, RateLimitConfig } from './types';

/** The domain roots and rules of a file set under construction. */
export class FileSetBuilder {
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
