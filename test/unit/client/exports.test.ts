import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startTestSluice } from '../../support/start-sluice';

// `import { RateLimitClient } from 'sluice/client'` as a user writes it: Node resolves the
// package's own name through its "exports" map (self-reference), against the built dist/
// (`npm test` builds it first).
const ROOT = path.resolve(__dirname, '../../..');
const run = promisify(execFile);

interface ExportTarget {
  readonly types: string;
  readonly default: string;
}

describe("package.json exports", () => {
  const exportsMap = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, ExportTarget> }).exports;

  it("maps '.' and './client' to compiled sources, with types", () => {
    expect(Object.keys(exportsMap)).toEqual(['.', './client']);
    for (const target of Object.values(exportsMap)) {
      const source = target.default.replace(/^\.\/dist\//, '').replace(/\.js$/, '.ts');
      expect(fs.existsSync(path.join(ROOT, source))).toBe(true);
      expect(target.types).toBe(target.default.replace(/\.js$/, '.d.ts'));
    }
    expect(exportsMap['./client']!.default).toBe('./dist/src/client/index.js');
  });

  it("lets a plain Node program require('sluice/client') and call a real sluice", async () => {
    expect(fs.existsSync(path.join(ROOT, 'dist/src/client/index.js'))).toBe(true);
    const sluice = await startTestSluice({
      files: { 'config.yaml': 'domain: d\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: 1 }\n' },
    });
    try {
      const program = `
        const { RateLimitClient } = require('sluice/client');
        const { startSluice } = require('sluice');
        const client = new RateLimitClient({ address: process.argv[1], deadlineMs: 5000, failOpen: false });
        (async () => {
          const a = await client.shouldRateLimit({ domain: 'd', descriptors: [{ entries: { k: 'v' } }] });
          const b = await client.shouldRateLimit({ domain: 'd', descriptors: [{ entries: { k: 'v' } }] });
          client.close();
          process.stdout.write(JSON.stringify([typeof startSluice, a.allowed, b.allowed, b.statuses[0].code]));
        })().catch((e) => { process.stderr.write(String(e)); process.exit(1); });
      `;
      const { stdout } = await run(process.execPath, ['-e', program, `127.0.0.1:${sluice.app.grpcPort}`], { cwd: ROOT });
      expect(JSON.parse(stdout)).toEqual(['function', true, false, 'OVER_LIMIT']);
    } finally {
      await sluice.stop();
    }
  });
});
