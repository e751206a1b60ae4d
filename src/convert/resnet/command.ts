/**
 * `padserve convert <checkpoint>` for PAD-Net ResNets: read → infer/validate (spec.ts) → fold (fold.ts) → graph
 * (graph.ts) → model folder. `convertResNetTensors` is the pure core shared with synth and the tests; the
 * command adds file reading, labels/preprocessing options, the layout probe and the one-line summary.
 * A checkpoint holding a single PAD conv layer (tensor names without a module path, as the padconv-layers
 * fixtures) becomes a one-layer model folder with input `x` and output `y` (`convertPadConvLayer`).
 */
import { basename } from 'node:path';
import type { ModelCard, WeightSource, ImagePreprocessSpec } from '../../model/card.js';
import { IMAGENET_PREPROCESS } from '../../model/card.js';
import { writeModelFolder, writeModelForms, type CardDraft, type GraphForm } from '../../model/folder.js';
import type { HostTensor } from '../../tensor.js';
import { CheckpointError, readCheckpoint, type Checkpoint } from '../checkpoint/index.js';
import { ConvertError, type ConvertOptions, type GraphChoice } from '../options.js';
import { readLabels, readPreprocess, resnetCardDraft, variantOf } from './card.js';
import { foldPadConv, foldResNet } from './fold.js';
import {
  buildPadConvLayerGraph,
  buildResNetGraph,
  hasDynamicConvs,
  ROUTER_PROBS_OUTPUT,
  type BuiltGraph,
} from './graph.js';
import type { Layout } from './layout.js';
import { probeNchwcBlock } from './layout-probe.js';
import type { DynamicForm } from './padconv.js';
import { formsForBudget } from './budget.js';
import { foldedConvs } from './fold.js';
import {
  checkpointParameters,
  inferPadConvLayer,
  inferResNetSpec,
  stripModulePrefix,
  type ResNetSpec,
} from './spec.js';

export interface ResNetConvertOptions {
  name: string;
  source: WeightSource;
  /** --temperature override (string, validated). */
  temperature?: string;
  /** Labels, or a --labels file to read them from (checked against the class count); default: see readLabels. */
  labels?: string[];
  labelsFile?: string;
  preprocess?: ImagePreprocessSpec;
  /** Layout of per-sample graphs; 'nchw' (portable) unless the caller probed onnxruntime (see probeLayout). */
  layout?: Layout;
  /** Per-sample weight form for partially dynamic convs (docs/resnet-graph.md). */
  form?: DynamicForm;
  /**
   * Bucket sizes of the fixed-batch graphs when the network has dynamic convs (ascending), for every form written.
   * Default: DEFAULT_BUCKETS for the CPU form, DEFAULT_CUDA_BUCKETS for the CUDA form. [1] is the per-sample form
   * (the runtime runs a batch as single-sample runs).
   */
  buckets?: number[];
  /** Per-model stored-weights budget in bytes: per layer the fastest form that fits (budget.ts). */
  weightsBudgetBytes?: number;
  /** Also write the CUDA form (plain NCHW, dense weights: every op has a CUDA kernel). */
  cudaForm?: boolean;
  createdBy?: string;
}

/**
 * CPU form: per sample by default. Grouped bucket graphs measured no faster per image on the 2-core reference
 * machine (full-size PAD ResNet-50, interleaved, best of 6: 97.6 ms/img as one batch-8 grouped run vs 98.2 as
 * eight per-sample runs; the grouped convs run 2× slower per image than batched static convs while the per-sample
 * weights leave the cache), and their arenas hold ~4× the RSS (docs/resnet-graph.md, "Buckets: measured"), so
 * they are opt-in on the CPU (`--buckets 1,2,4,8`).
 */
export const DEFAULT_BUCKETS: readonly number[] = [1];
/** CUDA form: the whole batch in one run is what a GPU needs; powers of two up to the default max_batch_size. */
export const DEFAULT_CUDA_BUCKETS: readonly number[] = [1, 2, 4, 8];

export interface ConvertedResNet {
  spec: ResNetSpec;
  /** The graph of the first bucket (or the one any-batch graph of a static network). */
  built: BuiltGraph;
  /** Bucket sizes of the CPU form (empty for a static network, whose one graph takes any batch). */
  buckets: number[];
  /** Bucket sizes of the CUDA form. */
  cudaBuckets: number[];
  /** Builds the graph of another bucket (same weights; `layout`/`forms` override for the CUDA form). */
  build(batch: number, target?: 'cpu' | 'cuda'): BuiltGraph;
  draft: CardDraft;
  /** Stored weight values (floats, indices excluded). */
  parameters: number;
  cudaForm: boolean;
}

/** The form measured fastest for partially dynamic layers (docs/resnet-graph.md). */
export const DEFAULT_FORM: DynamicForm = 'auto';

/** NCHWc with this machine's block when onnxruntime has it, else plain NCHW. */
export async function probeLayout(): Promise<Layout> {
  const block = await probeNchwcBlock();
  return block ? { kind: 'nchwc', block } : { kind: 'nchw' };
}

export function layoutName(layout: Layout): string {
  return layout.kind === 'nchwc' ? `nchwc${layout.block}` : 'nchw';
}

/** Pure: state dict + metadata → graph builder + card draft. */
export function convertResNetTensors(
  tensors: Map<string, HostTensor>,
  metadata: Record<string, string>,
  opts: ResNetConvertOptions,
): ConvertedResNet {
  const spec = inferResNetSpec(tensors, metadata, opts.temperature);
  const net = foldResNet(spec);
  const layout = opts.layout ?? { kind: 'nchw' };
  const form = opts.form ?? DEFAULT_FORM;
  const layerForms =
    opts.weightsBudgetBytes === undefined
      ? undefined
      : formsForBudget(foldedConvs(net), layout, opts.weightsBudgetBytes);
  const dynamic = hasDynamicConvs(net);
  const buckets = dynamic ? validBuckets(opts.buckets ?? [...DEFAULT_BUCKETS]) : [];
  const cudaBuckets = dynamic ? validBuckets(opts.buckets ?? [...DEFAULT_CUDA_BUCKETS]) : [];
  const graphName = opts.name.replace(/[^A-Za-z0-9_]/g, '_') || 'resnet';
  const build = (batch: number, target: 'cpu' | 'cuda' = 'cpu'): BuiltGraph =>
    target === 'cuda'
      ? buildResNetGraph(net, { layout: { kind: 'nchw' }, form: 'dense', batch }, graphName)
      : buildResNetGraph(net, { layout, form, batch, layerForms }, graphName);
  const built = build(buckets[0] ?? 1);
  const labels = opts.labels ?? readLabels(opts.labelsFile, spec.numClasses);
  if (labels.length !== spec.numClasses)
    throw new ConvertError(`labels: ${labels.length} labels for a model with ${spec.numClasses} classes`);
  const draft = resnetCardDraft(spec, {
    name: opts.name,
    source: opts.source,
    labels,
    preprocess: opts.preprocess ?? IMAGENET_PREPROCESS,
    createdBy: opts.createdBy ?? 'padserve convert',
  });
  if (built.telemetryLayers.length)
    draft.telemetry = {
      output: ROUTER_PROBS_OUTPUT,
      kind: 'router_probs',
      layers: built.telemetryLayers,
      width: spec.kernels,
    };
  const parameters = Math.round((built.bytes.static + built.bytes.dynamic + built.bytes.router) / 4);
  return {
    spec,
    built,
    buckets,
    cudaBuckets,
    build,
    draft,
    parameters,
    cudaForm: opts.cudaForm ?? false,
  };
}

function validBuckets(buckets: number[]): number[] {
  if (
    !buckets.length ||
    buckets.some((b, i) => !Number.isInteger(b) || b < 1 || (i > 0 && b <= buckets[i - 1]!))
  )
    throw new ConvertError(
      `buckets: expected ascending positive integers such as 1,2,4,8, got ${buckets.join(',')}`,
    );
  return buckets;
}

/** Describes a form for the card and the summary line, e.g. "nchwc16 per-sample, weights: auto". */
export function formName(built: BuiltGraph, buckets: readonly number[]): string {
  if (built.maxRunBatch === null) return 'static, batched';
  const batching = buckets.length === 1 && buckets[0] === 1 ? 'per-sample' : 'grouped';
  return `${layoutName(built.layout)} ${batching}, weights: ${built.layerForms ? 'budget' : built.form}`;
}

/** The model folder: the bucket graphs (one weights file), or the one graph of a static network; + CUDA form. */
export function writeConverted(outDir: string, converted: ConvertedResNet): ModelCard {
  const { built, buckets } = converted;
  if (!buckets.length)
    return writeModelFolder(outDir, built.graph, converted.draft, {
      maxRunBatch: null,
      parameters: converted.parameters,
      form: formName(built, []),
    });
  const form = (target: 'cpu' | 'cuda'): GraphForm => ({
    stem: target === 'cpu' ? 'model' : 'model.cuda',
    buckets: (target === 'cpu' ? buckets : converted.cudaBuckets).map((batch, i) => ({
      batch,
      build: () => (i === 0 && target === 'cpu' ? built : converted.build(batch, target)).graph,
    })),
    parameters: target === 'cpu' ? converted.parameters : undefined,
    form: target === 'cpu' ? formName(built, buckets) : 'nchw grouped, weights: dense (CUDA form)',
  });
  return writeModelForms(outDir, converted.draft, form('cpu'), converted.cudaForm ? form('cuda') : undefined);
}

function millions(n: number): string {
  return `${(n / 1e6).toFixed(n >= 1e7 ? 1 : 2)}M`;
}

export function summaryLine(c: ConvertedResNet, card: ModelCard): string {
  const { spec, built } = c;
  const arch = `${spec.block} [${spec.blocks.join(',')}] widths ${spec.widths.join('/')} stem ${spec.stemChannels} K=${spec.kernels} τ=${spec.temperature} ${spec.numClasses} classes`;
  const form =
    built.maxRunBatch === null
      ? 'static, batched'
      : `${formName(built, c.buckets)}, buckets ${c.buckets.join(',')}`;
  return (
    `resnet ${variantOf(spec)}: ${arch}; ${spec.padConvs.length} PAD convs, ${(100 * spec.dynamicRatio).toFixed(1)}% dynamic; ` +
    `checkpoint ${millions(checkpointParameters(spec))} params → stored ${millions(c.parameters)}; graph ${(card.graph.initializerBytes / 2 ** 20).toFixed(1)} MiB (${form})`
  );
}

/** A lone PAD conv layer as a model: input `x` [1, I, H, W] → output `y` (no BatchNorm). */
export function convertPadConvLayer(
  tensors: Map<string, HostTensor>,
  metadata: Record<string, string>,
  opts: ResNetConvertOptions,
): { form: GraphForm; draft: CardDraft; outChannels: number } {
  const { conv, temperature } = inferPadConvLayer(tensors, metadata, opts.temperature);
  const folded = foldPadConv(conv, null, temperature);
  const layout = opts.layout ?? { kind: 'nchw' };
  const weightForm = opts.form ?? DEFAULT_FORM;
  const buckets = validBuckets(opts.buckets ?? [...DEFAULT_BUCKETS]);
  const batching = buckets.length === 1 && buckets[0] === 1 ? 'per-sample' : 'grouped';
  const form: GraphForm = {
    stem: 'model',
    buckets: buckets.map((batch) => ({
      batch,
      build: () => buildPadConvLayerGraph(folded, layout, weightForm, batch),
    })),
    form: `${layoutName(layout)} ${batching}, weights: ${weightForm}`,
  };
  const ratio = conv.dynamicEntries / conv.mask.length;
  const draft: CardDraft = {
    family: 'resnet',
    name: opts.name,
    variant: ratio === 0 ? 'static' : ratio === 1 ? 'dyconv' : 'pad',
    source: opts.source,
    inputs: [{ name: 'x', dtype: 'float32', shape: ['batch', conv.inChannels, 'height', 'width'] }],
    outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', conv.outChannels, 'out_height', 'out_width'] }],
    labels: [],
    dynamic: { ratio, layers: [{ name: 'padconv', ratio, entries: conv.mask.length }] },
    createdBy: opts.createdBy ?? 'padserve convert',
    architecture: {
      block: 'basic',
      blocks: [],
      stemChannels: 0,
      widths: [],
      expansion: 1,
      numClasses: 0,
      kernels: conv.kernels,
      temperature,
      padConvs: 1,
    },
    preprocess: opts.preprocess ?? IMAGENET_PREPROCESS,
  };
  return { form, draft, outChannels: conv.outChannels };
}

async function read(input: string): Promise<Checkpoint> {
  try {
    return await readCheckpoint(input);
  } catch (err) {
    if (err instanceof CheckpointError) throw new ConvertError(err.message);
    throw err;
  }
}

export async function convertCommand(
  input: string,
  outDir: string,
  opts: ConvertOptions,
): Promise<ModelCard> {
  const checkpoint = await read(input);
  const source: WeightSource = {
    kind: 'checkpoint',
    path: input,
    format: checkpoint.format,
    sha256: checkpoint.sha256,
  };
  const name = opts.name ?? basename(outDir);
  const choice = opts.graph;
  const layout =
    choice?.layout === undefined || choice.layout === 'probe' ? await probeLayout() : choice.layout;
  const preprocess = readPreprocess(opts.preprocessFile);
  const tensors = stripModulePrefix(checkpoint.tensors);
  if (tensors.has('kernels_weights')) {
    const layer = convertPadConvLayer(tensors, checkpoint.metadata, {
      name,
      source,
      temperature: opts.temperature,
      layout,
      form: choice?.form,
      buckets: choice?.buckets,
      preprocess,
    });
    const card = writeModelForms(outDir, layer.draft, layer.form);
    console.log(
      `padconv layer: ${card.dynamic.layers[0]!.entries} entries, ${(100 * card.dynamic.ratio).toFixed(1)}% dynamic → ${outDir} (input x, output y)`,
    );
    return card;
  }
  const converted = convertResNetTensors(tensors, checkpoint.metadata, {
    name,
    source,
    temperature: opts.temperature,
    labelsFile: opts.labelsFile,
    preprocess,
    layout,
    ...graphChoice(choice),
  });
  const card = writeConverted(outDir, converted);
  console.log(summaryLine(converted, card));
  return card;
}

/** The converter options a graph choice sets (the layout is resolved by the caller: it needs the probe). */
export function graphChoice(
  choice: GraphChoice | undefined,
): Pick<ResNetConvertOptions, 'form' | 'weightsBudgetBytes' | 'buckets' | 'cudaForm'> {
  if (!choice) return {};
  return {
    form: choice.form,
    weightsBudgetBytes: choice.weightsBudgetBytes,
    buckets: choice.buckets,
    cudaForm: choice.cudaForm,
  };
}
