/**
 * Converted PAD-Net ResNets reproduce the PyTorch fixtures (test/fixtures/padnet): resnet-tiny (both formats,
 * random N(0,1) batch and the three photos), resnet-mnist (trained; both formats, 30 real digits, labels exact) and
 * the three lone padconv layers — within the fixtures' tolerance, with the strict tier reported. At least one case
 * per format goes through `padserve predict` (a child process), the rest through ModelSession in-process.
 * Buckets: every case at every bucket size (1, 2, 4, 8: the session restricted to one bucket graph, so a batch
 * runs padded or split on it) in both layouts (NCHWc and plain NCHW); through `padserve predict --buckets B` once
 * per checkpoint and layout, B rotating so that every bucket size goes through the CLI.
 * Batch invariance: batches of 1, 2 and 3 give the same per-sample answers, also padded into a larger bucket.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertCommand, convertResNetTensors, writeConverted } from '../../src/convert/resnet/command.js';
import { readCheckpoint } from '../../src/convert/checkpoint/index.js';
import { ModelSession } from '../../src/runtime/session.js';
import {
  argmaxRows,
  compare,
  loadFixture,
  readF32,
  type FixtureCase,
  type Tolerance,
} from '../support/resnet-fixtures.js';

const tmp = mkdtempSync(join(tmpdir(), 'padserve-resnet-fidelity-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const quiet = { log: console.log };
beforeAll(() => {
  console.log = () => undefined; // convertCommand's summary line
});
afterAll(() => {
  console.log = quiet.log;
});

const BUCKETS = [1, 2, 4, 8];
const LAYOUTS = ['nchwc', 'nchw'] as const;
/** Converter options: the layout's bucketed form (every bucket graph, so each can be run alone). */
const bucketed = (layout: (typeof LAYOUTS)[number]) => ({
  graph: {
    layout: layout === 'nchw' ? ({ kind: 'nchw' } as const) : ('probe' as const),
    buckets: BUCKETS,
    cudaForm: false,
  },
});

async function runFolder(
  dir: string,
  input: Float32Array,
  shape: number[],
  inputName = 'pixel_values',
  buckets?: number[],
): Promise<Float32Array> {
  const session = await ModelSession.load(dir, { intraOpThreads: 2, buckets });
  try {
    const out = await session.run({ [inputName]: { dtype: 'float32', shape, data: input } });
    return out[session.outputNames[0]!]!.data;
  } finally {
    await session.release();
  }
}

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/padserve.js', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `padserve predict DIR --tensor T --buckets B` (a child process) → the output it wrote. */
function predictOnBucket(dir: string, tensor: string, outFile: string, bucket: number): Float32Array {
  const args = [
    'predict',
    dir,
    '--tensor',
    tensor,
    '--out',
    outFile,
    '--threads',
    '2',
    '--buckets',
    String(bucket),
  ];
  const r = runCli(args);
  expect(r.status, r.stderr).toBe(0);
  return readF32(outFile);
}

function expectMatch(
  label: string,
  actual: ArrayLike<number>,
  c: FixtureCase,
  tol: Tolerance,
  strict: Tolerance,
): void {
  const contract = compare(actual, c.expected, tol);
  const s = compare(actual, c.expected, strict);
  console.info(
    `${label}: worst ratio ${contract.worstRatio.toFixed(4)} (contract), ${s.worstRatio.toFixed(4)} (strict tier), max |Δ| ${contract.maxAbs.toExponential(2)}`,
  );
  expect(
    contract.worstRatio,
    `${label}: worst |A−E|/(atol+rtol|E|) at ${contract.worstIndex}`,
  ).toBeLessThanOrEqual(1);
}

let rotation = 0;

describe.each(['resnet-tiny', 'resnet-mnist'])('%s', (rel) => {
  const fx = loadFixture(rel);
  describe.each(fx.checkpoints.map((p) => [p.split('/').pop()!, p]))('%s', (file, path) => {
    const out = join(tmp, `${rel}-${file}`);
    const nchwOut = join(tmp, `${rel}-${file}-nchw`);
    const dirOf = (layout: (typeof LAYOUTS)[number]) => (layout === 'nchw' ? nchwOut : out);
    beforeAll(async () => {
      await convertCommand(path, out, bucketed('nchwc'));
      await convertCommand(path, nchwOut, bucketed('nchw'));
    });

    it.each(LAYOUTS.flatMap((l) => BUCKETS.map((b) => [l, b] as const)))(
      'every case matches in layout %s on bucket %i alone',
      async (layout, bucket) => {
        for (const c of fx.cases) {
          const logits = await runFolder(dirOf(layout), c.input, c.inputShape, 'pixel_values', [bucket]);
          expectMatch(
            `${rel}/${file}/${layout}/b${bucket}/${c.name}`,
            logits,
            c,
            fx.json.tolerance,
            fx.json.tolerance_strict,
          );
        }
      },
    );

    it.each(LAYOUTS)('main case matches through padserve predict --buckets B in layout %s', (layout) => {
      const bucket = BUCKETS[rotation++ % BUCKETS.length]!;
      const c = fx.cases[0]!;
      const outFile = join(tmp, `${rel}-${file}-${layout}.logits.bin`);
      const tensor = `pixel_values=${join(fx.dir, (fx.json.input as { file: string }).file)}:float32:${c.inputShape.join('x')}`;
      const y = predictOnBucket(dirOf(layout), tensor, outFile, bucket);
      expectMatch(
        `${rel}/${file}/${layout}/predict-b${bucket}`,
        y,
        c,
        fx.json.tolerance,
        fx.json.tolerance_strict,
      );
    });

    it.each(fx.cases.map((c) => [c.name, c]))('case %s matches in-process', async (_name, c) => {
      const logits = await runFolder(out, c.input, c.inputShape);
      expectMatch(`${rel}/${file}/${c.name}`, logits, c, fx.json.tolerance, fx.json.tolerance_strict);
      const classes = c.expectedShape[1]!;
      expect(argmaxRows(logits, classes)).toEqual(argmaxRows(c.expected, classes));
    });

    it('router_probs telemetry equals the reference π of every PAD conv (±1e-5)', async () => {
      const c = fx.cases[0]!;
      const debug = fx.json.debug?.attention_pi_all?.values;
      if (!debug) return;
      const session = await ModelSession.load(out, { intraOpThreads: 2 });
      try {
        const card = session.card;
        expect(card.telemetry?.kind).toBe('router_probs');
        const r = await session.run(
          { pixel_values: { dtype: 'float32', shape: c.inputShape, data: c.input } },
          [card.telemetry!.output],
        );
        const probs = r[card.telemetry!.output]!;
        const [B, L, K] = probs.shape as [number, number, number];
        expect(L).toBe(Object.keys(debug).length);
        card.telemetry!.layers.forEach((name, l) => {
          for (let b = 0; b < B; b++)
            for (let k = 0; k < K; k++)
              expect(Math.abs(probs.data[(b * L + l) * K + k]! - debug[name]![b]![k]!)).toBeLessThanOrEqual(
                1e-5,
              );
        });
      } finally {
        await session.release();
      }
    });

    it('main case matches through padserve predict', () => {
      const c = fx.cases[0]!;
      const outFile = join(tmp, `${rel}-${file}.logits.bin`);
      const r = runCli([
        'predict',
        out,
        '--tensor',
        `pixel_values=${join(fx.dir, (fx.json.input as { file: string }).file)}:float32:${c.inputShape.join('x')}`,
        '--out',
        outFile,
        '--threads',
        '2',
      ]);
      expect(r.status, r.stderr).toBe(0);
      expectMatch(`${rel}/${file}/predict`, readF32(outFile), c, fx.json.tolerance, fx.json.tolerance_strict);
    });

    it('card describes the checkpoint', () => {
      const card = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
      expect(card.family).toBe('resnet');
      expect(card.variant).toBe('pad');
      expect(card.source).toMatchObject({
        kind: 'checkpoint',
        path,
        format: file.endsWith('.safetensors') ? 'safetensors' : 'torch-zip',
      });
      expect(card.source.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(card.architecture).toMatchObject({
        block: 'bottleneck',
        blocks: [1, 1, 1, 1],
        kernels: 4,
        temperature: 1,
        padConvs: 16,
        numClasses: 10,
      });
      expect(card.labels).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
      expect(card.dynamic.layers).toHaveLength(16);
      const perLayer = (
        fx.json.model as unknown as { dynamic_ratio: { per_layer: Record<string, { realised: number }> } }
      ).dynamic_ratio.per_layer;
      for (const l of card.dynamic.layers) expect(l.ratio).toBeCloseTo(perLayer[l.name]!.realised, 6);
      expect(card.graph.buckets.map((b: { batch: number }) => b.batch)).toEqual(BUCKETS);
      expect(card.graph.maxRunBatch).toBe(8);
      // One weights file for every bucket graph.
      expect(card.graph.dataFile).toBe('model.onnx.data');
    });
  });
});

describe('padconv-layers', () => {
  const names = (
    JSON.parse(
      readFileSync(join(loadFixture('padconv-layers/conv1x1_s2_i32_o64').dir, '..', 'index.json'), 'utf8'),
    ) as { layers: { dir: string }[] }
  ).layers.map((l) => l.dir);
  it.each(names.flatMap((n) => LAYOUTS.map((l) => [n, l] as const)))(
    '%s in layout %s, every bucket',
    async (name, layout) => {
      const fx = loadFixture(`padconv-layers/${name}`);
      const out = join(tmp, `layer-${name}-${layout}`);
      await convertCommand(fx.checkpoints[0]!, out, bucketed(layout));
      const c = fx.cases[0]!;
      for (const bucket of BUCKETS) {
        const y = await runFolder(out, c.input, c.inputShape, 'x', [bucket]);
        expectMatch(
          `padconv-layers/${name}/${layout}/b${bucket}`,
          y,
          c,
          fx.json.tolerance,
          fx.json.tolerance_strict,
        );
      }
      const bucket = BUCKETS[rotation++ % BUCKETS.length]!;
      const inputFile = join(tmp, `layer-${name}-${layout}.x.bin`);
      writeFileSync(inputFile, new Uint8Array(c.input.buffer, c.input.byteOffset, c.input.byteLength));
      const outFile = join(tmp, `layer-${name}-${layout}.y.bin`);
      const y = predictOnBucket(out, `x=${inputFile}:float32:${c.inputShape.join('x')}`, outFile, bucket);
      expectMatch(
        `padconv-layers/${name}/${layout}/predict-b${bucket}`,
        y,
        c,
        fx.json.tolerance,
        fx.json.tolerance_strict,
      );
    },
  );
});

describe('batch invariance', () => {
  const fx = loadFixture('resnet-tiny');
  const photos = fx.cases[1]!;
  const per = photos.input.length / 3;
  const rows = (data: Float32Array, i: number, width: number) => data.subarray(i * width, (i + 1) * width);

  async function checkInvariance(dir: string, buckets?: number[]): Promise<void> {
    const session = await ModelSession.load(dir, { intraOpThreads: 2, buckets });
    try {
      const run = async (from: number, count: number) =>
        (
          await session.run({
            pixel_values: {
              dtype: 'float32',
              shape: [count, 3, 224, 224],
              data: photos.input.slice(from * per, (from + count) * per),
            },
          })
        ).logits!.data;
      const all = await run(0, 3);
      const classes = all.length / 3;
      const singles = [await run(0, 1), await run(1, 1), await run(2, 1)];
      const pair = await run(1, 2);
      for (let i = 0; i < 3; i++) {
        for (let j = 0; j < classes; j++)
          expect(Math.abs(singles[i]![j]! - all[i * classes + j]!)).toBeLessThanOrEqual(1e-5);
      }
      for (let i = 0; i < 2; i++)
        for (let j = 0; j < classes; j++)
          expect(Math.abs(rows(pair, i, classes)[j]! - all[(i + 1) * classes + j]!)).toBeLessThanOrEqual(
            1e-5,
          );
    } finally {
      await session.release();
    }
  }

  it('PAD model: every bucket set, and rows padded into a larger bucket answer as alone', async () => {
    const dir = join(tmp, 'resnet-tiny-model.safetensors');
    await convertCommand(fx.checkpoints[1]!, dir, bucketed('nchwc'));
    await checkInvariance(dir);
    // 1, 2 and 3 rows all padded into bucket 4 (or 8), against the per-sample graph's answers.
    await checkInvariance(dir, [4]);
    await checkInvariance(dir, [8]);
    const single = await ModelSession.load(dir, { intraOpThreads: 2, buckets: [1] });
    const padded = await ModelSession.load(dir, { intraOpThreads: 2, buckets: [8] });
    try {
      expect(padded.plan(3)).toEqual([{ start: 0, rows: 3, bucket: 8 }]);
      const feeds = {
        pixel_values: { dtype: 'float32' as const, shape: [3, 3, 224, 224], data: photos.input },
      };
      const a = (await single.run(feeds)).logits!.data;
      const b = (await padded.run(feeds)).logits!.data;
      expect(b.length).toBe(a.length);
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThanOrEqual(1e-5);
    } finally {
      await single.release();
      await padded.release();
    }
  });

  it('static form (all masks 0, batched graph) and the portable NCHW layout', async () => {
    const ck = await readCheckpoint(fx.checkpoints[1]!);
    const zeroed = new Map(ck.tensors);
    for (const [name, t] of ck.tensors)
      if (name.endsWith('.kernels_weights_mask'))
        zeroed.set(name, { ...t, data: new Float32Array(t.data.length) });
    const staticDir = join(tmp, 'tiny-static');
    const converted = convertResNetTensors(zeroed, ck.metadata, {
      name: 'tiny-static',
      source: { kind: 'checkpoint', path: 'x', format: 'safetensors', sha256: '' },
    });
    expect(converted.draft.variant).toBe('static');
    expect(converted.built.maxRunBatch).toBeNull();
    writeConverted(staticDir, converted);
    await checkInvariance(staticDir);
    const nchwDir = join(tmp, 'tiny-nchw');
    writeConverted(
      nchwDir,
      convertResNetTensors(ck.tensors, ck.metadata, {
        name: 'tiny-nchw',
        source: { kind: 'checkpoint', path: 'x', format: 'safetensors', sha256: '' },
        layout: { kind: 'nchw' },
      }),
    );
    await checkInvariance(nchwDir);
    const logits = await runFolder(nchwDir, photos.input, photos.inputShape);
    expectMatch('resnet-tiny/nchw/photos', logits, photos, fx.json.tolerance, fx.json.tolerance_strict);
  });
});

it('writes raw inputs for predict that round-trip', () => {
  // Guards the test helper itself: readF32 reads what was written, byte for byte.
  const f = join(tmp, 'roundtrip.bin');
  const data = Float32Array.from([1.5, -2, 3.25]);
  writeFileSync(f, new Uint8Array(data.buffer));
  expect([...readF32(f)]).toEqual([1.5, -2, 3.25]);
});
