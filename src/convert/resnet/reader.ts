/**
 * Reading PAD-Net checkpoint tensors with validation: every tensor's dtype, exact shape and finiteness are
 * checked as it is read, masks must be exactly 0/1, and every problem is a one-line ConvertError naming the tensor
 * and what was expected. Used by spec.ts (network inference) and the lone-layer converter.
 */
import { ConvertError } from '../options.js';
import { formatShape, sameShape, type HostTensor } from '../../tensor.js';

export interface BatchNorm {
  name: string;
  weight: Float32Array;
  bias: Float32Array;
  mean: Float32Array;
  variance: Float32Array;
}

/** A square convolution's geometry, shared by the checkpoint's and the folded forms. */
export interface ConvGeometry {
  /** Canonical name without any `module.` prefix, e.g. `layer2.layers.0.conv2`. */
  name: string;
  outChannels: number;
  inChannels: number;
  kernel: number;
  stride: number;
  padding: number;
}

/** A PAD dynamic convolution's checkpoint tensors (views, not copies). */
export interface PadConv extends ConvGeometry {
  kernels: number;
  hidden: number;
  /** Θ_k, (K, O, I, k, k). */
  kernelsWeights: Float32Array;
  /** Θ̄, (O, I, k, k). */
  weight: Float32Array;
  /** M, (O, I, k, k), exactly 0/1. */
  mask: Float32Array;
  phiD: number;
  fc1: Float32Array;
  fc2: Float32Array;
  fc2Bias: Float32Array;
  /** Optional (K, O). */
  kernelsBias: Float32Array | null;
  dynamicEntries: number;
}

/** An ordinary conv (stem, classifier); masks already multiplied in. */
export interface PlainConv {
  name: string;
  outChannels: number;
  inChannels: number;
  kernel: number;
  weight: Float32Array;
  bias: Float32Array | null;
}

export function fail(message: string): never {
  throw new ConvertError(message);
}

/** Strips a `module.` prefix (DataParallel) when every key has it. */
export function stripModulePrefix(tensors: Map<string, HostTensor>): Map<string, HostTensor> {
  const keys = [...tensors.keys()];
  if (!keys.length || !keys.every((k) => k.startsWith('module.'))) return tensors;
  return new Map(keys.map((k) => [k.slice('module.'.length), tensors.get(k)!]));
}

/** Parses τ: the --temperature override, else the checkpoint's `temperature`; never a default. */
export function resolveTemperature(metadata: Record<string, string>, override: string | undefined): number {
  const [text, where] =
    override !== undefined ? [override, '--temperature'] : [metadata.temperature, 'checkpoint temperature'];
  if (text === undefined) {
    fail(
      'temperature: not in the checkpoint (no "temperature" entry or metadata); pass --temperature T (PAD-Net trains with τ annealed to 1.0; never assume the model class default 31)',
    );
  }
  const t = Number(text);
  if (!Number.isFinite(t) || t <= 0) fail(`${where}: expected a positive number, got "${text}"`);
  return t;
}

/** Typed access to the state dict with one-line errors naming the tensor. */
export class TensorReader {
  readonly used = new Set<string>();
  constructor(readonly tensors: Map<string, HostTensor>) {}

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  /** A float tensor of exactly `shape` with finite values. */
  float(name: string, shape: readonly number[]): Float32Array {
    const t = this.tensors.get(name);
    if (!t) fail(`${name}: missing (expected shape ${formatShape(shape)})`);
    if (t.dtype !== 'float32') fail(`${name}: expected float32, got ${t.dtype}`);
    if (!sameShape(t.shape, shape))
      fail(`${name}: expected shape ${formatShape(shape)}, got ${formatShape(t.shape)}`);
    const data = t.data as Float32Array;
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) fail(`${name}: non-finite value ${data[i]} at index ${i}`);
    }
    this.used.add(name);
    return data;
  }

  /** Shape of a float tensor that must exist with the given rank. */
  shape(name: string, rank: number, what: string): readonly number[] {
    const t = this.tensors.get(name);
    if (!t) fail(`${name}: missing (expected ${what})`);
    if (t.shape.length !== rank)
      fail(`${name}: expected ${what} (rank ${rank}), got shape ${formatShape(t.shape)}`);
    return t.shape;
  }

  /** A mask of `shape` whose values must be exactly 0 or 1. */
  mask(name: string, shape: readonly number[]): Float32Array {
    const data = this.float(name, shape);
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (v !== 0 && v !== 1) fail(`${name}: mask must be 0/1, found ${v} at index ${i}`);
    }
    return data;
  }
}

export function batchNorm(r: TensorReader, name: string, channels: number): BatchNorm {
  const bn: BatchNorm = {
    name,
    weight: r.float(`${name}.weight`, [channels]),
    bias: r.float(`${name}.bias`, [channels]),
    mean: r.float(`${name}.running_mean`, [channels]),
    variance: r.float(`${name}.running_var`, [channels]),
  };
  const neg = bn.variance.findIndex((v) => v < 0);
  if (neg >= 0)
    fail(`${name}.running_var: BatchNorm variance must be ≥ 0, found ${bn.variance[neg]} at index ${neg}`);
  return bn;
}

/** Reads one PAD conv; shapes come from `kernels_weights`, checked against the expected in/out/kernel. */
export function padConv(
  r: TensorReader,
  name: string,
  expect: { inChannels: number; outChannels?: number; kernel: number; stride: number; kernels?: number },
): PadConv {
  const key = (suffix: string): string => (name ? `${name}.${suffix}` : suffix);
  const kwName = key('kernels_weights');
  const kw = r.shape(kwName, 5, `(K, O, ${expect.inChannels}, ${expect.kernel}, ${expect.kernel})`);
  const [K, O, I, kh, kwid] = kw as [number, number, number, number, number];
  const want = [
    expect.kernels ?? K,
    expect.outChannels ?? O,
    expect.inChannels,
    expect.kernel,
    expect.kernel,
  ];
  if (!sameShape(kw, want) || K < 1 || O < 1)
    fail(`${kwName}: expected shape ${formatShape(want)}, got ${formatShape(kw)}`);
  if (kh !== kwid) fail(`${kwName}: non-square kernel ${kh}×${kwid}`);
  const one = [1, O, I, kh, kh];
  const fc1Shape = r.shape(key('attention.fc1.weight'), 4, `(hidden, ${I}, 1, 1)`);
  const hidden = fc1Shape[0]!;
  if (!sameShape(fc1Shape, [hidden, I, 1, 1]) || hidden < 1)
    fail(`${key('attention.fc1.weight')}: expected shape [hidden, ${I}, 1, 1], got ${formatShape(fc1Shape)}`);
  const maskData = r.mask(key('kernels_weights_mask'), one);
  let dynamicEntries = 0;
  for (let i = 0; i < maskData.length; i++) dynamicEntries += maskData[i]!;
  return {
    name,
    outChannels: O,
    inChannels: I,
    kernel: kh,
    stride: expect.stride,
    padding: (kh - 1) >> 1,
    kernels: K,
    hidden,
    kernelsWeights: r.float(kwName, kw),
    weight: r.float(key('weight'), one),
    mask: maskData,
    phiD: r.float(key('phi_d'), [1])[0]!,
    fc1: r.float(key('attention.fc1.weight'), [hidden, I, 1, 1]),
    fc2: r.float(key('attention.fc2.weight'), [K, hidden, 1, 1]),
    fc2Bias: r.float(key('attention.fc2.bias'), [K]),
    kernelsBias: r.has(key('kernels_bias')) ? r.float(key('kernels_bias'), [K, O]) : null,
    dynamicEntries,
  };
}

/** An ordinary conv with optional `weight_mask` / `bias_mask` buffers, multiplied in when present. */
export function plainConv(
  r: TensorReader,
  name: string,
  shape: readonly number[],
  withBias: boolean,
): PlainConv {
  let weight = r.float(`${name}.weight`, shape);
  if (r.has(`${name}.weight_mask`)) {
    const m = r.mask(`${name}.weight_mask`, shape);
    weight = weight.map((w, i) => w * m[i]!);
  }
  let bias: Float32Array | null = null;
  if (withBias) {
    bias = r.float(`${name}.bias`, [shape[0]!]);
    if (r.has(`${name}.bias_mask`)) {
      const m = r.mask(`${name}.bias_mask`, [shape[0]!]);
      bias = bias.map((b, i) => b * m[i]!);
    }
  }
  return { name, outChannels: shape[0]!, inChannels: shape[1]!, kernel: shape[2] ?? 1, weight, bias };
}
