/**
 * `padserve convert <checkpoint>` for PAD-Net ResNets: read → infer/validate (spec.ts) → fold (fold.ts) → graph
 * (graph.ts) → model folder. `convertResNetTensors` is the pure core shared with synth and the tests; the
 * command adds file reading, labels/preprocessing options, the layout probe and the one-line summary.
 * A checkpoint holding a single PAD conv layer (tensor names without a module path, as the padconv-layers
 * fixtures) becomes a one-layer model folder with input `x` and output `y` (`convertPadConvLayer`).
 */
import { basename } from 'node:path';
import type { GraphBuilder } from '../../onnx/builder.js';
import type { ModelCard, WeightSource, ImagePreprocessSpec } from '../../model/card.js';
import { IMAGENET_PREPROCESS } from '../../model/card.js';
import { writeModelFolder, type CardDraft } from '../../model/folder.js';
import type { HostTensor } from '../../tensor.js';
import { CheckpointError, readCheckpoint, type Checkpoint } from '../checkpoint/index.js';
import { ConvertError, type ConvertOptions } from '../options.js';
import { readLabels, readPreprocess, resnetCardDraft, variantOf } from './card.js';
import { foldPadConv, foldResNet } from './fold.js';
import { buildPadConvLayerGraph, buildResNetGraph, ROUTER_PROBS_OUTPUT, type BuiltGraph } from './graph.js';
import { probeNchwcBlock, type Layout } from './layout.js';
import type { DynamicForm } from './padconv.js';
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
  createdBy?: string;
}

export interface ConvertedResNet {
  spec: ResNetSpec;
  built: BuiltGraph;
  draft: CardDraft;
  /** Stored weight values (floats, indices excluded). */
  parameters: number;
}

/** The form measured fastest for partially dynamic layers (docs/resnet-graph.md). */
export const DEFAULT_FORM: DynamicForm = 'auto';

const FORMS: readonly DynamicForm[] = ['auto', 'dense', 'scatter', 'unpool', 'unpool64'];

/** The form to convert with: PADSERVE_RESNET_FORM (for experiments and benchmarks) or the default. */
export function defaultForm(): DynamicForm {
  const env = process.env.PADSERVE_RESNET_FORM;
  if (env === undefined || env === '') return DEFAULT_FORM;
  if (!(FORMS as readonly string[]).includes(env)) {
    throw new ConvertError(`PADSERVE_RESNET_FORM: expected one of ${FORMS.join(', ')}, got "${env}"`);
  }
  return env as DynamicForm;
}

/** NCHWc with this machine's block when onnxruntime has it, else plain NCHW; PADSERVE_LAYOUT=nchw forces NCHW. */
export async function probeLayout(): Promise<Layout> {
  if (process.env.PADSERVE_LAYOUT === 'nchw') return { kind: 'nchw' };
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
  const built = buildResNetGraph(
    net,
    { layout: opts.layout ?? { kind: 'nchw' }, form: opts.form ?? defaultForm() },
    opts.name.replace(/[^A-Za-z0-9_]/g, '_') || 'resnet',
  );
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
  return { spec, built, draft, parameters };
}

export function writeConverted(outDir: string, converted: ConvertedResNet): ModelCard {
  return writeModelFolder(outDir, converted.built.graph, converted.draft, {
    maxRunBatch: converted.built.maxRunBatch,
    parameters: converted.parameters,
  });
}

function millions(n: number): string {
  return `${(n / 1e6).toFixed(n >= 1e7 ? 1 : 2)}M`;
}

export function summaryLine(c: ConvertedResNet, card: ModelCard): string {
  const { spec, built } = c;
  const arch = `${spec.block} [${spec.blocks.join(',')}] widths ${spec.widths.join('/')} stem ${spec.stemChannels} K=${spec.kernels} τ=${spec.temperature} ${spec.numClasses} classes`;
  const form =
    built.maxRunBatch === 1
      ? `per-sample ${layoutName(built.layout)}, weights: ${built.form}`
      : 'static, batched';
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
): { graph: GraphBuilder; draft: CardDraft; outChannels: number } {
  const { conv, temperature } = inferPadConvLayer(tensors, metadata, opts.temperature);
  const folded = foldPadConv(conv, null, temperature);
  const g = buildPadConvLayerGraph(folded, opts.layout ?? { kind: 'nchw' }, opts.form ?? defaultForm());
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
  return { graph: g, draft, outChannels: conv.outChannels };
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
  const layout = await probeLayout();
  const preprocess = readPreprocess(opts.preprocessFile);
  const tensors = stripModulePrefix(checkpoint.tensors);
  if (tensors.has('kernels_weights')) {
    const layer = convertPadConvLayer(tensors, checkpoint.metadata, {
      name,
      source,
      temperature: opts.temperature,
      layout,
      preprocess,
    });
    const card = writeModelFolder(outDir, layer.graph, layer.draft, { maxRunBatch: 1 });
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
  });
  const card = writeConverted(outDir, converted);
  console.log(summaryLine(converted, card));
  return card;
}
