/**
 * The model card: `config.json` inside a model folder, as `padserve convert` / `padserve synth` write it and the
 * runtime and the server's model repository read it. One schema for both families; family-specific parts are
 * tagged unions. Everything the runtime needs to feed and decode the graph is here, nothing is guessed.
 */
import type { DType } from '../tensor.js';

export const MODEL_CARD_FORMAT = 'padserve-model';
export const MODEL_CARD_VERSION = 1;

export type Dim = number | string;

export interface TensorSpec {
  name: string;
  dtype: DType;
  /** Fixed sizes or symbolic names ("batch", "sequence"). */
  shape: Dim[];
}

/** Where the weights came from: said plainly in responses' metadata and the README. */
export type WeightSource =
  | { kind: 'checkpoint'; path: string; format: 'torch-zip' | 'safetensors'; sha256: string }
  | { kind: 'synthetic'; generator: string; seed: number; note: string };

export interface GraphFiles {
  /** The ONNX graph, relative to the model folder. */
  file: string;
  /** External-data file, if the weights are stored outside the graph. */
  dataFile: string | null;
  opset: number;
  /** Bytes of all initializers (the stored weights). */
  initializerBytes: number;
  /** Number of stored weight values (parameters after folding). */
  parameters: number;
  /** sha256 over the initializers (names, dtypes, shapes, bytes). */
  weightsSha256: string;
  /**
   * Largest batch one run of the graph takes; larger batches are split by the runtime. null = unlimited.
   * Lets a family use a per-sample form where that is fastest without callers knowing.
   */
  maxRunBatch: number | null;
  /**
   * Fixed-batch graphs (absent: `file` takes any batch up to `maxRunBatch`). Each bucket graph takes exactly
   * `batch` rows and all of them read the one `dataFile`, so the weights are resident once however many buckets
   * are loaded. The runtime pads a batch up to the smallest bucket that holds it and splits batches beyond the
   * largest (docs/resnet-graph.md, "Buckets"). `file` is then the smallest bucket's graph.
   */
  buckets?: GraphBucket[];
  /** How the dynamic layers are built, e.g. 'nchwc grouped unpool' (informational; shown in metadata). */
  form?: string;
}

export interface GraphBucket {
  batch: number;
  file: string;
}

/** How raw images become the model's input tensor (issue: per-model preprocessing). */
export interface ImagePreprocessSpec {
  /** Model input size (height = width). */
  size: number;
  /** 'shorter-side-then-center-crop' resizes the shorter side to `resizeShorter` then crops `size`; 'direct' resizes to size×size. */
  resize: 'shorter-side-then-center-crop' | 'direct';
  resizeShorter?: number;
  /** Resampling filter. 'pil-bilinear' reproduces Pillow's BILINEAR (antialiased triangle filter) exactly. */
  kernel: 'pil-bilinear' | 'pil-bicubic' | 'nearest' | 'sharp-linear';
  /** gray → 3 channels by replication, alpha dropped (not composited). */
  channels: 'rgb';
  mean: [number, number, number];
  std: [number, number, number];
  /** Pixel scale before mean/std (1/255). */
  scale: number;
}

export interface ResNetArchitecture {
  block: 'bottleneck' | 'basic';
  blocks: number[];
  stemChannels: number;
  widths: number[];
  expansion: number;
  numClasses: number;
  kernels: number;
  temperature: number;
  /** Number of PAD conv layers. */
  padConvs: number;
}

export interface BertArchitecture {
  hiddenSize: number;
  layers: number;
  heads: number;
  intermediateSize: number;
  vocabSize: number;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  experts: number;
  topK: number;
  /** 'pad' linears, 'dense' (ordinary), or 'moe' (all experts fully dynamic). */
  ffn: 'pad' | 'dense' | 'moe';
}

/**
 * The graph's optional telemetry output (after the primary outputs; fetched only when asked for, so it costs
 * nothing otherwise). 'router_probs': float32 [batch, layers, K], the π of every dynamic conv in `layers` order.
 * 'expert_tokens': float32 [batch, layers, E], per sequence and PAD-MoE linear the number of real
 * (attention_mask = 1) tokens routed to each expert (every top-k selection counts).
 */
export interface TelemetrySpec {
  output: string;
  kind: 'router_probs' | 'expert_tokens';
  layers: string[];
  /** K (kernels) or E (experts). */
  width: number;
  /** Experts selected per token ('expert_tokens' only). */
  topK?: number;
}

interface CardBase {
  format: typeof MODEL_CARD_FORMAT;
  formatVersion: typeof MODEL_CARD_VERSION;
  name: string;
  /** 'pad' = PAD-Net; 'static' / 'dense' = no dynamic part; 'dyconv' / 'moe' = fully dynamic baseline. */
  variant: 'pad' | 'static' | 'dyconv' | 'dense' | 'moe';
  source: WeightSource;
  /** The CPU form (the default). */
  graph: GraphFiles;
  /**
   * The CUDA form, where one was built: every node has a CUDA kernel in onnxruntime 1.30 (no com.microsoft.nchwc
   * ops, no MaxUnpool, no NonZero). `--device cuda` loads it; absent, `--device cuda` loads `graph`.
   */
  cudaGraph?: GraphFiles;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  labels: string[];
  /** Realised dynamic ratio overall and per dynamic layer (fraction of mask entries that are 1). */
  dynamic: { ratio: number; layers: { name: string; ratio: number; entries: number }[] };
  /** Optional telemetry output of the graph (absent: static / dense models and older folders). */
  telemetry?: TelemetrySpec;
  createdBy: string;
}

export interface ResNetCard extends CardBase {
  family: 'resnet';
  architecture: ResNetArchitecture;
  preprocess: ImagePreprocessSpec;
}

export interface BertCard extends CardBase {
  family: 'bert';
  architecture: BertArchitecture;
  problemType: 'single_label_classification' | 'regression';
  /** GLUE task this head was trained for, if known. */
  task: string | null;
  tokenizer: { vocab: 'bert-base-uncased'; lowercase: true; maxLength: number };
}

export type ModelCard = ResNetCard | BertCard;

export const IMAGENET_PREPROCESS: ImagePreprocessSpec = {
  size: 224,
  resize: 'shorter-side-then-center-crop',
  resizeShorter: 256,
  kernel: 'pil-bilinear',
  channels: 'rgb',
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
  scale: 1 / 255,
};

/** The graph form a device loads: the CUDA form where the card has one, else the CPU form. */
export function graphFor(card: ModelCard, device: 'cpu' | 'cuda'): GraphFiles {
  return device === 'cuda' && card.cudaGraph ? card.cudaGraph : card.graph;
}

/** Every graph file of a form: the bucket graphs, or the one graph. */
export function graphFiles(graph: GraphFiles): string[] {
  return graph.buckets ? graph.buckets.map((b) => b.file) : [graph.file];
}
