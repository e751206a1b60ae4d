/**
 * The weights budget (`--weights-budget-mb`): per PAD conv layer the fastest weight form whose stored bytes keep
 * the whole model within the budget. Pure arithmetic over the folded network; no graph is built.
 *
 * Forms by speed, fastest first (docs/resnet-graph.md, "Whole network, batch 1": dense 0.76× static, unpool64
 * 0.72×, unpool 0.67×) and by size the other way round: dense stores K·N per layer (N = stored entries of the
 * weight), unpool64 N + (K−1)·n + 2n (n dynamic entries, int64 positions), unpool N + (K−1)·n + n. Every layer
 * starts at unpool (the smallest); layers are then moved to dense, cheapest extra bytes per weight first (the
 * more dynamic a layer, the less dense costs over unpool, while the time dense saves grows with N), and a layer
 * that cannot afford dense takes unpool64 when that fits.
 */
import { ConvertError } from '../options.js';
import type { FoldedConv } from './fold.js';
import { paddedChannels, weightGeometry, type Layout } from './layout.js';
import type { DynamicForm } from './padconv.js';

export type ConcreteForm = Exclude<DynamicForm, 'auto'>;

/** Stored bytes of one conv's weight tensors in `form` (its bias and router excluded). */
export function layerWeightBytes(
  conv: FoldedConv,
  layout: Layout,
  form: ConcreteForm,
  blockedInput = true,
): number {
  const geo = weightGeometry(layout, conv.outChannels, conv.inChannels, conv.kernel, blockedInput);
  const dyn = conv.dynamic;
  const n = dyn?.indices.length ?? 0;
  if (!dyn || n === 0) return 4 * geo.size;
  const K = dyn.kernels;
  if (form === 'dense' || n === conv.weight.length || K === 1) return 4 * K * geo.size;
  const packed = 4 * geo.size + 4 * (K - 1) * n;
  return packed + (form === 'unpool64' ? 8 : 4) * n;
}

/** Stored bytes of a conv besides its weight: bias (or per-kernel bias) and router. */
function layerOtherBytes(conv: FoldedConv, layout: Layout): number {
  const storedOut = paddedChannels(layout, conv.outChannels);
  const dyn = conv.dynamic;
  if (!dyn) return 4 * storedOut;
  const r = dyn.router;
  const router = 4 * (r.hidden * paddedChannels(layout, r.inChannels) + r.kernels * r.hidden + r.kernels);
  return router + 4 * (dyn.kernelBias ? dyn.kernels * storedOut : storedOut);
}

/**
 * Stored bytes of the convs (weights, biases, routers) with per-layer `forms` (layers not in the map: unpool when
 * they have a choice). The classifier is not included.
 */
export function convBytes(
  convs: readonly FoldedConv[],
  layout: Layout,
  forms: ReadonlyMap<string, ConcreteForm>,
): number {
  return convs.reduce(
    (n, conv, i) =>
      n +
      layerOtherBytes(conv, layout) +
      layerWeightBytes(conv, layout, forms.get(conv.name) ?? 'unpool', i > 0),
    0,
  );
}

/**
 * Per-layer forms for a budget of `budgetBytes` over the convs' stored weights, biases and routers (the classifier,
 * a few MB at most, is outside the budget). Layers that have no choice (static, fully dynamic) are left out.
 */
export function formsForBudget(
  convs: readonly FoldedConv[],
  layout: Layout,
  budgetBytes: number,
): Map<string, ConcreteForm> {
  const forms = new Map<string, ConcreteForm>();
  let total = 0;
  const choices: { conv: FoldedConv; unpool: number; dense: number; unpool64: number }[] = [];
  convs.forEach((conv, i) => {
    const blocked = i > 0; // the stem reads the graph's NCHW input
    total += layerOtherBytes(conv, layout);
    const unpool = layerWeightBytes(conv, layout, 'unpool', blocked);
    const dense = layerWeightBytes(conv, layout, 'dense', blocked);
    total += unpool;
    if (dense > unpool) {
      forms.set(conv.name, 'unpool');
      choices.push({ conv, unpool, dense, unpool64: layerWeightBytes(conv, layout, 'unpool64', blocked) });
    }
  });
  if (total > budgetBytes)
    throw new ConvertError(
      `weights budget ${mb(budgetBytes)} MB is below the smallest form of this model (${mb(total)} MB with every layer unpool)`,
    );
  const byExtraPerWeight = [...choices].sort(
    (a, b) => (a.dense - a.unpool) / a.dense - (b.dense - b.unpool) / b.dense || b.dense - a.dense,
  );
  for (const c of byExtraPerWeight) {
    if (total + c.dense - c.unpool <= budgetBytes) {
      total += c.dense - c.unpool;
      forms.set(c.conv.name, 'dense');
    } else if (total + c.unpool64 - c.unpool <= budgetBytes) {
      total += c.unpool64 - c.unpool;
      forms.set(c.conv.name, 'unpool64');
    }
  }
  return forms;
}

function mb(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}
