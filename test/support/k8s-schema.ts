/**
 * Kubernetes objects checked against the upstream API schema: kubernetes-models (devDependency) ships the
 * Kubernetes OpenAPI definitions compiled to ajv validators (types, required fields, enums, the quantity format).
 * That schema allows unknown fields, and so does `kubectl apply` by default: a misspelt `readinessprobe` would be
 * dropped silently. So each validator runs on a proxy of the object that records which fields it reads: a
 * compiled validator reads every field its schema defines (and every key of a map), so a field it never read is
 * not in the schema.
 *
 * KServe's InferenceService / ServingRuntime and kustomize's Kustomization have no schema on npm: they are
 * checked by the short hand-written field lists below (KServe 0.14 CRDs, kustomize v5), and the Kubernetes parts
 * of the KServe objects (pod spec, containers, metadata) again through the upstream schema.
 */
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PersistentVolumeClaim } from 'kubernetes-models/v1/PersistentVolumeClaim';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Service } from 'kubernetes-models/v1/Service';
import { isObj, str, type Obj } from './deploy.js';

interface Validated {
  prototype: { validate(): void };
}
const UPSTREAM: Record<string, Validated> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};

type Reads = WeakMap<object, Set<string>>;
function watched<T>(v: T, reads: Reads): T {
  if (typeof v !== 'object' || v === null) return v;
  if (!reads.has(v)) reads.set(v, new Set());
  return new Proxy(v, {
    get(target, key, receiver) {
      if (typeof key === 'string') reads.get(target)!.add(key);
      return watched(Reflect.get(target, key, receiver) as unknown, reads);
    },
  });
}
function unread(v: unknown, path: string, reads: Reads, out: string[]): void {
  if (Array.isArray(v)) v.forEach((x, i) => unread(x, `${path}/${i}`, reads, out));
  else if (isObj(v))
    for (const [k, x] of Object.entries(v))
      if (reads.get(v)?.has(k)) unread(x, `${path}/${k}`, reads, out);
      else out.push(`${path}: unknown field "${k}"`);
}

/** Upstream schema errors and unknown fields; a patch (strategic merge) may leave required fields out. */
function upstream(model: Validated, doc: Obj, where: string, patch = false): string[] {
  const reads: Reads = new WeakMap();
  const out: string[] = [];
  try {
    model.prototype.validate.call(watched(doc, reads));
  } catch (e) {
    const errors = (e as { errors?: { instancePath: string; keyword: string; message?: string }[] }).errors;
    if (!errors) throw e;
    for (const x of errors)
      if (!(patch && x.keyword === 'required')) out.push(`${where}${x.instancePath}: ${x.message}`);
  }
  unread(doc, where, reads, out);
  return [...new Set(out)];
}
const asPod = (spec: unknown, metadata: unknown = { name: 'pod' }): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata,
  spec,
});

// ------------------------------------------------------------------------------------------ hand-written
// `rest`: the fields not listed are a Kubernetes pod spec / container (KServe embeds them), checked upstream.
type Shape =
  | 'string'
  | 'int'
  | 'bool'
  | 'strings'
  | 'stringMap'
  | 'objectMeta'
  | 'any'
  | { list: Shape }
  | { fields: Record<string, Shape>; required?: string[]; rest?: 'podSpec' | 'container' };

const FORMAT: Shape = {
  fields: { name: 'string', version: 'string', autoSelect: 'bool', priority: 'int' },
  required: ['name'],
};
const top = (spec: Shape): Shape => ({
  fields: { apiVersion: 'string', kind: 'string', metadata: 'objectMeta', spec, status: 'any' },
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
});
const HAND: Record<string, Shape> = {
  'serving.kserve.io/v1beta1/InferenceService': top({
    fields: {
      predictor: {
        rest: 'podSpec',
        fields: {
          ...Object.fromEntries(
            'minReplicas maxReplicas scaleTarget containerConcurrency timeout canaryTrafficPercent'
              .split(' ')
              .map((k) => [k, 'int']),
          ),
          ...Object.fromEntries(
            'scaleMetric scaleMetricType deploymentStrategy logger batcher autoScaling workerSpec'
              .split(' ')
              .map((k) => [k, k.startsWith('scale') ? 'string' : 'any']),
          ),
          labels: 'stringMap',
          annotations: 'stringMap',
          model: {
            rest: 'container',
            fields: {
              modelFormat: FORMAT,
              runtime: 'string',
              runtimeVersion: 'string',
              protocolVersion: 'string',
              storageUri: 'string',
              storage: 'any',
            },
            required: ['modelFormat'],
          },
        },
      },
      transformer: 'any',
      explainer: 'any',
    },
    required: ['predictor'],
  }),
  'serving.kserve.io/v1alpha1/ServingRuntime': top({
    rest: 'podSpec',
    required: ['containers'],
    fields: {
      supportedModelFormats: { list: FORMAT },
      protocolVersions: 'strings',
      annotations: 'stringMap',
      labels: 'stringMap',
      multiModel: 'bool',
      disabled: 'bool',
      hostIPC: 'bool',
      replicas: 'int',
      grpcEndpoint: 'string',
      grpcDataEndpoint: 'string',
      httpDataEndpoint: 'string',
      builtInAdapter: 'any',
      storageHelper: 'any',
      workerSpec: 'any',
    },
  }),
  'kustomize.config.k8s.io/v1beta1/Kustomization': {
    required: ['apiVersion', 'kind'],
    fields: {
      ...Object.fromEntries(
        'apiVersion kind namespace namePrefix nameSuffix'.split(' ').map((k) => [k, 'string']),
      ),
      ...Object.fromEntries(
        'configMapGenerator secretGenerator replicas generatorOptions replacements'
          .split(' ')
          .map((k) => [k, 'any']),
      ),
      resources: 'strings',
      components: 'strings',
      commonLabels: 'stringMap',
      commonAnnotations: 'stringMap',
      patches: { list: { fields: { path: 'string', patch: 'string', target: 'any', options: 'any' } } },
      images: {
        list: {
          fields: { name: 'string', newName: 'string', newTag: 'string', digest: 'string' },
          required: ['name'],
        },
      },
      labels: {
        list: {
          fields: { pairs: 'stringMap', includeSelectors: 'bool', includeTemplates: 'bool', fields: 'any' },
        },
      },
    },
  },
};

const SCALAR: Record<string, (v: unknown) => boolean> = {
  string: (v) => typeof v === 'string',
  int: (v) => Number.isInteger(v),
  bool: (v) => typeof v === 'boolean',
  strings: (v) => Array.isArray(v) && v.every((x) => typeof x === 'string'),
  stringMap: (v) => isObj(v) && Object.values(v).every((x) => typeof x === 'string'),
};

function hand(v: unknown, shape: Shape, path: string, out: string[]): void {
  if (shape === 'any') return;
  if (shape === 'objectMeta') {
    out.push(...upstream(Pod, asPod({ containers: [] }, v), `${path} (as metadata)`));
    return;
  }
  if (typeof shape === 'string') {
    if (!SCALAR[shape]!(v)) out.push(`${path}: expected ${shape}, got ${JSON.stringify(v)}`);
    return;
  }
  if ('list' in shape) {
    if (!Array.isArray(v)) out.push(`${path}: expected a list`);
    else v.forEach((x, i) => hand(x, shape.list, `${path}/${i}`, out));
    return;
  }
  if (!isObj(v)) {
    out.push(`${path}: expected a mapping, got ${JSON.stringify(v)}`);
    return;
  }
  const rest: Obj = {};
  for (const [k, x] of Object.entries(v))
    if (Object.hasOwn(shape.fields, k)) hand(x, shape.fields[k]!, `${path}/${k}`, out);
    else if (shape.rest) rest[k] = x;
    else out.push(`${path}: unknown field "${k}"`);
  for (const r of shape.required ?? []) if (!(r in v)) out.push(`${path}: missing required field "${r}"`);
  if (shape.rest === 'podSpec')
    out.push(...upstream(Pod, asPod({ containers: [], ...rest }), `${path} (as a pod spec)`));
  if (shape.rest === 'container')
    out.push(
      ...upstream(
        Pod,
        asPod({ containers: [{ name: 'kserve-container', ...rest }] }),
        `${path} (as a container)`,
      ),
    );
}

export const KNOWN_KINDS = [...Object.keys(UPSTREAM), ...Object.keys(HAND)];

/** Errors for one object (none when it is valid); `patch`: a strategic merge patch of an upstream kind. */
export function schemaErrors(doc: Obj, where: string, patch = false): string[] {
  const key = `${str(doc.apiVersion)}/${str(doc.kind)}`;
  const model = UPSTREAM[key];
  if (model) return upstream(model, doc, where, patch);
  const shape = HAND[key];
  if (!shape) return [`${where}: unexpected apiVersion/kind "${key}" (known: ${KNOWN_KINDS.join(', ')})`];
  const out: string[] = [];
  hand(doc, shape, where, out);
  return out;
}
