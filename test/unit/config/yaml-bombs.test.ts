import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { runCheckConfig } from '../../../src/cli/check-config';
import { parseConfigFiles } from '../../../src/config/load';
import { MAX_MAPS_PER_FILE } from '../../../src/config/yaml-field-reader';

/**
 * Files that describe far more than they spell out. Each is refused with one message, having
 * walked at most MAX_MAPS_PER_FILE maps, instead of being expanded in full (a million descriptors:
 * half a minute without answers, a gigabyte of memory).
 */

/** `levels` anchored descriptors, each listing the one below ten times: 10^levels descriptors. */
function aliasBomb(levels: number): string {
  const lines = ['domain: bomb', 'descriptors:', '  - &a0 { key: k0, value: v, rate_limit: { unit: second, requests_per_unit: 1 } }'];
  for (let i = 1; i <= levels; i++) {
    lines.push(`  - &a${i} { key: k${i}, descriptors: [${Array.from({ length: 10 }, () => `*a${i - 1}`).join(', ')}] }`);
  }
  return `${lines.join('\n')}\n`;
}

/** The same with merge keys: each map merges the one below ten times. */
function mergeBomb(levels: number): string {
  const lines = ['domain: bomb', 'anchors:', '  - &m0 { key: k, value: v }'];
  for (let i = 1; i <= levels; i++) {
    lines.push(`  - &m${i} { <<: [${Array.from({ length: 10 }, () => `*m${i - 1}`).join(', ')}] }`);
  }
  lines.push('descriptors:', `  - { <<: *m${levels}, rate_limit: { unit: second, requests_per_unit: 1 } }`);
  return `${lines.join('\n')}\n`;
}

const MESSAGE = `the file expands to more than ${MAX_MAPS_PER_FILE} maps`;

describe('YAML that expands past MAX_MAPS_PER_FILE', () => {
  test.each([
    ['aliases, 6 levels', aliasBomb(6)],
    ['merge keys, 6 levels', mergeBomb(6)],
  ])('%s: refused with one message naming the bound', (_name, content) => {
    expect(content.length).toBeLessThan(1_500);
    const { config, problems } = parseConfigFiles([{ name: 'bomb.yaml', content }], { mergeDomainConfig: false });
    expect(config).toBeUndefined();
    const bounded = problems.filter((p) => p.message.includes(MESSAGE));
    expect(bounded).toHaveLength(1);
    expect(bounded[0]!.message).toContain('bomb.yaml');
  });

  test('check-config exits 1 and prints a bounded report', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bomb-'));
    try {
      fs.writeFileSync(path.join(dir, 'bomb.yaml'), aliasBomb(6));
      const out: string[] = [];
      const err: string[] = [];
      const code = runCheckConfig([dir], { out: (line) => out.push(line), err: (line) => err.push(line) }, {});
      expect(code).toBe(1);
      expect(err.join('\n')).toContain(MESSAGE);
      expect(err.join('\n').length).toBeLessThan(10_000);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a real-sized config, a thousand descriptors with a limit each, is far inside the bound', () => {
    const lines = ['domain: big', 'descriptors:'];
    for (let i = 0; i < 1_000; i++) lines.push(`  - { key: client_id, value: c${i}, rate_limit: { unit: minute, requests_per_unit: ${i + 1} } }`);
    const { config, problems } = parseConfigFiles([{ name: 'big.yaml', content: lines.join('\n') }], { mergeDomainConfig: false });
    expect(problems).toEqual([]);
    expect(config?.rules()).toHaveLength(1_000);
  });
});
