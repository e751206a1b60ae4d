/**
 * The PAD conv layer strategies and their pieces: every weight form × layout reproduces the three padconv-layers
 * fixtures (the same math the whole-network graphs use), the NCHWc weight geometry matches onnxruntime's own
 * filter reorder, and the folding math (BN, λ, τ) matches the unfolded definition.
 */
import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../../src/convert/checkpoint/index.js';
import { convertPadConvLayer, convertResNetTensors } from '../../src/convert/resnet/command.js';
import { batchNormAffine, foldPadConv, lambdas } from '../../src/convert/resnet/fold.js';
import { layoutWeight, roundUp, weightGeometry, type Layout } from '../../src/convert/resnet/layout.js';
import { probeNchwcBlock } from '../../src/convert/resnet/layout-probe.js';
import { resolveForm, scatterRows, type DynamicForm } from '../../src/convert/resnet/padconv.js';
import { inferPadConvLayer } from '../../src/convert/resnet/spec.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { encodeModel } from '../../src/onnx/serialize.js';
import { floatTensor } from '../../src/tensor.js';
import { Rng } from '../../src/synth/random.js';
import { compare, loadFixture } from '../support/resnet-fixtures.js';
import { readFileSync } from 'node:fs';

const LAYERS = ['conv3x3_s2_i16_o32', 'conv1x1_s1_i32_o64_bias', 'conv1x1_s2_i32_o64'];
const FORMS: DynamicForm[] = ['dense', 'scatter', 'unpool', 'unpool64', 'auto'];
const block = await probeNchwcBlock();
const LAYOUTS: Layout[] = [{ kind: 'nchw' }, ...(block ? [{ kind: 'nchwc' as const, block }] : [])];
const source = { kind: 'checkpoint' as const, path: 'x', format: 'safetensors' as const, sha256: '' };

async function runLayer(
  layer: string,
  layout: Layout,
  form: DynamicForm,
): Promise<{ worst: number; strict: number }> {
  const fx = loadFixture(`padconv-layers/${layer}`);
  const ck = readSafetensors(readFileSync(fx.checkpoints[0]!));
  const c = fx.cases[0]!;
  const [B, ...rest] = c.inputShape as [number, ...number[]];
  // The per-sample graph (bucket 1) run sample by sample, and — except for scatter, which is per-sample only —
  // the bucket-B graph (one grouped conv over the whole batch) run once.
  const buckets = form === 'scatter' || B === 1 ? [1] : [1, B];
  const { form: built } = convertPadConvLayer(ck.tensors, ck.metadata, {
    name: layer,
    source,
    layout,
    form,
    buckets,
  });
  let worst = 0;
  let strict = 0;
  for (const bucket of built.buckets!) {
    const session = await ort.InferenceSession.create(encodeModel(bucket.build()), { intraOpNumThreads: 1 });
    const per = (c.input.length / B) * bucket.batch;
    const out: number[] = [];
    for (let b = 0; b < B; b += bucket.batch) {
      const r = await session.run({
        x: new ort.Tensor('float32', c.input.slice(b * per, (b + 1) * per), [bucket.batch, ...rest]),
      });
      out.push(...(r.y!.data as Float32Array));
    }
    await session.release();
    worst = Math.max(worst, compare(out, c.expected, fx.json.tolerance).worstRatio);
    strict = Math.max(strict, compare(out, c.expected, fx.json.tolerance_strict).worstRatio);
  }
  return { worst, strict };
}

describe.each(LAYOUTS.map((l) => [l.kind === 'nchwc' ? `nchwc${l.block}` : 'nchw', l]))(
  'layout %s',
  (_name, layout) => {
    it.each(LAYERS.flatMap((l) => FORMS.map((f) => [l, f])))('%s, form %s', async (layer, form) => {
      const { worst, strict } = await runLayer(layer!, layout as Layout, form as DynamicForm);
      expect(worst).toBeLessThanOrEqual(1);
      expect(strict).toBeLessThanOrEqual(1);
    });
  },
);

describe('NCHWc weight geometry', () => {
  it.runIf(block !== null)(
    'matches onnxruntime for a blocked conv with padded channels (a constant-weight Conv run both ways)',
    async () => {
      const B = block!;
      const O = 24,
        I = 20,
        k = 3; // neither a multiple of the block
      const rng = new Rng(3);
      const w = rng.fillNormal(new Float32Array(O * I * k * k), 0.3);
      const x = rng.fillNormal(new Float32Array(I * 7 * 7), 1);
      const layout: Layout = { kind: 'nchwc', block: B };
      const geo = weightGeometry(layout, O, I, k, true);
      expect(geo.storedOut).toBe(roundUp(O, B));
      expect(geo.storedIn).toBe(roundUp(I, B));
      const g = new GraphBuilder('geo');
      const xin = g.input('x', 'float32', [1, I, 7, 7]);
      const attrs = { kernel_shape: [k, k], pads: [1, 1, 1, 1] };
      const plain = g.op('Conv', [xin, g.initializer('w', floatTensor(w, [O, I, k, k]))], attrs);
      g.output(plain, 'plain', 'float32', [1, O, 7, 7]);
      const blocked = g.op('ReorderInput', [xin], {}, { domain: 'com.microsoft.nchwc' });
      const wb = g.initializer('wb', floatTensor(layoutWeight(geo, w), [geo.storedOut, geo.storedIn, k, k]));
      const yb = g.op('Conv', [blocked, wb], attrs, { domain: 'com.microsoft.nchwc' });
      g.output(
        g.op('ReorderOutput', [yb], { channels: O }, { domain: 'com.microsoft.nchwc' }),
        'nchwc',
        'float32',
        [1, O, 7, 7],
      );
      const s = await ort.InferenceSession.create(encodeModel(g), { graphOptimizationLevel: 'disabled' });
      const r = await s.run({ x: new ort.Tensor('float32', x, [1, I, 7, 7]) });
      expect(
        compare(r.nchwc!.data as Float32Array, r.plain!.data as Float32Array, { atol: 1e-5, rtol: 1e-5 })
          .pass,
      ).toBe(true);
      await s.release();
    },
  );

  it.runIf(block !== null)('a graph laid out for another block size refuses to run (guard)', async () => {
    const fx = loadFixture('resnet-tiny');
    const ck = readSafetensors(readFileSync(fx.checkpoints[1]!));
    const other = block === 16 ? 8 : 16;
    const { built } = convertResNetTensors(ck.tensors, ck.metadata, {
      name: 'guard',
      source,
      layout: { kind: 'nchwc', block: other },
    });
    const run = async () => {
      const s = await ort.InferenceSession.create(encodeModel(built.graph));
      await s.run({ pixel_values: new ort.Tensor('float32', new Float32Array(3 * 32 * 32), [1, 3, 32, 32]) });
    };
    await expect(run()).rejects.toThrow(new RegExp(`nchwc_block_${other}_guard`));
  });

  it('is a bijection onto the stored layout', () => {
    for (const layout of LAYOUTS) {
      for (const [O, I, k, blocked] of [
        [64, 64, 3, true],
        [24, 3, 7, false],
        [8, 12, 1, true],
      ] as const) {
        const geo = weightGeometry(layout, O, I, k, blocked);
        const seen = new Set<number>();
        for (let p = 0; p < O * I * k * k; p++) {
          const q = geo.position(p);
          expect(q).toBeGreaterThanOrEqual(0);
          expect(q).toBeLessThan(geo.size);
          seen.add(q);
        }
        expect(seen.size).toBe(O * I * k * k);
      }
    }
  });
});

describe('folding math', () => {
  const fx = loadFixture('padconv-layers/conv1x1_s1_i32_o64_bias');
  const ck = readSafetensors(readFileSync(fx.checkpoints[0]!));

  it('λ_d = 2σ(φ), λ_s = 2 − λ_d, as the fixture records', () => {
    const { conv } = inferPadConvLayer(ck.tensors, ck.metadata);
    const layer = (fx.json as unknown as { layer: { lambda_d: number; lambda_s: number } }).layer;
    expect(lambdas(conv.phiD).dynamic).toBeCloseTo(layer.lambda_d, 6);
    expect(lambdas(conv.phiD).static).toBeCloseTo(layer.lambda_s, 6);
  });

  it('S + Σπ_k D_k equals the unfolded per-sample weight, BN and τ folded in', () => {
    const { conv } = inferPadConvLayer(ck.tensors, ck.metadata);
    const O = conv.outChannels;
    const rng = new Rng(9);
    const bn = {
      name: 'bn',
      weight: rng.fillUniform(new Float32Array(O), 0.5, 1.5),
      bias: rng.fillNormal(new Float32Array(O), 0.1),
      mean: rng.fillNormal(new Float32Array(O), 0.1),
      variance: rng.fillUniform(new Float32Array(O), 0.5, 2),
    };
    const tau = 0.7;
    const folded = foldPadConv(conv, bn, tau);
    const { scale, shift } = batchNormAffine(bn);
    const pi = [0.1, 0.2, 0.3, 0.4];
    const lam = lambdas(conv.phiD);
    const N = conv.mask.length;
    const perOut = N / O;
    const dense = Float64Array.from(folded.weight);
    const n = folded.dynamic!.indices.length;
    for (let j = 0; j < n; j++)
      for (let k = 0; k < 4; k++)
        dense[folded.dynamic!.indices[j]!]! += pi[k]! * folded.dynamic!.values[k * n + j]!;
    for (let p = 0; p < N; p += 37) {
      const m = conv.mask[p]!;
      let agg = 0;
      for (let k = 0; k < 4; k++) agg += pi[k]! * conv.kernelsWeights[k * N + p]!;
      const want =
        scale[Math.floor(p / perOut)]! * (lam.dynamic * m * agg + lam.static * (1 - m) * conv.weight[p]!);
      expect(dense[p]).toBeCloseTo(want, 6);
    }
    for (let o = 0; o < O; o++) expect(folded.bias[o]).toBeCloseTo(shift[o]!, 6);
    expect(folded.dynamic!.router.fc2Bias[0]).toBeCloseTo(conv.fc2Bias[0]! / tau, 6);
  });

  it('resolveForm picks dense above r = (K−1)/K and for fully dynamic layers', () => {
    const N = 1_000_000;
    expect(resolveForm('auto', 0.3 * N, N, 4)).toBe('unpool');
    expect(resolveForm('auto', 0.76 * N, N, 4)).toBe('dense');
    expect(resolveForm('auto', N, N, 4)).toBe('dense');
    expect(resolveForm('auto', 30, 100, 4)).toBe('unpool');
    expect(resolveForm('scatter', 100, 100, 4)).toBe('scatter');
  });

  it('scatterRows divides the weight into equal rows', () => {
    for (const [size, maxRows] of [
      [2359296, 512],
      [4096, 64],
      [147, 64],
      [1, 1],
    ] as const) {
      const r = scatterRows(size, maxRows);
      expect(size % r).toBe(0);
      expect(r).toBeLessThanOrEqual(maxRows);
    }
  });
});
