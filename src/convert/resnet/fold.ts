/**
 * Pure inference-time math for PAD-Net ResNets (docs/padnet.md §1): BatchNorm folding, λ/M fusion, τ baked into
 * the router. Products are formed in float64 and rounded once to float32, so folding adds no error beyond the
 * final rounding.
 *
 * A PAD conv becomes a static part S and K packed dynamic kernels D_k with disjoint supports:
 *   W'_k = λ_s (1−M) ⊙ Θ̄ + λ_d M ⊙ Θ_k,   then BN:  s_o · W'_k[o],  bias β − s μ
 *   S    = s ⊙ λ_s (1−M) ⊙ Θ̄               (zero at dynamic entries)
 *   D_k  = s ⊙ λ_d Θ_k  at the dynamic entries only (`indices`, sorted flat OIHW positions)
 * so that W_b = S + Σ_k π_bk D_k (Σ π = 1). kernels_bias (no mask, no λ) is BN-scaled per kernel:
 * bias_b = β − sμ + Σ_k π_bk s ⊙ kernels_bias[k]. The router's fc2 weight and bias are divided by τ, so the graph
 * computes π = softmax(fc2'(relu(fc1(gap(x))))).
 */
import type { ConvGeometry } from './reader.js';
import type { BatchNorm, PadConv, PlainConv, ResNetSpec } from './spec.js';

export const BN_EPS = 1e-5;

export interface Router {
  inChannels: number;
  hidden: number;
  kernels: number;
  /** (hidden, I). */
  fc1: Float32Array;
  /** (K, hidden), divided by τ. */
  fc2: Float32Array;
  /** (K), divided by τ. */
  fc2Bias: Float32Array;
}

export interface DynamicPart {
  kernels: number;
  /** Sorted flat OIHW positions of the dynamic entries (M = 1). */
  indices: Int32Array;
  /** (K, n): BN-scaled λ_d Θ_k at `indices`. */
  values: Float32Array;
  /** (K, O): BN-scaled kernels_bias, or null. */
  kernelBias: Float32Array | null;
  router: Router;
}

export interface FoldedConv extends ConvGeometry {
  /** (O, I, k, k): the static part S (a plain conv: its whole BN-folded weight). Zero at dynamic entries. */
  weight: Float32Array;
  /** (O): β − sμ (plus a plain conv's own bias). */
  bias: Float32Array;
  /** null when no entry is dynamic and there is no per-kernel bias: an ordinary conv. */
  dynamic: DynamicPart | null;
}

export interface FoldedBlock {
  name: string;
  convs: FoldedConv[];
  shortcut: FoldedConv | null;
}

export interface FoldedResNet {
  stem: FoldedConv;
  stages: FoldedBlock[][];
  /** (classes, C) and (classes). */
  classifier: { weight: Float32Array; bias: Float32Array };
  numClasses: number;
  featureChannels: number;
}

/** Per output channel scale s = γ/√(σ²+ε) and shift β − sμ, in float64. */
export function batchNormAffine(bn: BatchNorm, eps = BN_EPS): { scale: Float64Array; shift: Float64Array } {
  const n = bn.weight.length;
  const scale = new Float64Array(n);
  const shift = new Float64Array(n);
  for (let o = 0; o < n; o++) {
    scale[o] = bn.weight[o]! / Math.sqrt(bn.variance[o]! + eps);
    shift[o] = bn.bias[o]! - scale[o]! * bn.mean[o]!;
  }
  return { scale, shift };
}

export function lambdas(phiD: number): { dynamic: number; static: number } {
  const dynamic = 2 / (1 + Math.exp(-phiD));
  return { dynamic, static: 2 - dynamic };
}

export function foldRouter(conv: PadConv, temperature: number): Router {
  return {
    inChannels: conv.inChannels,
    hidden: conv.hidden,
    kernels: conv.kernels,
    fc1: Float32Array.from(conv.fc1),
    fc2: conv.fc2.map((v) => v / temperature),
    fc2Bias: conv.fc2Bias.map((v) => v / temperature),
  };
}

/** Folds a PAD conv and its BatchNorm (`bn` null: no BN, identity affine — a lone layer). */
export function foldPadConv(conv: PadConv, bn: BatchNorm | null, temperature: number): FoldedConv {
  const { outChannels: O, kernels: K } = conv;
  const perOut = conv.mask.length / O;
  const { scale, shift } = bn
    ? batchNormAffine(bn)
    : { scale: new Float64Array(O).fill(1), shift: new Float64Array(O) };
  const lam = lambdas(conv.phiD);
  const n = conv.dynamicEntries;
  const N = conv.mask.length;
  const weight = new Float32Array(N);
  const indices = new Int32Array(n);
  const values = new Float32Array(K * n);
  let j = 0;
  for (let p = 0; p < N; p++) {
    const s = scale[Math.floor(p / perOut)]!;
    if (conv.mask[p] === 1) {
      indices[j] = p;
      for (let k = 0; k < K; k++) values[k * n + j] = s * lam.dynamic * conv.kernelsWeights[k * N + p]!;
      j++;
    } else {
      weight[p] = s * lam.static * conv.weight[p]!;
    }
  }
  let kernelBias: Float32Array | null = null;
  if (conv.kernelsBias) {
    kernelBias = new Float32Array(K * O);
    for (let k = 0; k < K; k++)
      for (let o = 0; o < O; o++) kernelBias[k * O + o] = scale[o]! * conv.kernelsBias[k * O + o]!;
  }
  const dynamic =
    n > 0 || kernelBias
      ? { kernels: K, indices, values, kernelBias, router: foldRouter(conv, temperature) }
      : null;
  return {
    name: conv.name,
    outChannels: O,
    inChannels: conv.inChannels,
    kernel: conv.kernel,
    stride: conv.stride,
    padding: conv.padding,
    weight,
    bias: Float32Array.from(shift),
    dynamic,
  };
}

/** Folds an ordinary conv (its bias, if any) and an optional BatchNorm. */
export function foldPlainConv(
  conv: PlainConv,
  bn: BatchNorm | null,
  stride: number,
  padding: number,
): FoldedConv {
  const O = conv.outChannels;
  const perOut = conv.weight.length / O;
  const { scale, shift } = bn
    ? batchNormAffine(bn)
    : { scale: new Float64Array(O).fill(1), shift: new Float64Array(O) };
  const weight = new Float32Array(conv.weight.length);
  for (let p = 0; p < weight.length; p++) weight[p] = scale[Math.floor(p / perOut)]! * conv.weight[p]!;
  const bias = new Float32Array(O);
  for (let o = 0; o < O; o++) bias[o] = shift[o]! + scale[o]! * (conv.bias?.[o] ?? 0);
  return {
    name: conv.name,
    outChannels: O,
    inChannels: conv.inChannels,
    kernel: conv.kernel,
    stride,
    padding,
    weight,
    bias,
    dynamic: null,
  };
}

export function foldResNet(spec: ResNetSpec): FoldedResNet {
  const stages = spec.stages.map((stage) =>
    stage.map((b): FoldedBlock => ({
      name: b.name,
      convs: b.convs.map((c, i) => foldPadConv(c, b.norms[i]!, spec.temperature)),
      shortcut: b.shortcut ? foldPadConv(b.shortcut.conv, b.shortcut.norm, spec.temperature) : null,
    })),
  );
  const featureChannels = spec.classifier.inChannels;
  return {
    stem: foldPlainConv(spec.stem, spec.stemNorm, 2, (spec.stem.kernel - 1) >> 1),
    stages,
    classifier: {
      weight: Float32Array.from(spec.classifier.weight),
      bias: Float32Array.from(spec.classifier.bias ?? new Float32Array(spec.numClasses)),
    },
    numClasses: spec.numClasses,
    featureChannels,
  };
}

/** Every conv of the folded network in forward order (stem, then per block conv1.., shortcut). */
export function foldedConvs(net: FoldedResNet): FoldedConv[] {
  return [net.stem, ...net.stages.flat().flatMap((b) => [...b.convs, ...(b.shortcut ? [b.shortcut] : [])])];
}

/** Stored weight values of a conv as a PAD graph holds it: static dense + K packed kernels (+ indices). */
export function dynamicEntries(c: FoldedConv): number {
  return c.dynamic ? c.dynamic.indices.length : 0;
}
