/**
 * Independent naive float64 forward of the PAD-MoE BERT sequence classifier, written from the fixture README's
 * formulas (not from the converter): the oracle for checkpoints the fixture does not cover. It reads the state
 * dict by name, computes W'_e entry by entry, routes every token (padding included), and records each router's
 * top-k choices and the smallest gap between the k-th and (k+1)-th logit (choices closer than float32 noise would
 * make a comparison with a float32 backend meaningless).
 */
import type { HostTensor } from '../../src/tensor.js';

export interface ReferenceInputs {
  batch: number;
  sequence: number;
  inputIds: ArrayLike<number | bigint>;
  attentionMask: ArrayLike<number | bigint>;
  tokenTypeIds: ArrayLike<number | bigint>;
}

export interface ReferenceOutputs {
  logits: Float64Array;
  pooled: Float64Array;
  lastHidden: Float64Array;
  /** Per routed linear: top-k expert indices, token-major (T × k), rows in descending logit order. */
  topk: Map<string, number[][]>;
  /** Per routed linear: min over tokens of logit_(k) − logit_(k+1) (Infinity when k = E). */
  minMargin: Map<string, number>;
}

type Config = Record<string, unknown>;

/** erf to ~1e-15: Maclaurin series for |x| < 2.5, continued fraction of erfc beyond. */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 2.5) {
    let term = x;
    let sum = x;
    for (let n = 1; n < 200; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))), evaluated backwards.
  let f = ax;
  for (let n = 60; n >= 1; n--) f = ax + n / 2 / f;
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

export function bertReference(
  config: Config,
  tensors: ReadonlyMap<string, HostTensor>,
  inputs: ReferenceInputs,
): ReferenceOutputs {
  const prefix = tensors.has('bert.embeddings.word_embeddings.weight') ? 'bert.' : '';
  const get = (name: string): Float32Array => {
    const key = name.startsWith('bert.') ? prefix + name.slice(5) : name;
    const t = tensors.get(key);
    if (!t) throw new Error(`reference: missing ${key}`);
    return t.data as Float32Array;
  };
  const has = (name: string) => tensors.has(name.startsWith('bert.') ? prefix + name.slice(5) : name);
  const H = config.hidden_size as number;
  const heads = config.num_attention_heads as number;
  const d = H / heads;
  const eps = (config.layer_norm_eps as number | undefined) ?? 1e-12;
  const topK = (config.k as number | undefined) ?? 0;
  const { batch: B, sequence: L } = inputs;
  const T = B * L;
  const num = (v: number | bigint) => Number(v);

  const layerNorm = (x: Float64Array, gamma: Float32Array, beta: Float32Array): Float64Array => {
    const n = gamma.length;
    const out = new Float64Array(x.length);
    for (let r = 0; r < x.length / n; r++) {
      let mean = 0;
      for (let i = 0; i < n; i++) mean += x[r * n + i]!;
      mean /= n;
      let v = 0;
      for (let i = 0; i < n; i++) v += (x[r * n + i]! - mean) ** 2;
      const inv = 1 / Math.sqrt(v / n + eps);
      for (let i = 0; i < n; i++) out[r * n + i] = (x[r * n + i]! - mean) * inv * gamma[i]! + beta[i]!;
    }
    return out;
  };
  /** rows × (out,in) weight: y = x·Wᵀ + b. */
  const linear = (
    x: Float64Array,
    w: Float32Array,
    b: Float32Array | null,
    dIn: number,
    dOut: number,
  ): Float64Array => {
    const rows = x.length / dIn;
    const y = new Float64Array(rows * dOut);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < dOut; o++) {
        let s = b ? b[o]! : 0;
        for (let i = 0; i < dIn; i++) s += x[r * dIn + i]! * w[o * dIn + i]!;
        y[r * dOut + o] = s;
      }
    }
    return y;
  };
  const topk = new Map<string, number[][]>();
  const minMargin = new Map<string, number>();

  const ffnLinear = (name: string, x: Float64Array, dIn: number, dOut: number): Float64Array => {
    if (!has(`${name}.w_gate`)) return linear(x, get(`${name}.weight`), get(`${name}.bias`), dIn, dOut);
    const gate = get(`${name}.w_gate`);
    const E = gate.length / dIn;
    const lambdaD = 2 / (1 + Math.exp(-get(`${name}.phi`)[0]!));
    const lambdaS = 2 - lambdaD;
    const mask = get(`${name}.mask`);
    const ws = has(`${name}.static_fc.weight`)
      ? get(`${name}.static_fc.weight`)
      : new Float32Array(mask.length);
    const we = Array.from({ length: E }, (_, e) => get(`${name}.experts.${e}.dense.weight`));
    const be = Array.from({ length: E }, (_, e) => get(`${name}.experts.${e}.dense.bias`));
    const rows = x.length / dIn;
    const y = new Float64Array(rows * dOut);
    const choices: number[][] = [];
    let margin = Infinity;
    for (let t = 0; t < rows; t++) {
      const logits = Array.from({ length: E }, (_, e) => {
        let s = 0;
        for (let i = 0; i < dIn; i++) s += x[t * dIn + i]! * gate[i * E + e]!;
        return s;
      });
      const order = logits.map((v, e) => [v, e] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
      const chosen = order.slice(0, topK);
      if (topK < E) margin = Math.min(margin, order[topK - 1]![0] - order[topK]![0]);
      choices.push(chosen.map(([, e]) => e));
      const max = chosen[0]![0];
      const exps = chosen.map(([v]) => Math.exp(v - max));
      const z = exps.reduce((a, b) => a + b, 0);
      chosen.forEach(([, e], j) => {
        const g = exps[j]! / z;
        for (let o = 0; o < dOut; o++) {
          let s = be[e]![o]!;
          for (let i = 0; i < dIn; i++) {
            const k = o * dIn + i;
            const w = mask[k] === 1 ? lambdaD * we[e]![k]! : lambdaS * (1 - mask[k]!) * ws[k]!;
            s += w * x[t * dIn + i]!;
          }
          y[t * dOut + o] = y[t * dOut + o]! + g * s;
        }
      });
    }
    topk.set(name, choices);
    minMargin.set(name, margin);
    return y;
  };

  // Embeddings: word + token type, then + position.
  const word = get('bert.embeddings.word_embeddings.weight');
  const type = get('bert.embeddings.token_type_embeddings.weight');
  const pos = get('bert.embeddings.position_embeddings.weight');
  let h: Float64Array = new Float64Array(T * H);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < L; p++) {
      const t = b * L + p;
      const id = num(inputs.inputIds[t]!);
      const tt = num(inputs.tokenTypeIds[t]!);
      for (let i = 0; i < H; i++) h[t * H + i] = word[id * H + i]! + type[tt * H + i]! + pos[p * H + i]!;
    }
  }
  h = layerNorm(h, get('bert.embeddings.LayerNorm.weight'), get('bert.embeddings.LayerNorm.bias'));

  const layers = config.num_hidden_layers as number;
  const inter = config.intermediate_size as number;
  for (let l = 0; l < layers; l++) {
    const p = `bert.encoder.layer.${l}`;
    const q = linear(h, get(`${p}.attention.self.query.weight`), get(`${p}.attention.self.query.bias`), H, H);
    const k = linear(h, get(`${p}.attention.self.key.weight`), get(`${p}.attention.self.key.bias`), H, H);
    const v = linear(h, get(`${p}.attention.self.value.weight`), get(`${p}.attention.self.value.bias`), H, H);
    const ctx = new Float64Array(T * H);
    for (let b = 0; b < B; b++) {
      for (let hd = 0; hd < heads; hd++) {
        for (let i = 0; i < L; i++) {
          const scores = new Float64Array(L);
          let max = -Infinity;
          for (let j = 0; j < L; j++) {
            let s = 0;
            for (let c = 0; c < d; c++)
              s += q[(b * L + i) * H + hd * d + c]! * k[(b * L + j) * H + hd * d + c]!;
            s = s / Math.sqrt(d) + (1 - num(inputs.attentionMask[b * L + j]!)) * -10000;
            scores[j] = s;
            max = Math.max(max, s);
          }
          let z = 0;
          for (let j = 0; j < L; j++) z += scores[j] = Math.exp(scores[j]! - max);
          for (let c = 0; c < d; c++) {
            let s = 0;
            for (let j = 0; j < L; j++) s += (scores[j]! / z) * v[(b * L + j) * H + hd * d + c]!;
            ctx[(b * L + i) * H + hd * d + c] = s;
          }
        }
      }
    }
    const attn = linear(
      ctx,
      get(`${p}.attention.output.dense.weight`),
      get(`${p}.attention.output.dense.bias`),
      H,
      H,
    );
    for (let i = 0; i < attn.length; i++) attn[i]! += h[i]!;
    const a = layerNorm(
      attn,
      get(`${p}.attention.output.LayerNorm.weight`),
      get(`${p}.attention.output.LayerNorm.bias`),
    );
    const f: Float64Array = ffnLinear(`${p}.intermediate.dense`, a, H, inter).map(gelu);
    const o = ffnLinear(`${p}.output.dense`, f, inter, H);
    for (let i = 0; i < o.length; i++) o[i]! += a[i]!;
    h = layerNorm(o, get(`${p}.output.LayerNorm.weight`), get(`${p}.output.LayerNorm.bias`));
  }

  const cls = new Float64Array(B * H);
  for (let b = 0; b < B; b++) cls.set(h.subarray(b * L * H, b * L * H + H), b * H);
  const pooled = linear(cls, get('bert.pooler.dense.weight'), get('bert.pooler.dense.bias'), H, H).map(
    Math.tanh,
  );
  const labels = get('classifier.bias').length;
  const logits = linear(pooled, get('classifier.weight'), get('classifier.bias'), H, labels);
  return { logits, pooled, lastHidden: h, topk, minMargin };
}

export interface RandomBertOptions {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  experts?: number;
  topK?: number;
  ratio?: number;
  numLabels?: number;
  /** 'pad' (default), 'dense' (plain FFN linears), 'moe' (all-ones masks, no static_fc). */
  variant?: 'pad' | 'dense' | 'moe';
  vocab?: number;
  seed?: number;
}

/**
 * A small checkpoint with real PAD-MoE BERT names and deliberately non-trivial values (non-zero biases, random
 * phi, LayerNorm γ ≠ 1), so that a forgotten bias, λ or γ shows up; training-only tensors are included too.
 */
export function randomBertCheckpoint(o: RandomBertOptions): {
  config: Config;
  tensors: Map<string, HostTensor>;
} {
  let state = (o.seed ?? 1) >>> 0;
  const uniform = () => ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) + 0.5) / 4294967296;
  const normal = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  const tensors = new Map<string, HostTensor>();
  const put = (name: string, shape: number[], fill: () => number) => {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { dtype: 'float32', shape, data: Float32Array.from({ length: n }, fill) });
  };
  const { hidden: H, intermediate: I, layers } = o;
  const vocab = o.vocab ?? 1000;
  const variant = o.variant ?? 'pad';
  const E = o.experts ?? 4;
  const labels = o.numLabels ?? 3;
  const lin = (name: string, dOut: number, dIn: number) => {
    put(`${name}.weight`, [dOut, dIn], () => normal() / Math.sqrt(dIn));
    put(`${name}.bias`, [dOut], () => 0.1 * normal());
  };
  const ln = (name: string) => {
    put(`${name}.weight`, [H], () => 0.8 + 0.4 * uniform());
    put(`${name}.bias`, [H], () => 0.1 * normal());
  };
  const ffn = (name: string, dIn: number, dOut: number) => {
    if (variant === 'dense') return lin(name, dOut, dIn);
    put(`${name}.w_gate`, [dIn, E], () => normal() / Math.sqrt(dIn));
    put(`${name}.w_noise`, [dIn, E], () => 0);
    put(`${name}.phi`, [1], () => 0.5 * normal());
    const ratio = variant === 'moe' ? 1 : (o.ratio ?? 0.5);
    put(`${name}.mask`, [dOut, dIn], () => (uniform() < ratio ? 1 : 0));
    for (let e = 0; e < E; e++) lin(`${name}.experts.${e}.dense`, dOut, dIn);
    if (variant === 'pad') lin(`${name}.static_fc`, dOut, dIn);
  };
  put('bert.embeddings.word_embeddings.weight', [vocab, H], () => 0.5 * normal());
  put('bert.embeddings.position_embeddings.weight', [64, H], () => 0.5 * normal());
  put('bert.embeddings.token_type_embeddings.weight', [2, H], () => 0.5 * normal());
  ln('bert.embeddings.LayerNorm');
  for (let l = 0; l < layers; l++) {
    const p = `bert.encoder.layer.${l}`;
    for (const part of ['query', 'key', 'value']) lin(`${p}.attention.self.${part}`, H, H);
    lin(`${p}.attention.output.dense`, H, H);
    ln(`${p}.attention.output.LayerNorm`);
    ffn(`${p}.intermediate.dense`, H, I);
    ffn(`${p}.output.dense`, I, H);
    ln(`${p}.output.LayerNorm`);
  }
  lin('bert.pooler.dense', H, H);
  lin('classifier', labels, H);
  const config: Config = {
    model_type: 'bert',
    vocab_size: vocab,
    hidden_size: H,
    num_hidden_layers: layers,
    num_attention_heads: o.heads,
    intermediate_size: I,
    hidden_act: 'gelu',
    max_position_embeddings: 64,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    num_labels: labels,
    id2label: Object.fromEntries(Array.from({ length: labels }, (_, i) => [String(i), `label_${i}`])),
  };
  if (variant !== 'dense') Object.assign(config, { n_experts: E, k: o.topK ?? 2 });
  if (labels === 1) config.problem_type = 'regression';
  return { config, tensors };
}

/** Right-padded token batches with the given real lengths ([CLS] ... [SEP] ... [SEP], two segments). */
export function tokenBatch(
  lengths: number[],
  vocab: number,
  width = Math.max(...lengths),
  seed = 7,
): ReferenceInputs & { shape: number[] } {
  let state = seed >>> 0;
  const next = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);
  const B = lengths.length;
  const ids = new BigInt64Array(B * width);
  const mask = new BigInt64Array(B * width);
  const types = new BigInt64Array(B * width);
  lengths.forEach((len, b) => {
    const split = Math.max(1, Math.floor(len / 2));
    for (let p = 0; p < len; p++) {
      const special = p === 0 ? 101 : p === split || p === len - 1 ? 102 : null;
      ids[b * width + p] = BigInt(special !== null && 102 < vocab ? special : 1 + (next() % (vocab - 1)));
      mask[b * width + p] = 1n;
      types[b * width + p] = p > split ? 1n : 0n;
    }
  });
  return {
    batch: B,
    sequence: width,
    inputIds: ids,
    attentionMask: mask,
    tokenTypeIds: types,
    shape: [B, width],
  };
}
