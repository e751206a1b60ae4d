/**
 * `padserve convert <bert-folder> --out DIR`: a Hugging Face style PAD-MoE BERT folder (config.json +
 * model.safetensors or pytorch_model.bin; safetensors preferred when both exist) into a model folder.
 * `convertBertTensors` is the pure part (config + tensors → graph + card draft) shared with synth and tests.
 */
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { GraphBuilder } from '../../onnx/builder.js';
import { writeModelFolder, type CardDraft, type WriteFolderOptions } from '../../model/folder.js';
import type { BertCard, ModelCard, WeightSource } from '../../model/card.js';
import { ConvertError, type ConvertOptions } from '../options.js';
import { readCheckpoint } from '../checkpoint/index.js';
import type { HostTensor } from '../../tensor.js';
import { BERT_GRAPH_REVISION, buildBertGraph, EXPERT_TOKENS_OUTPUT, type BertGraphOptions } from './graph.js';
import { HOST_SYNC_STRATEGIES } from './moe.js';
import {
  ffnLinears,
  inferBertModel,
  type BertConfigJson,
  type BertModel,
  type PadMoeLinear,
} from './spec.js';

export const TOKENIZER_MAX_LENGTH = 128;

export interface ConvertBertOptions extends BertGraphOptions {
  name?: string;
  labels?: string[];
  source?: WeightSource;
  createdBy?: string;
  /** Task name when the config has no `finetuning_task` (synth). */
  task?: string | null;
  /**
   * Also build the CUDA form (`card.cudaGraph`: strategy 'all-experts', static shapes, the same fused weights).
   * Default: for models with routed linears converted with the default strategy 'routed'. The other NonZero
   * strategies (split, packed) are CPU measurement forms: their CUDA form would store a second set of weights.
   */
  cudaForm?: boolean;
}

/** The CUDA form's description in the card (GraphFiles.form). */
export const BERT_CUDA_FORM = 'all-experts (static shapes, gated dense experts)';

export interface ConvertedBert {
  graph: GraphBuilder;
  /** The CUDA form, when one is built (it shares the fused expert tensors with `graph`). */
  cudaGraph: GraphBuilder | null;
  draft: CardDraft;
  model: BertModel;
  /** Parameters of the model as trained (PAD: static once + dynamic entries per expert), not the stored values. */
  modelParameters: number;
}

/** Parameters as the checkpoint defines them: dense N, full MoE E·N, PAD (1 − r)·N + r·E·N (+ biases, routers). */
export function modelParameters(model: BertModel): number {
  const { spec } = model;
  const h = spec.hidden;
  let n = (spec.vocab + spec.maxPositions + spec.typeVocab + 2) * h; // embeddings + their LayerNorm
  n += spec.layers * (4 * (h * h + h) + 4 * h); // attention + two LayerNorms
  n += h * h + h + spec.numLabels * (h + 1); // pooler, classifier
  for (const lin of ffnLinears(model)) {
    const entries = lin.dIn * lin.dOut;
    if (lin.kind === 'dense') n += entries + lin.dOut;
    else
      n +=
        lin.gate.data.length +
        1 +
        (entries - lin.dynamicEntries) +
        lin.experts.length * (lin.dynamicEntries + lin.dOut);
  }
  return n;
}

/** Parameters as trained (PAD: static entries once + dynamic entries per expert), from the card. */
export function cardParameters(card: BertCard): number {
  const a = card.architecture;
  const h = a.hiddenSize;
  let n =
    (a.vocabSize + a.maxPositions + a.typeVocabSize + 2) * h +
    a.layers * (4 * (h * h + h) + 4 * h) +
    h * h +
    h +
    card.labels.length * (h + 1);
  const routed = new Map(card.dynamic.layers.map((l) => [l.name, l]));
  for (let i = 0; i < a.layers; i++) {
    for (const [name, dIn, dOut] of [
      [`bert.encoder.layer.${i}.intermediate.dense`, h, a.intermediateSize],
      [`bert.encoder.layer.${i}.output.dense`, a.intermediateSize, h],
    ] as const) {
      const l = routed.get(name);
      const dyn = l ? Math.round(l.ratio * l.entries) : 0;
      n += l ? dIn * a.experts + 1 + (l.entries - dyn) + a.experts * (dyn + dOut) : dIn * dOut + dOut;
    }
  }
  return n;
}

export function bertCardDraft(model: BertModel, opts: ConvertBertOptions): CardDraft {
  const { spec } = model;
  const routed = ffnLinears(model).filter((l): l is PadMoeLinear => l.kind !== 'dense');
  let dynamicTotal = 0;
  let entriesTotal = 0;
  const layers = routed.map((l) => {
    const entries = l.dIn * l.dOut;
    const dynamic = l.dynamicEntries;
    dynamicTotal += dynamic;
    entriesTotal += entries;
    return { name: l.name, ratio: dynamic / entries, entries };
  });
  const draft: Omit<BertCard, 'graph' | 'format' | 'formatVersion'> = {
    family: 'bert',
    name: opts.name ?? 'bert',
    variant: spec.ffn,
    source: opts.source ?? {
      kind: 'synthetic',
      generator: 'convertBertTensors',
      seed: 0,
      note: 'in-memory tensors',
    },
    inputs: ['input_ids', 'attention_mask', 'token_type_ids'].map((name) => ({
      name,
      dtype: 'int64' as const,
      shape: ['batch', 'sequence'],
    })),
    outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', spec.numLabels] }],
    labels: spec.labels,
    dynamic: { ratio: entriesTotal ? dynamicTotal / entriesTotal : 0, layers },
    ...(routed.length
      ? {
          telemetry: {
            output: EXPERT_TOKENS_OUTPUT,
            kind: 'expert_tokens' as const,
            layers: routed.map((l) => l.name),
            width: spec.experts,
            topK: spec.topK,
          },
        }
      : {}),
    createdBy: opts.createdBy ?? `padserve convert (${BERT_GRAPH_REVISION})`,
    architecture: {
      hiddenSize: spec.hidden,
      layers: spec.layers,
      heads: spec.heads,
      intermediateSize: spec.intermediate,
      vocabSize: spec.vocab,
      maxPositions: spec.maxPositions,
      typeVocabSize: spec.typeVocab,
      layerNormEps: spec.layerNormEps,
      experts: spec.experts,
      topK: spec.topK,
      ffn: spec.ffn,
    },
    problemType: spec.problemType,
    task: spec.task ?? opts.task ?? null,
    tokenizer: {
      vocab: 'bert-base-uncased',
      lowercase: true,
      maxLength: Math.min(TOKENIZER_MAX_LENGTH, spec.maxPositions),
    },
  };
  return draft;
}

/** Pure conversion: validated config + tensors → graph builder and card draft. */
export function convertBertTensors(
  config: BertConfigJson,
  tensors: ReadonlyMap<string, HostTensor>,
  opts: ConvertBertOptions = {},
): ConvertedBert {
  const model = inferBertModel(config, tensors, { labels: opts.labels });
  const graph = buildBertGraph(model, opts);
  const strategy = opts.strategy ?? 'routed';
  const routed = ffnLinears(model).some((l) => l.kind !== 'dense');
  const wantCuda = opts.cudaForm ?? (routed && strategy === 'routed');
  const cudaGraph =
    wantCuda && routed && HOST_SYNC_STRATEGIES.has(strategy)
      ? buildBertGraph(model, { ...opts, strategy: 'all-experts' })
      : null;
  return {
    graph,
    cudaGraph,
    draft: bertCardDraft(model, opts),
    model,
    modelParameters: modelParameters(model),
  };
}

/**
 * Writes a converted model folder: the CPU form and, if built, the CUDA form (`model.cuda.onnx`) reading the CPU
 * form's weights file: both graphs hold the same fused expert tensors, so the weights are stored once.
 */
export function writeBertFolder(
  outDir: string,
  converted: Pick<ConvertedBert, 'graph' | 'cudaGraph' | 'draft'>,
  opts: Omit<WriteFolderOptions, 'cuda'> = {},
): ModelCard {
  const { cudaGraph } = converted;
  return writeModelFolder(outDir, converted.graph, converted.draft, {
    ...opts,
    ...(cudaGraph
      ? {
          cuda: {
            stem: 'model.cuda',
            graph: cudaGraph,
            form: BERT_CUDA_FORM,
            maxRunBatch: opts.maxRunBatch,
            shareCpuData: true,
          },
        }
      : {}),
  });
}

export function readLabelsFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConvertError(
      `--labels ${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const labels = text.split(/\r?\n/).map((l) => l.trim());
  while (labels.length && labels[labels.length - 1] === '') labels.pop();
  if (!labels.length) throw new ConvertError(`--labels ${path}: no labels`);
  return labels;
}

function readConfig(dir: string): BertConfigJson {
  const path = join(dir, 'config.json');
  if (!existsSync(path))
    throw new ConvertError(
      `${dir}: no config.json (a BERT folder needs config.json and model.safetensors or pytorch_model.bin)`,
    );
  try {
    const parsed: unknown = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new Error('not a JSON object');
    return parsed as BertConfigJson;
  } catch (err) {
    throw new ConvertError(`${path}: invalid JSON (${(err as Error).message})`);
  }
}

/** The weights file of a Hugging Face folder: model.safetensors if present, else pytorch_model.bin. */
export function bertWeightsFile(dir: string): string {
  for (const file of ['model.safetensors', 'pytorch_model.bin'])
    if (existsSync(join(dir, file))) return join(dir, file);
  throw new ConvertError(`${dir}: no model.safetensors or pytorch_model.bin`);
}

export async function convertCommand(
  input: string,
  outDir: string,
  opts: ConvertOptions,
): Promise<ModelCard> {
  const config = readConfig(input);
  const weights = bertWeightsFile(input);
  const checkpoint = await readCheckpoint(weights);
  const converted = convertBertTensors(config, checkpoint.tensors, {
    name: opts.name ?? basename(resolve(outDir)),
    labels: opts.labelsFile ? readLabelsFile(opts.labelsFile) : undefined,
    source: {
      kind: 'checkpoint',
      path: resolve(weights),
      format: checkpoint.format,
      sha256: checkpoint.sha256,
    },
  });
  const card = writeBertFolder(outDir, converted, { maxRunBatch: null });
  const { spec } = converted.model;
  console.error(
    `converted ${input} (${checkpoint.format}): ${spec.layers} layers, hidden ${spec.hidden}, ${spec.ffn} FFN` +
      (spec.experts
        ? ` (${spec.experts} experts, top-${spec.topK}, dynamic ratio ${card.dynamic.ratio.toFixed(3)})`
        : '') +
      `, ${spec.numLabels} labels -> ${outDir}` +
      (card.cudaGraph ? ` (+ CUDA form ${card.cudaGraph.file})` : ''),
  );
  return card;
}
