/**
 * The PAD-MoE BERT sequence classifier as an ONNX graph (opset 17), exactly the fixture README's forward:
 *
 *     h = LayerNorm(word[ids] + type[token_type] + position[0..L-1])
 *     per layer: a = LayerNorm(attention(h) + h);  h = LayerNorm(FFN_out(GELU(FFN_in(a))) + a)
 *     logits = classifier(tanh(pooler(h[:, 0])))
 *
 * Inputs `input_ids`, `attention_mask`, `token_type_ids` int64 [batch, sequence]; output `logits` float32
 * [batch, labels]. Batch and sequence length are dynamic. Between the embeddings and the pooler the activations are
 * kept flat, (T = batch·sequence, hidden), so every linear is a 2-D Gemm (prepacked by onnxruntime) and the PAD-MoE
 * routers see one row per token. The debug variant adds `last_hidden_state`, `pooler_output` and each router's
 * top-k indices (as float32, `router.<linear>`) for fidelity tests. Graphs with routed linears also have the
 * telemetry output `expert_tokens` (after `logits`): one Where / Equal / Cast / ReduceSum over all routers' (tokens,
 * k) indices. onnxruntime runs them on every batch (it executes the whole graph whatever is fetched; profiled at
 * ~0.2 % of a small model's kernel time), but copies the output out only when fetched.
 */
import { GraphBuilder, type Value } from '../../onnx/builder.js';
import { Ops } from '../../onnx/ops.js';
import { int64Tensor } from '../../tensor.js';
import { denseLinear, padMoeLinear, type MoeStrategy, type RoutingTap } from './moe.js';
import type { BertModel, FfnLinear, Linear } from './spec.js';

export interface BertGraphOptions {
  /** How PAD-MoE linears are computed (default 'routed', see moe.ts and docs/bert-graph.md). */
  strategy?: MoeStrategy;
  /** Adds last_hidden_state, pooler_output and router top-k outputs (tests). */
  debugOutputs?: boolean;
}

const ONNX_FLOAT = 1;
const ONNX_BOOL = 9;
const ATTENTION_MASK_VALUE = -10000;

/**
 * Optional output of graphs with PAD-MoE / MoE linears: float32 [batch, linears, experts], per sequence and
 * linear (forward order) the number of real (attention_mask = 1) tokens routed to each expert, every top-k
 * selection counted. Padding-invariant and batch-major; computed only when fetched.
 */
export const EXPERT_TOKENS_OUTPUT = 'expert_tokens';
/** Bumped whenever the graph (or the synthetic weights) change, so cached folders (bench) are rebuilt. */
export const BERT_GRAPH_REVISION = 'bert-graph r3';

function linear(ops: Ops, x: Value, name: string, l: Linear): Value {
  return denseLinear(ops, x, { name, linear: l });
}

function ffn(
  ops: Ops,
  x: Value,
  lin: FfnLinear,
  topK: number,
  strategy: MoeStrategy,
  tap?: RoutingTap,
): Value {
  return lin.kind === 'dense' ? denseLinear(ops, x, lin) : padMoeLinear(ops, x, lin, topK, strategy, tap);
}

export function buildBertGraph(model: BertModel, opts: BertGraphOptions = {}): GraphBuilder {
  const { spec } = model;
  const strategy = opts.strategy ?? 'routed';
  const g = new GraphBuilder('padnet_bert');
  const ops = new Ops(g);
  const ids = g.input('input_ids', 'int64', ['batch', 'sequence']);
  const attentionMask = g.input('attention_mask', 'int64', ['batch', 'sequence']);
  const tokenTypes = g.input('token_type_ids', 'int64', ['batch', 'sequence']);
  const hidden = spec.hidden;
  const headSize = hidden / spec.heads;
  const eps = spec.layerNormEps;

  // Embeddings (summed in Hugging Face's order: word + token type, then + position).
  const emb = model.embeddings;
  const inputShape = ops.shape(ids); // [B, L]
  const seqLen = ops.shape(ids, 1, 2);
  const word = ops.gather(g.initializer('bert.embeddings.word_embeddings.weight', emb.word), ids);
  const types = ops.gather(
    g.initializer('bert.embeddings.token_type_embeddings.weight', emb.tokenType),
    tokenTypes,
  );
  const positions = ops.slice(
    g.initializer('bert.embeddings.position_embeddings.weight', emb.position),
    ops.i64([0]),
    seqLen,
    ops.i64([0]),
  );
  const summed = ops.add(ops.add(word, types), positions);
  const normed = ops.layerNorm(
    summed,
    g.initializer('bert.embeddings.LayerNorm.weight', emb.gamma),
    g.initializer('bert.embeddings.LayerNorm.bias', emb.beta),
    eps,
  );
  let h = ops.reshape(normed, [-1, hidden]); // (T, H)

  // Additive mask (1 − mask)·(−10000), (B, 1, 1, L), shared by every layer.
  const maskFloat = ops.cast(attentionMask, ONNX_FLOAT);
  const maskAdd = ops.unsqueeze(
    ops.mul(ops.sub(ops.f32([1], [], 'one'), maskFloat), ops.f32([ATTENTION_MASK_VALUE], [], 'mask_value')),
    [1, 2],
  );
  const headsShape = ops.concat([inputShape, ops.i64([spec.heads, headSize])], 0); // [B, L, heads, d]
  const scale = ops.f32([Math.sqrt(headSize)], [], 'sqrt_head_size');

  const routerOutputs: [string, Value][] = [];
  const tap: RoutingTap = (name, idx) => routerOutputs.push([name, idx]);

  model.layers.forEach((layer, i) => {
    const p = `bert.encoder.layer.${i}`;
    const heads = (v: Value, perm: number[]) => ops.transpose(ops.reshapeTo(v, headsShape), perm);
    const q = heads(linear(ops, h, `${p}.attention.self.query`, layer.query), [0, 2, 1, 3]); // (B, h, L, d)
    const k = heads(linear(ops, h, `${p}.attention.self.key`, layer.key), [0, 2, 3, 1]); // (B, h, d, L)
    const v = heads(linear(ops, h, `${p}.attention.self.value`, layer.value), [0, 2, 1, 3]);
    const scores = ops.add(ops.div(ops.matmul(q, k), scale), maskAdd);
    const context = ops.transpose(ops.matmul(ops.softmax(scores, -1), v), [0, 2, 1, 3]); // (B, L, h, d)
    const attended = linear(
      ops,
      ops.reshape(context, [-1, hidden]),
      `${p}.attention.output.dense`,
      layer.attentionOutput,
    );
    const an = layer.attentionNorm;
    const a = ops.layerNorm(
      ops.add(attended, h),
      g.initializer(`${p}.attention.output.LayerNorm.weight`, an.gamma),
      g.initializer(`${p}.attention.output.LayerNorm.bias`, an.beta),
      eps,
    );
    const f = ops.gelu(ffn(ops, a, layer.intermediate, spec.topK, strategy, tap));
    const o = ffn(ops, f, layer.output, spec.topK, strategy, tap);
    const on = layer.outputNorm;
    h = ops.layerNorm(
      ops.add(o, a),
      g.initializer(`${p}.output.LayerNorm.weight`, on.gamma),
      g.initializer(`${p}.output.LayerNorm.bias`, on.beta),
      eps,
    );
  });

  // Telemetry subgraph, built before the head so the encoder's initializers precede the classifier's (the GLUE
  // suite derives head digests from the encoder's, shared-weights.ts).
  let expertTokens: Value | null = null;
  if (routerOutputs.length) {
    // All routers' (T, k) indices side by side (T, M·k), −1 at padding tokens; == [0..E) → (T, M·k, E) as
    // (B, L, M, k, E); one ReduceSum over the sequence and the k selections → (B, M, E). One op of each kind for
    // the whole graph (one ReduceSum per linear took 0.8 % of kernel time in onnxruntime's profile of a 32 × 128
    // PAD-MoE run, this form 0.18 %: docs/server.md "Telemetry: the dynamic part, sampled").
    const M = routerOutputs.length;
    const range = g.initializer(
      'telemetry.expert_range',
      int64Tensor(
        Array.from({ length: spec.experts }, (_, e) => e),
        [spec.experts],
      ),
    );
    const real = ops.reshape(ops.cast(attentionMask, ONNX_BOOL), [-1, 1]); // (T, 1)
    const selected = ops.where(
      real,
      ops.concat(
        routerOutputs.map(([, idx]) => idx),
        1,
      ),
      ops.i64([-1]),
    ); // (T, M·k)
    const hits = ops.cast(g.op('Equal', [ops.unsqueeze(selected, [2]), range]), ONNX_FLOAT); // (T, M·k, E)
    const shaped = ops.reshapeTo(hits, ops.concat([inputShape, ops.i64([M, spec.topK, spec.experts])], 0)); // (B, L, M, k, E)
    expertTokens = ops.reduceSum(shaped, [1, 3], false); // (B, M, E)
  }
  const lastHidden = ops.reshapeTo(h, ops.concat([inputShape, ops.i64([hidden])], 0)); // (B, L, H)
  const cls = ops.gather(lastHidden, g.initializer('cls_position', int64Tensor([0], [])), 1); // (B, H)
  const pooled = ops.tanh(linear(ops, cls, 'bert.pooler.dense', model.pooler));
  const logits = linear(ops, pooled, 'classifier', model.classifier);
  g.output(logits, 'logits', 'float32', ['batch', spec.numLabels]);
  if (expertTokens)
    g.output(expertTokens, EXPERT_TOKENS_OUTPUT, 'float32', ['batch', routerOutputs.length, spec.experts]);
  if (opts.debugOutputs) {
    g.output(lastHidden, 'last_hidden_state', 'float32', ['batch', 'sequence', hidden]);
    g.output(pooled, 'pooler_output', 'float32', ['batch', hidden]);
    for (const [name, idx] of routerOutputs)
      g.output(ops.cast(idx, ONNX_FLOAT), `router.${name}`, 'float32', ['tokens', spec.topK]);
  }
  return g;
}
