/**
 * Seeded synthetic PAD-MoE BERT checkpoints (not trained: predictions are meaningless). The generator writes a
 * state dict with the real checkpoint names (docs/padnet.md §2) and sends it through `convertBertTensors`, the
 * same path as a real checkpoint.
 *
 * Initialisation as BERT's: normal std 0.02 for embeddings and linear weights, zero biases, LayerNorm γ = 1,
 * β = 0. Routers: w_gate ~ N(0, 1/d_in), then calibrated on a short host forward so that expert load spreads over
 * all experts (router-calibration.ts); phi = 0 (λ_d = λ_s = 1); Bernoulli(ratio) masks, like the fixture's (the
 * card records the realised ratio per linear).
 *
 * The encoder depends on the seed only, the classifier head on (seed, task): models of the nine GLUE tasks with
 * one seed share their encoder bit for bit, which is what `synthesizeGlueSuite` (below) exploits.
 */
import { Rng } from './random.js';
import { floatTensor, type FloatTensor, type HostTensor } from '../tensor.js';
import type { BertConfigJson } from '../convert/bert/spec.js';
import { getGlueTask } from '../preprocess/glue-tasks.js';
import { basename, join, resolve } from 'node:path';
import { convertBertTensors, writeBertFolder } from '../convert/bert/command.js';
import type { MoeStrategy } from '../convert/bert/moe.js';
import { BERT_GRAPH_REVISION } from '../convert/bert/graph.js';
import { calibrateSyntheticRouters } from './router-calibration.js';
import {
  InitializerHash,
  SHARED_EXTERNAL_THRESHOLD,
  hashFolderEncoder,
  writeHeadFolder,
} from '../convert/bert/shared-weights.js';
import { readModelCard } from '../model/folder.js';
import type { BertCard, ModelCard, WeightSource } from '../model/card.js';

export type BertVariant = 'pad' | 'dense' | 'moe';

/** The task's head: labels in the GLUE datasets' id order; stsb is a regression with one output. */
export function glueTaskInfo(task: string): { labels: string[]; regression: boolean } {
  const t = getGlueTask(task);
  return t.problemType === 'regression'
    ? { labels: ['score'], regression: true }
    : { labels: [...t.labels], regression: false };
}

export interface SyntheticBertOptions {
  task: string;
  seed?: number;
  dynamicRatio?: number;
  variant?: BertVariant;
  layers?: number;
  hidden?: number;
  experts?: number;
  topK?: number;
  /** Called after each generated layer: (done, total, stage). */
  onProgress?: (done: number, total: number, stage: string) => void;
}

export const BERT_BASE = { layers: 12, hidden: 768, experts: 8, topK: 2, vocab: 30522, maxPositions: 512 };
export const DEFAULT_SEED = 0;
export const DEFAULT_DYNAMIC_RATIO = 0.5;
const STD = 0.02;

/**
 * Bulk generator for the ~600M values of a full-size PAD-MoE BERT: xoshiro128** seeded from an `Rng` fork, state
 * kept in int32 locals during a fill (Rng's class fields hold unsigned words as boxed doubles: ~3× slower), and
 * Marsaglia's polar method for normals (exact normal, one log + one sqrt per pair).
 */
class BulkRng {
  private readonly s = new Int32Array(4);
  private readonly block = new Int32Array(4096);
  constructor(seedFrom: Rng) {
    for (let i = 0; i < 4; i++) this.s[i] = seedFrom.nextU32() | 0;
    if (!this.s.some((w) => w !== 0)) this.s[0] = 1;
  }

  /** The next 4096 uniform int32 words. */
  private nextBlock(): Int32Array {
    const { s, block } = this;
    let s0 = s[0]!, s1 = s[1]!, s2 = s[2]!, s3 = s[3]!; // prettier-ignore
    for (let i = 0; i < block.length; i++) {
      const m = Math.imul(s1, 5);
      block[i] = Math.imul((m << 7) | (m >>> 25), 9);
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    s.set([s0, s1, s2, s3]);
    return block;
  }

  normal(out: Float32Array, std: number): Float32Array {
    const n = out.length;
    for (let i = 0; i < n;) {
      const words = this.nextBlock();
      for (let w = 0; w < words.length && i < n; w += 2) {
        const x = words[w]! * 4.656612873077393e-10; // [−1, 1)
        const y = words[w + 1]! * 4.656612873077393e-10;
        const q = x * x + y * y;
        if (q >= 1 || q === 0) continue;
        const f = std * Math.sqrt((-2 * Math.log(q)) / q);
        out[i++] = x * f;
        if (i < n) out[i++] = y * f;
      }
    }
    return out;
  }

  /** Bernoulli(p) 0/1 entries (the fixture's masks are Bernoulli too; the card reports the realised ratio). */
  bernoulli(out: Float32Array, p: number): Float32Array {
    const threshold = p * 4294967296;
    for (let i = 0; i < out.length;) {
      const words = this.nextBlock();
      for (let w = 0; w < words.length && i < out.length; w++) out[i++] = words[w]! >>> 0 < threshold ? 1 : 0;
    }
    return out;
  }
}

function normal(rng: Rng, shape: number[], std = STD): FloatTensor {
  return floatTensor(new BulkRng(rng).normal(new Float32Array(shape.reduce((a, b) => a * b, 1)), std), shape);
}

function constant(value: number, shape: number[]): FloatTensor {
  return floatTensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(value), shape);
}

/** Hugging Face style config.json of the synthetic model. */
export function syntheticBertConfig(opts: SyntheticBertOptions): BertConfigJson {
  const hidden = opts.hidden ?? BERT_BASE.hidden;
  const info = glueTaskInfo(opts.task);
  const variant = opts.variant ?? 'pad';
  const config: BertConfigJson = {
    architectures: ['PadMoEBertForSequenceClassification'],
    model_type: 'bert',
    vocab_size: BERT_BASE.vocab,
    hidden_size: hidden,
    num_hidden_layers: opts.layers ?? BERT_BASE.layers,
    num_attention_heads: Math.max(1, Math.round(hidden / 64)),
    intermediate_size: 4 * hidden,
    hidden_act: 'gelu',
    max_position_embeddings: BERT_BASE.maxPositions,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    num_labels: info.labels.length,
    id2label: Object.fromEntries(info.labels.map((l, i) => [String(i), l])),
    problem_type: info.regression ? 'regression' : 'single_label_classification',
    finetuning_task: getGlueTask(opts.task).name,
  };
  if (variant !== 'dense') {
    config.n_experts = opts.experts ?? BERT_BASE.experts;
    config.k = opts.topK ?? BERT_BASE.topK;
    config.dynamic_ratio = variant === 'moe' ? 1 : (opts.dynamicRatio ?? DEFAULT_DYNAMIC_RATIO);
  }
  return config;
}

function ffnTensors(
  out: Map<string, HostTensor>,
  rng: Rng,
  name: string,
  dIn: number,
  dOut: number,
  config: BertConfigJson,
  variant: BertVariant,
): void {
  if (variant === 'dense') {
    out.set(`${name}.weight`, normal(rng, [dOut, dIn]));
    out.set(`${name}.bias`, constant(0, [dOut]));
    return;
  }
  const experts = config.n_experts as number;
  out.set(`${name}.w_gate`, normal(rng, [dIn, experts], 1 / Math.sqrt(dIn)));
  out.set(`${name}.phi`, constant(0, [1]));
  const ratio = config.dynamic_ratio as number;
  out.set(
    `${name}.mask`,
    floatTensor(
      variant === 'moe'
        ? new Float32Array(dIn * dOut).fill(1)
        : new BulkRng(rng).bernoulli(new Float32Array(dIn * dOut), ratio),
      [dOut, dIn],
    ),
  );
  for (let e = 0; e < experts; e++) {
    out.set(`${name}.experts.${e}.dense.weight`, normal(rng, [dOut, dIn]));
    out.set(`${name}.experts.${e}.dense.bias`, constant(0, [dOut]));
  }
  // A fully dynamic MoE never reads its static weight; the converter accepts its absence.
  if (variant === 'pad') {
    out.set(`${name}.static_fc.weight`, normal(rng, [dOut, dIn]));
    out.set(`${name}.static_fc.bias`, constant(0, [dOut]));
  }
}

/** The encoder (embeddings, layers, pooler): a function of the seed and sizes only. */
export async function syntheticEncoderTensors(
  config: BertConfigJson,
  seed: number,
  variant: BertVariant,
  onLayer?: (done: number, total: number) => void,
): Promise<Map<string, HostTensor>> {
  const out = new Map<string, HostTensor>();
  const root = new Rng(seed).fork('encoder');
  const h = config.hidden_size as number;
  const inter = config.intermediate_size as number;
  const layers = config.num_hidden_layers as number;
  const emb = root.fork('embeddings');
  out.set('bert.embeddings.word_embeddings.weight', normal(emb, [config.vocab_size as number, h]));
  out.set(
    'bert.embeddings.position_embeddings.weight',
    normal(emb, [config.max_position_embeddings as number, h]),
  );
  out.set('bert.embeddings.token_type_embeddings.weight', normal(emb, [config.type_vocab_size as number, h]));
  out.set('bert.embeddings.LayerNorm.weight', constant(1, [h]));
  out.set('bert.embeddings.LayerNorm.bias', constant(0, [h]));
  for (let i = 0; i < layers; i++) {
    const rng = root.fork(`layer.${i}`);
    const p = `bert.encoder.layer.${i}`;
    for (const part of [
      'attention.self.query',
      'attention.self.key',
      'attention.self.value',
      'attention.output.dense',
    ]) {
      out.set(`${p}.${part}.weight`, normal(rng, [h, h]));
      out.set(`${p}.${part}.bias`, constant(0, [h]));
    }
    for (const ln of ['attention.output.LayerNorm', 'output.LayerNorm']) {
      out.set(`${p}.${ln}.weight`, constant(1, [h]));
      out.set(`${p}.${ln}.bias`, constant(0, [h]));
    }
    ffnTensors(out, rng.fork('intermediate'), `${p}.intermediate.dense`, h, inter, config, variant);
    ffnTensors(out, rng.fork('output'), `${p}.output.dense`, inter, h, config, variant);
    onLayer?.(i + 1, layers);
  }
  const pooler = root.fork('pooler');
  out.set('bert.pooler.dense.weight', normal(pooler, [h, h]));
  out.set('bert.pooler.dense.bias', constant(0, [h]));
  // Spread the router load over all experts (see router-calibration.ts); seeded, so the encoder stays a
  // function of (seed, sizes, variant).
  if (variant !== 'dense') await calibrateSyntheticRouters(out, config, { seed });
  return out;
}

/** The task's classifier head: depends on (seed, task) only. */
export function syntheticClassifierTensors(
  config: BertConfigJson,
  seed: number,
  task: string,
): Map<string, HostTensor> {
  const rng = new Rng(seed).fork(`classifier:${task}`);
  const h = config.hidden_size as number;
  const labels = config.num_labels as number;
  return new Map<string, HostTensor>([
    ['classifier.weight', normal(rng, [labels, h])],
    ['classifier.bias', constant(0, [labels])],
  ]);
}

/** Config and full state dict of a synthetic PAD-MoE / dense / MoE BERT for one task. */
export async function syntheticBertCheckpoint(opts: SyntheticBertOptions): Promise<{
  config: BertConfigJson;
  tensors: Map<string, HostTensor>;
}> {
  const config = syntheticBertConfig(opts);
  const seed = opts.seed ?? DEFAULT_SEED;
  const tensors = await syntheticEncoderTensors(config, seed, opts.variant ?? 'pad', (d, t) =>
    opts.onProgress?.(d, t, 'weights'),
  );
  for (const [k, v] of syntheticClassifierTensors(config, seed, opts.task)) tensors.set(k, v);
  return { config, tensors };
}

export interface SynthesizeBertOptions extends SyntheticBertOptions {
  outDir: string;
  /** PAD-MoE strategy of the graph (default: the converter's). */
  strategy?: MoeStrategy;
}

const GENERATOR = 'padserve synth bert';
const NOTE = 'seeded synthetic weights, not trained: predictions are meaningless';

function syntheticSource(seed: number): WeightSource {
  return { kind: 'synthetic', generator: GENERATOR, seed, note: NOTE };
}

interface WrittenSynthetic {
  card: ModelCard;
  /** Digest state of the encoder's initializers, to derive the digest of other heads cheaply (when asked for). */
  encoderHash: InitializerHash | null;
  /** The same for the CUDA form's initializers (null without a CUDA form or when not asked for). */
  cudaEncoderHash: InitializerHash | null;
}

async function writeSynthetic(
  opts: SynthesizeBertOptions,
  withEncoderHash = false,
): Promise<WrittenSynthetic> {
  const seed = opts.seed ?? DEFAULT_SEED;
  const layers = opts.layers ?? BERT_BASE.layers;
  const total = layers + 3;
  // Progress names the stage in progress: 'weights' (per layer), then 'calibrate', 'convert', 'write', 'done'.
  const { config, tensors } = await syntheticBertCheckpoint({
    ...opts,
    onProgress: (d) => opts.onProgress?.(d, total, d < layers ? 'weights' : 'calibrate'),
  });
  opts.onProgress?.(layers + 1, total, 'convert');
  const converted = convertBertTensors(config, tensors, {
    name: basename(resolve(opts.outDir)),
    source: syntheticSource(seed),
    createdBy: `${GENERATOR} (${BERT_GRAPH_REVISION})`,
    strategy: opts.strategy,
  });
  tensors.clear();
  opts.onProgress?.(layers + 2, total, 'write');
  const encoderHash = withEncoderHash ? InitializerHash.encoderOf(converted.graph) : null;
  const cudaEncoderHash =
    withEncoderHash && converted.cudaGraph ? InitializerHash.encoderOf(converted.cudaGraph) : null;
  const card = writeBertFolder(opts.outDir, converted, {
    maxRunBatch: null,
    externalThresholdBytes: SHARED_EXTERNAL_THRESHOLD,
  });
  opts.onProgress?.(total, total, 'done');
  return { card, encoderHash, cudaEncoderHash };
}

/** One full-size synthetic model folder (`padserve synth bert`). */
export async function synthesizeBert(opts: SynthesizeBertOptions): Promise<ModelCard> {
  return (await writeSynthetic(opts)).card;
}

export interface GlueSuiteOptions {
  rootDir: string;
  tasks: string[];
  seed?: number;
  variant?: BertVariant;
  onProgress?: (done: number, total: number, stage: string) => void;
  /** Smaller encoders (tests); the served defaults are BERT-base. */
  layers?: number;
  hidden?: number;
}

function isSuiteMember(
  dir: string,
  task: string,
  seed: number,
  variant: BertVariant,
  layers: number,
  hidden: number,
): boolean {
  try {
    const card = readModelCard(dir);
    if (
      card.family !== 'bert' ||
      card.architecture.layers !== layers ||
      card.architecture.hiddenSize !== hidden
    )
      return false;
    return (
      card.variant === variant &&
      card.task === task &&
      card.source.kind === 'synthetic' &&
      card.source.seed === seed &&
      // Routed variants carry their CUDA form; folders written before it existed are rebuilt once.
      (variant === 'dense' || card.cudaGraph !== undefined)
    );
  } catch {
    return false;
  }
}

/**
 * The GLUE task models the server serves by default: `<rootDir>/<task>/` for each task, one synthetic encoder
 * (seed) shared by all, one classifier head per task. Folders already present with the same seed and variant are
 * kept; the others are derived from one of them (new head, hard-linked weights file), so the encoder is generated
 * and written at most once. Returns task → model folder.
 */
export async function synthesizeGlueSuite(opts: GlueSuiteOptions): Promise<Record<string, string>> {
  const seed = opts.seed ?? DEFAULT_SEED;
  const variant = opts.variant ?? 'pad';
  const tasks = opts.tasks.map((t) => getGlueTask(t).name);
  const dirs = Object.fromEntries(tasks.map((t) => [t, join(opts.rootDir, t)]));
  const layers = opts.layers ?? BERT_BASE.layers;
  const hidden = opts.hidden ?? BERT_BASE.hidden;
  const missing = tasks.filter((t) => !isSuiteMember(dirs[t]!, t, seed, variant, layers, hidden));
  if (!missing.length) return dirs;

  let source = tasks.find((t) => !missing.includes(t));
  let encoderHash: InitializerHash;
  let cudaEncoderHash: InitializerHash | null;
  const total = layers + 3 + missing.length;
  if (source === undefined) {
    source = missing.shift()!;
    const written = await writeSynthetic(
      {
        task: source,
        seed,
        variant,
        layers,
        hidden,
        outDir: dirs[source]!,
        onProgress: opts.onProgress && ((d, _t, s) => opts.onProgress!(d, total, s)),
      },
      true,
    );
    encoderHash = written.encoderHash!;
    cudaEncoderHash = written.cudaEncoderHash;
  } else {
    encoderHash = hashFolderEncoder(dirs[source]!);
    cudaEncoderHash = readModelCard(dirs[source]!).cudaGraph
      ? hashFolderEncoder(dirs[source]!, 'cuda')
      : null;
  }
  let done = total - missing.length;
  for (const task of missing) {
    const taskConfig = syntheticBertConfig({ task, seed, variant, layers, hidden });
    const head = syntheticClassifierTensors(taskConfig, seed, task);
    const weight = head.get('classifier.weight') as FloatTensor;
    const bias = head.get('classifier.bias') as FloatTensor;
    const {
      graph: _graph,
      cudaGraph: _cudaGraph,
      format: _format,
      formatVersion: _version,
      ...sourceCard
    } = readModelCard(dirs[source]!) as BertCard;
    const info = glueTaskInfo(task);
    writeHeadFolder(dirs[source]!, {
      dir: dirs[task]!,
      card: {
        ...sourceCard,
        name: task,
        labels: info.labels,
        task,
        problemType: info.regression ? 'regression' : 'single_label_classification',
        outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', info.labels.length] }],
      },
      classifier: { weight, bias },
      weightsSha256: encoderHash.withHead(weight, bias),
      cudaWeightsSha256: cudaEncoderHash?.withHead(weight, bias),
    });
    opts.onProgress?.(++done, total, `task ${task}`);
  }
  return dirs;
}
