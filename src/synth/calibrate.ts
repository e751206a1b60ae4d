/**
 * BatchNorm calibration for synthetic ResNet weights: a small float32 forward of the PAD-Net ResNet (original
 * formulation: per-sample W_b = λ_d M⊙Σπ_kΘ_k + λ_s(1−M)⊙Θ̄) over a few smooth synthetic images, run layer by layer;
 * each BatchNorm's running mean/var is set from the per-channel statistics of the conv output it follows, so every
 * normalised activation has unit scale and the logits stay of order 1–10 instead of exploding with depth.
 *
 * Works on the state dict itself (same tensor names as a checkpoint) and mutates its BN buffers in place.
 * Deterministic: plain loops in a fixed order, no threads.
 */
import type { HostTensor } from '../tensor.js';
import { Rng } from './random.js';

export interface Act {
  c: number;
  h: number;
  w: number;
  data: Float32Array;
}

type Dict = Map<string, HostTensor>;

function f32(sd: Dict, name: string): Float32Array {
  const t = sd.get(name);
  if (!t) throw new Error(`calibrate: missing ${name}`);
  return t.data as Float32Array;
}

export function conv(x: Act, w: Float32Array, o: number, k: number, stride: number, pad: number): Act {
  const oh = Math.floor((x.h + 2 * pad - k) / stride) + 1;
  const ow = Math.floor((x.w + 2 * pad - k) / stride) + 1;
  const out = new Float32Array(o * oh * ow);
  const plane = oh * ow;
  if (k === 1 && stride === 1) {
    // 1×1: rows of the output are sums of input planes (the inner loop is contiguous).
    for (let oc = 0; oc < o; oc++) {
      const dst = out.subarray(oc * plane, (oc + 1) * plane);
      for (let ic = 0; ic < x.c; ic++) {
        const wv = w[oc * x.c + ic]!;
        if (wv === 0) continue;
        const src = x.data.subarray(ic * plane, (ic + 1) * plane);
        for (let i = 0; i < plane; i++) dst[i]! += wv * src[i]!;
      }
    }
    return { c: o, h: oh, w: ow, data: out };
  }
  for (let oc = 0; oc < o; oc++) {
    for (let ic = 0; ic < x.c; ic++) {
      for (let ky = 0; ky < k; ky++) {
        for (let kx = 0; kx < k; kx++) {
          const wv = w[((oc * x.c + ic) * k + ky) * k + kx]!;
          if (wv === 0) continue;
          for (let y = 0; y < oh; y++) {
            const iy = y * stride + ky - pad;
            if (iy < 0 || iy >= x.h) continue;
            const rowIn = (ic * x.h + iy) * x.w;
            const rowOut = oc * plane + y * ow;
            const x0 = Math.max(0, Math.ceil((pad - kx) / stride));
            const x1 = Math.min(ow, Math.floor((x.w - 1 + pad - kx) / stride) + 1);
            for (let xx = x0; xx < x1; xx++)
              out[rowOut + xx]! += wv * x.data[rowIn + xx * stride + kx - pad]!;
          }
        }
      }
    }
  }
  return { c: o, h: oh, w: ow, data: out };
}

function spatialMean(x: Act): Float64Array {
  const hw = x.h * x.w;
  const m = new Float64Array(x.c);
  for (let c = 0; c < x.c; c++) {
    let s = 0;
    for (let i = c * hw; i < (c + 1) * hw; i++) s += x.data[i]!;
    m[c] = s / hw;
  }
  return m;
}

/** Per-sample weight of a PAD conv, W_b = λ_d M⊙Σπ_kΘ_k + λ_s(1−M)⊙Θ̄, with π from the sample's own input. */
export function padWeight(sd: Dict, name: string, x: Act, temperature: number): Float32Array {
  const kw = sd.get(`${name}.kernels_weights`)!;
  const [K, O, I, k] = kw.shape as [number, number, number, number];
  const theta = kw.data as Float32Array;
  const fc1 = f32(sd, `${name}.attention.fc1.weight`),
    fc2 = f32(sd, `${name}.attention.fc2.weight`),
    b2 = f32(sd, `${name}.attention.fc2.bias`);
  const hidden = fc1.length / I;
  const g = spatialMean(x);
  const a = Array.from({ length: hidden }, (_, h) => {
    let s = 0;
    for (let c = 0; c < I; c++) s += fc1[h * I + c]! * g[c]!;
    return Math.max(0, s);
  });
  const z = Array.from(
    { length: K },
    (_, kk) => (b2[kk]! + a.reduce((s, v, h) => s + fc2[kk * hidden + h]! * v, 0)) / temperature,
  );
  const zMax = Math.max(...z);
  const e = z.map((v) => Math.exp(v - zMax));
  const pi = e.map((v) => v / e.reduce((p, q) => p + q, 0));
  const lamD = 2 / (1 + Math.exp(-f32(sd, `${name}.phi_d`)[0]!));
  const mask = f32(sd, `${name}.kernels_weights_mask`),
    bar = f32(sd, `${name}.weight`);
  const N = O * I * k * k;
  const w = new Float32Array(N);
  for (let p = 0; p < N; p++) {
    if (mask[p] === 1) {
      let s = 0;
      for (let kk = 0; kk < K; kk++) s += pi[kk]! * theta[kk * N + p]!;
      w[p] = lamD * s;
    } else w[p] = (2 - lamD) * bar[p]!;
  }
  return w;
}

/**
 * Sets `<bn>.running_mean/var` from the per-channel statistics of `outs` (one activation per image), then applies
 * the BatchNorm (+ ReLU) in place and returns the normalised activations.
 */
export function calibrateBatchNorm(sd: Dict, bn: string, outs: Act[], relu: boolean): Act[] {
  const c = outs[0]!.c;
  const mean = new Float64Array(c),
    sq = new Float64Array(c);
  let count = 0;
  for (const a of outs) {
    const hw = a.h * a.w;
    count += hw;
    for (let ch = 0; ch < c; ch++) {
      for (let i = ch * hw; i < (ch + 1) * hw; i++) {
        mean[ch]! += a.data[i]!;
        sq[ch]! += a.data[i]! * a.data[i]!;
      }
    }
  }
  const rm = f32(sd, `${bn}.running_mean`),
    rv = f32(sd, `${bn}.running_var`),
    gamma = f32(sd, `${bn}.weight`),
    beta = f32(sd, `${bn}.bias`);
  for (let ch = 0; ch < c; ch++) {
    const m = mean[ch]! / count;
    rm[ch] = m;
    rv[ch] = Math.max(sq[ch]! / count - m * m, 1e-6);
  }
  for (const a of outs) {
    const hw = a.h * a.w;
    for (let ch = 0; ch < c; ch++) {
      const s = gamma[ch]! / Math.sqrt(rv[ch]! + 1e-5);
      const t = beta[ch]! - s * rm[ch]!;
      for (let i = ch * hw; i < (ch + 1) * hw; i++) {
        const y = s * a.data[i]! + t;
        a.data[i] = relu && y < 0 ? 0 : y;
      }
    }
  }
  return outs;
}

export function maxPool3s2(x: Act): Act {
  const oh = Math.floor((x.h - 1) / 2) + 1,
    ow = Math.floor((x.w - 1) / 2) + 1;
  const out = new Float32Array(x.c * oh * ow).fill(-Infinity);
  for (let c = 0; c < x.c; c++)
    for (let y = 0; y < oh; y++)
      for (let xx = 0; xx < ow; xx++) {
        let m = -Infinity;
        for (let iy = Math.max(0, 2 * y - 1); iy <= Math.min(x.h - 1, 2 * y + 1); iy++)
          for (let ix = Math.max(0, 2 * xx - 1); ix <= Math.min(x.w - 1, 2 * xx + 1); ix++)
            m = Math.max(m, x.data[(c * x.h + iy) * x.w + ix]!);
        out[(c * oh + y) * ow + xx] = m;
      }
  return { c: x.c, h: oh, w: ow, data: out };
}

/**
 * Random RGB images with a natural-image-like spectrum: octaves of bilinearly upsampled random grids (coarse
 * octaves stronger, as in photos' 1/f spectra) plus pixel noise; every `noiseEvery`-th image is pure N(0, 1)
 * noise so BatchNorm also sees high-frequency content. Zero mean / unit std per channel, like ImageNet-normalised
 * inputs.
 */
export function calibrationImages(rng: Rng, count: number, size: number, noiseEvery = 3): Act[] {
  return Array.from({ length: count }, (_, index) => {
    const data = new Float32Array(3 * size * size);
    const noiseOnly = noiseEvery > 0 && index % noiseEvery === noiseEvery - 1;
    for (let c = 0; c < 3; c++) {
      const plane = data.subarray(c * size * size, (c + 1) * size * size);
      if (noiseOnly) rng.fillNormal(plane, 1);
      else {
        for (let grid = 2; grid <= Math.min(64, size / 2); grid *= 2)
          addOctave(plane, size, grid, rng, Math.sqrt(2 / grid));
        for (let i = 0; i < plane.length; i++) plane[i]! += 0.05 * rng.normal();
      }
      let m = 0,
        s = 0;
      for (const v of plane) m += v;
      m /= plane.length;
      for (const v of plane) s += (v - m) ** 2;
      const std = Math.sqrt(s / plane.length) || 1;
      for (let i = 0; i < plane.length; i++) plane[i] = (plane[i]! - m) / std;
    }
    return { c: 3, h: size, w: size, data };
  });
}

function addOctave(plane: Float32Array, size: number, grid: number, rng: Rng, amplitude: number): void {
  const coarse = rng.fillNormal(new Float32Array((grid + 1) * (grid + 1)), amplitude);
  const at = (yy: number, xx: number): number => coarse[yy * (grid + 1) + xx]!;
  for (let y = 0; y < size; y++) {
    const fy = (y / (size - 1)) * grid,
      y0 = Math.min(grid - 1, Math.floor(fy)),
      ty = fy - y0;
    for (let x = 0; x < size; x++) {
      const fx = (x / (size - 1)) * grid,
        x0 = Math.min(grid - 1, Math.floor(fx)),
        tx = fx - x0;
      plane[y * size + x]! +=
        (1 - ty) * ((1 - tx) * at(y0, x0) + tx * at(y0, x0 + 1)) +
        ty * ((1 - tx) * at(y0 + 1, x0) + tx * at(y0 + 1, x0 + 1));
    }
  }
}

export interface CalibrationPlan {
  block: 'bottleneck' | 'basic';
  blocks: number[];
  temperature: number;
}

/**
 * Calibrates every BatchNorm of a PAD-Net ResNet state dict on `images`, stage by stage; returns the pooled
 * features (one row per image) so the caller can scale the classifier.
 */
export function calibrateResNet(
  sd: Dict,
  plan: CalibrationPlan,
  images: Act[],
  onLayer?: (name: string) => void,
): Float64Array[] {
  const stem = sd.get('conv1.weight')!;
  const [c0, , k0] = stem.shape as [number, number, number];
  let h = calibrateBatchNorm(
    sd,
    'bn1',
    images.map((x) => conv(x, stem.data as Float32Array, c0, k0, 2, (k0 - 1) / 2)),
    true,
  ).map(maxPool3s2);
  onLayer?.('conv1');
  const bottleneck = plan.block === 'bottleneck';
  const padStep = (name: string, bn: string, xs: Act[], stride: number, relu: boolean): Act[] => {
    const kw = sd.get(`${name}.kernels_weights`)!;
    const [, O, , k] = kw.shape as [number, number, number, number];
    const outs = xs.map((x) => conv(x, padWeight(sd, name, x, plan.temperature), O, k, stride, (k - 1) / 2));
    onLayer?.(name);
    return calibrateBatchNorm(sd, bn, outs, relu);
  };
  plan.blocks.forEach((count, s) => {
    for (let i = 0; i < count; i++) {
      const b = `layer${s + 1}.layers.${i}`;
      const stride = i === 0 && s > 0 ? 2 : 1;
      let o: Act[];
      if (bottleneck) {
        o = padStep(`${b}.conv1`, `${b}.bn1`, h, 1, true);
        o = padStep(`${b}.conv2`, `${b}.bn2`, o, stride, true);
        o = padStep(`${b}.conv3`, `${b}.bn3`, o, 1, false);
      } else {
        o = padStep(`${b}.conv1`, `${b}.bn1`, h, stride, true);
        o = padStep(`${b}.conv2`, `${b}.bn2`, o, 1, false);
      }
      const short = sd.has(`${b}.shortcut.layers.0.kernels_weights`)
        ? padStep(`${b}.shortcut.layers.0`, `${b}.shortcut.layers.1`, h, stride, false)
        : h;
      h = o.map((a, j) => {
        const data = new Float32Array(a.data.length);
        for (let e = 0; e < data.length; e++) data[e] = Math.max(0, a.data[e]! + short[j]!.data[e]!);
        return { ...a, data };
      });
    }
  });
  return h.map(spatialMean);
}
