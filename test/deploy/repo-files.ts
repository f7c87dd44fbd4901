import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT } from './envoy-model';

/** A file of the repository, by its path from the root. */
export function readRepoFile(relative: string): string {
  return fs.readFileSync(path.join(ROOT, relative), 'utf8');
}

/** The YAML files directly in `dir` (a path from the root), sorted, as paths from the root. */
export function yamlFilesIn(dir: string): string[] {
  return fs
    .readdirSync(path.join(ROOT, dir))
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()
    .map((f) => `${dir}/${f}`);
}
