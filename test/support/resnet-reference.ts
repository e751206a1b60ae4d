/**
 * An independent, naive float64 reference forward of the ORIGINAL PAD-Net ResNet formulation, written straight
 * from the paper's / reference code's definitions (docs/padnet.md §1), sharing no code with the converter:
 *
 *   π_b   = softmax(fc2(relu(fc1(mean_hw(x_b)))) / τ)
 *   W_b   = λ_d · M ⊙ Σ_k π_bk Θ_k + λ_s · (1 − M) ⊙ Θ̄,   λ_d = 2σ(φ_d), λ_s = 2 − λ_d
 *   y_b   = conv2d(x_b, W_b, stride, pad) + Σ_k π_bk kernels_bias[k]
 *
 * BatchNorm is applied unfolded, one sample at a time. It is slow on purpose (plain loops) and only meant for the
 * small checkpoints the tests generate; it is validated against the PyTorch fixtures first.
 */
import type { HostTensor } from '../../src/tensor.js';

export interface Tensor3 {
  c: number;
  h: number;
  w: number;
  data: Float64Array;
}

type Dict = Map<string, HostTensor>;

function get(sd: Dict, name: string): Float64Array {
  const t = sd.get(name);
  if (!t) throw new Error(`reference: missing ${name}`);
  return Float64Array.from(t.data as Float32Array);
}

function shapeOf(sd: Dict, name: string): readonly number[] {
  const t = sd.get(name);
  if (!t) throw new Error(`reference: missing ${name}`);
  return t.shape;
}

export function conv2d(
  x: Tensor3,
  w: Float64Array,
  o: number,
  k: number,
  stride: number,
  pad: number,
  bias?: Float64Array,
): Tensor3 {
  const oh = Math.floor((x.h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const out = new Float64Array(o * oh * ow);
  for (let oc = 0; oc < o; oc++) {
    const ob = oc * oh * ow;
    if (bias) out.fill(bias[oc]!, ob, ob + oh * ow);
    for (let ic = 0; ic < x.c; ic++) {
      for (let ky = 0; ky < k; ky++) {
        for (let kx = 0; kx < k; kx++) {
          const wv = w[((oc * x.c + ic) * k + ky) * k + kx]!;
          if (wv === 0) continue;
          for (let y = 0; y < oh; y++) {
            const iy = y * stride + ky - pad;
            if (iy < 0 || iy >= x.h) continue;
            const rowIn = (ic * x.h + iy) * x.w;
            const rowOut = ob + y * ow;
            for (let xx = 0; xx < ow; xx++) {
              const ix = xx * stride + kx - pad;
              if (ix >= 0 && ix < x.w) out[rowOut + xx]! += wv * x.data[rowIn + ix]!;
            }
          }
        }
      }
    }
  }
  return { c: o, h: oh, w: ow, data: out };
}

function batchNorm(sd: Dict, name: string, x: Tensor3, relu: boolean): Tensor3 {
  const g = get(sd, `${name}.weight`),
    b = get(sd, `${name}.bias`),
    m = get(sd, `${name}.running_mean`),
    v = get(sd, `${name}.running_var`);
  const hw = x.h * x.w;
  const out = new Float64Array(x.data.length);
  for (let c = 0; c < x.c; c++) {
    const inv = 1 / Math.sqrt(v[c]! + 1e-5);
    for (let i = c * hw; i < (c + 1) * hw; i++) {
      const y = (x.data[i]! - m[c]!) * inv * g[c]! + b[c]!;
      out[i] = relu && y < 0 ? 0 : y;
    }
  }
  return { ...x, data: out };
}

function spatialMean(x: Tensor3): Float64Array {
  const hw = x.h * x.w;
  const g = new Float64Array(x.c);
  for (let c = 0; c < x.c; c++) {
    let s = 0;
    for (let i = c * hw; i < (c + 1) * hw; i++) s += x.data[i]!;
    g[c] = s / hw;
  }
  return g;
}

/** π of one PAD conv for one sample. */
export function routerPi(sd: Dict, name: string, x: Tensor3, tau: number): Float64Array {
  const fc1 = get(sd, `${name}.attention.fc1.weight`),
    fc2 = get(sd, `${name}.attention.fc2.weight`),
    b2 = get(sd, `${name}.attention.fc2.bias`);
  const hidden = shapeOf(sd, `${name}.attention.fc1.weight`)[0]!;
  const K = b2.length;
  const g = spatialMean(x);
  const a = new Float64Array(hidden);
  for (let h = 0; h < hidden; h++) {
    let s = 0;
    for (let c = 0; c < x.c; c++) s += fc1[h * x.c + c]! * g[c]!;
    a[h] = Math.max(0, s);
  }
  const z = Array.from({ length: K }, (_, k) => {
    let s = b2[k]!;
    for (let h = 0; h < hidden; h++) s += fc2[k * hidden + h]! * a[h]!;
    return s / tau;
  });
  const max = Math.max(...z);
  const e = z.map((v) => Math.exp(v - max));
  const sum = e.reduce((p, q) => p + q, 0);
  return Float64Array.from(e, (v) => v / sum);
}

/** One PAD_DynamicConvolution on one sample, as the original module computes it. */
export function padConvForward(
  sd: Dict,
  name: string,
  x: Tensor3,
  stride: number,
  pad: number,
  tau: number,
  piLog?: Map<string, number[][]>,
): Tensor3 {
  const [K, O, I, k] = shapeOf(sd, `${name}.kernels_weights`) as [number, number, number, number];
  if (I !== x.c) throw new Error(`reference: ${name} expects ${I} channels, got ${x.c}`);
  const theta = get(sd, `${name}.kernels_weights`),
    thetaBar = get(sd, `${name}.weight`),
    mask = get(sd, `${name}.kernels_weights_mask`);
  const lamD = 2 / (1 + Math.exp(-get(sd, `${name}.phi_d`)[0]!));
  const lamS = 2 - lamD;
  const pi = routerPi(sd, name, x, tau);
  if (piLog) {
    const rows = piLog.get(name) ?? [];
    rows.push([...pi]);
    piLog.set(name, rows);
  }
  const N = O * I * k * k;
  const w = new Float64Array(N);
  for (let p = 0; p < N; p++) {
    let agg = 0;
    for (let kk = 0; kk < K; kk++) agg += pi[kk]! * theta[kk * N + p]!;
    w[p] = lamD * mask[p]! * agg + lamS * (1 - mask[p]!) * thetaBar[p]!;
  }
  let bias: Float64Array | undefined;
  if (sd.has(`${name}.kernels_bias`)) {
    const kb = get(sd, `${name}.kernels_bias`);
    bias = new Float64Array(O);
    for (let o = 0; o < O; o++) for (let kk = 0; kk < K; kk++) bias[o]! += pi[kk]! * kb[kk * O + o]!;
  }
  return conv2d(x, w, O, k, stride, pad, bias);
}

function maxPool(x: Tensor3, k: number, s: number, p: number): Tensor3 {
  const oh = Math.floor((x.h + 2 * p - k) / s) + 1,
    ow = Math.floor((x.w + 2 * p - k) / s) + 1;
  const out = new Float64Array(x.c * oh * ow).fill(-Infinity);
  for (let c = 0; c < x.c; c++)
    for (let y = 0; y < oh; y++)
      for (let xx = 0; xx < ow; xx++)
        for (let ky = 0; ky < k; ky++)
          for (let kx = 0; kx < k; kx++) {
            const iy = y * s + ky - p,
              ix = xx * s + kx - p;
            if (iy < 0 || ix < 0 || iy >= x.h || ix >= x.w) continue;
            const o = (c * oh + y) * ow + xx;
            out[o] = Math.max(out[o]!, x.data[(c * x.h + iy) * x.w + ix]!);
          }
  return { c: x.c, h: oh, w: ow, data: out };
}

/** Strips `module.` when every key has it, as the training script's DataParallel checkpoints need. */
export function referenceStateDict(sd: Dict): Dict {
  const keys = [...sd.keys()];
  return keys.every((k) => k.startsWith('module.')) ? new Map(keys.map((k) => [k.slice(7), sd.get(k)!])) : sd;
}

/** Logits of one sample (x: C×H×W, float64). Block layout is read from the key names. */
export function referenceForwardOne(
  stateDict: Dict,
  x: Tensor3,
  tau: number,
  piLog?: Map<string, number[][]>,
): Float64Array {
  const sd = referenceStateDict(stateDict);
  const stemW = get(sd, 'conv1.weight');
  if (sd.has('conv1.weight_mask')) get(sd, 'conv1.weight_mask').forEach((m, i) => (stemW[i]! *= m));
  const [c0, , k0] = shapeOf(sd, 'conv1.weight') as [number, number, number];
  let h = conv2d(x, stemW, c0, k0, 2, (k0 - 1) / 2);
  h = maxPool(batchNorm(sd, 'bn1', h, true), 3, 2, 1);
  const bottleneck = sd.has('layer1.layers.0.conv3.kernels_weights');
  for (let s = 1; sd.has(`layer${s}.layers.0.conv1.kernels_weights`); s++) {
    for (let i = 0; sd.has(`layer${s}.layers.${i}.conv1.kernels_weights`); i++) {
      const b = `layer${s}.layers.${i}`;
      const stride = i === 0 && s > 1 ? 2 : 1;
      let o: Tensor3;
      if (bottleneck) {
        o = batchNorm(sd, `${b}.bn1`, padConvForward(sd, `${b}.conv1`, h, 1, 0, tau, piLog), true);
        o = batchNorm(sd, `${b}.bn2`, padConvForward(sd, `${b}.conv2`, o, stride, 1, tau, piLog), true);
        o = batchNorm(sd, `${b}.bn3`, padConvForward(sd, `${b}.conv3`, o, 1, 0, tau, piLog), false);
      } else {
        o = batchNorm(sd, `${b}.bn1`, padConvForward(sd, `${b}.conv1`, h, stride, 1, tau, piLog), true);
        o = batchNorm(sd, `${b}.bn2`, padConvForward(sd, `${b}.conv2`, o, 1, 1, tau, piLog), false);
      }
      const short = sd.has(`${b}.shortcut.layers.0.kernels_weights`)
        ? batchNorm(
            sd,
            `${b}.shortcut.layers.1`,
            padConvForward(sd, `${b}.shortcut.layers.0`, h, stride, 0, tau, piLog),
            false,
          )
        : h;
      const sum = new Float64Array(o.data.length);
      for (let j = 0; j < sum.length; j++) sum[j] = Math.max(0, o.data[j]! + short.data[j]!);
      h = { ...o, data: sum };
    }
  }
  const g = spatialMean(h);
  const lw = get(sd, 'linear.weight'),
    lb = get(sd, 'linear.bias');
  if (sd.has('linear.weight_mask')) get(sd, 'linear.weight_mask').forEach((m, i) => (lw[i]! *= m));
  if (sd.has('linear.bias_mask')) get(sd, 'linear.bias_mask').forEach((m, i) => (lb[i]! *= m));
  const classes = lb.length;
  const out = new Float64Array(classes);
  for (let c = 0; c < classes; c++) {
    let acc = lb[c]!;
    for (let j = 0; j < h.c; j++) acc += lw[c * h.c + j]! * g[j]!;
    out[c] = acc;
  }
  return out;
}

/** Sample `b` of an NCHW float32 batch as a float64 C×H×W tensor. */
export function sampleOf(batch: Float32Array, shape: readonly number[], b: number): Tensor3 {
  const [, c, h, w] = shape as [number, number, number, number];
  const n = c * h * w;
  return { c, h, w, data: Float64Array.from(batch.subarray(b * n, (b + 1) * n)) };
}

/** Logits for a whole NCHW batch, [B, classes] as float64 rows. */
export function referenceForward(
  stateDict: Dict,
  batch: Float32Array,
  shape: readonly number[],
  tau: number,
): Float64Array[] {
  return Array.from({ length: shape[0]! }, (_, b) =>
    referenceForwardOne(stateDict, sampleOf(batch, shape, b), tau),
  );
}
