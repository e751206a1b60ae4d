/**
 * PAD-MoE BERT: architecture inference and validation from a Hugging Face style `config.json` plus the
 * checkpoint's tensors (docs/padnet.md §2, fixtures README "PAD-MoE BERT"). Pure: works on a
 * `Map<string, HostTensor>` so tests and synth need no files. Every problem is a one-line ConvertError that names
 * the tensor or config field.
 *
 * Each FFN linear (`intermediate.dense`, `output.dense`) is classified on its own: PAD-MoE (`w_gate` present),
 * or a plain dense linear (`weight`/`bias`, the static baseline). A PAD-MoE linear whose mask is all ones is a
 * fully dynamic MoE linear (its `static_fc` is never read and may be absent). Training-only tensors (`w_noise`,
 * `mean`, `std`) and `static_fc.bias` (stored but unused by the forward) are ignored.
 */
import { ConvertError } from '../options.js';
import { formatShape, sameShape, type FloatTensor, type HostTensor } from '../../tensor.js';

export type FfnKind = 'pad' | 'dense' | 'moe';

export interface BertSpec {
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  vocab: number;
  maxPositions: number;
  typeVocab: number;
  layerNormEps: number;
  /** Experts per PAD-MoE linear and top-k (0 when every FFN linear is dense). */
  experts: number;
  topK: number;
  numLabels: number;
  labels: string[];
  problemType: 'single_label_classification' | 'regression';
  task: string | null;
  /** 'pad' if any linear is partially dynamic, 'moe' if all are fully dynamic, 'dense' if none is routed. */
  ffn: FfnKind;
}

export interface Linear {
  /** (out, in), as PyTorch stores it: y = x·Wᵀ + b. */
  weight: FloatTensor;
  bias: FloatTensor;
}

export interface PadMoeLinear {
  kind: 'pad' | 'moe';
  /** Canonical checkpoint name with the `bert.` prefix, e.g. `bert.encoder.layer.0.intermediate.dense`. */
  name: string;
  dIn: number;
  dOut: number;
  /** Router (d_in, E), no bias. */
  gate: FloatTensor;
  /** λ_d = 2·sigmoid(phi), λ_s = 2 − λ_d. */
  lambdaDynamic: number;
  lambdaStatic: number;
  /** Binary (d_out, d_in), 1 = dynamic entry. */
  mask: FloatTensor;
  experts: Linear[];
  /** W_s (d_out, d_in); null when the mask is all ones (never read). */
  staticWeight: FloatTensor | null;
  dynamicEntries: number;
}

export interface DenseLinear {
  kind: 'dense';
  name: string;
  dIn: number;
  dOut: number;
  linear: Linear;
}

export type FfnLinear = PadMoeLinear | DenseLinear;

export interface BertLayerWeights {
  query: Linear;
  key: Linear;
  value: Linear;
  attentionOutput: Linear;
  attentionNorm: { gamma: FloatTensor; beta: FloatTensor };
  intermediate: FfnLinear;
  output: FfnLinear;
  outputNorm: { gamma: FloatTensor; beta: FloatTensor };
}

export interface BertModel {
  spec: BertSpec;
  embeddings: {
    word: FloatTensor;
    position: FloatTensor;
    tokenType: FloatTensor;
    gamma: FloatTensor;
    beta: FloatTensor;
  };
  layers: BertLayerWeights[];
  pooler: Linear;
  classifier: Linear;
}

export type BertConfigJson = Record<string, unknown>;

export interface SpecOptions {
  /** Labels overriding the config's id2label (e.g. from `--labels FILE`). */
  labels?: string[];
}

function fail(message: string): never {
  throw new ConvertError(message);
}

function positiveInt(config: BertConfigJson, field: string, fallback?: number): number {
  const v = config[field] ?? fallback;
  if (v === undefined) fail(`config.json: "${field}" is missing`);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1)
    fail(`config.json: "${field}" must be a positive integer (got ${JSON.stringify(v)})`);
  return v;
}

/** Labels in id order from `id2label` ({"0": "a", "1": "b"}), or "0".."n-1". */
function labelsFrom(config: BertConfigJson, numLabels: number): string[] {
  const map = config.id2label;
  if (map === undefined || map === null) return Array.from({ length: numLabels }, (_, i) => String(i));
  if (typeof map !== 'object') fail('config.json: "id2label" must be an object of id → label');
  const entries = Object.entries(map as Record<string, unknown>);
  if (entries.length !== numLabels)
    fail(`config.json: "id2label" has ${entries.length} labels, num_labels is ${numLabels}`);
  const labels: string[] = new Array<string>(numLabels);
  for (const [id, label] of entries) {
    const i = Number(id);
    if (!Number.isInteger(i) || i < 0 || i >= numLabels)
      fail(`config.json: "id2label" has id "${id}" outside 0..${numLabels - 1}`);
    labels[i] = String(label);
  }
  return labels;
}

/** Finds tensors by their canonical (`bert.`-prefixed) names whether or not the checkpoint has the prefix. */
class TensorTable {
  readonly used = new Set<string>();
  constructor(
    private readonly tensors: ReadonlyMap<string, HostTensor>,
    private readonly prefix: string,
  ) {}

  private key(canonical: string): string {
    return canonical.startsWith('bert.') ? `${this.prefix}${canonical.slice(5)}` : canonical;
  }

  has(canonical: string): boolean {
    return this.tensors.has(this.key(canonical));
  }

  /** A float32 tensor of the given shape, checked for NaN/Inf. */
  get(canonical: string, shape: readonly number[]): FloatTensor {
    const key = this.key(canonical);
    const t = this.tensors.get(key);
    if (!t) fail(`missing tensor ${key} (expected shape ${formatShape(shape)})`);
    if (t.dtype !== 'float32') fail(`${key}: dtype ${t.dtype}, expected float32`);
    if (!sameShape(t.shape, shape))
      fail(`${key}: shape ${formatShape(t.shape)}, expected ${formatShape(shape)}`);
    const data = t.data as Float32Array;
    for (let i = 0; i < data.length; i++) {
      const v = data[i]!;
      if (v - v !== 0) fail(`${key}: non-finite value ${v} at flat index ${i}`);
    }
    this.used.add(key);
    return t as FloatTensor;
  }

  /** Shape of a tensor that must exist (for sizes the config does not give). */
  shapeOf(canonical: string): readonly number[] {
    const key = this.key(canonical);
    const t = this.tensors.get(key);
    if (!t) fail(`missing tensor ${key}`);
    return t.shape;
  }
}

function linear(t: TensorTable, name: string, dOut: number, dIn: number): Linear {
  return { weight: t.get(`${name}.weight`, [dOut, dIn]), bias: t.get(`${name}.bias`, [dOut]) };
}

function countDynamic(name: string, mask: FloatTensor): number {
  let ones = 0;
  const m = mask.data;
  for (let i = 0; i < m.length; i++) {
    const v = m[i]!;
    if (v === 1) ones++;
    else if (v !== 0)
      fail(`${name}: mask value ${v} at flat index ${i} is not 0 or 1 (the mask must be binary)`);
  }
  return ones;
}

interface RoutingConfig {
  experts: number;
  topK: number;
}

function ffnLinear(
  t: TensorTable,
  name: string,
  dIn: number,
  dOut: number,
  routing: () => RoutingConfig,
): FfnLinear {
  if (!t.has(`${name}.w_gate`)) {
    if (!t.has(`${name}.weight`))
      fail(`missing tensor ${name}.weight (or ${name}.w_gate for a PAD-MoE linear)`);
    return { kind: 'dense', name, dIn, dOut, linear: linear(t, name, dOut, dIn) };
  }
  const { experts: e, topK } = routing();
  const gateShape = t.shapeOf(`${name}.w_gate`);
  if (gateShape.length === 2 && gateShape[0] === dIn && gateShape[1] !== e) {
    fail(`${name}.w_gate: ${gateShape[1]} experts, config.json n_experts is ${e}`);
  }
  if (topK > e) fail(`config.json: k = ${topK} exceeds n_experts = ${e}`);
  const gate = t.get(`${name}.w_gate`, [dIn, e]);
  const phi = t.get(`${name}.phi`, [1]).data[0]!;
  const mask = t.get(`${name}.mask`, [dOut, dIn]);
  const dynamicEntries = countDynamic(`${name}.mask`, mask);
  const allDynamic = dynamicEntries === mask.data.length;
  const experts = Array.from({ length: e }, (_, i) => linear(t, `${name}.experts.${i}.dense`, dOut, dIn));
  if (t.has(`${name}.experts.${e}.dense.weight`))
    fail(`${name}.experts.${e}.dense.weight: more experts in the checkpoint than n_experts = ${e}`);
  const staticWeight =
    allDynamic && !t.has(`${name}.static_fc.weight`) ? null : t.get(`${name}.static_fc.weight`, [dOut, dIn]);
  const lambdaDynamic = 2 / (1 + Math.exp(-phi));
  return {
    kind: allDynamic ? 'moe' : 'pad',
    name,
    dIn,
    dOut,
    gate,
    lambdaDynamic,
    lambdaStatic: 2 - lambdaDynamic,
    mask,
    experts,
    staticWeight: allDynamic ? null : staticWeight,
    dynamicEntries,
  };
}

function detectPrefix(tensors: ReadonlyMap<string, HostTensor>): string {
  if (tensors.has('bert.embeddings.word_embeddings.weight')) return 'bert.';
  if (tensors.has('embeddings.word_embeddings.weight')) return '';
  fail('missing tensor bert.embeddings.word_embeddings.weight (not a BERT checkpoint?)');
}

/** Validates config and tensors together and returns the typed model. */
export function inferBertModel(
  config: BertConfigJson,
  tensors: ReadonlyMap<string, HostTensor>,
  opts: SpecOptions = {},
): BertModel {
  const act = config.hidden_act ?? 'gelu';
  if (act !== 'gelu')
    fail(`config.json: hidden_act ${JSON.stringify(act)} is not supported (only "gelu", the exact erf GELU)`);
  const posType = config.position_embedding_type ?? 'absolute';
  if (posType !== 'absolute')
    fail(
      `config.json: position_embedding_type ${JSON.stringify(posType)} is not supported (only "absolute")`,
    );
  const hidden = positiveInt(config, 'hidden_size');
  const layers = positiveInt(config, 'num_hidden_layers');
  const heads = positiveInt(config, 'num_attention_heads');
  const intermediate = positiveInt(config, 'intermediate_size');
  if (hidden % heads !== 0)
    fail(`config.json: hidden_size ${hidden} is not a multiple of num_attention_heads ${heads}`);
  const eps = config.layer_norm_eps ?? 1e-12;
  if (typeof eps !== 'number' || !(eps > 0))
    fail(`config.json: "layer_norm_eps" must be a positive number (got ${JSON.stringify(eps)})`);

  const t = new TensorTable(tensors, detectPrefix(tensors));
  const [wordRows] = t.shapeOf('bert.embeddings.word_embeddings.weight');
  const vocab = positiveInt(config, 'vocab_size', wordRows);
  const maxPositions = positiveInt(
    config,
    'max_position_embeddings',
    t.shapeOf('bert.embeddings.position_embeddings.weight')[0],
  );
  const typeVocab = positiveInt(
    config,
    'type_vocab_size',
    t.shapeOf('bert.embeddings.token_type_embeddings.weight')[0],
  );
  const classifierRows = t.has('classifier.weight') ? t.shapeOf('classifier.weight')[0] : undefined;
  const numLabels = positiveInt(
    config,
    'num_labels',
    classifierRows ?? (config.id2label ? Object.keys(config.id2label).length : undefined),
  );
  const labels = opts.labels ?? labelsFrom(config, numLabels);
  if (labels.length !== numLabels) fail(`labels: ${labels.length} given, the model has ${numLabels} outputs`);
  const declared = config.problem_type;
  if (
    declared !== undefined &&
    declared !== null &&
    declared !== 'single_label_classification' &&
    declared !== 'regression'
  ) {
    fail(
      `config.json: problem_type ${JSON.stringify(declared)} is not supported (single_label_classification or regression)`,
    );
  }
  const problemType =
    declared === 'regression' || (declared == null && numLabels === 1)
      ? 'regression'
      : 'single_label_classification';
  const task = typeof config.finetuning_task === 'string' ? config.finetuning_task : null;

  let routingConfig: RoutingConfig | null = null;
  const routing = (): RoutingConfig => {
    if (!routingConfig) {
      const experts = positiveInt(config, 'n_experts');
      const topK = positiveInt(config, 'k');
      if (topK > experts) fail(`config.json: k = ${topK} exceeds n_experts = ${experts}`);
      routingConfig = { experts, topK };
    }
    return routingConfig;
  };

  const embeddings = {
    word: t.get('bert.embeddings.word_embeddings.weight', [vocab, hidden]),
    position: t.get('bert.embeddings.position_embeddings.weight', [maxPositions, hidden]),
    tokenType: t.get('bert.embeddings.token_type_embeddings.weight', [typeVocab, hidden]),
    gamma: t.get('bert.embeddings.LayerNorm.weight', [hidden]),
    beta: t.get('bert.embeddings.LayerNorm.bias', [hidden]),
  };
  const layerWeights: BertLayerWeights[] = [];
  for (let i = 0; i < layers; i++) {
    const p = `bert.encoder.layer.${i}`;
    layerWeights.push({
      query: linear(t, `${p}.attention.self.query`, hidden, hidden),
      key: linear(t, `${p}.attention.self.key`, hidden, hidden),
      value: linear(t, `${p}.attention.self.value`, hidden, hidden),
      attentionOutput: linear(t, `${p}.attention.output.dense`, hidden, hidden),
      attentionNorm: {
        gamma: t.get(`${p}.attention.output.LayerNorm.weight`, [hidden]),
        beta: t.get(`${p}.attention.output.LayerNorm.bias`, [hidden]),
      },
      intermediate: ffnLinear(t, `${p}.intermediate.dense`, hidden, intermediate, routing),
      output: ffnLinear(t, `${p}.output.dense`, intermediate, hidden, routing),
      outputNorm: {
        gamma: t.get(`${p}.output.LayerNorm.weight`, [hidden]),
        beta: t.get(`${p}.output.LayerNorm.bias`, [hidden]),
      },
    });
  }
  if (t.has(`bert.encoder.layer.${layers}.attention.self.query.weight`)) {
    fail(`bert.encoder.layer.${layers}.*: the checkpoint has more layers than num_hidden_layers = ${layers}`);
  }
  const pooler = linear(t, 'bert.pooler.dense', hidden, hidden);
  const classifier = linear(t, 'classifier', numLabels, hidden);

  const ffnLinears = layerWeights.flatMap((l) => [l.intermediate, l.output]);
  const routed = ffnLinears.filter((l) => l.kind !== 'dense');
  const ffn: FfnKind = routed.length === 0 ? 'dense' : routed.some((l) => l.kind === 'pad') ? 'pad' : 'moe';
  const { experts, topK } = routed.length ? routing() : { experts: 0, topK: 0 };
  const spec: BertSpec = {
    hidden,
    layers,
    heads,
    intermediate,
    vocab,
    maxPositions,
    typeVocab,
    layerNormEps: eps,
    experts,
    topK,
    numLabels,
    labels,
    problemType,
    task,
    ffn,
  };
  return { spec, embeddings, layers: layerWeights, pooler, classifier };
}

/** Every FFN linear in forward order (intermediate, output of layer 0, then layer 1, ...). */
export function ffnLinears(model: BertModel): FfnLinear[] {
  return model.layers.flatMap((l) => [l.intermediate, l.output]);
}
