/**
 * Activation / weight layouts for the ResNet graphs.
 *
 * 'nchw' is plain ONNX: Conv with OIHW weights. onnxruntime converts constant-weight convs to its blocked NCHWc
 * kernels itself, but a conv whose weight is computed inside the graph stays on the plain NCHW path (1.2–1.3×
 * slower, no fused activation). 'nchwc' writes onnxruntime's own `com.microsoft.nchwc` ops directly (the ones its
 * NchwcTransformer would emit), with every weight — constant or computed per request — already stored in the
 * blocked filter layout, so per-sample convs run on the same kernels as static ones. The block size is a property
 * of the machine's MLAS build (16 with AVX-512, 8 with AVX2): it is probed from onnxruntime at conversion time and
 * the graph carries a guard that refuses to run where the block differs. This module is pure geometry and graph
 * building; the probe, which loads onnxruntime, is layout-probe.ts.
 */
import type { GraphBuilder, Value } from '../../onnx/builder.js';
import type { Ops } from '../../onnx/ops.js';
import { floatTensor } from '../../tensor.js';

export type Layout = { kind: 'nchw' } | { kind: 'nchwc'; block: number };

export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

export function roundUp(n: number, block: number): number {
  return Math.ceil(n / block) * block;
}

/** Channel count of an activation in this layout (NCHWc pads channels to the block). */
export function paddedChannels(layout: Layout, channels: number): number {
  return layout.kind === 'nchwc' ? roundUp(channels, layout.block) : channels;
}

/**
 * Geometry of one conv weight in a layout. `blockedInput` is false only for a conv reading the graph's NCHW input
 * (the stem), which MLAS takes in OIHWBo order; every other NCHWc conv takes OIHWBiBo.
 */
export interface WeightGeometry {
  outChannels: number;
  inChannels: number;
  kernel: number;
  /** Stored (padded) sizes. */
  storedOut: number;
  storedIn: number;
  /** Number of stored weight values (storedOut · storedIn · k²). */
  size: number;
  /** Maps a flat OIHW position of the unpadded weight to its position in the stored layout. */
  position(p: number): number;
}

export function weightGeometry(
  layout: Layout,
  O: number,
  I: number,
  k: number,
  blockedInput: boolean,
): WeightGeometry {
  const kk = k * k;
  if (layout.kind === 'nchw') {
    return {
      outChannels: O,
      inChannels: I,
      kernel: k,
      storedOut: O,
      storedIn: I,
      size: O * I * kk,
      position: (p) => p,
    };
  }
  const B = layout.block;
  const storedOut = roundUp(O, B);
  const storedIn = blockedInput ? roundUp(I, B) : I;
  const inBlocks = storedIn / B;
  const position = blockedInput
    ? (p: number): number => {
        const t = p % kk;
        const oi = (p - t) / kk;
        const i = oi % I;
        const o = (oi - i) / I;
        // [O/B][I/B][kh·kw][Bi][Bo]
        return (((Math.floor(o / B) * inBlocks + Math.floor(i / B)) * kk + t) * B + (i % B)) * B + (o % B);
      }
    : (p: number): number => {
        const t = p % kk;
        const oi = (p - t) / kk;
        const i = oi % I;
        const o = (oi - i) / I;
        // [O/B][I][kh·kw][Bo]
        return ((Math.floor(o / B) * I + i) * kk + t) * B + (o % B);
      };
  return {
    outChannels: O,
    inChannels: I,
    kernel: k,
    storedOut,
    storedIn,
    size: storedOut * storedIn * kk,
    position,
  };
}

/** A dense OIHW weight rearranged into the stored layout (padding entries are zero). */
export function layoutWeight(geo: WeightGeometry, w: Float32Array): Float32Array {
  const out = new Float32Array(geo.size);
  for (let p = 0; p < w.length; p++) out[geo.position(p)] = w[p]!;
  return out;
}

/** A per-channel vector padded with zeros to `size`. */
export function padVector(v: Float32Array, size: number): Float32Array {
  if (v.length === size) return v;
  const out = new Float32Array(size);
  out.set(v);
  return out;
}

/** A (rows, cols) matrix with its columns zero-padded to `cols` (router fc1, classifier in NCHWc). */
export function padColumns(m: Float32Array, rows: number, cols: number, paddedCols: number): Float32Array {
  if (cols === paddedCols) return m;
  const out = new Float32Array(rows * paddedCols);
  for (let r = 0; r < rows; r++) out.set(m.subarray(r * cols, (r + 1) * cols), r * paddedCols);
  return out;
}

/**
 * A zero that only exists where onnxruntime's NCHWc block equals the one the weights were laid out for: a
 * Reshape of `block` zeros to the probed channel count fails with this node's name in the error otherwise.
 * onnxruntime folds it at session creation, so it costs nothing per run.
 */
export function nchwcGuard(g: GraphBuilder, ops: Ops, block: number): Value {
  const probe = g.op(
    'ReorderInput',
    [ops.f32(new Float32Array(4), [1, 4, 1, 1], 'nchwc_probe')],
    {},
    { domain: NCHWC_DOMAIN },
  );
  const channels = g.op('Slice', [ops.shape(probe), ops.i64([1]), ops.i64([2]), ops.i64([0])]);
  const zeros = g.initializer(`nchwc_block_${block}_zeros`, floatTensor(new Float32Array(block), [block]));
  const checked = g.op(
    'Reshape',
    [zeros, channels],
    {},
    { name: `nchwc_block_${block}_guard_weights_need_this_block_size` },
  );
  return ops.reduceSum(checked, [0], true);
}
