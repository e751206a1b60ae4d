/**
 * The BERT CUDA form (`card.cudaGraph`: strategy all-experts, static shapes) run on the CPU execution provider:
 * it reproduces the bert-tiny fixture like the CPU form and gives the CPU form's logits and telemetry (≤ 1e-5);
 * synth folders share one weights file between the forms, GLUE suite heads carry both forms, and a CUDA form
 * whose large tensors are not the CPU form's cannot claim its file. No GPU here: placement on CUDA is not tested.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BERT_CUDA_FORM, convertCommand } from '../../src/convert/bert/command.js';
import type { ModelCard } from '../../src/model/card.js';
import { readModelCard, writeModelFolder } from '../../src/model/folder.js';
import { GraphBuilder } from '../../src/onnx/builder.js';
import { Ops } from '../../src/onnx/ops.js';
import { synthesizeBert, synthesizeGlueSuite } from '../../src/synth/bert.js';
import { floatTensor } from '../../src/tensor.js';
import { tokenBatch } from '../support/bert-reference.js';
import { PADNET_FIXTURES } from '../support/paths.js';
import { compare, type Tolerance as Tol } from '../support/resnet-fixtures.js';

const FIXTURE = join(PADNET_FIXTURES, 'bert-tiny');
const fixture = JSON.parse(readFileSync(join(FIXTURE, 'fixture.json'), 'utf8'));
const [B, L] = fixture.inputs.input_ids.shape as [number, number];

function binary<T>(file: string, Ctor: new (b: ArrayBuffer) => T): T {
  const b = readFileSync(join(FIXTURE, file));
  return new Ctor(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
}

type Inputs = Record<
  'input_ids' | 'attention_mask' | 'token_type_ids',
  { data: BigInt64Array; shape: number[] }
>;

const fixtureInputs: Inputs = {
  input_ids: { data: binary('input_ids.bin', BigInt64Array), shape: [B, L] },
  attention_mask: { data: binary('attention_mask.bin', BigInt64Array), shape: [B, L] },
  token_type_ids: { data: binary('token_type_ids.bin', BigInt64Array), shape: [B, L] },
};

/** Runs one graph file of a model folder on onnxruntime's CPU EP (any form, whatever `graphFor` would pick). */
async function runGraph(dir: string, file: string, inputs: Inputs, fetch: string[]) {
  const session = await ort.InferenceSession.create(join(dir, file), { intraOpNumThreads: 1 });
  try {
    const feeds = Object.fromEntries(
      Object.entries(inputs).map(([k, v]) => [k, new ort.Tensor('int64', v.data, v.shape)]),
    );
    const out = await session.run(feeds, fetch);
    return Object.fromEntries(fetch.map((n) => [n, out[n]!.data as Float32Array]));
  } finally {
    await session.release();
  }
}

async function bothForms(dir: string, inputs: Inputs, fetch = ['logits']) {
  const card = readModelCard(dir);
  if (!card.cudaGraph) throw new Error(`${dir}: no CUDA form`);
  return {
    card,
    cpu: await runGraph(dir, card.graph.file, inputs, fetch),
    cuda: await runGraph(dir, card.cudaGraph.file, inputs, fetch),
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}

function tokenInputs(lengths: number[], width: number, seed: number): Inputs {
  const t = tokenBatch(lengths, 30522, width, seed);
  return {
    input_ids: { data: t.inputIds as BigInt64Array, shape: t.shape },
    attention_mask: { data: t.attentionMask as BigInt64Array, shape: t.shape },
    token_type_ids: { data: t.tokenTypeIds as BigInt64Array, shape: t.shape },
  };
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bert-cuda-form-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('bert-tiny fixture through the CUDA form (CPU EP)', () => {
  it('reproduces expected.bin like the CPU form, and the CPU form to ≤ 1e-5', async () => {
    const dir = join(tmp, 'converted');
    const card = await convertCommand(FIXTURE, dir, {});
    expect(card.cudaGraph).toMatchObject({ file: 'model.cuda.onnx', form: BERT_CUDA_FORM });
    const { cpu, cuda } = await bothForms(dir, fixtureInputs);
    const expected = binary('expected.bin', Float32Array);
    const strict = fixture.tolerance_strict.logits as Tol;
    const ratios = {
      cpu: compare(cpu.logits!, expected, strict).worstRatio,
      cuda: compare(cuda.logits!, expected, strict).worstRatio,
    };
    const diff = maxAbsDiff(cuda.logits!, cpu.logits!);
    console.log(
      `bert-tiny: CUDA form vs CPU form max |Δlogit| ${diff.toExponential(2)}; vs expected.bin ` +
        `${maxAbsDiff(cuda.logits!, expected).toExponential(2)} (CPU form ${maxAbsDiff(cpu.logits!, expected).toExponential(2)}); ` +
        `strict-tier ratio cuda ${ratios.cuda.toFixed(3)}, cpu ${ratios.cpu.toFixed(3)}`,
    );
    expect(ratios.cuda).toBeLessThan(1);
    expect(ratios.cpu).toBeLessThan(1);
    expect(diff).toBeLessThanOrEqual(1e-5);
  });
});

describe('synthesized PAD BERT', () => {
  let dir: string;
  let card: ModelCard;
  beforeAll(async () => {
    dir = join(tmp, 'synth');
    card = await synthesizeBert({ outDir: dir, task: 'mnli', layers: 2, hidden: 64, seed: 11 });
  });

  it('the CUDA form reads the CPU form weights file (one copy on disk)', () => {
    expect(card.graph.dataFile).toBe('model.onnx.data');
    expect(card.cudaGraph?.dataFile).toBe('model.onnx.data');
    expect(existsSync(join(dir, 'model.cuda.onnx.data'))).toBe(false);
    // The CUDA graph file holds only small inline constants and the head; the experts are in the shared file.
    expect(statSync(join(dir, 'model.cuda.onnx')).size).toBeLessThan(
      statSync(join(dir, 'model.onnx.data')).size / 20,
    );
    expect(card.cudaGraph!.weightsSha256).not.toBe(card.graph.weightsSha256); // other small constants
  });

  it('logits and expert_tokens telemetry match the CPU form on padded batches (≤ 1e-5)', async () => {
    for (const [lengths, width, seed] of [
      [[12, 5, 9], 12, 1],
      [[30], 30, 2],
      [[3, 40, 17, 8], 48, 3],
    ] as [number[], number, number][]) {
      const { cpu, cuda } = await bothForms(dir, tokenInputs(lengths, width, seed), [
        'logits',
        'expert_tokens',
      ]);
      expect(maxAbsDiff(cuda.logits!, cpu.logits!), `logits ${lengths}`).toBeLessThanOrEqual(1e-5);
      expect(Array.from(cuda.expert_tokens!), `expert_tokens ${lengths}`).toEqual(
        Array.from(cpu.expert_tokens!),
      );
    }
  });
});

describe('GLUE suite heads carry the CUDA form', () => {
  it('derived heads: both forms share the hard-linked file; digests and logits match a direct synth', async () => {
    const size = { layers: 1, hidden: 64 };
    const dirs = await synthesizeGlueSuite({
      rootDir: join(tmp, 'suite'),
      tasks: ['mnli', 'stsb'],
      seed: 4,
      ...size,
    });
    const derived = readModelCard(dirs.stsb!);
    expect(derived.cudaGraph?.dataFile).toBe('model.onnx.data');
    expect(statSync(join(dirs.stsb!, 'model.onnx.data')).ino).toBe(
      statSync(join(dirs.mnli!, 'model.onnx.data')).ino,
    );
    const direct = await synthesizeBert({ outDir: join(tmp, 'direct-stsb'), task: 'stsb', seed: 4, ...size });
    expect(derived.cudaGraph!.weightsSha256).toBe(direct.cudaGraph!.weightsSha256);
    expect(derived.cudaGraph!.parameters).toBe(direct.cudaGraph!.parameters);
    const inputs = tokenInputs([9, 14], 14, 5);
    const a = await bothForms(dirs.stsb!, inputs);
    const b = await bothForms(join(tmp, 'direct-stsb'), inputs);
    expect(Array.from(a.cuda.logits!)).toEqual(Array.from(b.cuda.logits!));
    expect(maxAbsDiff(a.cuda.logits!, a.cpu.logits!)).toBeLessThanOrEqual(1e-5);

    // A later call derives a new task from the folders on disk (the CUDA encoder digest read back from them).
    const more = await synthesizeGlueSuite({
      rootDir: join(tmp, 'suite'),
      tasks: ['mnli', 'rte'],
      seed: 4,
      ...size,
    });
    const rte = await synthesizeBert({ outDir: join(tmp, 'direct-rte'), task: 'rte', seed: 4, ...size });
    expect(readModelCard(more.rte!).cudaGraph!.weightsSha256).toBe(rte.cudaGraph!.weightsSha256);
  });
});

describe('a CUDA form sharing the CPU form weights file', () => {
  function graph(weight: Float32Array): GraphBuilder {
    const g = new GraphBuilder('t');
    const ops = new Ops(g);
    const x = g.input('x', 'float32', ['batch', 64]);
    g.output(ops.matmul(x, g.initializer('w', floatTensor(weight, [64, 64]))), 'y', 'float32', ['batch', 64]);
    return g;
  }

  it('is refused when one of its large tensors is not the CPU form one', () => {
    const {
      graph: _g,
      cudaGraph: _c,
      format: _f,
      formatVersion: _v,
      ...draft
    } = readModelCard(join(tmp, 'synth'));
    const cuda = (w: Float32Array) => ({ stem: 'model.cuda', graph: graph(w), shareCpuData: true });
    const cpu = new Float32Array(64 * 64).fill(1);
    const write = (w: Float32Array) =>
      writeModelFolder(join(tmp, 'share'), graph(cpu), draft, {
        externalThresholdBytes: 1024,
        cuda: cuda(w),
      });
    expect(write(cpu.slice()).cudaGraph?.dataFile).toBe('model.onnx.data');
    expect(() => write(new Float32Array(64 * 64).fill(2))).toThrow(
      /initializer w is not in model\.onnx\.data/,
    );
  });
});
