/**
 * The whole ResNet graph from a folded network: `pixel_values` float32 [batch, 3, H, W] → `logits` [batch,
 * classes]; H and W are symbolic (every op here is size-agnostic).
 *
 * - A network without dynamic entries (static ResNet, or a PAD checkpoint whose masks are all 0) is plain ONNX
 *   with a batch axis; onnxruntime folds and re-lays it out (NCHWc, fused ReLU/Add) itself.
 * - A network with dynamic convs is built for a fixed batch B per graph (`GraphOptions.batch`, a bucket; B = 1 is
 *   the per-sample form). The B samples' weights of each dynamic conv are generated together and the conv runs
 *   once, grouped (`group = B`), over the activations in the grouped view (1, B·C, H, W) (padconv.ts). One graph
 *   per bucket, all reading the same weights file (docs/resnet-graph.md, "Buckets"). Per block, the convs that
 *   read the same input share one global-average-pool for their routers.
 */
import { GraphBuilder, type Value } from '../../onnx/builder.js';
import { Ops } from '../../onnx/ops.js';
import { floatTensor } from '../../tensor.js';
import type { ConcreteForm } from './budget.js';
import type { FoldedConv, FoldedResNet } from './fold.js';
import { nchwcGuard, NCHWC_DOMAIN, padColumns, paddedChannels, type Layout } from './layout.js';
import {
  emitConv,
  emitGap,
  emitRouter,
  lazyRuntimeZero,
  toBatched,
  toGrouped,
  type DynamicForm,
  type LayerContext,
} from './padconv.js';

/** Bumped whenever the graph a given checkpoint converts to changes (benchmark caches key on it). */
export const RESNET_GRAPH_VERSION = 6;

export interface GraphOptions {
  /** Layout for graphs with dynamic convs (static graphs are always plain 'nchw'). */
  layout: Layout;
  form: DynamicForm;
  /** Fixed batch of a graph with dynamic convs (default 1: per sample). Ignored for static graphs (any batch). */
  batch?: number;
  /** Per-layer forms overriding `form` (from a weights budget, budget.ts). */
  layerForms?: ReadonlyMap<string, ConcreteForm>;
}

export interface WeightTally {
  static: number;
  dynamic: number;
  index: number;
  router: number;
}

export interface BuiltGraph {
  graph: GraphBuilder;
  /** The fixed batch of a graph with dynamic convs (1: per sample), null when the graph takes any batch. */
  maxRunBatch: number | null;
  layout: Layout;
  form: DynamicForm;
  layerForms?: ReadonlyMap<string, ConcreteForm>;
  /** Stored bytes by role. */
  bytes: WeightTally;
  /** Layers of the `router_probs` output (π of every dynamic conv, forward order); empty when there is none. */
  telemetryLayers: string[];
}

/** Optional second output of a graph with dynamic convs: every router's π, [batch, layers, K]. */
export const ROUTER_PROBS_OUTPUT = 'router_probs';

export function hasDynamicConvs(net: FoldedResNet): boolean {
  return net.stages.some((s) => s.some((b) => [...b.convs, b.shortcut].some((c) => c?.dynamic)));
}

export function buildResNetGraph(net: FoldedResNet, opts: GraphOptions, name = 'padnet_resnet'): BuiltGraph {
  const fixed = hasDynamicConvs(net);
  const layout: Layout = fixed ? opts.layout : { kind: 'nchw' };
  const runBatch = fixed ? (opts.batch ?? 1) : null;
  if (runBatch !== null && (!Number.isInteger(runBatch) || runBatch < 1))
    throw new RangeError(`graph batch must be a positive integer, got ${runBatch}`);
  const g = new GraphBuilder(name);
  const ops = new Ops(g);
  const bytes: WeightTally = { static: 0, dynamic: 0, index: 0, router: 0 };
  const ctx: LayerContext = {
    g,
    ops,
    layout,
    form: opts.form,
    tally: (role, n) => (bytes[role] += n),
    batch: runBatch ?? 1,
    layerForms: opts.layerForms,
  };
  const batch = runBatch ?? 'batch';
  const x0 = g.input('pixel_values', 'float32', [batch, 3, 'height', 'width']);
  const nchwc = layout.kind === 'nchwc';
  ctx.runtimeZeroInt32 = lazyRuntimeZero(g, ops, x0, runBatch ?? 1);

  // Routers of convs that read the same tensor share its pooled row.
  const pooled = new Map<string, Value>();
  const gapOf = (x: Value): Value => {
    let v = pooled.get(x.name);
    if (!v) pooled.set(x.name, (v = emitGap(ctx, x)));
    return v;
  };
  const routerPi = new Map<string, { pi: Value; kernels: number }>();
  const tapPi = (c: FoldedConv, pi: Value): Value => {
    routerPi.set(c.name, { pi, kernels: c.dynamic!.kernels });
    return pi;
  };
  const conv = (
    x: Value,
    c: FoldedConv,
    relu: boolean,
    sum: Value | null = null,
    blockedInput = true,
  ): Value =>
    emitConv(ctx, {
      x,
      conv: c,
      pi: c.dynamic && fixed ? tapPi(c, emitRouter(ctx, gapOf(x), c.dynamic.router, c.name)) : null,
      relu,
      sum,
      blockedInput,
      batchedIO: !blockedInput,
    });

  // Every NCHWc op depends on the guard through the input, so a wrong block fails before any blocked conv runs
  // (a conv fed weights laid out for another block would read out of bounds).
  const input = guardedInput(ctx, x0);
  // After the stem, activations are in the grouped view (1, B·C, H, W) (identity for B = 1 and static graphs).
  let x = toGrouped(ctx, conv(input, net.stem, true, null, false));
  x = nchwc
    ? g.op(
        'MaxPool',
        [x],
        { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] },
        { domain: NCHWC_DOMAIN },
      )
    : ops.maxPool(x, 3, 2, 1);
  for (const block of net.stages.flat()) {
    const last = block.convs.length - 1;
    let y = x;
    block.convs.forEach((c, i) => {
      if (i < last) y = conv(y, c, true);
    });
    const shortcut = block.shortcut ? conv(x, block.shortcut, false) : x;
    x = conv(y, block.convs[last]!, true, shortcut);
  }
  const features = emitGap(ctx, x);
  const cols = paddedChannels(layout, net.featureChannels);
  const fcW = g.initializer(
    'classifier.weight',
    floatTensor(padColumns(net.classifier.weight, net.numClasses, net.featureChannels, cols), [
      net.numClasses,
      cols,
    ]),
  );
  const fcB = g.initializer('classifier.bias', floatTensor(net.classifier.bias, [net.numClasses]));
  bytes.static += 4 * (net.numClasses * cols + net.numClasses);
  const logits = ops.gemm(features, fcW, fcB, { transB: true }, 'classifier');
  g.output(logits, 'logits', 'float32', [batch, net.numClasses]);
  // Telemetry: π of every dynamic conv in forward order (per block: its convs, then the shortcut), (B, P, K).
  // The π are computed for the convs anyway: the output adds one tiny Concat per run (fetched or not, since
  // onnxruntime runs every node), and is copied out only when fetched.
  const order = [
    net.stem,
    ...net.stages.flat().flatMap((b) => [...b.convs, ...(b.shortcut ? [b.shortcut] : [])]),
  ];
  const taps = order.flatMap((c) => {
    const t = routerPi.get(c.name);
    return t ? [{ name: c.name, ...t }] : [];
  });
  const kernels = taps[0]?.kernels;
  const telemetryLayers =
    taps.length && taps.every((t) => t.kernels === kernels) ? taps.map((t) => t.name) : [];
  if (telemetryLayers.length)
    g.output(
      ops.concat(
        taps.map((t) => ops.unsqueeze(t.pi, [1])),
        1,
      ),
      ROUTER_PROBS_OUTPUT,
      'float32',
      [batch, taps.length, kernels!],
    );
  return {
    graph: g,
    maxRunBatch: runBatch,
    layout,
    form: opts.form,
    layerForms: opts.layerForms,
    bytes,
    telemetryLayers,
  };
}

/**
 * The graph input as the layout needs it: in NCHWc graphs every blocked op depends on the block-size guard
 * through the input, so a model converted for another block fails before any blocked conv runs.
 */
function guardedInput(ctx: LayerContext, x: Value): Value {
  if (ctx.layout.kind !== 'nchwc') return x;
  return ctx.ops.add(x, nchwcGuard(ctx.g, ctx.ops, ctx.layout.block), 'nchwc_guard');
}

/**
 * A lone PAD conv layer as a graph for a fixed batch B: input `x` [B, I, H, W] → output `y` [B, O, H', W'] (no
 * BatchNorm), grouped like the network's convs.
 */
export function buildPadConvLayerGraph(
  folded: FoldedConv,
  layout: Layout,
  form: DynamicForm,
  batch = 1,
): GraphBuilder {
  const g = new GraphBuilder('padconv_layer');
  const ops = new Ops(g);
  const x = g.input('x', 'float32', [batch, folded.inChannels, 'height', 'width']);
  const ctx: LayerContext = {
    g,
    ops,
    layout,
    form,
    batch,
    runtimeZeroInt32: lazyRuntimeZero(g, ops, x, batch),
  };
  const nchwc = layout.kind === 'nchwc';
  const input = guardedInput(ctx, x);
  const xin = toGrouped(ctx, nchwc ? g.op('ReorderInput', [input], {}, { domain: NCHWC_DOMAIN }) : input);
  const pi = folded.dynamic ? emitRouter(ctx, emitGap(ctx, xin), folded.dynamic.router, 'padconv') : null;
  let y = toBatched(
    ctx,
    emitConv(ctx, { x: xin, conv: folded, pi, relu: false, sum: null, blockedInput: true }),
  );
  if (nchwc) y = g.op('ReorderOutput', [y], { channels: folded.outChannels }, { domain: NCHWC_DOMAIN });
  g.output(y, 'y', 'float32', [batch, folded.outChannels, 'out_height', 'out_width']);
  return g;
}
