/** Options shared by the family converters (`padserve convert`). */
export interface ConvertOptions {
  /** Model name written into the card (default: basename of the output folder). */
  name?: string;
  /** Labels file, one label per line. */
  labelsFile?: string;
  /** Image preprocessing JSON (ResNet). */
  preprocessFile?: string;
  /** Router temperature override, as given on the command line. */
  temperature?: string;
  /** Graph choices (weight form, budget, buckets, layout, forms; ResNet forms and buckets). */
  graph?: GraphChoice;
}

/** Graph choices of `padserve convert` / `synth` (src/cli/graph-options.ts parses them; docs/resnet-graph.md). */
export interface GraphChoice {
  /** Per-sample weight form of PAD conv layers (default 'auto'). */
  form?: 'auto' | 'dense' | 'scatter' | 'unpool' | 'unpool64';
  /** Stored-weights budget: per layer the fastest form that fits. */
  weightsBudgetBytes?: number;
  /** Bucket sizes of the fixed-batch graphs (default 1, 2, 4, 8). */
  buckets?: number[];
  /** 'probe' = this machine's NCHWc block when onnxruntime has it, else NCHW. */
  layout: 'probe' | { kind: 'nchw' };
  /** Also write the CUDA form. */
  cudaForm: boolean;
}

/** A user-facing conversion error: printed as one line naming the tensor and what was expected. */
export class ConvertError extends Error {
  override name = 'ConvertError';
  readonly userFacing = true;
}
