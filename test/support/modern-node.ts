import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { streamResetLimitSupported } from '../../src/server/stream-reset-limit';

const ROOT = path.resolve(__dirname, '../..');

/**
 * The Node release the image runs (Dockerfile: node:24-alpine; test/deploy checks the major), for
 * the tests of the image's service and of what only a current LTS can do. The npm registry
 * carries Node itself as `node-<platform>-<arch>` packages.
 */
export const IMAGE_NODE_VERSION = '24.22.3';

/**
 * A Node binary that can raise the HTTP/2 stream-reset limit: this one when it can, otherwise
 * the image's Node (imageNode()).
 */
export function nodeWithStreamResetLimit(): string {
  return streamResetLimitSupported() ? process.execPath : imageNode();
}

/**
 * Node IMAGE_NODE_VERSION, the release the Dockerfile's node:24-alpine runs: this one when it is
 * that release, otherwise from the npm registry, unpacked once into node_modules/.cache.
 */
export function imageNode(): string {
  if (process.version === `v${IMAGE_NODE_VERSION}`) return process.execPath;
  const pkg = `node-${process.platform}-${process.arch}`;
  const dir = path.join(ROOT, 'node_modules/.cache/sluice-test-node', `${pkg}-${IMAGE_NODE_VERSION}`);
  const binary = path.join(dir, 'package/bin/node');
  if (!fs.existsSync(binary)) {
    fs.mkdirSync(dir, { recursive: true });
    const tarball = execFileSync('npm', ['pack', `${pkg}@${IMAGE_NODE_VERSION}`, '--silent', '--pack-destination', dir], { encoding: 'utf8' }).trim().split('\n').pop();
    if (tarball === undefined || tarball === '') throw new Error(`npm pack ${pkg}@${IMAGE_NODE_VERSION} named no tarball`);
    execFileSync('tar', ['xzf', path.join(dir, tarball), '-C', dir]);
    fs.rmSync(path.join(dir, tarball));
  }
  return binary;
}
