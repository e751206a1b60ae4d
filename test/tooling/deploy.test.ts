/**
 * Container and cluster deployment (docs/deploy.md), checked without a Docker engine or a cluster:
 * - Dockerfile and Dockerfile.cuda, by rules (non-root, HEALTHCHECK, exec form, pinned bases, npm ci, the CUDA
 *   install flag and provider files, ...). What a real build and run show (every COPY source is there, the steps
 *   succeed, the .dockerignore'd context is small, the final file set runs) is `npm run test:container`
 *   (test-container/), which CI runs: no replay of the build steps here;
 * - every YAML file under deploy/: parsed as Kubernetes does (YAML 1.1), apiVersion/kind/fields against a small
 *   schema (unknown fields are errors: a misspelt `readinessprobe` would otherwise be dropped silently);
 *   rendered with `kubectl kustomize` when kubectl is installed (logged and skipped otherwise);
 * - against the server's real settings (server/config.ts SETTINGS) and routes: ports, probe paths, PADSERVE_*
 *   names and values, CLI flags, the SIGTERM drain vs terminationGracePeriodSeconds, the queue-depth metric;
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { PROVIDER_LIBRARIES } from '../../src/runtime/device.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const rel = (p: string) => relative(ROOT, p);

// ------------------------------------------------------------------------------------------ server settings
interface SettingDef {
  flag: string;
  env: string;
  kind: 'string' | 'int' | 'bool' | 'ints' | { enum: readonly string[] };
  default: unknown;
}
let SETTINGS: Record<string, SettingDef>;
let byEnv: Map<string, SettingDef>;
let byFlag: Map<string, SettingDef>;
const setting = (name: string): SettingDef => {
  const s = SETTINGS[name];
  if (!s) throw new Error(`server/config.ts has no setting "${name}" (deploy files rely on it)`);
  return s;
};

/** Checks a value the way server/config.ts would parse it; returns an error message or null. */
function badValue(def: SettingDef, raw: string): string | null {
  const k = def.kind;
  if (k === 'string') return null;
  if (k === 'int') return /^\d+$/.test(raw) ? null : `expected an integer, got "${raw}"`;
  if (k === 'bool')
    return /^(1|true|yes|on|0|false|no|off)$/i.test(raw) ? null : `expected true/false, got "${raw}"`;
  if (k === 'ints') return /^\d+(,\s*\d+)*$/.test(raw) ? null : `expected integers, got "${raw}"`;
  return k.enum.includes(raw) ? null : `expected one of ${k.enum.join('|')}, got "${raw}"`;
}

/** `serve --flag value ...` → error messages for unknown flags / bad values (a bool flag takes no value). */
function badArgs(args: string[]): string[] {
  const errors: string[] = [];
  if (args[0] !== 'serve') errors.push(`first argument should be "serve", got "${args[0]}"`);
  for (let i = 1; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) {
      errors.push(`unexpected argument "${a}"`);
      continue;
    }
    const [name, inline] = a.slice(2).split(/=(.*)/s);
    const def = byFlag.get(name!.replace(/^no-/, ''));
    if (!def) {
      errors.push(`unknown flag --${name} (not in server/config.ts)`);
      continue;
    }
    if (def.kind === 'bool') continue;
    const value = inline ?? args[++i];
    if (value === undefined) errors.push(`--${name} needs a value`);
    else {
      const bad = badValue(def, value);
      if (bad) errors.push(`--${name}: ${bad}`);
    }
  }
  return errors;
}

// ------------------------------------------------------------------------------------------ YAML
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown, what: string): Obj => {
  if (!isObj(v)) throw new Error(`${what}: expected a mapping`);
  return v;
};
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === 'string' ? v : String(v));

interface Manifest {
  file: string;
  index: number;
  doc: Obj;
}
let yamlLib: typeof import('yaml');

function parseYamlFile(file: string): Manifest[] {
  const text = readFileSync(file, 'utf8');
  // Kubernetes reads YAML 1.1 (sigs.k8s.io/yaml): yes/no/on/off are booleans there, so parse the same way.
  const docs = yamlLib.parseAllDocuments(text, { version: '1.1', uniqueKeys: true });
  const out: Manifest[] = [];
  for (const [index, d] of (Array.isArray(docs) ? docs : [docs]).entries()) {
    if (d.errors.length) throw new Error(`${rel(file)}: ${d.errors.map((e) => e.message).join('; ')}`);
    const js: unknown = d.toJS();
    if (js === null || js === undefined) continue;
    out.push({ file: rel(file), index, doc: obj(js, `${rel(file)} document ${index}`) });
  }
  return out;
}

function listYaml(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listYaml(p));
    else if (/\.ya?ml$/.test(name)) out.push(p);
  }
  return out;
}

// ------------------------------------------------------------------------------------------ a small schema
// Field names per object type (all of the API's fields, so that typos are caught); `deep` validates the values
// of the fields this project uses. Sources: the Kubernetes 1.30 API reference, KServe 0.14 CRDs.
type Schema =
  | 'string'
  | 'int'
  | 'bool'
  | 'quantity'
  | 'intOrString'
  | 'any'
  | 'stringMap'
  | 'quantityMap'
  | { array: Schema }
  | { keys: string; required?: string; deep?: Record<string, Schema>; open?: boolean };

const K = (keys: string, deep: Record<string, Schema> = {}, required = '', open = false): Schema => ({
  keys,
  deep,
  required,
  open,
});
const META = K(
  'name namespace labels annotations generateName finalizers ownerReferences',
  { name: 'string', labels: 'stringMap', annotations: 'stringMap' },
  'name',
);
const PROBE = K(
  'exec httpGet tcpSocket grpc initialDelaySeconds timeoutSeconds periodSeconds successThreshold failureThreshold terminationGracePeriodSeconds',
  {
    httpGet: K('path port host scheme httpHeaders', { path: 'string', port: 'intOrString' }, 'port'),
    exec: K('command', { command: { array: 'string' } }),
    initialDelaySeconds: 'int',
    timeoutSeconds: 'int',
    periodSeconds: 'int',
    successThreshold: 'int',
    failureThreshold: 'int',
  },
);
const RESOURCES = K('requests limits claims', { requests: 'quantityMap', limits: 'quantityMap' });
const ENV_VAR = K(
  'name value valueFrom',
  {
    name: 'string',
    value: 'string',
    valueFrom: K('fieldRef resourceFieldRef configMapKeyRef secretKeyRef', {
      resourceFieldRef: K(
        'containerName resource divisor',
        { resource: 'string', divisor: 'quantity' },
        'resource',
      ),
      secretKeyRef: K('name key optional', { name: 'string', key: 'string', optional: 'bool' }, 'key'),
    }),
  },
  'name',
);
const CONTAINER_FIELDS =
  'name image command args workingDir ports envFrom env resources resizePolicy restartPolicy volumeMounts volumeDevices livenessProbe readinessProbe startupProbe lifecycle terminationMessagePath terminationMessagePolicy imagePullPolicy securityContext stdin stdinOnce tty';
const CONTAINER = K(
  CONTAINER_FIELDS,
  {
    name: 'string',
    image: 'string',
    command: { array: 'string' },
    args: { array: 'string' },
    ports: {
      array: K(
        'name containerPort hostPort hostIP protocol',
        { name: 'string', containerPort: 'int', protocol: 'string' },
        'containerPort',
      ),
    },
    env: { array: ENV_VAR },
    resources: RESOURCES,
    volumeMounts: {
      array: K(
        'name mountPath readOnly subPath subPathExpr mountPropagation recursiveReadOnly',
        { name: 'string', mountPath: 'string' },
        'name mountPath',
      ),
    },
    livenessProbe: PROBE,
    readinessProbe: PROBE,
    startupProbe: PROBE,
    lifecycle: K('postStart preStop stopSignal', {
      preStop: K('exec httpGet tcpSocket sleep', {
        exec: K('command', { command: { array: 'string' } }),
        sleep: K('seconds', { seconds: 'int' }, 'seconds'),
      }),
    }),
    imagePullPolicy: 'string',
    securityContext: K(
      'allowPrivilegeEscalation appArmorProfile capabilities privileged procMount readOnlyRootFilesystem runAsGroup runAsNonRoot runAsUser seLinuxOptions seccompProfile windowsOptions',
      {
        allowPrivilegeEscalation: 'bool',
        readOnlyRootFilesystem: 'bool',
        runAsNonRoot: 'bool',
        runAsUser: 'int',
        runAsGroup: 'int',
        capabilities: K('add drop', { drop: { array: 'string' } }),
      },
    ),
  },
  'name',
);
const POD_SPEC_KEYS =
  'activeDeadlineSeconds affinity automountServiceAccountToken containers dnsConfig dnsPolicy enableServiceLinks ephemeralContainers hostAliases hostIPC hostNetwork hostPID hostUsers hostname imagePullSecrets initContainers nodeName nodeSelector os overhead preemptionPolicy priority priorityClassName readinessGates resourceClaims resources restartPolicy runtimeClassName schedulerName schedulingGates securityContext serviceAccount serviceAccountName setHostnameAsFQDN shareProcessNamespace subdomain terminationGracePeriodSeconds tolerations topologySpreadConstraints volumes';
const POD_SPEC_DEEP: Record<string, Schema> = {
  containers: { array: CONTAINER },
  initContainers: { array: CONTAINER },
  terminationGracePeriodSeconds: 'int',
  enableServiceLinks: 'bool',
  nodeSelector: 'stringMap',
  runtimeClassName: 'string',
  tolerations: {
    array: K('key operator value effect tolerationSeconds', {
      key: 'string',
      operator: 'string',
      effect: 'string',
    }),
  },
  securityContext: K(
    'appArmorProfile fsGroup fsGroupChangePolicy runAsGroup runAsNonRoot runAsUser seLinuxChangePolicy seLinuxOptions seccompProfile supplementalGroups supplementalGroupsPolicy sysctls windowsOptions',
    {
      fsGroup: 'int',
      runAsUser: 'int',
      runAsGroup: 'int',
      runAsNonRoot: 'bool',
      fsGroupChangePolicy: 'string',
      seccompProfile: K('type localhostProfile', { type: 'string' }, 'type'),
    },
  ),
  volumes: {
    array: {
      keys: 'name persistentVolumeClaim emptyDir configMap secret',
      open: true,
      required: 'name',
      deep: {
        persistentVolumeClaim: K('claimName readOnly', { claimName: 'string' }, 'claimName'),
        emptyDir: K('medium sizeLimit', { sizeLimit: 'quantity' }),
      },
    },
  },
};
const POD_SPEC = K(POD_SPEC_KEYS, POD_SPEC_DEEP, 'containers');
const LABEL_SELECTOR = K('matchLabels matchExpressions', { matchLabels: 'stringMap' });
const top = (spec: Schema, required = 'spec') =>
  K(
    'apiVersion kind metadata spec status',
    { apiVersion: 'string', kind: 'string', metadata: META, spec },
    `apiVersion kind metadata ${required}`,
  );

const SCHEMAS: Record<string, Schema> = {
  'apps/v1/Deployment': top(
    K(
      'replicas selector template strategy minReadySeconds revisionHistoryLimit paused progressDeadlineSeconds',
      {
        replicas: 'int',
        revisionHistoryLimit: 'int',
        selector: LABEL_SELECTOR,
        strategy: K('type rollingUpdate', {
          type: 'string',
          rollingUpdate: K('maxSurge maxUnavailable', {
            maxSurge: 'intOrString',
            maxUnavailable: 'intOrString',
          }),
        }),
        template: K(
          'metadata spec',
          {
            metadata: K('name labels annotations', { labels: 'stringMap', annotations: 'stringMap' }),
            spec: POD_SPEC,
          },
          'metadata spec',
        ),
      },
      'selector template',
    ),
  ),
  'v1/Service': top(
    K(
      'type selector ports clusterIP clusterIPs externalIPs externalName externalTrafficPolicy healthCheckNodePort internalTrafficPolicy ipFamilies ipFamilyPolicy loadBalancerClass loadBalancerIP loadBalancerSourceRanges publishNotReadyAddresses sessionAffinity sessionAffinityConfig trafficDistribution allocateLoadBalancerNodePorts',
      {
        type: 'string',
        selector: 'stringMap',
        ports: {
          array: K(
            'name port targetPort protocol nodePort appProtocol',
            { name: 'string', port: 'int', targetPort: 'intOrString', protocol: 'string' },
            'port',
          ),
        },
      },
      'ports',
    ),
  ),
  'v1/PersistentVolumeClaim': top(
    K(
      'accessModes resources storageClassName volumeMode volumeName selector dataSource dataSourceRef volumeAttributesClassName',
      {
        accessModes: { array: 'string' },
        volumeMode: 'string',
        resources: K(
          'requests limits',
          { requests: K('storage', { storage: 'quantity' }, 'storage') },
          'requests',
        ),
      },
      'accessModes resources',
    ),
  ),
  'autoscaling/v2/HorizontalPodAutoscaler': top(
    K(
      'scaleTargetRef minReplicas maxReplicas metrics behavior',
      {
        scaleTargetRef: K(
          'apiVersion kind name',
          { apiVersion: 'string', kind: 'string', name: 'string' },
          'kind name',
        ),
        minReplicas: 'int',
        maxReplicas: 'int',
        metrics: {
          array: K(
            'type resource pods object external containerResource',
            {
              type: 'string',
              resource: K(
                'name target',
                {
                  name: 'string',
                  target: K(
                    'type averageUtilization averageValue value',
                    { type: 'string', averageUtilization: 'int' },
                    'type',
                  ),
                },
                'name target',
              ),
              pods: K(
                'metric target',
                {
                  metric: K('name selector', { name: 'string' }, 'name'),
                  target: K(
                    'type averageValue averageUtilization value',
                    { type: 'string', averageValue: 'quantity' },
                    'type',
                  ),
                },
                'metric target',
              ),
            },
            'type',
          ),
        },
        behavior: K('scaleUp scaleDown', {
          scaleUp: K('stabilizationWindowSeconds selectPolicy policies tolerance', {
            stabilizationWindowSeconds: 'int',
            policies: {
              array: K(
                'type value periodSeconds',
                { type: 'string', value: 'int', periodSeconds: 'int' },
                'type value periodSeconds',
              ),
            },
          }),
          scaleDown: K('stabilizationWindowSeconds selectPolicy policies tolerance', {
            stabilizationWindowSeconds: 'int',
            policies: {
              array: K(
                'type value periodSeconds',
                { type: 'string', value: 'int', periodSeconds: 'int' },
                'type value periodSeconds',
              ),
            },
          }),
        }),
      },
      'scaleTargetRef maxReplicas',
    ),
  ),
  'policy/v1/PodDisruptionBudget': top(
    K(
      'minAvailable maxUnavailable selector unhealthyPodEvictionPolicy',
      {
        minAvailable: 'intOrString',
        maxUnavailable: 'intOrString',
        selector: LABEL_SELECTOR,
        unhealthyPodEvictionPolicy: 'string',
      },
      'selector',
    ),
  ),
  'kustomize.config.k8s.io/v1beta1/Kustomization': K(
    'apiVersion kind resources components patches images labels commonLabels commonAnnotations namespace namePrefix nameSuffix configMapGenerator secretGenerator replicas generatorOptions replacements',
    {
      resources: { array: 'string' },
      patches: { array: K('path patch target options', { path: 'string' }) },
      images: {
        array: K(
          'name newName newTag digest',
          { name: 'string', newName: 'string', newTag: 'string' },
          'name',
        ),
      },
      labels: {
        array: K('pairs includeSelectors includeTemplates fields', {
          pairs: 'stringMap',
          includeSelectors: 'bool',
        }),
      },
    },
    'apiVersion kind',
  ),
  'serving.kserve.io/v1alpha1/ServingRuntime': top(
    K(
      'supportedModelFormats multiModel disabled protocolVersions annotations labels containers volumes nodeSelector affinity tolerations imagePullSecrets builtInAdapter storageHelper replicas grpcEndpoint grpcDataEndpoint httpDataEndpoint workerSpec hostIPC',
      {
        supportedModelFormats: {
          array: K(
            'name version autoSelect priority',
            { name: 'string', version: 'string', autoSelect: 'bool', priority: 'int' },
            'name',
          ),
        },
        protocolVersions: { array: 'string' },
        annotations: 'stringMap',
        containers: { array: CONTAINER },
      },
      'containers',
    ),
  ),
  'serving.kserve.io/v1beta1/InferenceService': top(
    K(
      'predictor transformer explainer',
      {
        predictor: K(
          `${POD_SPEC_KEYS} minReplicas maxReplicas scaleTarget scaleMetric scaleMetricType autoScaling containerConcurrency timeout canaryTrafficPercent logger batcher labels annotations deploymentStrategy workerSpec model sklearn xgboost tensorflow pytorch triton onnx huggingface pmml lightgbm paddle`,
          {
            ...POD_SPEC_DEEP,
            containers: { array: CONTAINER },
            minReplicas: 'int',
            maxReplicas: 'int',
            scaleTarget: 'int',
            scaleMetric: 'string',
            model: K(
              `modelFormat runtime protocolVersion storageUri storage runtimeVersion ${CONTAINER_FIELDS}`,
              {
                modelFormat: K('name version', { name: 'string', version: 'string' }, 'name'),
                runtime: 'string',
                protocolVersion: 'string',
                storageUri: 'string',
                args: { array: 'string' },
                resources: RESOURCES,
              },
              'modelFormat',
            ),
          },
        ),
      },
      'predictor',
    ),
  ),
};

const QUANTITY = /^[+-]?(\d+(\.\d*)?|\.\d+)(e[+-]?\d+|[EPTGMk]i?|Ki|m|u|n)?$/;

function validate(value: unknown, schema: Schema, path: string, errors: string[], partial: boolean): void {
  if (schema === 'any') return;
  if (schema === 'string') {
    if (typeof value !== 'string') errors.push(`${path}: expected a string, got ${JSON.stringify(value)}`);
  } else if (schema === 'int') {
    if (!Number.isInteger(value)) errors.push(`${path}: expected an integer, got ${JSON.stringify(value)}`);
  } else if (schema === 'bool') {
    if (typeof value !== 'boolean') errors.push(`${path}: expected true/false, got ${JSON.stringify(value)}`);
  } else if (schema === 'intOrString') {
    if (!Number.isInteger(value) && typeof value !== 'string')
      errors.push(`${path}: expected an integer or a string`);
  } else if (schema === 'quantity') {
    if (!(typeof value === 'number' || (typeof value === 'string' && QUANTITY.test(value))))
      errors.push(`${path}: not a quantity: ${JSON.stringify(value)}`);
  } else if (schema === 'stringMap') {
    if (!isObj(value)) errors.push(`${path}: expected a mapping`);
    else
      for (const [k, v] of Object.entries(value))
        if (typeof v !== 'string')
          errors.push(`${path}.${k}: expected a string (quote it), got ${JSON.stringify(v)}`);
  } else if (schema === 'quantityMap') {
    if (!isObj(value)) errors.push(`${path}: expected a mapping`);
    else for (const [k, v] of Object.entries(value)) validate(v, 'quantity', `${path}.${k}`, errors, partial);
  } else if ('array' in schema) {
    if (!Array.isArray(value)) errors.push(`${path}: expected a list`);
    else value.forEach((v, i) => validate(v, schema.array, `${path}[${i}]`, errors, partial));
  } else {
    if (!isObj(value)) {
      errors.push(`${path}: expected a mapping, got ${JSON.stringify(value)}`);
      return;
    }
    const allowed = new Set(schema.keys.split(/\s+/).filter(Boolean));
    for (const [k, v] of Object.entries(value)) {
      if (!schema.open && !allowed.has(k)) errors.push(`${path}: unknown field "${k}"`);
      const sub = schema.deep?.[k];
      if (sub) validate(v, sub, `${path}.${k}`, errors, partial);
    }
    if (!partial)
      for (const r of (schema.required ?? '').split(/\s+/).filter(Boolean))
        if (!(r in value)) errors.push(`${path}: missing required field "${r}"`);
  }
}

function schemaErrors(m: Manifest | { file: string; index: number; doc: Obj }, partial = false): string[] {
  const errors: string[] = [];
  const { apiVersion, kind } = m.doc;
  const key = `${str(apiVersion)}/${str(kind)}`;
  const schema = SCHEMAS[key];
  const where = `${m.file}#${m.index} ${str(kind)}/${str(isObj(m.doc.metadata) ? m.doc.metadata.name : '')}`;
  if (!schema)
    return [`${where}: unexpected apiVersion/kind "${key}" (known: ${Object.keys(SCHEMAS).join(', ')})`];
  validate(m.doc, schema, where, errors, partial);
  return errors;
}

// ------------------------------------------------------------------------------------------ Dockerfile
interface Instr {
  line: number;
  keyword: string;
  rest: string;
}
interface Stage {
  name: string;
  base: string;
  instrs: Instr[];
}
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines = text.split(/\r?\n/);
  const instrs: Instr[] = [];
  let buf: string | null = null;
  let start = 0;
  lines.forEach((raw, n) => {
    const t = raw.trim();
    if (t.startsWith('#') || (buf === null && t === '')) return;
    if (buf === null) {
      buf = '';
      start = n + 1;
    }
    if (/\\\s*$/.test(raw)) {
      buf += raw.replace(/\\\s*$/, '');
      return;
    }
    buf += raw;
    const m = /^\s*(\w+)\s*(.*)$/s.exec(buf)!;
    instrs.push({ line: start, keyword: m[1]!.toUpperCase(), rest: m[2]!.trim() });
    buf = null;
  });
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const i of instrs) {
    if (i.keyword === 'FROM') {
      const w = i.rest.replace(/^--\S+\s+/, '').split(/\s+/);
      const base = w[0]!.replace(/\$\{?(\w+)\}?/g, (_, v: string) => args[v] ?? '');
      stages.push({ name: w[1]?.toUpperCase() === 'AS' ? w[2]! : String(stages.length), base, instrs: [] });
    } else if (!stages.length && i.keyword === 'ARG') {
      const [k, v] = i.rest.split(/=(.*)/s);
      args[k!.trim()] = (v ?? '').trim();
    } else stages.at(-1)?.instrs.push(i);
  }
  return { args, stages };
}
const jsonArray = (s: string): string[] | null => {
  try {
    const v: unknown = JSON.parse(s);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : null;
  } catch {
    return null;
  }
};
const envOf = (st: Stage): Record<string, string> => {
  const env: Record<string, string> = {};
  for (const i of st.instrs.filter((x) => x.keyword === 'ENV'))
    for (const pair of i.rest.split(/\s+/)) {
      const [k, v] = pair.split(/=(.*)/s);
      if (k && v !== undefined) env[k] = v.replace(/^"(.*)"$/, '$1');
    }
  return env;
};
const last = (st: Stage, kw: string) => st.instrs.filter((i) => i.keyword === kw).at(-1);

// ------------------------------------------------------------------------------------------ fixtures
let dockerfile: { args: Record<string, string>; stages: Stage[] };
let cudafile: { args: Record<string, string>; stages: Stage[] };
let manifests: Manifest[];
let kubectl: string | null = null;
const rendered: Record<string, Manifest[]> = {};

beforeAll(async () => {
  const configPath = join(ROOT, 'server', 'config.ts');
  if (!existsSync(configPath))
    throw new Error('server/config.ts is missing: the deployment checks compare against its SETTINGS table');
  const config = (await import('../../server/config.js')) as unknown as {
    SETTINGS?: Record<string, SettingDef>;
  };
  if (!config.SETTINGS) throw new Error('server/config.ts does not export SETTINGS');
  SETTINGS = config.SETTINGS;
  byEnv = new Map(Object.values(SETTINGS).map((s) => [s.env, s]));
  byFlag = new Map(Object.values(SETTINGS).map((s) => [s.flag, s]));
  try {
    yamlLib = await import('yaml');
  } catch (e) {
    throw new Error(
      `the "yaml" package is needed to parse deploy/ (add it to devDependencies): ${String(e)}`,
    );
  }
  dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
  cudafile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile.cuda'), 'utf8'));
  manifests = listYaml(join(ROOT, 'deploy')).flatMap(parseYamlFile);
  // PADSERVE_KUBECTL: a kubectl to use, or "none" to check without one (what CI machines without kubectl do).
  const wanted = process.env.PADSERVE_KUBECTL ?? 'kubectl';
  const which =
    wanted === 'none' ? null : spawnSync('sh', ['-c', 'command -v "$0"', wanted], { encoding: 'utf8' });
  kubectl = which?.status === 0 ? which.stdout.trim() : null;
  if (kubectl) {
    for (const k of manifests.filter((m) => m.doc.kind === 'Kustomization')) {
      const dir = dirname(join(ROOT, k.file));
      const r = spawnSync(kubectl, ['kustomize', dir], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`kubectl kustomize ${rel(dir)} failed: ${r.stderr}`);
      const docs = yamlLib.parseAllDocuments(r.stdout, { version: '1.1' });
      rendered[rel(dir)] = (Array.isArray(docs) ? docs : [docs]).map((d, index) => ({
        file: `kustomize(${rel(dir)})`,
        index,
        doc: obj(d.toJS(), rel(dir)),
      }));
    }
  } else
    console.info(
      'deploy.test: kubectl not found: `kubectl kustomize` rendering of the overlays is skipped (the files are checked one by one)',
    );
});

const stage = (name: string): Stage => {
  const s = [...dockerfile.stages, ...cudafile.stages].find((x) => x.name === name);
  if (!s) throw new Error(`Dockerfile / Dockerfile.cuda has no stage "${name}"`);
  return s;
};
const finalStages = () => [dockerfile.stages.at(-1)!, stage('cuda')];
const find = (ms: Manifest[], kind: string, name?: string) =>
  ms.filter(
    (m) =>
      m.doc.kind === kind && (name === undefined || (isObj(m.doc.metadata) && m.doc.metadata.name === name)),
  );
const one = (ms: Manifest[], kind: string, name?: string): Obj => {
  const f = find(ms, kind, name);
  if (f.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${f.length}`);
  return f[0]!.doc;
};
const at = (o: unknown, path: string): unknown =>
  path
    .split('.')
    .reduce<unknown>((v, k) => (Array.isArray(v) ? v[Number(k)] : isObj(v) ? v[k] : undefined), o);
const containersOf = (deployment: Obj): Obj[] =>
  arr(at(deployment, 'spec.template.spec.containers')).map((c) => obj(c, 'container'));
const baseDir = (f: string) => f.split('/').slice(0, -1).join('/');
const inDir = (dir: string) => manifests.filter((m) => baseDir(m.file) === dir);

// ------------------------------------------------------------------------------------------ tests
describe('Dockerfile (rules; hadolint is not installable offline: no Debian package, the npm wrapper downloads it)', () => {
  it('Dockerfile: a build stage and the CPU runtime; Dockerfile.cuda: the CUDA image on top of the CPU image', () => {
    // The classic builder (DOCKER_BUILDKIT=0) builds every stage of a file up to the target: the CPU file holds
    // no CUDA stage, so a CPU build never pulls the NVIDIA image or reaches NuGet.
    expect(dockerfile.stages.map((s) => s.name)).toEqual(['build', 'runtime']);
    expect(stage('runtime').base).toMatch(/^node:20[.\d]*-bookworm-slim(@sha256:[0-9a-f]{64})?$/);
    expect(cudafile.stages.map((s) => s.name)).toEqual(['build-cuda', 'cuda']);
    expect(stage('build-cuda').base).toBe('padserve:0.1.0');
    expect(stage('cuda').base).toMatch(/^nvidia\/cuda:12\.\d+(\.\d+)?-cudnn(9)?-runtime-ubuntu2[24]\.04$/);
  });

  it('builds with the classic builder too: no RUN --mount or other BuildKit-only flag', () => {
    for (const s of [...dockerfile.stages, ...cudafile.stages])
      for (const i of s.instrs)
        if (i.keyword === 'RUN') expect(i.rest, `${s.name} line ${i.line}`).not.toMatch(/^--/);
  });

  it('pins every base image to a version tag (no latest, no untagged image)', () => {
    for (const s of [...dockerfile.stages, ...cudafile.stages]) {
      if (dockerfile.stages.some((x) => x.name === s.base)) continue; // FROM another stage
      const tag = /^[^@]+:([^:/@]+)(@sha256:[0-9a-f]{64})?$/.exec(s.base)?.[1];
      expect(tag, `FROM ${s.base} (stage ${s.name})`).toBeDefined();
      expect(tag, `FROM ${s.base}`).not.toBe('latest');
    }
  });

  it('installs with npm ci (offline-safe) and builds, prunes in the build stage; the CUDA build adds the provider', () => {
    const b = stage('build');
    const runs = b.instrs.filter((i) => i.keyword === 'RUN').map((i) => i.rest);
    expect(runs.slice(0, 3)).toEqual(['npm ci --ignore-scripts', 'npm run build', 'npm prune --omit=dev']);
    for (const s of [...dockerfile.stages, ...cudafile.stages])
      for (const i of s.instrs)
        if (i.keyword === 'RUN')
          expect(i.rest, `line ${i.line}`).not.toMatch(
            /\bnpm (install|i)\b|\byarn\b|\bsudo\b|\bcurl\b[^|]*\|\s*(ba)?sh/,
          );
    expect(envOf(b).ONNXRUNTIME_NODE_INSTALL).toBe('skip');
    expect(
      b.instrs.find((i) => i.keyword === 'COPY' && /(^|\s)\.npmrc(\s|$)/.test(i.rest)),
      'the build stage copies .npmrc',
    ).toBeDefined();
    expect(
      b.instrs.some((i) => i.keyword === 'ADD'),
      'COPY, not ADD',
    ).toBe(false);
    const install = last(stage('build-cuda'), 'RUN')?.rest ?? '';
    const flag = /^ONNXRUNTIME_NODE_INSTALL=(\S+) npm rebuild onnxruntime-node\b/.exec(install)?.[1];
    expect(flag, install).toBeDefined();
    // The value as onnxruntime-node's own install script reads it: `true` forces the download; any value it does
    // not handle (the old "cuda12") falls through to undefined, the default behaviour.
    const utils = createRequire(import.meta.url)('onnxruntime-node/script/install-utils.js') as {
      parseInstallFlag: () => unknown;
    };
    const parsed = (value: string) => {
      const before = process.env.ONNXRUNTIME_NODE_INSTALL;
      process.env.ONNXRUNTIME_NODE_INSTALL = value;
      try {
        return utils.parseInstallFlag();
      } finally {
        if (before === undefined) delete process.env.ONNXRUNTIME_NODE_INSTALL;
        else process.env.ONNXRUNTIME_NODE_INSTALL = before;
      }
    };
    expect(parsed(flag!)).toBe(true);
    expect(parsed('cuda12')).toBeUndefined();
    // The files the build checks for are the ones the server looks for (src/runtime/device.ts).
    for (const lib of PROVIDER_LIBRARIES.cuda!)
      expect(install).toContain(`test -f node_modules/onnxruntime-node/bin/napi-v6/linux/x64/${lib}`);
  });

  it('final stages: non-root numeric USER, exec-form ENTRYPOINT/CMD through tini, HEALTHCHECK on the live route, EXPOSE = the port', () => {
    const port = Number(setting('port').default);
    for (const s of finalStages()) {
      const user = last(s, 'USER')?.rest ?? '';
      expect(user, `${s.name}: USER`).toMatch(/^\d+(:\d+)?$/);
      expect(Number(user.split(':')[0]), `${s.name}: USER is not root`).toBeGreaterThan(0);
      const entry = jsonArray(last(s, 'ENTRYPOINT')?.rest ?? '');
      expect(entry, `${s.name}: exec-form ENTRYPOINT`).toEqual([
        '/usr/bin/tini',
        '--',
        'node',
        'bin/padserve.js',
      ]);
      const cmd = jsonArray(last(s, 'CMD')?.rest ?? '');
      expect(cmd, `${s.name}: exec-form CMD`).not.toBeNull();
      expect(badArgs(cmd!), `${s.name}: CMD ${cmd!.join(' ')}`).toEqual([]);
      expect(last(s, 'RUN')?.rest, `${s.name}: tini installed`).toMatch(
        /apt-get install -y --no-install-recommends tini[\s\S]*rm -rf \/var\/lib\/apt\/lists/,
      );
      const hc = last(s, 'HEALTHCHECK')?.rest ?? '';
      expect(hc, `${s.name}: HEALTHCHECK`).toMatch(/--start-period=\d+m/);
      const probe = jsonArray(hc.replace(/^.*?CMD\s+/s, ''));
      expect(probe?.[0], `${s.name}: HEALTHCHECK runs node (no curl in slim images)`).toBe('node');
      expect(probe?.join(' ')).toContain('/v2/health/live');
      expect(probe?.join(' ')).toContain(`process.env.${setting('port').env}||${port}`);
      expect(s.instrs.filter((i) => i.keyword === 'EXPOSE').map((i) => i.rest)).toEqual([String(port)]);
    }
    expect(jsonArray(last(stage('cuda'), 'CMD')!.rest)).toEqual(['serve', '--device', 'cuda']);
  });

  it('final stages: PADSERVE_* variables exist in server/config.ts with valid values; host 0.0.0.0, models at /models', () => {
    for (const s of finalStages()) {
      const env = envOf(s);
      for (const [k, v] of Object.entries(env).filter(([k]) => k.startsWith('PADSERVE_'))) {
        const def = byEnv.get(k);
        expect(def, `${s.name}: ENV ${k} is not a server setting`).toBeDefined();
        expect(badValue(def!, v), `${s.name}: ENV ${k}=${v}`).toBeNull();
        expect(
          (def as { secret?: boolean }).secret,
          `${s.name}: no secret (${k}) baked into the image`,
        ).not.toBe(true);
      }
      expect(env[setting('host').env]).toBe('0.0.0.0');
      expect(env[setting('port').env]).toBe(String(setting('port').default));
      expect(env[setting('modelRepository').env]).toBe('/models');
      expect(env[setting('device').env]).toBe(s.name === 'cuda' ? 'cuda' : 'cpu');
      expect(env.NODE_ENV).toBe('production');
      expect(last(s, 'RUN')?.rest, `${s.name}: /models exists, owned by the runtime user`).toMatch(
        /mkdir -p \/models[\s\S]*chown 10001:10001 \/models/,
      );
      expect(
        s.instrs.some((i) => i.keyword === 'VOLUME'),
        'no VOLUME instruction (see the Dockerfile header)',
      ).toBe(false);
    }
  });

  it('final stages copy only dist/, production node_modules, bin/, data/ and package.json from their build stage', () => {
    for (const s of finalStages()) {
      const copies = s.instrs.filter((i) => i.keyword === 'COPY').map((i) => i.rest.split(/\s+/));
      const fromBuild = copies.filter((w) => /^--from=build(-cuda)?$/.test(w[0]!)).map((w) => w[1]);
      expect(fromBuild.filter((p) => p !== '/usr/local/bin/node').sort(), s.name).toEqual([
        '/app/bin',
        '/app/data',
        '/app/dist',
        '/app/node_modules',
        '/app/package.json',
      ]);
      expect(
        copies.every((w) => w[0]!.startsWith('--from=')),
        `${s.name}: nothing from the context`,
      ).toBe(true);
    }
  });
});

describe('deploy/ manifests', () => {
  it('parse (YAML 1.1 like Kubernetes) and match the schema: apiVersion/kind known, required fields, no unknown fields', () => {
    expect(manifests.length).toBeGreaterThan(8);
    const errors: string[] = [];
    for (const m of manifests) {
      const isPatch = m.file.startsWith('deploy/overlays/') && m.doc.kind !== 'Kustomization';
      errors.push(...schemaErrors(m, isPatch));
    }
    expect(errors).toEqual([]);
  });

  it('kustomizations reference existing files, patches target objects of the base', () => {
    for (const k of find(manifests, 'Kustomization')) {
      const dir = dirname(join(ROOT, k.file));
      for (const r of arr(k.doc.resources).map(str))
        expect(existsSync(join(dir, r)), `${k.file}: resource ${r}`).toBe(true);
      for (const p of arr(k.doc.patches)) {
        const path = str(obj(p, 'patch').path);
        expect(existsSync(join(dir, path)), `${k.file}: patch ${path}`).toBe(true);
        const patch = parseYamlFile(join(dir, path))[0]!.doc;
        const base = arr(k.doc.resources)
          .map(str)
          .flatMap((r) => inDir(rel(join(dir, r))));
        expect(
          find(base, str(patch.kind), str(at(patch, 'metadata.name'))).length,
          `${k.file}: ${path} targets ${str(patch.kind)}/${str(at(patch, 'metadata.name'))} of the base`,
        ).toBe(1);
      }
    }
  });

  it('renders with `kubectl kustomize` and the rendered objects match the schema (skipped without kubectl)', (ctx) => {
    if (!kubectl) {
      console.info('deploy.test: kubectl not installed: rendering skipped');
      ctx.skip();
    }
    expect(Object.keys(rendered).sort()).toEqual(['deploy/base', 'deploy/kserve', 'deploy/overlays/gpu']);
    const errors = Object.values(rendered).flatMap((ms) => ms.flatMap((m) => schemaErrors(m)));
    expect(errors).toEqual([]);
    const gpu = one(rendered['deploy/overlays/gpu']!, 'Deployment', 'padserve');
    const c = containersOf(gpu)[0]!;
    expect(c.image).toBe('padserve:0.1.0-cuda');
    expect(obj(at(c, 'resources.limits'), 'limits')['nvidia.com/gpu']).toBe(1);
    expect(arr(c.env).filter((e) => obj(e, 'env').name === setting('device').env)).toEqual([
      { name: setting('device').env, value: 'cuda' },
    ]);
    expect(containersOf(one(rendered['deploy/base']!, 'Deployment', 'padserve'))[0]!.image).toBe(
      'padserve:0.1.0',
    );
  });

  /** Checks a container against the server: port, probes, env names/values, args. Returns error messages. */
  function checkContainer(
    c: Obj,
    where: string,
    opts: { modelRepository: string; mountPaths?: string[] },
  ): string[] {
    const errors: string[] = [];
    const port = Number(setting('port').default);
    const ports = arr(c.ports).map((p) => obj(p, 'port'));
    if (ports.length !== 1 || ports[0]!.containerPort !== port)
      errors.push(`${where}: containerPort should be ${port} (server/config.ts port default)`);
    const portName = ports[0]?.name;
    const env = new Map(arr(c.env).map((e) => [str(obj(e, 'env').name), obj(e, 'env')]));
    for (const [name, e] of env) {
      if (!name.startsWith('PADSERVE_')) continue;
      const def = byEnv.get(name);
      if (!def) errors.push(`${where}: env ${name} is not a server setting (server/config.ts)`);
      else if (typeof e.value === 'string') {
        const bad = badValue(def, e.value);
        if (bad) errors.push(`${where}: env ${name}: ${bad}`);
      } else if (!isObj(e.valueFrom)) errors.push(`${where}: env ${name} has neither value nor valueFrom`);
      if (def && (def as { secret?: boolean }).secret && typeof e.value === 'string')
        errors.push(`${where}: ${name} is a secret: use valueFrom.secretKeyRef`);
    }
    const v = (s: string) => env.get(setting(s).env)?.value;
    if (v('host') !== '0.0.0.0')
      errors.push(
        `${where}: ${setting('host').env} must be 0.0.0.0 (default ${str(setting('host').default)} is unreachable from the kubelet)`,
      );
    if (v('port') !== undefined && v('port') !== String(port))
      errors.push(`${where}: ${setting('port').env} differs from containerPort`);
    const repo = v('modelRepository');
    if (repo !== opts.modelRepository)
      errors.push(
        `${where}: ${setting('modelRepository').env} should be ${opts.modelRepository}, got ${repo}`,
      );
    if (opts.mountPaths && !opts.mountPaths.includes(opts.modelRepository))
      errors.push(`${where}: nothing is mounted at ${opts.modelRepository}`);
    if (c.args) errors.push(...badArgs(arr(c.args).map(str)).map((e) => `${where}: args: ${e}`));
    const probePort = (p: Obj) => at(p, 'httpGet.port');
    const probes: [string, string[]][] = [
      ['startupProbe', ['/v2/health/ready', '/v2/health/live']],
      ['readinessProbe', ['/v2/health/ready']],
      ['livenessProbe', ['/v2/health/live']],
    ];
    for (const [name, paths] of probes) {
      const p = c[name];
      if (!isObj(p)) {
        errors.push(`${where}: no ${name}`);
        continue;
      }
      if (!paths.includes(str(at(p, 'httpGet.path'))))
        errors.push(`${where}: ${name} path ${str(at(p, 'httpGet.path'))}, expected ${paths.join(' or ')}`);
      const pp = probePort(p);
      if (pp !== port && (portName === undefined || pp !== portName))
        errors.push(`${where}: ${name} port ${str(pp)} is not the container port`);
    }
    const startup = obj(c.startupProbe ?? {}, 'startupProbe');
    const budget = Number(startup.periodSeconds ?? 10) * Number(startup.failureThreshold ?? 3);
    if (budget < 20 * 60)
      errors.push(
        `${where}: startupProbe allows ${budget} s; first-start model building needs >= 20 minutes`,
      );
    const live = obj(c.livenessProbe ?? {}, 'livenessProbe');
    if (Number(live.timeoutSeconds ?? 1) < 3 || Number(live.failureThreshold ?? 3) < 3)
      errors.push(`${where}: livenessProbe too eager (timeout >= 3 s, failureThreshold >= 3)`);
    const mem = at(c, 'resources.requests.memory');
    if (!mem) errors.push(`${where}: no memory request`);
    return errors;
  }

  /** terminationGracePeriodSeconds covers preStop + the server's shutdown grace + 5 s. */
  function checkDrain(podSpec: Obj, c: Obj, where: string): string[] {
    const tgp = Number(podSpec.terminationGracePeriodSeconds ?? 30);
    const cmd = arr(at(c, 'lifecycle.preStop.exec.command')).map(str);
    const sleep =
      cmd[0] === 'sleep' ? Number(cmd[1]) : Number(at(c, 'lifecycle.preStop.sleep.seconds') ?? NaN);
    if (!Number.isFinite(sleep) || sleep < 5)
      return [`${where}: preStop should sleep >= 5 s so that endpoints drop the pod before SIGTERM`];
    const env = arr(c.env).map((e) => obj(e, 'env'));
    const graceEnv = env.find((e) => e.name === setting('shutdownGraceMs').env)?.value;
    const graceS = Number(graceEnv ?? setting('shutdownGraceMs').default) / 1000;
    return tgp >= sleep + graceS + 5
      ? []
      : [
          `${where}: terminationGracePeriodSeconds ${tgp} < preStop ${sleep} s + shutdown grace ${graceS} s + 5 s`,
        ];
  }

  it('base Deployment matches the server (ports, probes on the V2 health routes, PADSERVE_* env, args, drain timing)', () => {
    const health = join(ROOT, 'src', 'routes', 'health.ts');
    expect(existsSync(health), 'src/routes/health.ts (the health routes) is missing').toBe(true);
    const routes = readFileSync(health, 'utf8');
    for (const r of ['/v2/health/live', '/v2/health/ready'])
      expect(routes, `the server defines ${r}`).toContain(`'${r}'`);
    const d = one(inDir('deploy/base'), 'Deployment', 'padserve');
    const pod = obj(at(d, 'spec.template.spec'), 'pod spec');
    const [c, ...more] = containersOf(d);
    expect(more).toEqual([]);
    const mounts = arr(c!.volumeMounts).map((m) => str(obj(m, 'mount').mountPath));
    expect(
      checkContainer(c!, 'deploy/base Deployment', { modelRepository: '/models', mountPaths: mounts }),
    ).toEqual([]);
    expect(checkDrain(pod, c!, 'deploy/base Deployment')).toEqual([]);
    // the image's user can write the models volume; the pod runs as that user
    const uid = Number((last(dockerfile.stages.at(-1)!, 'USER')?.rest ?? '').split(':')[0]);
    expect(at(pod, 'securityContext.runAsUser')).toBe(uid);
    expect(at(pod, 'securityContext.fsGroup')).toBe(uid);
    expect(at(pod, 'securityContext.runAsNonRoot')).toBe(true);
    const modelsVolume = arr(pod.volumes)
      .map((v) => obj(v, 'volume'))
      .find(
        (v) =>
          v.name ===
          obj(
            arr(c!.volumeMounts).find((m) => obj(m, 'm').mountPath === '/models'),
            'mount',
          ).name,
      );
    expect(at(modelsVolume, 'persistentVolumeClaim.claimName')).toBe('padserve-models');
    expect(find(inDir('deploy/base'), 'PersistentVolumeClaim', 'padserve-models')).toHaveLength(1);
    // the resource numbers are an estimate until measured: the comment says so and says what to measure
    const text = readFileSync(join(ROOT, 'deploy/base/deployment.yaml'), 'utf8');
    expect(text).toMatch(/ESTIMATE[\s\S]*process_resident_memory_bytes/);
    const req = str(at(c, 'resources.requests.memory'));
    const lim = str(at(c, 'resources.limits.memory'));
    const gi = (q: string) => Number(q.replace(/Gi$/, ''));
    expect(gi(lim)).toBeGreaterThanOrEqual(gi(req));
    // intra-op threads follow the CPU request (Node 20 sees the node's cores, not the pod's)
    const threads = arr(c!.env)
      .map((e) => obj(e, 'env'))
      .find((e) => e.name === setting('intraOpThreads').env);
    expect(at(threads, 'valueFrom.resourceFieldRef.resource')).toBe('requests.cpu');
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
    const sp = obj(arr(at(svc, 'spec.ports'))[0], 'service port');
    const cport = obj(arr(containersOf(d)[0]!.ports)[0], 'container port');
    expect(sp.targetPort === cport.name || sp.targetPort === cport.containerPort).toBe(true);
    expect(sp.port).toBe(setting('port').default);
    const pdb = one(base, 'PodDisruptionBudget', 'padserve');
    expect(matches(at(pdb, 'spec.selector.matchLabels'))).toBe(true);
    const hpa = one(base, 'HorizontalPodAutoscaler', 'padserve');
    expect(at(hpa, 'spec.scaleTargetRef')).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'padserve',
    });
    expect(at(hpa, 'spec.metrics.0.resource.name')).toBe('cpu');
    expect(Number(at(hpa, 'spec.minReplicas'))).toBeGreaterThanOrEqual(2);
    const hpaText = readFileSync(join(ROOT, 'deploy/base/hpa.yaml'), 'utf8');
    const metric = /name: (padserve_\w+)/.exec(
      hpaText
        .split('\n')
        .filter((l) => l.trim().startsWith('#'))
        .join('\n'),
    )?.[1];
    expect(metric, 'commented custom-metric variant').toBe('padserve_queue_depth');
    const metricsSrc = join(ROOT, 'src', 'observability', 'metrics.ts');
    expect(
      existsSync(metricsSrc) && readFileSync(metricsSrc, 'utf8').includes(`'${metric}'`),
      `${metric} is exported by src/observability/metrics.ts`,
    ).toBe(true);
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
    expect(obj(at(c, 'resources.limits'), 'limits')['nvidia.com/gpu']).toBe(1);
    expect(badArgs(arr(c.args).map(str))).toEqual([]);
    expect(arr(c.args)).toEqual(['serve', '--device', 'cuda']);
    expect(arr(c.env)).toContainEqual({ name: setting('device').env, value: 'cuda' });
    const k = one(inDir('deploy/overlays/gpu'), 'Kustomization');
    expect(arr(k.images)).toContainEqual(
      expect.objectContaining({ name: 'padserve', newTag: expect.stringMatching(/-cuda$/) }),
    );
  });

  it('KServe: InferenceService with the padserve runtime, V2 protocol, port 8080, probes and drain as in the base', () => {
    const ks = inDir('deploy/kserve');
    const isvc = one(ks, 'InferenceService', 'padserve');
    const rt = one(ks, 'ServingRuntime', 'padserve');
    expect(at(isvc, 'spec.predictor.model.protocolVersion')).toBe('v2');
    expect(at(isvc, 'spec.predictor.model.runtime')).toBe('padserve');
    expect(arr(at(rt, 'spec.protocolVersions'))).toContain('v2');
    const fmt = str(at(isvc, 'spec.predictor.model.modelFormat.name'));
    expect(arr(at(rt, 'spec.supportedModelFormats')).map((f) => obj(f, 'format').name)).toContain(fmt);
    const c = obj(arr(at(rt, 'spec.containers'))[0], 'runtime container');
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
  it('every PADSERVE_* name and serve flag mentioned in the Dockerfile, deploy/ and docs/deploy.md is a real setting', () => {
    const files = [
      'Dockerfile',
      'Dockerfile.cuda',
      'docs/deploy.md',
      ...listYaml(join(ROOT, 'deploy')).map(rel),
    ];
    const unknown: string[] = [];
    for (const f of files) {
      const text = readFileSync(join(ROOT, f), 'utf8');
      for (const m of text.matchAll(/\bPADSERVE_[A-Z0-9_]+\b/g))
        if (
          !byEnv.has(m[0]) &&
          !/^PADSERVE_(KUBECTL|DOCKER_CACHE|DEBIAN_MIRROR|BASE_NODE_VERSION|BASE_NPM_VERSION|TEST_IMAGE)$/.test(
            m[0],
          )
        )
          unknown.push(`${f}: ${m[0]}`);
      for (const m of text.matchAll(/\bserve((?:\s+--?[a-z][\w-]*(?:[= ][^\s'"\],]+)?)+)/g))
        for (const flag of m[1]!.matchAll(/--([a-z][\w-]*)/g))
          if (!byFlag.has(flag[1]!.replace(/^no-/, '')) && flag[1] !== 'help')
            unknown.push(`${f}: serve --${flag[1]}`);
    }
    expect(unknown).toEqual([]);
  });
});
