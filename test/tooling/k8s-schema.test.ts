/**
 * The manifest schema check (test/support/k8s-schema.ts) fails where it should: small broken objects, one
 * mistake each, for the upstream kinds (kubernetes-models plus the unknown-field check), the hand-written KServe
 * and Kustomization lists, and strategic merge patches. deploy-manifests.test.ts runs it on deploy/.
 */
import { describe, expect, it } from 'vitest';
import { arr, at, obj, parseYaml, read, type Obj } from '../support/deploy.js';
import { schemaErrors } from '../support/k8s-schema.js';

const meta = { name: 'x' };
const deployment = (container: Obj, spec: Obj = {}): Obj => ({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: meta,
  spec: {
    selector: { matchLabels: { a: 'b' } },
    template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', ...container }] } },
    ...spec,
  },
});
const hpaTarget = (target: Obj): Obj => ({
  apiVersion: 'autoscaling/v2',
  kind: 'HorizontalPodAutoscaler',
  metadata: meta,
  spec: {
    scaleTargetRef: { kind: 'Deployment', name: 'x' },
    maxReplicas: 2,
    metrics: [{ type: 'Resource', resource: { name: 'cpu', target } }],
  },
});
const isvc = (predictor: Obj, metadata: Obj = meta): Obj => ({
  apiVersion: 'serving.kserve.io/v1beta1',
  kind: 'InferenceService',
  metadata,
  spec: { predictor },
});
const model = { modelFormat: { name: 'padserve' } };
const runtime = (spec: Obj): Obj => ({
  apiVersion: 'serving.kserve.io/v1alpha1',
  kind: 'ServingRuntime',
  metadata: meta,
  spec,
});
const kustomization = (k: Obj): Obj => ({
  apiVersion: 'kustomize.config.k8s.io/v1beta1',
  kind: 'Kustomization',
  ...k,
});
// YAML 1.1, as Kubernetes reads it: an unquoted `yes` is a boolean, not the string a label value must be.
const yes = parseYaml(
  'apiVersion: v1\nkind: Service\nmetadata: {name: x, labels: {a: yes}}\nspec: {}\n',
  't',
);

describe('the manifest schema check', () => {
  it.each<[string, Obj, RegExp]>([
    ['a valid Deployment', deployment({ image: 'i' }), /^$/],
    ['a valid HPA', hpaTarget({ type: 'Utilization', averageUtilization: 70 }), /^$/],
    [
      'a valid InferenceService',
      isvc({ minReplicas: 1, terminationGracePeriodSeconds: 60, model: { ...model, args: ['serve'] } }),
      /^$/,
    ],
    ['a valid ServingRuntime', runtime({ containers: [{ name: 'c' }], protocolVersions: ['v2'] }), /^$/],
    [
      'a valid Kustomization',
      kustomization({ resources: ['a.yaml'], images: [{ name: 'padserve', newTag: '1' }] }),
      /^$/,
    ],
    ['a misspelt container field', deployment({ readinessprobe: {} }), /0: unknown field "readinessprobe"/],
    [
      'a misspelt field deep in an HPA metric',
      hpaTarget({ type: 'Utilization', averageUtilisation: 70 }),
      /target: unknown field "averageUtilisation"/,
    ],
    ['a missing required field', deployment({}, { template: { spec: {} } }), /required property containers/],
    ['a replica count as a string', deployment({}, { replicas: '2' }), /\/spec\/replicas: must be integer/],
    ['a malformed quantity', deployment({ resources: { requests: { memory: '12GB' } } }), /"quantity"/],
    ['an unquoted YAML 1.1 yes as a label value', yes[0]!.doc, /labels\/a: must be string/],
    ['an unknown kind', { ...deployment({}), kind: 'Deploymnet' }, /unexpected apiVersion\/kind/],
    [
      'InferenceService: a misspelt predictor field',
      isvc({ minReplica: 1, model }),
      /unknown field "minReplica"/,
    ],
    [
      'InferenceService: no modelFormat',
      isvc({ model: { runtime: 'padserve' } }),
      /required field "modelFormat"/,
    ],
    [
      'InferenceService: a misspelt container field in the model',
      isvc({ model: { ...model, imagee: 'i' } }),
      /unknown field "imagee"/,
    ],
    [
      'InferenceService: a misspelt metadata field',
      isvc({ model }, { name: 'x', anotations: {} }),
      /unknown field "anotations"/,
    ],
    ['ServingRuntime: no containers', runtime({ protocolVersions: ['v2'] }), /required field "containers"/],
    ['ServingRuntime: a container without a name', runtime({ containers: [{}] }), /required property name/],
    [
      'ServingRuntime: a protocol list as a string',
      runtime({ containers: [{ name: 'c' }], protocolVersions: 'v2' }),
      /protocolVersions: expected strings/,
    ],
    [
      'Kustomization: a misspelt field',
      kustomization({ resourcez: ['a.yaml'] }),
      /unknown field "resourcez"/,
    ],
    [
      'Kustomization: an image without a name',
      kustomization({ images: [{ newTag: '1' }] }),
      /images\/0: missing required field "name"/,
    ],
  ])('accepts or rejects %s', (_, doc, expected) => {
    expect(schemaErrors(doc, 'test').join('\n')).toMatch(expected);
  });

  it('lets a strategic merge patch leave out required fields, not misspell one', () => {
    const file = 'deploy/overlays/gpu/deployment-gpu.yaml';
    const patch = parseYaml(read(file), file)[0]!.doc;
    expect(schemaErrors(patch, file, true)).toEqual([]);
    expect(schemaErrors(patch, file).join('\n')).toMatch(/required property selector/);
    const typo = structuredClone(patch);
    obj(arr(at(typo, 'spec.template.spec.tolerations'))[0], 'toleration').operater = 'Exists';
    expect(schemaErrors(typo, file, true).join('\n')).toMatch(/unknown field "operater"/);
  });
});
