/**
 * The operator types onnxruntime's CUDA execution provider has kernels for, and checks of a graph against them.
 * A node without a CUDA kernel is placed on the CPU with copies around it, so a graph meant for `--device cuda`
 * (`card.cudaGraph`) must use only these. Ops whose output shape or control flow depends on tensor values have
 * CUDA kernels but make the EP copy data back to the host every run (`CUDA_HOST_SYNC_OPS`); a static-shape CUDA
 * form avoids them too.
 *
 * Source (a data list of op names and opset ranges, nothing else taken): onnxruntime's generated
 * docs/OperatorKernels.md, section "Operators implemented by CUDAExecutionProvider", domains ai.onnx and
 * com.microsoft, as stored at github.com/microsoft/onnxruntime commit 001d12d2623fd411ce0f83d05abb5e82304a3389
 * (the newest copy available to us; it lists ai.onnx kernels up to opset 25, i.e. the 1.2x–1.30 line that
 * onnxruntime-node 1.30 ships; the exact v1.30.0 tag could not be read from here). The internal
 * `com.ms.internal.nhwc` domain (created by onnxruntime's own layout transformer, never in a model file) is left
 * out. Types are not recorded: every graph padserve builds is float32 / int64 / bool, which each listed kernel takes.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { graphFiles, graphFor, type GraphFiles } from '../model/card.js';
import { readModelCard } from '../model/folder.js';
import { DEFAULT_OPSET, onnx, type IModelProto } from '../onnx/proto.js';

/** Opset versions a kernel covers: [since] (open-ended) or [since, until] (inclusive). */
export type OpsetRange = readonly [number] | readonly [number, number];

/** ai.onnx ops with a CUDA kernel, by the earliest (and, where it stops, the last) opset version registered. */
// prettier-ignore
const AI_ONNX: Record<string, OpsetRange> = {
  Abs: [6], Add: [7], Affine: [1], And: [7], ArgMax: [1], ArgMin: [1], Attention: [23], AveragePool: [7],
  BatchNormalization: [7], Cast: [6], Ceil: [6], Clip: [6], Compress: [9], Concat: [4], ConcatFromSequence: [11],
  ConstantOfShape: [9], Conv: [1], ConvTranspose: [1], Cos: [7], Crop: [1], CumSum: [11], DepthToSpace: [1],
  DequantizeLinear: [10], Div: [7], Dropout: [7], DynamicSlice: [1], Einsum: [12], Elu: [6], Equal: [7], Erf: [9],
  Exp: [6], Expand: [8], EyeLike: [9], Flatten: [1], Floor: [6], GRU: [7], Gather: [1], GatherElements: [11],
  GatherND: [11], Gelu: [20], Gemm: [7], GlobalAveragePool: [1], GlobalMaxPool: [1], Greater: [7],
  GreaterOrEqual: [12], GridSample: [16], HardSigmoid: [6], HardSwish: [14], Identity: [1], If: [1],
  ImageScaler: [1], InstanceNormalization: [6], IsInf: [10], IsNaN: [9], LRN: [1], LSTM: [7],
  LayerNormalization: [1], LeakyRelu: [6], Less: [7], LessOrEqual: [12], Log: [6], LogSoftmax: [1], Loop: [1],
  MatMul: [1], MatMulInteger: [10], Max: [6], MaxPool: [1], MemcpyFromHost: [1], MemcpyToHost: [1], Min: [6],
  Mod: [10], Mul: [7], Neg: [6], NonZero: [9], Not: [1], OneHot: [11], Or: [7], PRelu: [7], Pad: [2],
  ParametricSoftplus: [1], Pow: [7], QuantizeLinear: [10], RMSNormalization: [23], RNN: [7], RandomNormal: [1],
  RandomNormalLike: [1], RandomUniform: [1], RandomUniformLike: [1], Range: [11], Reciprocal: [6], ReduceL1: [1],
  ReduceL2: [1], ReduceLogSum: [1], ReduceLogSumExp: [1], ReduceMax: [1], ReduceMean: [1], ReduceMin: [1],
  ReduceProd: [1], ReduceSum: [1], ReduceSumSquare: [1], Relu: [6], Reshape: [1], Resize: [10],
  ReverseSequence: [10], RoiAlign: [10], RotaryEmbedding: [23], Round: [11], ScaledTanh: [1], Scan: [8],
  Scatter: [9, 10], ScatterElements: [11], ScatterND: [11], Selu: [6], SequenceAt: [11], SequenceConstruct: [11],
  SequenceEmpty: [11], SequenceErase: [11], SequenceInsert: [11], SequenceLength: [11], Shape: [1], Shrink: [9],
  Sigmoid: [6], Sign: [13], SimplifiedLayerNormalization: [1], Sin: [7], Size: [1], Slice: [1], Softmax: [1],
  Softplus: [1], Softsign: [1], SpaceToDepth: [1], Split: [2], Sqrt: [6], Squeeze: [1], Sub: [7], Sum: [6],
  Tanh: [6], TensorScatter: [24], ThresholdedRelu: [1], Tile: [6], TopK: [1], Transpose: [1], Trilu: [14],
  Unsqueeze: [1], Upsample: [7, 9], Where: [9], Xor: [7],
};

/** com.microsoft (contrib) ops with a CUDA kernel (all registered at version 1). */
// prettier-ignore
const COM_MICROSOFT = [
  'Attention', 'BeamSearch', 'BiasAdd', 'BiasDropout', 'BiasGelu', 'BiasSoftmax', 'BiasSplitGelu',
  'BitmaskBiasDropout', 'BitmaskDropout', 'ComplexMul', 'ComplexMulConj', 'ConvTransposeWithDynamicPads',
  'DecoderAttention', 'DecoderMaskedMultiHeadAttention', 'DecoderMaskedSelfAttention', 'DequantizeLinear',
  'DequantizeWithOrder', 'DynamicTimeWarping', 'EmbedLayerNormalization', 'FastGelu', 'FusedConv', 'FusedMatMul',
  'GatedRelativePositionBias', 'GatherBlockQuantized', 'Gelu', 'GemmFloat8', 'GemmaRotaryEmbedding', 'GreedySearch',
  'GridSample', 'GroupNorm', 'GroupQueryAttention', 'Inverse', 'Irfft', 'LongformerAttention', 'MatMulBnb4',
  'MatMulNBits', 'MoE', 'MultiHeadAttention', 'NGramRepeatBlock', 'NhwcConv', 'PackedAttention',
  'PackedMultiHeadAttention', 'PagedAttention', 'QAttention', 'QMoE', 'QOrderedAttention', 'QOrderedGelu',
  'QOrderedLayerNormalization', 'QOrderedLongformerAttention', 'QOrderedMatMul', 'QuantizeLinear',
  'QuantizeWithOrder', 'QuickGelu', 'RelativePositionBias', 'RemovePadding', 'RestorePadding', 'Rfft',
  'RotaryEmbedding', 'Sampling', 'SkipGroupNorm', 'SkipLayerNormalization', 'SkipSimplifiedLayerNormalization',
  'SparseAttention', 'TransposeMatMul', 'Trilu', 'UnfoldTensor', 'WhisperBeamSearch',
] as const;

/** Op types by domain ('' is ai.onnx) with the opset versions their CUDA kernels cover. */
export const CUDA_OPS: ReadonlyMap<string, ReadonlyMap<string, OpsetRange>> = new Map([
  ['', new Map(Object.entries(AI_ONNX))],
  ['com.microsoft', new Map(COM_MICROSOFT.map((op) => [op, [1] as const]))],
]);

/**
 * Ops that need no kernel: onnxruntime turns `Constant` nodes into initializers when it loads the graph.
 */
const NO_KERNEL_OPS = new Set(['Constant']);

/**
 * Ops with CUDA kernels whose output shape (NonZero, Compress) or control flow (If, Loop) depends on tensor
 * values: each run copies data to the host and waits for the device. A static-shape CUDA form has none.
 */
export const CUDA_HOST_SYNC_OPS: ReadonlySet<string> = new Set(['NonZero', 'Compress', 'If', 'Loop']);

export interface NodeRef {
  op: string;
  /** '' = ai.onnx. */
  domain: string;
  name: string;
}

type GraphLike = NonNullable<IModelProto['graph']>;

function normalDomain(domain: string | null | undefined): string {
  return !domain || domain === 'ai.onnx' ? '' : domain;
}

/** Whether the CUDA EP has a kernel for `op` of `domain` at opset `version`. */
export function cudaHasKernel(op: string, domain = '', version = DEFAULT_OPSET): boolean {
  const d = normalDomain(domain);
  if (d === '' && NO_KERNEL_OPS.has(op)) return true;
  const range = CUDA_OPS.get(d)?.get(op);
  if (!range) return false;
  return version >= range[0] && (range[1] === undefined || version <= range[1]);
}

function isModel(m: IModelProto | GraphLike): m is IModelProto {
  return 'graph' in m || 'opsetImport' in m;
}

/** Every node of a model (or bare graph), subgraphs of If / Loop / Scan included, with the opset of its domain. */
function* nodesOf(m: IModelProto | GraphLike): Generator<NodeRef & { version: number }> {
  const model = isModel(m) ? m : null;
  const graph = model ? model.graph : (m as GraphLike);
  const versions = new Map<string, number>([['', DEFAULT_OPSET]]);
  for (const o of model?.opsetImport ?? []) versions.set(normalDomain(o.domain), Number(o.version ?? 1));
  const walk = function* (g: GraphLike | null | undefined): Generator<NodeRef & { version: number }> {
    for (const n of g?.node ?? []) {
      const domain = normalDomain(n.domain);
      yield { op: n.opType ?? '', domain, name: n.name ?? '', version: versions.get(domain) ?? 1 };
      for (const a of n.attribute ?? []) {
        if (a.g) yield* walk(a.g);
        for (const sub of a.graphs ?? []) yield* walk(sub);
      }
    }
  };
  yield* walk(graph);
}

/** Nodes the CUDA EP has no kernel for (they would run on the CPU, with copies around them). */
export function cudaUnsupportedNodes(m: IModelProto | GraphLike): NodeRef[] {
  const out: NodeRef[] = [];
  for (const { op, domain, name, version } of nodesOf(m))
    if (!cudaHasKernel(op, domain, version)) out.push({ op, domain, name });
  return out;
}

/** Nodes that make the CUDA EP wait for the device and copy to the host on every run (CUDA_HOST_SYNC_OPS). */
export function cudaHostSyncNodes(m: IModelProto | GraphLike): NodeRef[] {
  const out: NodeRef[] = [];
  for (const { op, domain, name } of nodesOf(m))
    if (domain === '' && CUDA_HOST_SYNC_OPS.has(op)) out.push({ op, domain, name });
  return out;
}

export interface CudaFormReport {
  /** The form `--device cuda` loads: 'cudaGraph', or 'graph' when the card has no CUDA form. */
  form: 'cudaGraph' | 'graph';
  files: { file: string; unsupported: NodeRef[]; hostSync: NodeRef[] }[];
}

/**
 * Checks the graph files a model folder's `--device cuda` load would use (`graphFor(card, 'cuda')`): every
 * bucket graph, or the one graph. Reads only the graph files (external weights are not touched).
 */
export function checkCudaForm(dir: string): CudaFormReport {
  const card = readModelCard(dir);
  const form: GraphFiles = graphFor(card, 'cuda');
  return {
    form: card.cudaGraph ? 'cudaGraph' : 'graph',
    files: graphFiles(form).map((file) => {
      const model = onnx.ModelProto.decode(readFileSync(join(dir, file)));
      return { file, unsupported: cudaUnsupportedNodes(model), hostSync: cudaHostSyncNodes(model) };
    }),
  };
}
