// Copies the import closure of the Envoy protos our deployment files need from a full source tree
// (laid out as protoc sees it: envoy/, xds/, udpa/, validate/, google/...) into the vendor folder.
// Roots: the Bootstrap, the messages Istio EnvoyFilter patches hold, and every message a
// `"@type": type.googleapis.com/...` in envoy/ or deploy/ names. Usage:
//   node scripts/envoy-proto-closure.mjs <source tree> <vendor dir>
import * as fs from 'node:fs';
import * as path from 'node:path';

const [sourceDir, vendorDir] = process.argv.slice(2);
if (!sourceDir || !vendorDir) throw new Error('usage: envoy-proto-closure.mjs <source tree> <vendor dir>');
const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');

const ROOT_FILES = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  // What EnvoyFilter patches and Istio's own filters hold (HttpFilter, Route, Cluster, Listener...).
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/config/core/v3/extension.proto',
];

function walk(dir, test) {
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walk(full, test));
    else if (test(entry.name)) out.push(full);
  }
  return out;
}

// Type names our files put in "@type".
const typeNames = new Set();
for (const dir of ['envoy', 'deploy']) {
  for (const file of walk(path.join(repoRoot, dir), (n) => /\.(ya?ml|json)$/.test(n))) {
    for (const m of fs.readFileSync(file, 'utf8').matchAll(/type\.googleapis\.com\/([A-Za-z0-9_.]+)/g)) typeNames.add(m[1]);
  }
}

// Top-level message → file, over the Envoy and xds trees.
const typeToFile = new Map();
for (const top of ['envoy', 'xds', 'udpa']) {
  const dir = path.join(sourceDir, top);
  if (!fs.existsSync(dir)) continue;
  for (const file of walk(dir, (n) => n.endsWith('.proto'))) {
    const text = fs.readFileSync(file, 'utf8');
    const pkg = /^package\s+([\w.]+)\s*;/m.exec(text)?.[1];
    if (!pkg) continue;
    for (const m of text.matchAll(/^message\s+(\w+)/gm)) typeToFile.set(`${pkg}.${m[1]}`, path.relative(sourceDir, file));
  }
}

const queue = [...ROOT_FILES];
for (const name of [...typeNames].sort()) {
  const file = typeToFile.get(name);
  if (!file) throw new Error(`no proto defines ${name}`);
  queue.push(file);
}

const closure = new Set();
while (queue.length > 0) {
  const file = queue.pop();
  if (closure.has(file)) continue;
  const full = path.join(sourceDir, file);
  if (!fs.existsSync(full)) throw new Error(`missing import ${file}`);
  closure.add(file);
  for (const m of fs.readFileSync(full, 'utf8').matchAll(/^import\s+(?:public\s+|weak\s+)?"([^"]+)"\s*;/gm)) queue.push(m[1]);
}

for (const top of ['envoy', 'xds', 'udpa', 'validate', 'google']) fs.rmSync(path.join(vendorDir, top), { recursive: true, force: true });
let bytes = 0;
for (const file of [...closure].sort()) {
  const to = path.join(vendorDir, file);
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.copyFileSync(path.join(sourceDir, file), to);
  bytes += fs.statSync(to).size;
}
fs.writeFileSync(path.join(vendorDir, 'ROOTS.txt'), [...ROOT_FILES, ...[...typeNames].sort().map((t) => `${typeToFile.get(t)}  # ${t}`)].join('\n') + '\n');
console.log(`${closure.size} files, ${bytes} bytes, ${typeNames.size} @type names`);
