import { type YamlDocument, formatPath, yamlDocuments } from './envoy-schema';
import { type ManifestProblem, ManifestSchemas } from './manifest-schemas';
import { readRepoFile as read, yamlFilesIn as yamlFiles } from './repo-files';

/**
 * deploy/kubernetes, deploy/istio and docker-compose.yml against the schemas their tools publish
 * (test/vendor/manifest-schemas/README.md): every document of every file is of a kind we have a
 * schema for, and passes it. The checks are shown to catch an unknown field, a wrong type, a bad
 * enum value and a duplicate list-map key, each with its path and line.
 */

let schemas: ManifestSchemas;

beforeAll(() => {
  schemas = ManifestSchemas.load();
});


function formatProblem(file: string, doc: YamlDocument, p: ManifestProblem): string {
  const line = doc.lineOf(p.path);
  return `${file}${line === undefined ? '' : `:${line}`} ${formatPath(p.path) || '(document)'}: ${p.message}`;
}

function checkManifestText(file: string, text: string): string[] {
  return yamlDocuments(text).flatMap((doc) => schemas.checkManifest(doc.value).map((p) => formatProblem(file, doc, p)));
}

function checkComposeText(file: string, text: string): string[] {
  return yamlDocuments(text).flatMap((doc) => schemas.checkCompose(doc.value).map((p) => formatProblem(file, doc, p)));
}

const manifests = [...yamlFiles('deploy/kubernetes'), ...yamlFiles('deploy/istio')];

describe('manifests match their published schemas', () => {
  it.each(manifests)('%s', (file) => {
    expect(checkManifestText(file, read(file))).toEqual([]);
  });

  it('docker-compose.yml matches the Compose spec', () => {
    expect(checkComposeText('docker-compose.yml', read('docker-compose.yml'))).toEqual([]);
  });

  it('has a schema for every kind deploy/ uses, and for nothing else', () => {
    const used = new Set<string>();
    for (const file of manifests) {
      for (const doc of yamlDocuments(read(file))) {
        const d = doc.value as Record<string, unknown>;
        used.add(`${String(d['apiVersion'])} ${String(d['kind'])}`);
      }
    }
    expect([...used].sort()).toEqual(schemas.kinds().sort());
  });
});

describe('the schema checks bite', () => {
  it('reports an unknown field in a Deployment with its path and line', () => {
    const text = read('deploy/kubernetes/deployment.yaml').replace('readinessProbe:', 'readynessProbe:');
    const line = text.split('\n').findIndex((l) => l.includes('readynessProbe')) + 1;
    expect(line).toBeGreaterThan(0);
    expect(checkManifestText('d.yaml', text)).toEqual([`d.yaml:${line} spec.template.spec.containers[0].readynessProbe: unknown field`]);
  });

  it('reports a wrong type and a duplicate container port in a Deployment', () => {
    const [doc] = yamlDocuments(read('deploy/kubernetes/deployment.yaml'));
    const deployment = structuredClone(doc!.value) as { spec: { replicas: unknown; template: { spec: { containers: { ports: unknown[] }[] } } } };
    deployment.spec.replicas = 'two';
    const ports = deployment.spec.template.spec.containers[0]!.ports;
    ports.push({ ...(ports[0] as object), name: 'again' });
    const found = schemas.checkManifest(deployment).map((p) => `${formatPath(p.path)}: ${p.message}`);
    expect(found).toContain('spec.replicas: must be integer,null');
    expect(found).toContain('spec.template.spec.containers[0].ports: duplicate item in a list keyed by ["containerPort","protocol"]');
  });

  it('reports an unknown field and a bad enum value in an Istio EnvoyFilter', () => {
    const text = read('deploy/istio/envoyfilter.yaml').replace('operation: INSERT_BEFORE', 'operation: INSERT_BEFOR').replace('workloadSelector:', 'workloadSelecter:');
    const found = checkManifestText('ef.yaml', text);
    expect(found.some((p) => /^ef\.yaml:\d+ spec\.configPatches\[0\]\.patch\.operation: must be one of .*"INSERT_BEFORE"/.test(p))).toBe(true);
    expect(found.some((p) => /^ef\.yaml:\d+ spec\.workloadSelecter: unknown field$/.test(p))).toBe(true);
  });

  it('reports an unknown field in RequestAuthentication jwtRules and in a compose service', () => {
    const ra = read('deploy/istio/request-authentication.yaml').replace('issuer:', 'isuer:');
    expect(checkManifestText('ra.yaml', ra).some((p) => /spec\.jwtRules\[0\]\.isuer: unknown field$/.test(p))).toBe(true);
    const compose = read('docker-compose.yml').replace('healthcheck:', 'healthchek:');
    expect(checkComposeText('c.yml', compose).some((p) => /^c\.yml:\d+ services\.\w+\.healthchek: unknown field$/.test(p))).toBe(true);
  });

  it('reports a kind it has no schema for', () => {
    expect(schemas.checkManifest({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'x' } })).toEqual([
      { path: [], message: 'no schema vendored for v1 Secret: rerun scripts/vendor-manifest-schemas.sh' },
    ]);
  });
});
