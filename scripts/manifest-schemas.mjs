// Copies the published schemas of the manifest kinds our deploy/ files use, and the Compose
// spec, from source checkouts into test/vendor/manifest-schemas/. Kinds are read from the files
// (apiVersion + kind of every document), so a new kind is picked up by rerunning. Usage:
//   node scripts/manifest-schemas.mjs <kubernetes json schemas dir> <istio api dir> <schemastore dir> <compose-spec dir> <out dir>
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';

const [k8sDir, istioDir, schemaStoreDir, composeDir, outDir] = process.argv.slice(2);
if (!outDir) throw new Error('usage: manifest-schemas.mjs <k8s> <istio> <schemastore> <compose-spec> <out>');
const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : /\.ya?ml$/.test(e.name) ? [path.join(dir, e.name)] : [],
  );
}

const kinds = new Map();
for (const file of walk(path.join(repoRoot, 'deploy'))) {
  for (const doc of parseAllDocuments(fs.readFileSync(file, 'utf8'))) {
    const value = doc.toJS();
    if (value && typeof value.apiVersion === 'string' && typeof value.kind === 'string') kinds.set(`${value.apiVersion} ${value.kind}`, value);
  }
}

for (const sub of ['kubernetes', 'istio', 'kustomize', 'compose']) fs.rmSync(path.join(outDir, sub), { recursive: true, force: true });
const write = (rel, text) => {
  fs.mkdirSync(path.dirname(path.join(outDir, rel)), { recursive: true });
  fs.writeFileSync(path.join(outDir, rel), text);
  return rel;
};

const crds = parseAllDocuments(fs.readFileSync(path.join(istioDir, 'kubernetes/customresourcedefinitions.gen.yaml'), 'utf8'))
  .map((d) => d.toJS())
  .filter((d) => d && d.kind === 'CustomResourceDefinition');

const index = {};
for (const key of [...kinds.keys()].sort()) {
  const [apiVersion, kind] = key.split(' ');
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  let rel;
  if (group === 'kustomize.config.k8s.io') {
    rel = write('kustomize/kustomization.json', fs.readFileSync(path.join(schemaStoreDir, 'src/schemas/json/kustomization.json'), 'utf8'));
  } else if (group.endsWith('.istio.io')) {
    const crd = crds.find((c) => c.spec.group === group && c.spec.names.kind === kind);
    const v = crd?.spec.versions.find((x) => x.name === version);
    if (!v) throw new Error(`no Istio CRD for ${key}`);
    rel = write(`istio/${kind.toLowerCase()}-${group.split('.')[0]}-${version}.json`, JSON.stringify(v.schema.openAPIV3Schema, null, 1) + '\n');
  } else {
    const name = group === '' ? `${kind.toLowerCase()}-${version}.json` : `${kind.toLowerCase()}-${group.split('.')[0]}-${version}.json`;
    rel = write(`kubernetes/${name}`, fs.readFileSync(path.join(k8sDir, name), 'utf8'));
  }
  index[key] = rel;
}
write('compose/compose-spec.json', fs.readFileSync(path.join(composeDir, 'schema/compose-spec.json'), 'utf8'));
index['compose'] = 'compose/compose-spec.json';
write('index.json', JSON.stringify(index, null, 2) + '\n');
console.log(index);
