/**
 * PAD-MoE linears as ONNX subgraphs. Every strategy computes, per token t of the flattened (T, d_in) input
 * (padding included, no capacity limit, no noise):
 *
 *     logits_t = x_t · w_gate;  (idx, v) = top-k(logits_t);  g = softmax(v)
 *     y_t = Σ_j g_j · (W'_{idx_j} x_t + b_{idx_j}),   W'_e = λ_d·M⊙W_e + λ_s·(1−M)⊙W_s
 *
 * Strategies (measured on full-size BERT-base in docs/bert-graph.md; `routed` is the default):
 * - `routed`    (a) fused W'_e stored per expert; each expert gathers its tokens (NonZero + GatherND), runs one
 *               Gemm, scales by the gate and scatter-adds back (ScatterND add). k·N MACs per token, 8N stored.
 * - `split`     (b) dense static S·x for every token + per expert the dynamic part D_e (stored dense, zeros
 *               where static). (1 + k)·N MACs per token, 9N stored.
 * - `packed`    (c) only the dynamic entries (E·n_d), the static entries (n_s) and a bool mask are stored; W'_e is
 *               expanded at run time (CumSum ranks + Gather + Where), then routed as (a). ~4.75N stored, but an
 *               8N expansion per run. The expansion hangs off a runtime guard so onnxruntime cannot constant-fold
 *               it back into dense initializers.
 * - `dense-all` (d) every expert on every token, then gated: E·N MACs per token (baseline only).
 * - `all-experts` the CUDA form: every expert's Gemm on every token over the same fused `W'_e` initializers as
 *               `routed` (so both forms read one weights file), each scaled by its gate column (0 for unselected
 *               experts) and summed. E·N MACs per token, but static shapes: no NonZero, no host syncs. Exact
 *               against `routed`: an unselected expert adds g·y = 0, and adding zeros does not round.
 */
import type { GraphBuilder, Value } from '../../onnx/builder.js';
import type { Ops } from '../../onnx/ops.js';
import { floatTensor, int64Tensor, int32Tensor, type FloatTensor, type HostTensor } from '../../tensor.js';
import type { DenseLinear, PadMoeLinear } from './spec.js';

export type MoeStrategy = 'routed' | 'split' | 'packed' | 'dense-all' | 'all-experts';
export const MOE_STRATEGIES: readonly MoeStrategy[] = [
  'routed',
  'split',
  'packed',
  'dense-all',
  'all-experts',
];
/** Strategies whose graphs have data-dependent shapes (NonZero per expert): they get a separate CUDA form. */
export const HOST_SYNC_STRATEGIES: ReadonlySet<MoeStrategy> = new Set(['routed', 'split', 'packed']);

/** Router top-k indices of one linear, exposed as a float32 debug output (T, k). */
export type RoutingTap = (linearName: string, topIndices: Value) => void;

const ONNX_INT32 = 6;

/** λ as the PyTorch float32 forward has it (sigmoid in float32, then 2 − λ_d in float32). */
export function lambdas(lin: PadMoeLinear): { dynamic: number; static: number } {
  const dynamic = Math.fround(lin.lambdaDynamic);
  return { dynamic, static: Math.fround(2 - dynamic) };
}

/**
 * The fused weights computed so far, per linear: the CPU form and the CUDA form of one conversion hold the same
 * tensor objects (no second 8N copy in memory; the folder writer stores them once, in the CPU form's data file).
 * Keyed weakly by the linear, so the cache lives exactly as long as the parsed model.
 */
const fusedCache = new WeakMap<PadMoeLinear, FloatTensor[]>();

/** W'_e = λ_d·M⊙W_e + λ_s·(1−M)⊙W_s in (d_out, d_in) layout; entries are single float32 products, as in torch. */
export function fusedExpertWeight(lin: PadMoeLinear, e: number): FloatTensor {
  let cached = fusedCache.get(lin);
  if (!cached) fusedCache.set(lin, (cached = []));
  return (cached[e] ??= computeFusedWeight(lin, e));
}

function computeFusedWeight(lin: PadMoeLinear, e: number): FloatTensor {
  const { dynamic: ld, static: ls } = lambdas(lin);
  const w = lin.experts[e]!.weight.data;
  const m = lin.mask.data;
  const s = lin.staticWeight?.data;
  const out = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = m[i] === 1 ? ld * w[i]! : ls * s![i]!;
  return floatTensor(out, [lin.dOut, lin.dIn]);
}

/** λ_d·M⊙W_e only (zeros at static entries), (d_out, d_in). */
function dynamicPart(lin: PadMoeLinear, e: number): FloatTensor {
  const { dynamic: ld } = lambdas(lin);
  const w = lin.experts[e]!.weight.data;
  const m = lin.mask.data;
  const out = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) if (m[i] === 1) out[i] = ld * w[i]!;
  return floatTensor(out, [lin.dOut, lin.dIn]);
}

/** λ_s·(1−M)⊙W_s, (d_out, d_in). */
function staticPart(lin: PadMoeLinear): FloatTensor {
  const { static: ls } = lambdas(lin);
  const s = lin.staticWeight!.data;
  const m = lin.mask.data;
  const out = new Float32Array(s.length);
  for (let i = 0; i < s.length; i++) if (m[i] === 0) out[i] = ls * s[i]!;
  return floatTensor(out, [lin.dOut, lin.dIn]);
}

/** Row-major (rows, cols) → (cols, rows), in cache-friendly tiles. */
export function transposed(t: FloatTensor): FloatTensor {
  const [rows, cols] = t.shape as [number, number];
  const src = t.data;
  const out = new Float32Array(src.length);
  const tile = 64;
  for (let r0 = 0; r0 < rows; r0 += tile) {
    for (let c0 = 0; c0 < cols; c0 += tile) {
      const rEnd = Math.min(rows, r0 + tile);
      const cEnd = Math.min(cols, c0 + tile);
      for (let r = r0; r < rEnd; r++) for (let c = c0; c < cEnd; c++) out[c * rows + r] = src[r * cols + c]!;
    }
  }
  return floatTensor(out, [cols, rows]);
}

/** y = x·Wᵀ + b for a plain linear (Gemm with transB: onnxruntime prepacks the constant weight). */
export function denseLinear(
  ops: Ops,
  x: Value,
  lin: DenseLinear | { name: string; linear: { weight: FloatTensor; bias: FloatTensor } },
): Value {
  const w = ops.g.initializer(`${lin.name}.weight`, lin.linear.weight);
  const b = ops.g.initializer(`${lin.name}.bias`, lin.linear.bias);
  return ops.gemm(x, w, b, { transB: true }, lin.name);
}

interface Routing {
  /** (T, E): softmax over the k selected logits at their experts, 0 elsewhere. */
  gates: Value;
  topIndices: Value;
}

function route(ops: Ops, x: Value, lin: PadMoeLinear, topK: number): Routing {
  const logits = ops.matmul(x, ops.g.initializer(`${lin.name}.w_gate`, lin.gate), `${lin.name}.router`);
  const [values, topIndices] = ops.topK(logits, topK);
  const weights = ops.softmax(values, -1);
  const zeros = ops.constantOfShape(ops.shape(logits));
  return { gates: ops.scatterElements(zeros, topIndices, weights, 1), topIndices };
}

/** Small constants shared by every linear of one graph (index scalars, the float zero). */
const sharedConstants = new WeakMap<GraphBuilder, Map<string, Value>>();

function shared(g: GraphBuilder, key: string, make: () => HostTensor): Value {
  let cache = sharedConstants.get(g);
  if (!cache) sharedConstants.set(g, (cache = new Map()));
  let v = cache.get(key);
  if (!v) cache.set(key, (v = g.initializer(key, make())));
  return v;
}

type ExpertWeights = (e: number) => { weight: Value; bias: Value };

/**
 * Per expert: its routed tokens (gate > 0) gathered, one Gemm, scaled by the gate, scatter-added into `acc`.
 * Selecting on gate > 0 rather than on the top-k indices is exact: a selected gate that underflows to 0 would
 * contribute 0·(W x + b) = 0 anyway.
 */
function dispatchToExperts(
  ops: Ops,
  x: Value,
  gates: Value,
  experts: number,
  weightsOf: ExpertWeights,
  acc: Value,
  name: string,
): Value {
  const g = ops.g;
  const zero = shared(g, 'zero_f32', () => floatTensor([0], []));
  for (let e = 0; e < experts; e++) {
    const gate = ops.gather(
      gates,
      shared(g, `expert_index_${e}`, () => int64Tensor([e], [])),
      1,
    ); // (T,)
    // (n_e, 1) token indices: exactly the index shape GatherND / ScatterND take.
    const tokens = ops.transpose(ops.nonZero(ops.greater(gate, zero)), [1, 0]);
    const xe = ops.gatherND(x, tokens);
    const ge = ops.unsqueeze(ops.gatherND(gate, tokens), [1]);
    const { weight, bias } = weightsOf(e);
    const ye = ops.mul(ops.gemm(xe, weight, bias, { transB: true }, `${name}.expert${e}`), ge);
    acc = ops.scatterND(acc, tokens, ye, 'add');
  }
  return acc;
}

function zerosLike(ops: Ops, x: Value, dOut: number): Value {
  const shape = ops.concat([ops.shape(x, 0, 1), ops.i64([dOut])], 0);
  return ops.constantOfShape(shape);
}

function biasOf(g: GraphBuilder, lin: PadMoeLinear, e: number): Value {
  return g.initializer(`${lin.name}.experts.${e}.dense.bias`, lin.experts[e]!.bias);
}

/** The PAD-MoE linear on x (T, d_in) → (T, d_out) with the chosen strategy. */
export function padMoeLinear(
  ops: Ops,
  x: Value,
  lin: PadMoeLinear,
  topK: number,
  strategy: MoeStrategy,
  tap?: RoutingTap,
): Value {
  const g = ops.g;
  const { gates, topIndices } = route(ops, x, lin, topK);
  tap?.(lin.name, topIndices);
  const experts = lin.experts.length;
  const staticEntries = lin.mask.data.length - lin.dynamicEntries;
  // Degenerate masks (all dynamic: the MoE baseline; all static) have nothing to split or pack.
  const effective =
    (strategy === 'split' || strategy === 'packed') && (lin.dynamicEntries === 0 || staticEntries === 0)
      ? 'routed'
      : strategy;

  switch (effective) {
    case 'routed': {
      const weightsOf: ExpertWeights = (e) => ({
        weight: g.initializer(`${lin.name}.experts.${e}.fused_weight`, fusedExpertWeight(lin, e)),
        bias: biasOf(g, lin, e),
      });
      return dispatchToExperts(ops, x, gates, experts, weightsOf, zerosLike(ops, x, lin.dOut), lin.name);
    }
    case 'split': {
      const staticOut = ops.gemm(
        x,
        g.initializer(`${lin.name}.static_part`, staticPart(lin)),
        null,
        { transB: true },
        `${lin.name}.static`,
      );
      const weightsOf: ExpertWeights = (e) => ({
        weight: g.initializer(`${lin.name}.experts.${e}.dynamic_part`, dynamicPart(lin, e)),
        bias: biasOf(g, lin, e),
      });
      return dispatchToExperts(ops, x, gates, experts, weightsOf, staticOut, lin.name);
    }
    case 'packed':
      return packedLinear(ops, x, gates, lin);
    case 'dense-all':
      return denseAllExperts(ops, x, gates, lin);
    case 'all-experts':
      return gatedAllExperts(ops, x, gates, lin);
  }
}

/**
 * Every expert on every token with the routed form's own initializers: Gemm(x, W'_e, b_e) · gates[:, e], summed
 * over e. Shapes depend only on the input's, never on the routing.
 */
function gatedAllExperts(ops: Ops, x: Value, gates: Value, lin: PadMoeLinear): Value {
  const g = ops.g;
  const experts = lin.experts.length;
  const columns = g.node('Split', [gates], { axis: 1 }, { outputs: experts, name: `${lin.name}.gate` }); // E × (T, 1)
  const terms = lin.experts.map((_, e) => {
    const weight = g.initializer(`${lin.name}.experts.${e}.fused_weight`, fusedExpertWeight(lin, e));
    const y = ops.gemm(x, weight, biasOf(g, lin, e), { transB: true }, `${lin.name}.expert${e}`);
    return ops.mul(y, columns[e]!);
  });
  return g.op('Sum', terms, {}, { name: `${lin.name}.sum` });
}

/** Packed storage: the entries of W'_e in mask order (static values once, dynamic values per expert). */
export function packLinear(lin: PadMoeLinear): {
  staticValues: FloatTensor;
  dynamicValues: FloatTensor[];
  mask: HostTensor<'bool'>;
} {
  const { dynamic: ld, static: ls } = lambdas(lin);
  const m = lin.mask.data;
  const n = m.length;
  const nd = lin.dynamicEntries;
  const staticValues = new Float32Array(n - nd);
  const s = lin.staticWeight!.data;
  const maskBytes = new Uint8Array(n);
  for (let i = 0, j = 0; i < n; i++) {
    if (m[i] === 1) maskBytes[i] = 1;
    else staticValues[j++] = ls * s[i]!;
  }
  const dynamicValues = lin.experts.map(({ weight }) => {
    const out = new Float32Array(nd);
    const w = weight.data;
    for (let i = 0, j = 0; i < n; i++) if (m[i] === 1) out[j++] = ld * w[i]!;
    return floatTensor(out, [nd]);
  });
  return {
    staticValues: floatTensor(staticValues, [n - nd]),
    dynamicValues,
    mask: { dtype: 'bool', shape: [n], data: maskBytes },
  };
}

function packedLinear(ops: Ops, x: Value, gates: Value, lin: PadMoeLinear): Value {
  const g = ops.g;
  const packed = packLinear(lin);
  const maskConst = g.initializer(`${lin.name}.mask_bool`, packed.mask);
  // A runtime `true` (T > −1): everything downstream depends on the input, so it is computed per run. Without it
  // onnxruntime constant-folds the expansion at load and holds the folded intermediates and prepacked copies
  // (measured: 416 MB for one 768×3072, E = 8 linear whose dense experts are 72 MB).
  const alwaysTrue = ops.greater(ops.shape(x, 0, 1), ops.i64([-1]));
  const mask = g.op('And', [maskConst, alwaysTrue]);
  const one = shared(g, 'one_i32', () => int32Tensor([1], []));
  const rank = (bits: Value) => ops.sub(ops.cumSum(ops.cast(bits, ONNX_INT32), ops.i64([0])), one);
  const dynamicIndex = rank(mask);
  const staticIndex = rank(g.op('Not', [mask]));
  const staticFull = ops.gather(g.initializer(`${lin.name}.static_values`, packed.staticValues), staticIndex);
  const shape = ops.i64([lin.dOut, lin.dIn]);
  const weightsOf: ExpertWeights = (e) => {
    const dynamicFull = ops.gather(
      g.initializer(`${lin.name}.experts.${e}.dynamic_values`, packed.dynamicValues[e]!),
      dynamicIndex,
    );
    return {
      weight: ops.reshapeTo(ops.where(mask, dynamicFull, staticFull), shape),
      bias: biasOf(g, lin, e),
    };
  };
  return dispatchToExperts(
    ops,
    x,
    gates,
    lin.experts.length,
    weightsOf,
    zerosLike(ops, x, lin.dOut),
    lin.name,
  );
}

function denseAllExperts(ops: Ops, x: Value, gates: Value, lin: PadMoeLinear): Value {
  const g = ops.g;
  const e = lin.experts.length;
  const stacked = new Float32Array(e * lin.dIn * lin.dOut);
  const biases = new Float32Array(e * lin.dOut);
  for (let i = 0; i < e; i++) {
    // Uncached: the stacked copy is what this graph stores, so the fused tensors need not outlive the loop.
    stacked.set(transposed(computeFusedWeight(lin, i)).data, i * lin.dIn * lin.dOut);
    biases.set(lin.experts[i]!.bias.data, i * lin.dOut);
  }
  const w = g.initializer(`${lin.name}.experts_stacked`, floatTensor(stacked, [e, lin.dIn, lin.dOut]));
  const b = g.initializer(`${lin.name}.biases_stacked`, floatTensor(biases, [e, 1, lin.dOut]));
  const all = ops.add(ops.matmul(x, w), b); // (E, T, d_out)
  const weights = ops.unsqueeze(ops.transpose(gates, [1, 0]), [2]); // (E, T, 1)
  return ops.reduceSum(ops.mul(all, weights), [0], false);
}
