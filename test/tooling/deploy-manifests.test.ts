/**
 * deploy/ (docs/deploy.md), checked without a cluster:
 * - every YAML file parsed as Kubernetes does (YAML 1.1) and checked against the upstream API schema
 *   (test/support/k8s-schema.ts: kubernetes-models, plus the unknown-field check; KServe and kustomize kinds by
 *   hand); rendered with `kubectl kustomize` when kubectl is installed (logged and skipped otherwise);
 * - against the server: server/config.ts (ports, PADSERVE_* names and values and `serve` flags through its own
 *   parser, the SIGTERM drain vs terminationGracePeriodSeconds), the health routes, the queue-depth metric.
 * The container and drain checks also run on broken copies of the base Deployment, to show that they can fail;
 * test/tooling/k8s-schema.test.ts does the same for the schema check.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  ROOT,
  SETTINGS,
  arr,
  at,
  byEnv,
  byFlag,
  isObj,
  listYaml,
  obj,
  parseYaml,
  read,
  rel,
  startupErrors,
  str,
  type Manifest,
  type Obj,
} from '../support/deploy.js';
import { schemaErrors } from '../support/k8s-schema.js';

const manifests = listYaml('deploy').flatMap((f) => parseYaml(read(f), f));
const where = (m: Manifest) => `${m.file}#${m.index} ${str(m.doc.kind)}/${str(at(m.doc, 'metadata.name'))}`;
const find = (ms: Manifest[], kind: string, name?: string) =>
  ms.filter((m) => m.doc.kind === kind && (name === undefined || at(m.doc, 'metadata.name') === name));
const one = (ms: Manifest[], kind: string, name?: string): Obj => {
  const f = find(ms, kind, name);
  if (f.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${f.length}`);
  return f[0]!.doc;
};
const inDir = (dir: string) => manifests.filter((m) => dirname(m.file) === dir);
const containersOf = (d: Obj): Obj[] =>
  arr(at(d, 'spec.template.spec.containers')).map((c) => obj(c, 'container'));
const envOf = (c: Obj) => arr(c.env).map((e) => obj(e, 'env'));

// PADSERVE_KUBECTL: a kubectl to use, or "none" to check without one (what CI machines without kubectl do).
let kubectl: string | null = null;
const rendered: Record<string, Manifest[]> = {};
beforeAll(() => {
  const wanted = process.env.PADSERVE_KUBECTL ?? 'kubectl';
  const which =
    wanted === 'none' ? null : spawnSync('sh', ['-c', 'command -v "$0"', wanted], { encoding: 'utf8' });
  kubectl = which?.status === 0 ? which.stdout.trim() : null;
  for (const k of kubectl ? find(manifests, 'Kustomization') : []) {
    const dir = dirname(k.file);
    const r = spawnSync(kubectl!, ['kustomize', join(ROOT, dir)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${r.stderr}`);
    rendered[dir] = parseYaml(r.stdout, `kustomize(${dir})`);
  }
});

/** A container against the server: port, probes, env names/values, args. Returns error messages. */
function checkContainer(c: Obj, label: string, opts: { modelRepository: string; mountPaths?: string[] }) {
  const errors: string[] = [];
  const port = SETTINGS.port.default;
  const ports = arr(c.ports).map((p) => obj(p, 'port'));
  if (ports.length !== 1 || ports[0]!.containerPort !== port)
    errors.push(`${label}: containerPort should be ${port} (server/config.ts port default)`);
  const literal: Record<string, string> = {};
  for (const e of envOf(c)) {
    const name = str(e.name);
    if (typeof e.value === 'string') literal[name] = e.value;
    else if (!isObj(e.valueFrom)) errors.push(`${label}: env ${name} has neither value nor valueFrom`);
    else if (name.startsWith('PADSERVE_') && !byEnv.has(name))
      errors.push(`${label}: env ${name} is not a server setting (server/config.ts)`);
    if (byEnv.get(name)?.secret && typeof e.value === 'string')
      errors.push(`${label}: ${name} is a secret: use valueFrom.secretKeyRef`);
  }
  errors.push(
    ...startupErrors(c.args ? arr(c.args).map(str) : ['serve'], literal).map((e) => `${label}: ${e}`),
  );
  if (literal[SETTINGS.host.env] !== '0.0.0.0')
    errors.push(
      `${label}: ${SETTINGS.host.env} must be 0.0.0.0 (the default is unreachable from the kubelet)`,
    );
  if ((literal[SETTINGS.port.env] ?? String(port)) !== String(port))
    errors.push(`${label}: ${SETTINGS.port.env} differs from containerPort`);
  const repo = literal[SETTINGS.modelRepository.env];
  if (repo !== opts.modelRepository)
    errors.push(`${label}: ${SETTINGS.modelRepository.env} should be ${opts.modelRepository}, got ${repo}`);
  if (opts.mountPaths && !opts.mountPaths.includes(opts.modelRepository))
    errors.push(`${label}: nothing is mounted at ${opts.modelRepository}`);
  const probes: [string, string[]][] = [
    ['startupProbe', ['/v2/health/ready', '/v2/health/live']],
    ['readinessProbe', ['/v2/health/ready']],
    ['livenessProbe', ['/v2/health/live']],
  ];
  for (const [name, paths] of probes) {
    const p = c[name];
    if (!isObj(p)) {
      errors.push(`${label}: no ${name}`);
      continue;
    }
    if (!paths.includes(str(at(p, 'httpGet.path'))))
      errors.push(`${label}: ${name} path ${str(at(p, 'httpGet.path'))}, expected ${paths.join(' or ')}`);
    const pp = at(p, 'httpGet.port');
    if (pp !== port && (ports[0]?.name === undefined || pp !== ports[0].name))
      errors.push(`${label}: ${name} port ${str(pp)} is not the container port`);
  }
  const startup = isObj(c.startupProbe) ? c.startupProbe : {};
  const budget = Number(startup.periodSeconds ?? 10) * Number(startup.failureThreshold ?? 3);
  if (budget < 20 * 60)
    errors.push(`${label}: startupProbe allows ${budget} s; first-start model building needs >= 20 minutes`);
  const live = isObj(c.livenessProbe) ? c.livenessProbe : {};
  if (Number(live.timeoutSeconds ?? 1) < 3 || Number(live.failureThreshold ?? 3) < 3)
    errors.push(`${label}: livenessProbe too eager (timeout >= 3 s, failureThreshold >= 3)`);
  if (!at(c, 'resources.requests.memory')) errors.push(`${label}: no memory request`);
  return errors;
}

/** terminationGracePeriodSeconds covers preStop + the server's shutdown grace + 5 s. */
function checkDrain(podSpec: Obj, c: Obj, label: string): string[] {
  const tgp = Number(podSpec.terminationGracePeriodSeconds ?? 30);
  const cmd = arr(at(c, 'lifecycle.preStop.exec.command')).map(str);
  const sleep = cmd[0] === 'sleep' ? Number(cmd[1]) : Number(at(c, 'lifecycle.preStop.sleep.seconds') ?? NaN);
  if (!Number.isFinite(sleep) || sleep < 5)
    return [`${label}: preStop should sleep >= 5 s so that endpoints drop the pod before SIGTERM`];
  const graceEnv = envOf(c).find((e) => e.name === SETTINGS.shutdownGraceMs.env)?.value;
  const graceS = Number(graceEnv ?? SETTINGS.shutdownGraceMs.default) / 1000;
  return tgp >= sleep + graceS + 5
    ? []
    : [
        `${label}: terminationGracePeriodSeconds ${tgp} < preStop ${sleep} s + shutdown grace ${graceS} s + 5 s`,
      ];
}

const baseChecks = (d: Obj) => {
  const pod = obj(at(d, 'spec.template.spec'), 'pod spec');
  const c = containersOf(d)[0]!;
  const mountPaths = arr(c.volumeMounts).map((m) => str(obj(m, 'mount').mountPath));
  return [
    ...checkContainer(c, 'deploy/base Deployment', { modelRepository: '/models', mountPaths }),
    ...checkDrain(pod, c, 'deploy/base Deployment'),
  ];
};

describe('deploy/ manifests', () => {
  it('parse (YAML 1.1 like Kubernetes) and match the API schema: known kinds, required fields, types, no unknown fields', () => {
    expect(manifests.length).toBeGreaterThan(8);
    const errors = manifests.flatMap((m) =>
      // The overlay's objects are strategic merge patches: they name only what they change.
      schemaErrors(m.doc, where(m), m.file.startsWith('deploy/overlays/') && m.doc.kind !== 'Kustomization'),
    );
    expect(errors).toEqual([]);
  });

  it('kustomizations reference existing files, patches target objects of the base', () => {
    for (const k of find(manifests, 'Kustomization')) {
      const dir = dirname(k.file);
      const resources = arr(k.doc.resources).map(str);
      for (const r of resources)
        expect(existsSync(join(ROOT, dir, r)), `${k.file}: resource ${r}`).toBe(true);
      for (const p of arr(k.doc.patches)) {
        const path = join(dir, str(obj(p, 'patch').path));
        expect(existsSync(join(ROOT, path)), `${k.file}: patch ${path}`).toBe(true);
        const patch = parseYaml(read(path), path)[0]!.doc;
        const base = resources.flatMap((r) => inDir(rel(join(ROOT, dir, r))));
        const target = `${str(patch.kind)}/${str(at(patch, 'metadata.name'))}`;
        expect(
          find(base, str(patch.kind), str(at(patch, 'metadata.name'))),
          `${path} targets ${target}`,
        ).toHaveLength(1);
      }
    }
  });

  it('renders with `kubectl kustomize` and the rendered objects match the schema (skipped without kubectl)', (ctx) => {
    if (!kubectl) {
      console.info('deploy-manifests.test: kubectl not installed: `kubectl kustomize` rendering skipped');
      ctx.skip();
    }
    expect(Object.keys(rendered).sort()).toEqual(['deploy/base', 'deploy/kserve', 'deploy/overlays/gpu']);
    expect(Object.values(rendered).flatMap((ms) => ms.flatMap((m) => schemaErrors(m.doc, where(m))))).toEqual(
      [],
    );
    const c = containersOf(one(rendered['deploy/overlays/gpu']!, 'Deployment', 'padserve'))[0]!;
    expect(c.image).toBe('padserve:0.1.0-cuda');
    expect(at(c, 'resources.limits')).toMatchObject({ 'nvidia.com/gpu': 1 });
    expect(envOf(c).filter((e) => e.name === SETTINGS.device.env)).toEqual([
      { name: SETTINGS.device.env, value: 'cuda' },
    ]);
    expect(containersOf(one(rendered['deploy/base']!, 'Deployment', 'padserve'))[0]!.image).toBe(
      'padserve:0.1.0',
    );
  });

  it('base Deployment matches the server (ports, probes on the V2 health routes, PADSERVE_* env, args, drain timing)', () => {
    const routes = read('src/routes/health.ts');
    for (const r of ['/v2/health/live', '/v2/health/ready'])
      expect(routes, `the server defines ${r}`).toContain(`'${r}'`);
    const d = one(inDir('deploy/base'), 'Deployment', 'padserve');
    expect(containersOf(d)).toHaveLength(1);
    expect(baseChecks(d)).toEqual([]);
    const pod = obj(at(d, 'spec.template.spec'), 'pod spec');
    const c = containersOf(d)[0]!;
    // the image's user can write the models volume; the pod runs as that user
    const uid = Number(/^USER (\d+)/m.exec(read('Dockerfile'))?.[1]);
    expect(at(pod, 'securityContext')).toMatchObject({ runAsUser: uid, fsGroup: uid, runAsNonRoot: true });
    const mount = arr(c.volumeMounts)
      .map((m) => obj(m, 'mount'))
      .find((m) => m.mountPath === '/models');
    const volume = arr(pod.volumes)
      .map((v) => obj(v, 'volume'))
      .find((v) => v.name === mount?.name);
    expect(at(volume, 'persistentVolumeClaim.claimName')).toBe('padserve-models');
    expect(find(inDir('deploy/base'), 'PersistentVolumeClaim', 'padserve-models')).toHaveLength(1);
    // the resource numbers are an estimate until measured: the comment says so and says what to measure
    expect(read('deploy/base/deployment.yaml')).toMatch(/ESTIMATE[\s\S]*process_resident_memory_bytes/);
    const gi = (q: unknown) => Number(str(q).replace(/Gi$/, ''));
    expect(gi(at(c, 'resources.limits.memory'))).toBeGreaterThanOrEqual(
      gi(at(c, 'resources.requests.memory')),
    );
    // intra-op threads follow the CPU request (Node 20 sees the node's cores, not the pod's)
    const threads = envOf(c).find((e) => e.name === SETTINGS.intraOpThreads.env);
    expect(at(threads, 'valueFrom.resourceFieldRef.resource')).toBe('requests.cpu');
  });

  const env = (c: Obj, name: string, value: string) => {
    const list = arr(c.env).filter((e) => obj(e, 'env').name !== name);
    c.env = [...list, { name, value }];
  };
  it.each<[string, (c: Obj, pod: Obj) => void, RegExp]>([
    ['the default host', (c) => env(c, SETTINGS.host.env, '127.0.0.1'), /PADSERVE_HOST must be 0\.0\.0\.0/],
    [
      'a misspelt PADSERVE_ variable',
      (c) => env(c, 'PADSERVE_WORKRES', '1'),
      /PADSERVE_WORKRES is not a server setting/,
    ],
    ['a value the server refuses', (c) => env(c, SETTINGS.workers.env, 'two'), /expected an integer/],
    ['an unknown flag', (c) => (c.args = ['serve', '--devise', 'cuda']), /Unknown option '--devise'/],
    ['a secret given as a literal', (c) => env(c, SETTINGS.adminToken.env, 'x'), /is a secret/],
    [
      'a port that is not the server port',
      (c) => (obj(arr(c.ports)[0], 'port').containerPort = 9000),
      /containerPort should be 8080/,
    ],
    [
      'readiness on the live route',
      (c) => (obj(at(c, 'readinessProbe.httpGet'), 'get').path = '/v2/health/live'),
      /readinessProbe path/,
    ],
    [
      'a startup budget of 5 minutes',
      (c) => (obj(c.startupProbe, 'probe').failureThreshold = 30),
      /startupProbe allows 300 s/,
    ],
    [
      'an eager liveness probe',
      (c) => (obj(c.livenessProbe, 'probe').timeoutSeconds = 1),
      /livenessProbe too eager/,
    ],
    [
      'no memory request',
      (c) => delete obj(at(c, 'resources.requests'), 'requests').memory,
      /no memory request/,
    ],
    [
      'a grace period shorter than the drain',
      (_, pod) => (pod.terminationGracePeriodSeconds = 40),
      /terminationGracePeriodSeconds 40 </,
    ],
    ['no preStop sleep', (c) => delete c.lifecycle, /preStop should sleep/],
  ])('the base Deployment check rejects %s', (_, breakIt, expected) => {
    const d = structuredClone(one(inDir('deploy/base'), 'Deployment', 'padserve'));
    breakIt(containersOf(d)[0]!, obj(at(d, 'spec.template.spec'), 'pod spec'));
    expect(baseChecks(d).join('\n')).toMatch(expected);
  });

  it('Service, HPA and PDB point at the Deployment; the HPA queue-depth variant names a real metric', () => {
    const base = inDir('deploy/base');
    const d = one(base, 'Deployment', 'padserve');
    const podLabels = obj(at(d, 'spec.template.metadata.labels'), 'labels');
    const matches = (sel: unknown) =>
      Object.entries(obj(sel, 'selector')).every(([k, v]) => podLabels[k] === v);
    expect(matches(at(d, 'spec.selector.matchLabels'))).toBe(true);
    const svc = one(base, 'Service', 'padserve');
    expect(matches(at(svc, 'spec.selector'))).toBe(true);
    const sp = obj(at(svc, 'spec.ports.0'), 'service port');
    const cport = obj(at(containersOf(d)[0], 'ports.0'), 'container port');
    expect([cport.name, cport.containerPort]).toContain(sp.targetPort);
    expect(sp.port).toBe(SETTINGS.port.default);
    expect(matches(at(one(base, 'PodDisruptionBudget', 'padserve'), 'spec.selector.matchLabels'))).toBe(true);
    const hpa = one(base, 'HorizontalPodAutoscaler', 'padserve');
    expect(at(hpa, 'spec.scaleTargetRef')).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'padserve',
    });
    expect(at(hpa, 'spec.metrics.0.resource.name')).toBe('cpu');
    expect(Number(at(hpa, 'spec.minReplicas'))).toBeGreaterThanOrEqual(2);
    const comments = read('deploy/base/hpa.yaml')
      .split('\n')
      .filter((l) => l.trim().startsWith('#'))
      .join('\n');
    const metric = /name: (padserve_\w+)/.exec(comments)?.[1];
    expect(metric, 'commented custom-metric variant').toBe('padserve_queue_depth');
    expect(
      read('src/observability/metrics.ts'),
      `${metric} is exported by src/observability/metrics.ts`,
    ).toContain(`'${metric}'`);
  });

  it('GPU overlay: nvidia.com/gpu limit, toleration, nodeSelector, --device cuda, the CUDA image', () => {
    const patch = one(inDir('deploy/overlays/gpu'), 'Deployment', 'padserve');
    const pod = obj(at(patch, 'spec.template.spec'), 'pod spec');
    expect(arr(pod.tolerations)).toContainEqual({
      key: 'nvidia.com/gpu',
      operator: 'Exists',
      effect: 'NoSchedule',
    });
    expect(Object.keys(obj(pod.nodeSelector, 'nodeSelector')).length).toBeGreaterThan(0);
    const c = containersOf(patch)[0]!;
    expect(at(c, 'resources.limits')).toMatchObject({ 'nvidia.com/gpu': 1 });
    expect(arr(c.args)).toEqual(['serve', '--device', 'cuda']);
    expect(envOf(c)).toContainEqual({ name: SETTINGS.device.env, value: 'cuda' });
    expect(startupErrors(arr(c.args).map(str), { [SETTINGS.device.env]: 'cuda' })).toEqual([]);
    expect(arr(one(inDir('deploy/overlays/gpu'), 'Kustomization').images)).toContainEqual(
      expect.objectContaining({ name: 'padserve', newTag: expect.stringMatching(/-cuda$/) }),
    );
  });

  it('KServe: InferenceService with the padserve runtime, V2 protocol, port 8080, probes and drain as in the base', () => {
    const ks = inDir('deploy/kserve');
    const isvc = one(ks, 'InferenceService', 'padserve');
    const rt = one(ks, 'ServingRuntime', 'padserve');
    expect(at(isvc, 'spec.predictor.model')).toMatchObject({ protocolVersion: 'v2', runtime: 'padserve' });
    expect(arr(at(rt, 'spec.protocolVersions'))).toContain('v2');
    const fmt = at(isvc, 'spec.predictor.model.modelFormat.name');
    expect(arr(at(rt, 'spec.supportedModelFormats')).map((f) => obj(f, 'format').name)).toContain(fmt);
    const c = obj(at(rt, 'spec.containers.0'), 'runtime container');
    expect(c.name).toBe('kserve-container');
    expect(checkContainer(c, 'deploy/kserve ServingRuntime', { modelRepository: '/mnt/models' })).toEqual([]);
    expect(
      checkDrain(obj(at(isvc, 'spec.predictor'), 'predictor'), c, 'deploy/kserve InferenceService'),
    ).toEqual([]);
    const storage = str(at(isvc, 'spec.predictor.model.storageUri'));
    const claim = /^pvc:\/\/([^/]+)/.exec(storage)?.[1];
    expect(claim, `storageUri ${storage}`).toBeDefined();
    expect(find(ks, 'PersistentVolumeClaim', claim)).toHaveLength(1);
    expect(at(isvc, 'metadata.annotations')).toMatchObject({
      'storage.kserve.io/readonly': 'false',
      'serving.kserve.io/deploymentMode': 'RawDeployment',
    });
  });
});

describe('names in comments and docs', () => {
  it('every PADSERVE_* name and serve flag mentioned in the Dockerfiles, deploy/ and docs/deploy.md is a real setting', () => {
    // Variables of the tests and build scripts, not of the server.
    const tooling =
      /^PADSERVE_(KUBECTL|DOCKER_CACHE|DEBIAN_MIRROR|BASE_NODE_VERSION|BASE_NPM_VERSION|TEST_IMAGE)$/;
    const unknown: string[] = [];
    for (const f of ['Dockerfile', 'Dockerfile.cuda', 'docs/deploy.md', ...listYaml('deploy')]) {
      const text = read(f);
      for (const m of text.matchAll(/\bPADSERVE_[A-Z0-9_]+\b/g))
        if (!byEnv.has(m[0]) && !tooling.test(m[0])) unknown.push(`${f}: ${m[0]}`);
      for (const m of text.matchAll(/\bserve((?:\s+--?[a-z][\w-]*(?:[= ][^\s'"\],]+)?)+)/g))
        for (const flag of m[1]!.matchAll(/--([a-z][\w-]*)/g))
          if (!byFlag.has(flag[1]!.replace(/^no-/, '')) && flag[1] !== 'help')
            unknown.push(`${f}: serve --${flag[1]}`);
    }
    expect(unknown).toEqual([]);
  });
});
