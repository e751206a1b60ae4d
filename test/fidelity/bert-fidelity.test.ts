/**
 * PAD-MoE BERT fidelity against the shared bert-tiny fixture: the float64 reference (the oracle of
 * bert-checkpoints.test.ts) first, then the converted graph from both checkpoint formats (contract and strict
 * tiers, logits, pooled output, every hidden state, every router's top-k), `padserve predict` on the fixture's
 * raw tensors, every PAD-MoE strategy, and batch invariance.
 */
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCheckpoint } from '../../src/convert/checkpoint/index.js';
import { convertBertTensors, convertCommand } from '../../src/convert/bert/command.js';
import { MOE_STRATEGIES } from '../../src/convert/bert/moe.js';
import type { BertConfigJson } from '../../src/convert/bert/spec.js';
import { writeModelFolder } from '../../src/model/folder.js';
import { ModelSession, type Feeds } from '../../src/runtime/session.js';
import { int64Tensor, type HostTensor } from '../../src/tensor.js';
import { bertReference } from '../support/bert-reference.js';
import { CLI, PADNET_FIXTURES } from '../support/paths.js';
import { compare, type Tolerance as Tol } from '../support/resnet-fixtures.js';

const FIXTURE = join(PADNET_FIXTURES, 'bert-tiny');
const fixture = JSON.parse(readFileSync(join(FIXTURE, 'fixture.json'), 'utf8'));
const config = JSON.parse(readFileSync(join(FIXTURE, 'config.json'), 'utf8')) as BertConfigJson;
const [B, L] = fixture.inputs.input_ids.shape as [number, number];

function raw(file: string): Buffer {
  return readFileSync(join(FIXTURE, file));
}
function floats(file: string): Float32Array {
  const b = raw(file);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}
function ints(file: string): BigInt64Array {
  const b = raw(file);
  return new BigInt64Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

const inputs = {
  input_ids: ints('input_ids.bin'),
  attention_mask: ints('attention_mask.bin'),
  token_type_ids: ints('token_type_ids.bin'),
};
const feeds: Feeds = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, int64Tensor(v, [B, L])]));

/** Passes when the worst |a − e| / (atol + rtol·|e|) is < 1; `compare` throws on a length mismatch. */
function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol, what: string): void {
  const r = compare(actual, expected, tol).worstRatio;
  expect(r, `${what}: worst |a−e|/(atol+rtol·|e|) = ${r}`).toBeLessThan(1);
}

const expected = {
  logits: floats('expected.bin'),
  pooled: floats('expected_pooled.bin'),
  hidden: floats('expected_last_hidden_state.bin'),
};
const TOL = {
  logits: fixture.tolerance.logits as Tol,
  pooled: fixture.tolerance.pooled as Tol,
  hidden: fixture.tolerance.last_hidden_state as Tol,
};
const STRICT = {
  logits: fixture.tolerance_strict.logits as Tol,
  pooled: fixture.tolerance_strict.pooled as Tol,
  hidden: fixture.tolerance_strict.last_hidden_state as Tol,
};

let tmp: string;
let tensors: Map<string, HostTensor>;
beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'bert-fidelity-'));
  tensors = (await readCheckpoint(join(FIXTURE, 'model.safetensors'))).tensors;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('float64 reference (the oracle for other checkpoints)', () => {
  it('reproduces the fixture: logits, pooled, hidden states, every router top-k', () => {
    const ref = bertReference(config, tensors, {
      batch: B,
      sequence: L,
      inputIds: inputs.input_ids,
      attentionMask: inputs.attention_mask,
      tokenTypeIds: inputs.token_type_ids,
    });
    expectClose(ref.logits, expected.logits, STRICT.logits, 'logits');
    expectClose(ref.pooled, expected.pooled, STRICT.pooled, 'pooled');
    expectClose(ref.lastHidden, expected.hidden, STRICT.hidden, 'hidden');
    for (const [name, rows] of Object.entries(
      fixture.debug.topk_indices_all_layers as Record<string, number[][]>,
    )) {
      expect(ref.topk.get(name), name).toEqual(rows);
      expect(ref.minMargin.get(name)!).toBeCloseTo(fixture.debug.min_topk_margin_per_layer[name], 5);
    }
  });
});

describe('converted bert-tiny', () => {
  for (const file of ['model.safetensors', 'pytorch_model.bin']) {
    it(`${file}: logits within the contract and strict tiers`, async () => {
      const src = join(tmp, `src-${file}`);
      const out = join(tmp, `model-${file}`);
      const { mkdirSync } = await import('node:fs');
      mkdirSync(src);
      copyFileSync(join(FIXTURE, 'config.json'), join(src, 'config.json'));
      copyFileSync(join(FIXTURE, file), join(src, file));
      const card = await convertCommand(src, out, {});
      expect(card.family).toBe('bert');
      if (card.family !== 'bert') return;
      expect(card.source).toMatchObject({
        kind: 'checkpoint',
        format: file.endsWith('.bin') ? 'torch-zip' : 'safetensors',
      });
      expect(card.labels).toEqual(['entailment', 'neutral', 'contradiction']);
      expect(card.variant).toBe('pad');
      expect(card.dynamic.layers.map((l) => l.ratio)).toEqual(
        Object.values(fixture.model.dynamic_ratio_realised).map((l) => (l as { realised: number }).realised),
      );
      expect(card.tokenizer).toEqual({ vocab: 'bert-base-uncased', lowercase: true, maxLength: 128 });
      const session = await ModelSession.load(out, { intraOpThreads: 1 });
      const { logits } = await session.run(feeds);
      await session.release();
      expectClose(logits!.data, expected.logits, TOL.logits, 'logits');
      expectClose(logits!.data, expected.logits, STRICT.logits, 'logits (strict)');
    });
  }

  it('prefers model.safetensors when both formats are present', async () => {
    const card = await convertCommand(FIXTURE, join(tmp, 'both'), {});
    expect(card.source).toMatchObject({ kind: 'checkpoint', format: 'safetensors' });
  });

  for (const strategy of MOE_STRATEGIES) {
    it(`strategy ${strategy}: hidden states, pooled, logits (strict tier) and every router's top-k`, async () => {
      const { graph, draft } = convertBertTensors(config, tensors, { strategy, debugOutputs: true });
      const dir = join(tmp, `debug-${strategy}`);
      writeModelFolder(dir, graph, draft);
      const session = await ModelSession.load(dir, { intraOpThreads: 1 });
      const out = await session.run(feeds);
      await session.release();
      expectClose(out.last_hidden_state!.data, expected.hidden, STRICT.hidden, 'last_hidden_state');
      expectClose(out.pooler_output!.data, expected.pooled, STRICT.pooled, 'pooler_output');
      expectClose(out.logits!.data, expected.logits, STRICT.logits, 'logits');
      for (const [name, rows] of Object.entries(
        fixture.debug.topk_indices_all_layers as Record<string, number[][]>,
      )) {
        expect(Array.from(out[`router.${name}`]!.data), name).toEqual(rows.flat());
      }
    });
  }
});

describe('padserve predict', () => {
  it('runs the converted folder on the fixture tensors (strict tier)', async () => {
    const dir = join(tmp, 'cli-model');
    await convertCommand(FIXTURE, dir, {});
    const out = join(tmp, 'cli-logits.bin');
    const args = [
      'predict',
      dir,
      ...Object.keys(inputs).map((n) => `--tensor=${n}=${join(FIXTURE, `${n}.bin`)}:int64:${B}x${L}`),
      '--out',
      out,
    ];
    await promisify(execFile)(process.execPath, [CLI, ...args]);
    const b = readFileSync(out);
    expectClose(
      new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)),
      expected.logits,
      STRICT.logits,
      'predict logits',
    );
  });
});

describe('batch invariance', () => {
  it('padding and batch-mates of other lengths do not change a row (≤ 1e-5 on logits)', async () => {
    const dir = join(tmp, 'invariance');
    await convertCommand(FIXTURE, dir, {});
    const session = await ModelSession.load(dir, { intraOpThreads: 2 });
    const lengths = fixture.input_layout.map((r: { length: number }) => r.length) as number[];
    const row = (b: number, width: number) => {
      const pick = (src: BigInt64Array) =>
        Array.from({ length: width }, (_, p) => (p < lengths[b]! ? src[b * L + p]! : 0n));
      return {
        ids: pick(inputs.input_ids),
        mask: pick(inputs.attention_mask),
        types: pick(inputs.token_type_ids),
      };
    };
    const batchOf = (rows: number[], width: number): Feeds => {
      const rs = rows.map((b) => row(b, width));
      const t = (k: 'ids' | 'mask' | 'types') =>
        int64Tensor(
          rs.flatMap((r) => r[k]),
          [rows.length, width],
        );
      return { input_ids: t('ids'), attention_mask: t('mask'), token_type_ids: t('types') };
    };
    const alone = await Promise.all(
      lengths.map(async (len, b) => (await session.run(batchOf([b], len))).logits!.data),
    );
    for (const [rows, width] of [
      [[2, 0, 1], 24],
      [[1, 2, 2, 0, 1], 40],
      [[0], 31],
    ] as [number[], number][]) {
      const { logits } = await session.run(batchOf(rows, width));
      rows.forEach((b, i) => {
        const got = logits!.data.subarray(i * 3, i * 3 + 3);
        for (let c = 0; c < 3; c++)
          expect(
            Math.abs(got[c]! - alone[b]![c]!),
            `row ${b} in [${rows}] width ${width}`,
          ).toBeLessThanOrEqual(1e-5);
      });
    }
    await session.release();
  });
});
