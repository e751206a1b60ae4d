/**
 * The bucket planner (src/runtime/plan.ts) and the weights budget (src/convert/resnet/budget.ts): pure functions,
 * checked against hand-computed cases and against the bytes a real graph build tallies.
 */
import { describe, expect, it } from 'vitest';
import { defaultBucketCosts, planBatch } from '../../src/runtime/plan.js';
import { convBytes, formsForBudget } from '../../src/convert/resnet/budget.js';
import { paddedChannels } from '../../src/convert/resnet/layout.js';
import { foldResNet, foldedConvs } from '../../src/convert/resnet/fold.js';
import { buildResNetGraph } from '../../src/convert/resnet/graph.js';
import { inferResNetSpec } from '../../src/convert/resnet/spec.js';
import { synthPlan, synthStateDict } from '../../src/synth/resnet.js';
import { ConvertError } from '../../src/convert/options.js';

const sizes = (rows: number, costs: Map<number, number>) =>
  planBatch(rows, costs).map((c) => `${c.rows}/${c.bucket}`);

describe('planBatch', () => {
  const measured = new Map([
    [1, 10],
    [2, 14],
    [4, 22],
    [8, 40],
  ]);

  it('covers every row exactly once, in order, each chunk within its bucket', () => {
    for (let rows = 1; rows <= 40; rows++) {
      const plan = planBatch(rows, measured);
      let next = 0;
      for (const c of plan) {
        expect(c.start).toBe(next);
        expect(c.rows).toBeGreaterThan(0);
        expect(c.rows).toBeLessThanOrEqual(c.bucket!);
        next += c.rows;
      }
      expect(next).toBe(rows);
    }
  });

  it('pads or splits, whichever the costs make cheaper', () => {
    expect(sizes(3, measured)).toEqual(['3/4']); // 22 < 14 + 10
    expect(sizes(5, measured)).toEqual(['4/4', '1/1']); // 32 < 40
    expect(sizes(7, measured)).toEqual(['7/8']); // 40 < 22 + 14 + 10
    expect(sizes(11, measured)).toEqual(['8/8', '3/4']);
    // Where a run costs the same whatever its size (a GPU far from saturation), always pad: fewest runs.
    const flat = new Map([
      [1, 5],
      [2, 5],
      [4, 5],
      [8, 5],
    ]);
    expect(sizes(5, flat)).toEqual(['5/8']);
    expect(sizes(17, flat)).toEqual(['8/8', '8/8', '1/8']);
    // Strictly proportional costs: never pad.
    const linear = new Map([
      [1, 1],
      [2, 2],
      [4, 4],
      [8, 8],
    ]);
    expect(sizes(7, linear).length).toBe(3);
  });

  it('default costs (b + 1) pad 7 into 8 and split 5 into 4 + 1', () => {
    const costs = defaultBucketCosts([1, 2, 4, 8]);
    expect(sizes(7, costs)).toEqual(['7/8']);
    expect(sizes(5, costs)).toEqual(['4/4', '1/1']);
  });

  it('rejects bad input', () => {
    expect(() => planBatch(0, measured)).toThrow(RangeError);
    expect(() => planBatch(3, new Map())).toThrow(RangeError);
  });
});

describe('formsForBudget', () => {
  const plan = synthPlan({ outDir: '', scale: 0.25, blocks: [1, 1, 1, 1], classes: 10 });
  const spec = inferResNetSpec(synthStateDict(plan), { temperature: '1.0' });
  const net = foldResNet(spec);
  const convs = foldedConvs(net);
  const layout = { kind: 'nchwc' as const, block: 16 };
  const bytesOf = (forms?: Map<string, 'dense' | 'unpool' | 'unpool64' | 'scatter'>) => {
    const b = buildResNetGraph(net, { layout, form: 'unpool', layerForms: forms }).bytes;
    return b.static + b.dynamic + b.index + b.router;
  };

  it("the budget's byte arithmetic equals what the graph stores (plus the classifier)", () => {
    const names = [...formsForBudget(convs, layout, Infinity).keys()];
    const classifier = 4 * (10 * paddedChannels(layout, net.featureChannels) + 10);
    for (const form of ['dense', 'unpool', 'unpool64'] as const) {
      const forms = new Map(names.map((k) => [k, form]));
      expect(convBytes(convs, layout, forms) + classifier, form).toBe(bytesOf(forms));
    }
    expect(formsForBudget(convs, layout, Infinity).size).toBeGreaterThan(0);
    expect([...formsForBudget(convs, layout, Infinity).values()].every((f) => f === 'dense')).toBe(true);
  });

  it('fills the budget with dense layers and never exceeds it', () => {
    const unpool = bytesOf(
      new Map([...formsForBudget(convs, layout, Infinity).keys()].map((k) => [k, 'unpool' as const])),
    );
    const dense = bytesOf(formsForBudget(convs, layout, Infinity));
    for (const fraction of [0, 0.25, 0.5, 0.75]) {
      const budget = unpool + fraction * (dense - unpool) + 64 * 1024; // the classifier is outside the budget
      const forms = formsForBudget(convs, layout, budget);
      const stored = bytesOf(forms);
      expect(stored).toBeLessThanOrEqual(budget + 4 * 10 * 512 + 64);
      if (fraction > 0) expect([...forms.values()]).toContain('dense');
    }
  });

  it('a budget below the smallest form is a one-line ConvertError', () => {
    expect(() => formsForBudget(convs, layout, 1024)).toThrow(ConvertError);
    expect(() => formsForBudget(convs, layout, 1024)).toThrow(/below the smallest form/);
  });
});
