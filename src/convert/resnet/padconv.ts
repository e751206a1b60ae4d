/**
 * One (PAD) conv layer in the graph, in one of the per-sample weight strategies (docs/resnet-graph.md has the
 * measurements behind them). A graph with dynamic convs is built for a fixed batch B (a bucket; B = 1 is the
 * per-sample form): the B per-sample weights are generated together, stacked to (B·O, I, k, k), and the conv runs
 * once as a grouped conv (`group = B`) over the activations viewed as (1, B·C, H, W) — the "grouped" layout of
 * `LayerContext.batch`. A grouped view is a Reshape, free in both layouts because every stored channel count is
 * a multiple of the NCHWc block.
 *
 * - static:  no dynamic entry → Conv with a constant weight (BN folded).
 * - dense:   W = π · [W'_1 … W'_K] (MatMul over K dense fused kernels). The fully dynamic DY-Conv form; also the
 *            fastest aggregation per byte, but it stores K dense kernels.
 * - scatter: W = ScatterElements(B, idx, π_{2..K} · ΔD, reduction=add): B = S + D_1 dense (the first kernel's
 *            dynamic entries stored in place in the static part), ΔD_k = D_k − D_1 packed (k ≥ 2), idx int32.
 *            Since Σπ = 1 this is exactly S + Σ_k π_k D_k, and it stores N + (K−1)·n + n values instead of K·N.
 *            Rows: the scatter runs on a (rows, cols) view along axis 1, each row padded to the same number of
 *            entries (padding adds 0), so that a runtime may split it by rows (onnxruntime 1.30 does not: ≈5 ns
 *            per entry on one thread, the slowest form).
 * - unpool:  W = B + MaxUnpool(π_{2..K} · ΔD, idx): same stored tensors as scatter, but the packed entries are
 *            placed by MaxUnpool (a tight single loop into a zeroed buffer) and added to B by a dense Add.
 *            MaxUnpool takes int64 positions: 'unpool' stores int32 and casts per run, 'unpool64' stores int64.
 * - auto (the default): dense where it stores less (r > (K−1)/K, DY-Conv layers), unpool elsewhere.
 */
import type { GraphBuilder, Value } from '../../onnx/builder.js';
import type { Ops } from '../../onnx/ops.js';
import { floatTensor, int32Tensor, int64Tensor } from '../../tensor.js';
import { ONNX_DTYPE } from '../../onnx/proto.js';
import type { FoldedConv, Router } from './fold.js';
import {
  layoutWeight,
  NCHWC_DOMAIN,
  padColumns,
  padVector,
  paddedChannels,
  weightGeometry,
  type Layout,
  type WeightGeometry,
} from './layout.js';

const ONNX_INT64 = ONNX_DTYPE.int64;

export type DynamicForm = 'auto' | 'dense' | 'scatter' | 'unpool' | 'unpool64';

/**
 * 'auto': per layer, dense where it stores fewer bytes than unpool — K·N versus N(1 + K·r) with int32 indices,
 * i.e. r > (K−1)/K, which includes fully dynamic (DY-Conv) layers; unpool elsewhere. (Dense is also the faster
 * form per weight; using it for the small layers of stages 1–2 as well costs +10 MB and measured no difference.)
 */
export function resolveForm(
  form: DynamicForm,
  dynamicEntries: number,
  entries: number,
  kernels: number,
): Exclude<DynamicForm, 'auto'> {
  if (form !== 'auto') return form;
  return dynamicEntries * kernels > (kernels - 1) * entries ? 'dense' : 'unpool';
}

export interface LayerContext {
  g: GraphBuilder;
  ops: Ops;
  layout: Layout;
  /** Form for partially dynamic layers; fully dynamic layers (M = 1) always use 'dense' (nothing to scatter). */
  form: DynamicForm;
  /** An int32 scalar 0 computed from the graph input (not foldable), for the 'unpool' form's index widening. */
  runtimeZeroInt32?: () => Value;
  /** Adds this many bytes per stored tensor to a running tally (weights by role, for the card/docs). */
  tally?: (role: 'static' | 'dynamic' | 'index' | 'router', bytes: number) => void;
  /**
   * Fixed batch of a graph with dynamic convs (default 1). Activations between convs are then held in the grouped
   * view (1, B·C, H, W); routers pool per sample, dynamic convs run grouped, static convs on the (B, C, H, W) view.
   */
  batch?: number;
  /** Per-layer forms overriding `form` (a weights budget's choice). */
  layerForms?: ReadonlyMap<string, Exclude<DynamicForm, 'auto'>>;
}

/** The context's fixed batch (1 when unset). */
export function fixedBatch(ctx: LayerContext): number {
  return ctx.batch ?? 1;
}

/** (B, C, H, W) → the grouped view (1, B·C, H, W); identity for B = 1. */
export function toGrouped(ctx: LayerContext, x: Value): Value {
  return fixedBatch(ctx) === 1 ? x : ctx.ops.reshape(x, [1, -1, 0, 0]);
}

/** The grouped view (1, B·C, H, W) → (B, C, H, W); identity for B = 1. */
export function toBatched(ctx: LayerContext, x: Value): Value {
  const b = fixedBatch(ctx);
  return b === 1 ? x : ctx.ops.reshape(x, [b, -1, 0, 0]);
}

export interface ConvCall {
  x: Value;
  conv: FoldedConv;
  /** π (1, K) for a dynamic conv (from `emitRouter`). */
  pi: Value | null;
  relu: boolean;
  /** Residual added before the activation. */
  sum: Value | null;
  /** False only for the conv reading the graph's NCHW input. */
  blockedInput: boolean;
  /** Input and output in the (B, C, H, W) view rather than the grouped one (the stem of a fixed-batch graph). */
  batchedIO?: boolean;
}

/**
 * int32 0 = batch − B of a fixed-batch graph's input (built on first use): a value onnxruntime cannot fold.
 */
export function lazyRuntimeZero(g: GraphBuilder, ops: Ops, input: Value, batch = 1): () => Value {
  let zero: Value | null = null;
  return () => {
    zero ??= ops.cast(
      ops.sub(g.op('Slice', [ops.shape(input), ops.i64([0]), ops.i64([1]), ops.i64([0])]), ops.i64([batch])),
      ONNX_DTYPE.int32,
    );
    return zero;
  };
}

function addTally(ctx: LayerContext, role: 'static' | 'dynamic' | 'index' | 'router', bytes: number): void {
  ctx.tally?.(role, bytes);
}

/** π = softmax(fc2'(relu(fc1(gap)))), τ already folded into fc2'. `gap` is (B, C_stored), π (B, K). */
export function emitRouter(ctx: LayerContext, gap: Value, router: Router, name: string): Value {
  const { g, ops } = ctx;
  const cols = paddedChannels(ctx.layout, router.inChannels);
  const fc1 = g.initializer(
    `${name}.router.fc1`,
    floatTensor(padColumns(router.fc1, router.hidden, router.inChannels, cols), [router.hidden, cols]),
  );
  const fc2 = g.initializer(`${name}.router.fc2`, floatTensor(router.fc2, [router.kernels, router.hidden]));
  const fc2b = g.initializer(`${name}.router.fc2_bias`, floatTensor(router.fc2Bias, [router.kernels]));
  addTally(ctx, 'router', 4 * (router.hidden * cols + router.fc2.length + router.kernels));
  const hidden = ops.relu(ops.gemm(gap, fc1, null, { transB: true }, `${name}.router.fc1`));
  return ops.softmax(ops.gemm(hidden, fc2, fc2b, { transB: true }, `${name}.router.fc2`), 1);
}

/**
 * Global average pool as (B, C_stored) rows, in the activation's layout (a 1×1 NCHWc map is plain NCHW). Reads
 * the grouped view of a fixed-batch graph: (1, B·C, H, W) pools to (1, B·C), one row per sample after the reshape.
 */
export function emitGap(ctx: LayerContext, x: Value): Value {
  const pooled =
    ctx.layout.kind === 'nchwc'
      ? ctx.g.op('GlobalAveragePool', [x], {}, { domain: NCHWC_DOMAIN })
      : ctx.ops.globalAvgPool(x);
  const b = fixedBatch(ctx);
  return b === 1 ? ctx.ops.flatten(pooled, 1) : ctx.ops.reshape(pooled, [b, -1]);
}

/** Dense fused kernel k (S + D_k at its dynamic entries) in the stored layout. */
function fusedKernel(conv: FoldedConv, geo: WeightGeometry, k: number): Float32Array {
  const dyn = conv.dynamic!;
  const n = dyn.indices.length;
  const w = layoutWeight(geo, conv.weight);
  for (let j = 0; j < n; j++) w[geo.position(dyn.indices[j]!)] = dyn.values[k * n + j]!;
  return w;
}

/** Rows for the scatter view: the largest count ≤ `maxRows` dividing `size` that keeps rows ≥ `minCols` long. */
export function scatterRows(size: number, maxRows: number, minCols = 2048): number {
  for (let r = Math.max(1, Math.min(maxRows, Math.floor(size / minCols))); r > 1; r--)
    if (size % r === 0) return r;
  return 1;
}

/** The per-sample weights of a dynamic conv for the B samples, stacked: shape (B·O_stored, I_stored, k, k). */
function dynamicWeight(ctx: LayerContext, conv: FoldedConv, geo: WeightGeometry, pi: Value): Value {
  const { g, ops } = ctx;
  const dyn = conv.dynamic!;
  const K = dyn.kernels;
  const n = dyn.indices.length;
  const batch = fixedBatch(ctx);
  const shape = [batch * geo.storedOut, geo.storedIn, geo.kernel, geo.kernel];
  const fullyDynamic = n === conv.weight.length;
  if (n === 0) {
    // Only a per-kernel bias is dynamic: one constant weight, repeated for the B groups at run time.
    addTally(ctx, 'static', 4 * geo.size);
    const w = g.initializer(
      `${conv.name}.weight`,
      floatTensor(layoutWeight(geo, conv.weight), [geo.storedOut, geo.storedIn, geo.kernel, geo.kernel]),
    );
    return batch === 1 ? w : g.op('Tile', [w, ops.i64([batch, 1, 1, 1])]);
  }
  const form = ctx.layerForms?.get(conv.name) ?? resolveForm(ctx.form, n, conv.weight.length, K);
  if (form === 'dense' || fullyDynamic || K === 1) {
    const stacked = new Float32Array(K * geo.size);
    for (let k = 0; k < K; k++) stacked.set(fusedKernel(conv, geo, k), k * geo.size);
    addTally(ctx, 'dynamic', 4 * stacked.length);
    const kernels = g.initializer(`${conv.name}.kernels`, floatTensor(stacked, [K, geo.size]));
    return ops.reshape(ops.matmul(pi, kernels, `${conv.name}.aggregate`), shape);
  }
  if (form === 'unpool' || form === 'unpool64') {
    const piTail = g.op('Slice', [pi, ops.i64([1]), ops.i64([K]), ops.i64([1])]);
    return unpoolWeight(ctx, conv, geo, piTail, shape, form === 'unpool64');
  }
  if (batch !== 1)
    throw new RangeError(`${conv.name}: the scatter form is built per sample only (use unpool or dense)`);
  // scatter: base = S + D_1 in place; per row, the dynamic entries' columns and ΔD_k = D_k − D_1.
  const rows = scatterRows(geo.size, geo.storedOut);
  const cols = geo.size / rows;
  const base = fusedKernel(conv, geo, 0);
  const perRow: number[][] = Array.from({ length: rows }, () => []);
  for (let j = 0; j < n; j++) perRow[Math.floor(geo.position(dyn.indices[j]!) / cols)]!.push(j);
  for (const list of perRow)
    list.sort((a, b) => geo.position(dyn.indices[a]!) - geo.position(dyn.indices[b]!));
  const width = Math.max(1, ...perRow.map((l) => l.length));
  const idx = new Int32Array(rows * width);
  const delta = new Float32Array((K - 1) * rows * width);
  perRow.forEach((list, r) => {
    list.forEach((j, c) => {
      const slot = r * width + c;
      idx[slot] = geo.position(dyn.indices[j]!) - r * cols;
      for (let k = 1; k < K; k++)
        delta[(k - 1) * rows * width + slot] = dyn.values[k * n + j]! - dyn.values[j]!;
    });
    // Padding slots point at the row's first column and add 0 (their ΔD is 0).
  });
  addTally(ctx, 'static', 4 * base.length);
  addTally(ctx, 'dynamic', 4 * delta.length);
  addTally(ctx, 'index', 4 * idx.length);
  const baseV = g.initializer(`${conv.name}.base`, floatTensor(base, [rows, cols]));
  const idxV = g.initializer(`${conv.name}.dynamic_index`, int32Tensor(idx, [rows, width]));
  const deltaV = g.initializer(`${conv.name}.dynamic_delta`, floatTensor(delta, [K - 1, rows * width]));
  const piTail = g.op('Slice', [pi, ops.i64([1]), ops.i64([K]), ops.i64([1])]);
  const updates = ops.reshape(ops.matmul(piTail, deltaV, `${conv.name}.aggregate`), [rows, width]);
  const w = g.op(
    'ScatterElements',
    [baseV, idxV, updates],
    { axis: 1, reduction: 'add' },
    { name: `${conv.name}.scatter` },
  );
  return ops.reshape(w, shape);
}

/**
 * B + MaxUnpool(π_{2..K}·ΔD) with entries in stored-layout order (see the module comment), all as (1, 1, b, ·)
 * rows (one per sample; MaxUnpool's positions are flat over the whole output, so sample b's are offset by b·N) so
 * the only reshape is the final one to (b·O, I, k, k).
 */
function unpoolWeight(
  ctx: LayerContext,
  conv: FoldedConv,
  geo: WeightGeometry,
  piTail: Value,
  shape: number[],
  int64Index: boolean,
): Value {
  const { g, ops } = ctx;
  const dyn = conv.dynamic!;
  const K = dyn.kernels;
  const n = dyn.indices.length;
  const batch = fixedBatch(ctx);
  const order = Array.from({ length: n }, (_, j) => j).sort(
    (a, b) => geo.position(dyn.indices[a]!) - geo.position(dyn.indices[b]!),
  );
  const positions = order.map((j) => geo.position(dyn.indices[j]!));
  const delta = new Float32Array((K - 1) * n);
  order.forEach((j, r) => {
    for (let k = 1; k < K; k++) delta[(k - 1) * n + r] = dyn.values[k * n + j]! - dyn.values[j]!;
  });
  const base = fusedKernel(conv, geo, 0);
  addTally(ctx, 'static', 4 * base.length);
  addTally(ctx, 'dynamic', 4 * delta.length);
  let index: Value;
  if (int64Index) {
    addTally(ctx, 'index', 8 * n);
    index = g.initializer(
      `${conv.name}.dynamic_index`,
      int64Tensor(
        BigInt64Array.from(positions, (p) => BigInt(p)),
        [1, 1, 1, n],
      ),
    );
  } else {
    // int32 on disk and in memory; widened per run. The Add of a runtime zero keeps onnxruntime from folding the
    // cast into a resident int64 copy at load time.
    addTally(ctx, 'index', 4 * n);
    const stored = g.initializer(
      `${conv.name}.dynamic_index`,
      int32Tensor(Int32Array.from(positions), [1, 1, 1, n]),
    );
    index = ops.cast(ops.add(stored, ctx.runtimeZeroInt32!()), ONNX_INT64);
  }
  if (batch > 1) {
    const offsets = BigInt64Array.from({ length: batch }, (_, b) => BigInt(b * geo.size));
    index = ops.add(
      index,
      g.initializer(`${conv.name}.sample_offsets`, int64Tensor(offsets, [1, 1, batch, 1])),
    );
  }
  const updates = ops.reshape(
    ops.matmul(
      piTail,
      g.initializer(`${conv.name}.dynamic_delta`, floatTensor(delta, [K - 1, n])),
      `${conv.name}.aggregate`,
    ),
    [1, 1, batch, n],
  );
  const placed = g.op(
    'MaxUnpool',
    [updates, index, ops.i64([1, 1, batch, geo.size])],
    { kernel_shape: [1, 1] },
    { name: `${conv.name}.place` },
  );
  // `placed` first: onnxruntime may then write the sum into its buffer instead of allocating another one.
  return ops.reshape(
    ops.add(
      placed,
      g.initializer(`${conv.name}.base`, floatTensor(base, [1, 1, 1, geo.size])),
      `${conv.name}.weight`,
    ),
    shape,
  );
}

/**
 * The conv's bias: constant, or per sample (BN shift + π · BN-scaled kernels_bias) when kernels_bias exists. A
 * grouped conv (`grouped`, B > 1) takes B·O values: the constant is repeated at run time, so the stored tensor is
 * the same in every bucket graph (they share one weights file).
 */
function convBias(
  ctx: LayerContext,
  conv: FoldedConv,
  storedOut: number,
  pi: Value | null,
  grouped: boolean,
): Value {
  const { g, ops } = ctx;
  const kb = conv.dynamic?.kernelBias;
  const batch = fixedBatch(ctx);
  if (!kb || !pi) {
    addTally(ctx, 'static', 4 * storedOut);
    const bias = g.initializer(
      `${conv.name}.bias`,
      floatTensor(padVector(conv.bias, storedOut), [storedOut]),
    );
    return grouped && batch > 1 ? g.op('Tile', [bias, ops.i64([batch])]) : bias;
  }
  const K = conv.dynamic!.kernels;
  const O = conv.outChannels;
  const rows = new Float32Array(K * storedOut);
  for (let k = 0; k < K; k++)
    for (let o = 0; o < O; o++) rows[k * storedOut + o] = kb[k * O + o]! + conv.bias[o]!;
  addTally(ctx, 'dynamic', 4 * rows.length);
  return ops.reshape(
    ops.matmul(pi, g.initializer(`${conv.name}.kernel_bias`, floatTensor(rows, [K, storedOut]))),
    [batch * storedOut],
  );
}

/**
 * Emits the conv (+ residual sum + ReLU) in the context's layout; returns its output. In a fixed-batch graph
 * (B > 1) `x`, `sum` and the output are in the grouped view: a dynamic conv runs grouped over it, a static conv
 * (one weight for every sample) on the (B, C, H, W) view of the same buffer. `call.batchedIO` (the stem, which
 * reads the graph's input) takes and returns the (B, C, H, W) view instead.
 */
export function emitConv(ctx: LayerContext, call: ConvCall): Value {
  const { g, ops, layout } = ctx;
  const { conv } = call;
  const geo = weightGeometry(layout, conv.outChannels, conv.inChannels, conv.kernel, call.blockedInput);
  const dynamic = conv.dynamic !== null && call.pi !== null;
  const batch = fixedBatch(ctx);
  const grouped = dynamic && batch > 1;
  if (grouped && !call.blockedInput)
    throw new RangeError(`${conv.name}: a dynamic conv reading the graph input needs the per-sample form`);
  const view = (v: Value): Value => (grouped || call.batchedIO ? v : toBatched(ctx, v));
  const unview = (v: Value): Value => (grouped || call.batchedIO ? v : toGrouped(ctx, v));
  let weight: Value;
  if (dynamic) weight = dynamicWeight(ctx, conv, geo, call.pi!);
  else {
    addTally(ctx, 'static', 4 * geo.size);
    weight = g.initializer(
      `${conv.name}.weight`,
      floatTensor(layoutWeight(geo, conv.weight), [geo.storedOut, geo.storedIn, geo.kernel, geo.kernel]),
    );
  }
  const bias = convBias(ctx, conv, geo.storedOut, dynamic ? call.pi : null, grouped);
  const p = conv.padding;
  const attrs = {
    kernel_shape: [conv.kernel, conv.kernel],
    strides: [conv.stride, conv.stride],
    pads: [p, p, p, p],
    ...(grouped ? { group: batch } : {}),
  };
  const x = view(call.x);
  const sum = call.sum ? view(call.sum) : null;
  if (layout.kind === 'nchwc') {
    const inputs = sum ? [x, weight, bias, sum] : [x, weight, bias];
    return unview(
      g.op('Conv', inputs, call.relu ? { ...attrs, activation: 'Relu' } : attrs, {
        domain: NCHWC_DOMAIN,
        name: conv.name,
      }),
    );
  }
  let y = g.op('Conv', [x, weight, bias], attrs, { name: conv.name });
  if (sum) y = ops.add(y, sum, `${conv.name}.residual`);
  return unview(call.relu ? ops.relu(y) : y);
}
