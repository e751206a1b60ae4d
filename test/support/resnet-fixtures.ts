/**
 * Access to the PAD-Net ResNet fixtures (test/fixtures/padnet, test/fixtures/README.md) and the tolerance comparison
 * they define: pass ⇔ |A − E| ≤ atol + rtol·|E| for every element.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostTensor } from '../../src/tensor.js';
import { Rng } from '../../src/synth/random.js';
import { PADNET_FIXTURES } from './paths.js';

/** The fixtures folder, resolved once for every test (test/fixtures/padnet or $PADSERVE_FIXTURES). */
export const FIXTURES = PADNET_FIXTURES;

export interface Tolerance {
  atol: number;
  rtol: number;
}

export interface FixtureCase {
  name: string;
  input: Float32Array;
  inputShape: number[];
  expected: Float32Array;
  expectedShape: number[];
}

export interface ResNetFixture {
  dir: string;
  json: Record<string, unknown> & {
    tolerance: Tolerance;
    tolerance_strict: Tolerance;
    model?: { temperature: number; num_classes: number; blocks: number[] };
    debug?: { attention_pi_all?: { values: Record<string, number[][]> } };
  };
  cases: FixtureCase[];
  checkpoints: string[];
}

export function readF32(path: string): Float32Array {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

type FileSpec = { file: string; shape: number[] };

/** A ResNet fixture folder (`resnet-tiny`, `resnet-mnist`) or one `padconv-layers/<name>` folder. */
export function loadFixture(rel: string): ResNetFixture {
  const dir = join(FIXTURES, rel);
  const json = JSON.parse(readFileSync(join(dir, 'fixture.json'), 'utf8')) as ResNetFixture['json'];
  const input = json.input as FileSpec;
  const expected = json.expected as FileSpec;
  const cases: FixtureCase[] = [
    {
      name: 'main',
      input: readF32(join(dir, input.file)),
      inputShape: input.shape,
      expected: readF32(join(dir, expected.file)),
      expectedShape: expected.shape,
    },
  ];
  for (const extra of (json.extra_cases as
    { name: string; inputs: { file: string }[]; input_shape: number[]; expected: FileSpec }[] | undefined) ??
    []) {
    const parts = extra.inputs.map((i) => readF32(join(dir, i.file)));
    const all = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    cases.push({
      name: extra.name,
      input: all,
      inputShape: extra.input_shape,
      expected: readF32(join(dir, extra.expected.file)),
      expectedShape: extra.expected.shape,
    });
  }
  const checkpoints = ['model.pth.tar', 'model.safetensors']
    .filter((f) => existsSync(join(dir, f)))
    .map((f) => join(dir, f));
  return { dir, json, cases, checkpoints };
}

export interface Comparison {
  pass: boolean;
  /** max over elements of |A − E| / (atol + rtol·|E|): < 1 passes. */
  worstRatio: number;
  maxAbs: number;
  worstIndex: number;
}

export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance): Comparison {
  if (actual.length !== expected.length)
    throw new Error(`compare: ${actual.length} values vs ${expected.length} expected`);
  let worstRatio = 0;
  let maxAbs = 0;
  let worstIndex = -1;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    const r = d / (tol.atol + tol.rtol * Math.abs(expected[i]!));
    if (!(r <= worstRatio)) {
      worstRatio = Number.isNaN(r) ? Infinity : r;
      worstIndex = i;
    }
    maxAbs = Math.max(maxAbs, d);
  }
  return { pass: worstRatio <= 1, worstRatio, maxAbs, worstIndex };
}

export function argmaxRows(data: ArrayLike<number>, classes: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / classes; r++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (data[r * classes + c]! > data[r * classes + best]!) best = c;
    out.push(best);
  }
  return out;
}

// ---------- random PAD-Net ResNet checkpoints the converter has never seen ----------

export interface RandomResNetOptions {
  seed: number;
  block: 'bottleneck' | 'basic';
  blocks: number[];
  /** planes of stage 1 (doubling per stage). */
  planes: number;
  stem: number;
  classes: number;
  kernels?: number;
  /** Dynamic ratio per PAD conv: a number, or a function of the conv's index in forward order. */
  ratio: number | ((index: number, name: string) => number);
  /** φ_d for every conv (default: random). */
  phiD?: number;
  stemMasks?: boolean;
  /** Stray `kernels_weights_mask` buffers on BatchNorms, the stem and the classifier (as the training script leaves). */
  strayMasks?: boolean;
  prefix?: string;
  kernelsBias?: boolean;
}

/** A random state dict with checkpoint tensor names (BN statistics in sane ranges) and the PAD conv names. */
export function randomResNetStateDict(o: RandomResNetOptions): {
  stateDict: Map<string, HostTensor>;
  padConvs: string[];
} {
  const rng = new Rng(o.seed);
  const K = o.kernels ?? 4;
  const sd = new Map<string, HostTensor>();
  const padConvs: string[] = [];
  const t = (name: string, shape: number[], fill: (i: number) => number): void => {
    const n = shape.reduce((a, b) => a * b, 1);
    sd.set(`${o.prefix ?? ''}${name}`, {
      dtype: 'float32',
      shape,
      data: Float32Array.from({ length: n }, (_, i) => fill(i)),
    });
  };
  const bn = (name: string, c: number): void => {
    t(`${name}.weight`, [c], () => 0.6 + 0.8 * rng.uniform());
    t(`${name}.bias`, [c], () => 0.1 * rng.normal());
    t(`${name}.running_mean`, [c], () => 0.2 * rng.normal());
    t(`${name}.running_var`, [c], () => 0.5 + rng.uniform());
    sd.set(`${o.prefix ?? ''}${name}.num_batches_tracked`, {
      dtype: 'int64',
      shape: [],
      data: BigInt64Array.from([7n]),
    });
    if (o.strayMasks) t(`${name}.kernels_weights_mask`, [1], () => 1);
  };
  const pad = (name: string, O: number, I: number, k: number): void => {
    const index = padConvs.length;
    padConvs.push(name);
    const N = O * I * k * k;
    const std = Math.sqrt(2 / (I * k * k));
    const ratio = typeof o.ratio === 'number' ? o.ratio : o.ratio(index, name);
    const mask = rng.fork(name).mask(N, ratio);
    const h = Math.max(1, Math.floor(I / 16));
    t(`${name}.kernels_weights`, [K, O, I, k, k], () => std * rng.normal());
    t(`${name}.weight`, [1, O, I, k, k], () => std * rng.normal());
    t(`${name}.phi_d`, [1], () => o.phiD ?? 0.7 * rng.normal());
    t(`${name}.kernels_weights_mask`, [1, O, I, k, k], (i) => mask[i]!);
    t(`${name}.attention.fc1.weight`, [h, I, 1, 1], () => rng.normal() * Math.sqrt(2 / I) * 3);
    t(`${name}.attention.fc2.weight`, [K, h, 1, 1], () => rng.normal());
    t(`${name}.attention.fc2.bias`, [K], () => 0.3 * rng.normal());
    if (o.kernelsBias) t(`${name}.kernels_bias`, [K, O], () => 0.1 * rng.normal());
  };
  t('conv1.weight', [o.stem, 3, 7, 7], () => Math.sqrt(2 / 147) * rng.normal());
  if (o.stemMasks) t('conv1.weight_mask', [o.stem, 3, 7, 7], () => 1);
  if (o.strayMasks) t('conv1.kernels_weights_mask', [1], () => 1);
  bn('bn1', o.stem);
  const expansion = o.block === 'bottleneck' ? 4 : 1;
  let inC = o.stem;
  o.blocks.forEach((count, s) => {
    const planes = o.planes * 2 ** s;
    const out = expansion * planes;
    for (let i = 0; i < count; i++) {
      const b = `layer${s + 1}.layers.${i}`;
      const stride = i === 0 && s > 0 ? 2 : 1;
      if (o.block === 'bottleneck') {
        pad(`${b}.conv1`, planes, inC, 1);
        bn(`${b}.bn1`, planes);
        pad(`${b}.conv2`, planes, planes, 3);
        bn(`${b}.bn2`, planes);
        pad(`${b}.conv3`, out, planes, 1);
        bn(`${b}.bn3`, out);
      } else {
        pad(`${b}.conv1`, planes, inC, 3);
        bn(`${b}.bn1`, planes);
        pad(`${b}.conv2`, planes, planes, 3);
        bn(`${b}.bn2`, planes);
      }
      if (stride !== 1 || inC !== out) {
        pad(`${b}.shortcut.layers.0`, out, inC, 1);
        bn(`${b}.shortcut.layers.1`, out);
      }
      inC = out;
    }
  });
  t('linear.weight', [o.classes, inC, 1, 1], () => 0.3 * rng.normal());
  t('linear.bias', [o.classes], () => 0.1 * rng.normal());
  if (o.stemMasks) {
    t('linear.weight_mask', [o.classes, inC, 1, 1], () => 1);
    t('linear.bias_mask', [o.classes], () => 1);
  }
  if (o.strayMasks) t('linear.kernels_weights_mask', [1], () => 1);
  return { stateDict: sd, padConvs };
}

/** Smooth-ish random NCHW images (unit scale), float32. */
export function randomImages(seed: number, batch: number, size: number): Float32Array {
  const rng = new Rng(seed);
  const out = new Float32Array(batch * 3 * size * size);
  for (let i = 0; i < out.length; i++) out[i] = rng.normal();
  return out;
}
