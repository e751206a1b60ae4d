/**
 * Full-size PAD-Net ResNet-50 (K = 4) with seeded synthetic weights, as a state dict with the same tensor names as
 * a real checkpoint, converted through the same `convertResNetTensors` path. Weights follow the usual init
 * statistics (Kaiming normal, fan-out, for every conv kernel; small routers; φ_d around 0 so λ_d ≈ 1); BatchNorm
 * running statistics are calibrated on a few smooth synthetic images (calibrate.ts) so activations stay in range,
 * and the classifier is scaled so the logits have a standard deviation of about 3. Masks have exactly the given
 * ratio per layer (Rng.mask); τ = 1. Variants: 'pad' (the ratio), 'static' (M = 0), 'dyconv' (M = 1) — the same
 * seed gives the same Θ̄ / Θ_k for all three, so they differ only in the mask.
 */
import type { ModelCard } from '../model/card.js';
import { floatTensor, int64Tensor, type HostTensor } from '../tensor.js';
import type { GraphChoice } from '../convert/options.js';
import {
  convertResNetTensors,
  graphChoice,
  probeLayout,
  writeConverted,
  type ConvertedResNet,
} from '../convert/resnet/command.js';
import type { Layout } from '../convert/resnet/layout.js';
import type { DynamicForm } from '../convert/resnet/padconv.js';
import { calibrateResNet, calibrationImages } from './calibrate.js';
import { Rng } from './random.js';

export type ResNetSynthVariant = 'pad' | 'static' | 'dyconv';

export interface ResNetSynthOptions {
  outDir: string;
  seed?: number;
  dynamicRatio?: number;
  variant?: ResNetSynthVariant;
  scale?: number;
  blocks?: number[];
  onProgress?: (done: number, total: number, stage: string) => void;
  /** Overrides for experiments and tests (default: probed layout, default form). */
  layout?: Layout;
  form?: DynamicForm;
  /** Graph choices of the CLI (buckets, budget, forms, layout); `layout` / `form` above win over it. */
  graph?: GraphChoice;
  classes?: number;
  /** Calibration images and their size (default 3 × 96²: two photo-like, one noise). */
  calibration?: { images: number; size: number };
}

export interface StateDictPlan {
  seed: number;
  dynamicRatio: number;
  variant: ResNetSynthVariant;
  scale: number;
  blocks: number[];
  classes: number;
  kernels: number;
}

export const SYNTH_NOTE = 'seeded synthetic weights, not trained: predictions are meaningless';
export const SYNTH_GENERATOR = 'padserve synth resnet50';

function put(sd: Map<string, HostTensor>, name: string, data: Float32Array, shape: number[]): Float32Array {
  sd.set(name, floatTensor(data, shape));
  return data;
}

function batchNorm(sd: Map<string, HostTensor>, name: string, c: number, rng: Rng, gamma: number): void {
  put(sd, `${name}.weight`, rng.fillUniform(new Float32Array(c), 0.8 * gamma, 1.2 * gamma), [c]);
  put(sd, `${name}.bias`, rng.fillNormal(new Float32Array(c), 0.05), [c]);
  put(sd, `${name}.running_mean`, new Float32Array(c), [c]);
  put(sd, `${name}.running_var`, new Float32Array(c).fill(1), [c]);
  sd.set(`${name}.num_batches_tracked`, int64Tensor([0], []));
}

function padConv(
  sd: Map<string, HostTensor>,
  name: string,
  O: number,
  I: number,
  k: number,
  plan: StateDictPlan,
  rng: Rng,
): void {
  const r = rng.fork(name);
  const N = O * I * k * k;
  const K = plan.kernels;
  const std = Math.sqrt(2 / (O * k * k));
  const hidden = Math.max(1, Math.floor(I / 16));
  put(sd, `${name}.kernels_weights`, r.fillNormal(new Float32Array(K * N), std), [K, O, I, k, k]);
  put(sd, `${name}.weight`, r.fillNormal(new Float32Array(N), std), [1, O, I, k, k]);
  put(sd, `${name}.phi_d`, r.fillNormal(new Float32Array(1), 0.5), [1]);
  const mask =
    plan.variant === 'static'
      ? new Float32Array(N)
      : plan.variant === 'dyconv'
        ? new Float32Array(N).fill(1)
        : r.fork('mask').mask(N, plan.dynamicRatio);
  put(sd, `${name}.kernels_weights_mask`, mask, [1, O, I, k, k]);
  put(sd, `${name}.attention.fc1.weight`, r.fillNormal(new Float32Array(hidden * I), Math.sqrt(2 / I)), [
    hidden,
    I,
    1,
    1,
  ]);
  put(sd, `${name}.attention.fc2.weight`, r.fillNormal(new Float32Array(K * hidden), 1 / Math.sqrt(hidden)), [
    K,
    hidden,
    1,
    1,
  ]);
  put(sd, `${name}.attention.fc2.bias`, r.fillNormal(new Float32Array(K), 0.1), [K]);
}

/** The uncalibrated state dict (BN statistics 0/1) with checkpoint tensor names. */
export function synthStateDict(plan: StateDictPlan): Map<string, HostTensor> {
  const rng = new Rng(plan.seed);
  const sd = new Map<string, HostTensor>();
  const stem = 64;
  put(
    sd,
    'conv1.weight',
    rng.fork('conv1').fillNormal(new Float32Array(stem * 3 * 49), Math.sqrt(2 / (stem * 49))),
    [stem, 3, 7, 7],
  );
  batchNorm(sd, 'bn1', stem, rng.fork('bn1'), 1);
  let inC = stem;
  plan.blocks.forEach((count, s) => {
    const planes = Math.floor(64 * plan.scale * 2 ** s);
    const out = 4 * planes;
    for (let i = 0; i < count; i++) {
      const b = `layer${s + 1}.layers.${i}`;
      const br = rng.fork(b);
      padConv(sd, `${b}.conv1`, planes, inC, 1, plan, br);
      batchNorm(sd, `${b}.bn1`, planes, br, 1);
      padConv(sd, `${b}.conv2`, planes, planes, 3, plan, br);
      batchNorm(sd, `${b}.bn2`, planes, br, 1);
      padConv(sd, `${b}.conv3`, out, planes, 1, plan, br);
      // The residual branch's last BN starts small so the identity path dominates, as in trained ResNets.
      batchNorm(sd, `${b}.bn3`, out, br, 0.4);
      if (i === 0) {
        padConv(sd, `${b}.shortcut.layers.0`, out, inC, 1, plan, br);
        batchNorm(sd, `${b}.shortcut.layers.1`, out, br, 1);
      }
      inC = out;
    }
  });
  const lr = rng.fork('linear');
  put(sd, 'linear.weight', lr.fillNormal(new Float32Array(plan.classes * inC), 0.01), [
    plan.classes,
    inC,
    1,
    1,
  ]);
  put(sd, 'linear.bias', new Float32Array(plan.classes), [plan.classes]);
  return sd;
}

/** Calibrates BN statistics in place, then scales the classifier so the logits' std is about `logitStd`. */
export function calibrateStateDict(
  sd: Map<string, HostTensor>,
  plan: StateDictPlan,
  calibration: { images: number; size: number },
  onLayer?: (name: string) => void,
  logitStd = 3,
): void {
  const images = calibrationImages(
    new Rng(plan.seed).fork('calibration-images'),
    calibration.images,
    calibration.size,
  );
  const features = calibrateResNet(
    sd,
    { block: 'bottleneck', blocks: plan.blocks, temperature: 1 },
    images,
    onLayer,
  );
  const w = sd.get('linear.weight')!.data as Float32Array;
  const C = features[0]!.length;
  let sum = 0,
    sq = 0,
    n = 0;
  for (const f of features) {
    for (let c = 0; c < plan.classes; c++) {
      let z = 0;
      for (let j = 0; j < C; j++) z += w[c * C + j]! * f[j]!;
      sum += z;
      sq += z * z;
      n++;
    }
  }
  const std = Math.sqrt(Math.max(sq / n - (sum / n) ** 2, 1e-12));
  const factor = logitStd / std;
  for (let i = 0; i < w.length; i++) w[i]! *= factor;
}

export function synthPlan(opts: ResNetSynthOptions): StateDictPlan {
  return {
    seed: opts.seed ?? 0,
    dynamicRatio: opts.dynamicRatio ?? 0.3,
    variant: opts.variant ?? 'pad',
    scale: opts.scale ?? 1,
    blocks: opts.blocks ?? [3, 4, 6, 3],
    classes: opts.classes ?? 1000,
    kernels: 4,
  };
}

/** Generates, calibrates, converts and writes a synthetic ResNet model folder. */
export async function synthesizeResNetConverted(
  opts: ResNetSynthOptions,
): Promise<{ card: ModelCard; converted: ConvertedResNet; timings: Record<string, number> }> {
  const plan = synthPlan(opts);
  if (!(plan.dynamicRatio >= 0 && plan.dynamicRatio <= 1))
    throw new RangeError(`dynamicRatio must be in [0, 1], got ${plan.dynamicRatio}`);
  const convs = plan.blocks.reduce((n, b) => n + 3 * b + 1, 0) + 1;
  const total = convs + 2;
  const progress = (done: number, stage: string): void => opts.onProgress?.(done, total, stage);
  const timings: Record<string, number> = {};
  let t = performance.now();
  const lap = (key: string): void => {
    const now = performance.now();
    timings[key] = now - t;
    t = now;
  };
  progress(0, 'weights');
  const sd = synthStateDict(plan);
  lap('weightsMs');
  let done = 0;
  calibrateStateDict(sd, plan, opts.calibration ?? { images: 3, size: 96 }, (name) =>
    progress(++done, `calibrating ${name}`),
  );
  lap('calibrationMs');
  const chosen = opts.graph?.layout;
  const layout = opts.layout ?? (chosen && chosen !== 'probe' ? chosen : await probeLayout());
  const converted = convertResNetTensors(
    sd,
    { temperature: '1.0' },
    {
      name: `resnet50-${plan.variant}`,
      source: { kind: 'synthetic', generator: SYNTH_GENERATOR, seed: plan.seed, note: SYNTH_NOTE },
      layout,
      ...graphChoice(opts.graph),
      ...(opts.form ? { form: opts.form } : {}),
      createdBy: SYNTH_GENERATOR,
    },
  );
  lap('convertMs');
  progress(convs + 1, 'writing');
  const card = writeConverted(opts.outDir, converted);
  lap('writeMs');
  progress(total, 'done');
  return { card, converted, timings };
}

export async function synthesizeResNet(opts: ResNetSynthOptions): Promise<ModelCard> {
  return (await synthesizeResNetConverted(opts)).card;
}
