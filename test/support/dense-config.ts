/**
 * A config file of `count` descriptors with a limit each, in flow style: about 80 bytes and 2 maps
 * per descriptor, so a file's size and its map count (the config bounds) both grow with `count`.
 */
export function denseConfig(domain: string, count: number): string {
  const lines = [`domain: ${domain}`, 'descriptors:'];
  for (let i = 0; i < count; i++) lines.push(`  - {key: k, value: v${i}, rate_limit: {unit: minute, requests_per_unit: ${i + 1}}}`);
  return `${lines.join('\n')}\n`;
}
