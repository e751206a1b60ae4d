/**
 * Checkpoints the fixture does not cover, written with the project's own writers (torch zip, safetensors),
 * converted through `convertCommand` and compared with the float64 reference; and broken checkpoints, which
 * must fail with one-line errors naming the tensor or config field (also through the CLI: exit ≠ 0, no stack).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/convert/checkpoint/index.js';
import { convertBertTensors, convertCommand } from '../../src/convert/bert/command.js';
import { ConvertError } from '../../src/convert/options.js';
import { ModelSession } from '../../src/runtime/session.js';
import { int64Tensor, type HostTensor } from '../../src/tensor.js';
import {
  bertReference,
  randomBertCheckpoint,
  tokenBatch,
  type RandomBertOptions,
} from '../support/bert-reference.js';
import { CLI } from '../support/paths.js';
import { writeTorchZip } from '../support/torch-writer.js';

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bert-checkpoints-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Format = 'safetensors' | 'torch';

function writeFolder(
  name: string,
  config: Record<string, unknown>,
  tensors: Map<string, HostTensor>,
  format: Format,
): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  if (format === 'safetensors')
    writeFileSync(join(dir, 'model.safetensors'), writeSafetensors(tensors, { format: 'pt' }));
  else writeFileSync(join(dir, 'pytorch_model.bin'), writeTorchZip({ stateDict: tensors }, 'pytorch_model'));
  return dir;
}

const SMALL = { layers: 3, hidden: 48, heads: 3, intermediate: 96 };
const CASES: {
  name: string;
  opts: RandomBertOptions;
  format: Format;
  stripPrefix?: boolean;
  variant: string;
}[] = [
  {
    name: 'E=4 k=1 ratio 0.2',
    opts: { ...SMALL, experts: 4, topK: 1, ratio: 0.2, seed: 11 },
    format: 'safetensors',
    variant: 'pad',
  },
  {
    name: 'E=4 k=3 ratio 0.8',
    opts: { ...SMALL, experts: 4, topK: 3, ratio: 0.8, seed: 12 },
    format: 'torch',
    variant: 'pad',
  },
  {
    name: 'regression head (num_labels 1), no bert. prefix',
    opts: { ...SMALL, experts: 4, topK: 2, numLabels: 1, seed: 13 },
    format: 'torch',
    stripPrefix: true,
    variant: 'pad',
  },
  {
    name: 'dense checkpoint (static baseline)',
    opts: { ...SMALL, variant: 'dense', seed: 14 },
    format: 'safetensors',
    variant: 'dense',
  },
  {
    name: 'fully dynamic MoE (all-ones masks, no static_fc)',
    opts: { ...SMALL, variant: 'moe', experts: 4, topK: 2, seed: 15 },
    format: 'torch',
    variant: 'moe',
  },
];

describe('unseen checkpoints vs the float64 reference', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const { config, tensors } = randomBertCheckpoint(c.opts);
      const stored = c.stripPrefix
        ? new Map([...tensors].map(([k, v]) => [k.replace(/^bert\./, ''), v]))
        : tensors;
      const src = writeFolder(`src-${c.opts.seed}`, config, stored, c.format);
      const out = join(tmp, `model-${c.opts.seed}`);
      const card = await convertCommand(src, out, {});
      expect(card.variant).toBe(c.variant);
      if (card.family === 'bert')
        expect(card.problemType).toBe(c.opts.numLabels === 1 ? 'regression' : 'single_label_classification');

      const inputs = tokenBatch([20, 13, 7, 2], 1000, 22);
      const ref = bertReference(config, tensors, inputs);
      // Router choices closer than float32 noise would make the comparison meaningless: the seeds avoid them.
      for (const [name, margin] of ref.minMargin)
        expect(margin, `${name} top-k margin`).toBeGreaterThan(1e-4);
      const session = await ModelSession.load(out, { intraOpThreads: 1 });
      const t = (d: ArrayLike<number | bigint>) => int64Tensor(d as BigInt64Array, inputs.shape);
      const { logits } = await session.run({
        input_ids: t(inputs.inputIds),
        attention_mask: t(inputs.attentionMask),
        token_type_ids: t(inputs.tokenTypeIds),
      });
      await session.release();
      expect(logits!.shape).toEqual([4, c.opts.numLabels ?? 3]);
      for (let i = 0; i < ref.logits.length; i++) {
        const e = ref.logits[i]!;
        expect(Math.abs(logits!.data[i]! - e), `logit ${i}`).toBeLessThanOrEqual(1e-5 + 1e-3 * Math.abs(e));
      }
    });
  }
});

describe('labels', () => {
  it('--labels FILE overrides id2label and must match the head', async () => {
    const { config, tensors } = randomBertCheckpoint({ ...SMALL, layers: 1, variant: 'dense', seed: 31 });
    const src = writeFolder('labels-src', config, tensors, 'safetensors');
    writeFileSync(join(tmp, 'labels.txt'), 'yes\nmaybe\nno\n');
    const card = await convertCommand(src, join(tmp, 'labels-out'), { labelsFile: join(tmp, 'labels.txt') });
    expect(card.labels).toEqual(['yes', 'maybe', 'no']);
    writeFileSync(join(tmp, 'two.txt'), 'yes\nno\n');
    await expect(
      convertCommand(src, join(tmp, 'labels-bad'), { labelsFile: join(tmp, 'two.txt') }),
    ).rejects.toThrow(/labels: 2 given, the model has 3 outputs/);
  });
});

describe('broken checkpoints fail with one-line errors', () => {
  const base = () => randomBertCheckpoint({ ...SMALL, layers: 1, experts: 4, topK: 2, seed: 21 });
  const bad: { name: string; edit: (c: ReturnType<typeof base>) => void; message: RegExp }[] = [
    {
      name: 'missing tensor',
      edit: (c) => c.tensors.delete('bert.encoder.layer.0.output.dense.experts.2.dense.weight'),
      message: /missing tensor bert\.encoder\.layer\.0\.output\.dense\.experts\.2\.dense\.weight/,
    },
    {
      name: 'misshapen tensor',
      edit: (c) =>
        c.tensors.set('bert.encoder.layer.0.attention.self.key.weight', {
          dtype: 'float32',
          shape: [48, 47],
          data: new Float32Array(48 * 47),
        }),
      message: /bert\.encoder\.layer\.0\.attention\.self\.key\.weight: shape \[48, 47\], expected \[48, 48\]/,
    },
    {
      name: 'non-binary mask',
      edit: (c) =>
        ((c.tensors.get('bert.encoder.layer.0.intermediate.dense.mask')!.data as Float32Array)[5] = 0.5),
      message: /bert\.encoder\.layer\.0\.intermediate\.dense\.mask: mask value 0\.5 .* not 0 or 1/,
    },
    { name: 'k > E', edit: (c) => (c.config.k = 5), message: /k = 5 exceeds n_experts = 4/ },
    {
      name: 'hidden_act relu',
      edit: (c) => (c.config.hidden_act = 'relu'),
      message: /hidden_act "relu" is not supported/,
    },
    {
      name: 'hidden_act gelu_new',
      edit: (c) => (c.config.hidden_act = 'gelu_new'),
      message: /hidden_act "gelu_new" is not supported/,
    },
    {
      name: 'NaN weight',
      edit: (c) => ((c.tensors.get('bert.pooler.dense.weight')!.data as Float32Array)[3] = NaN),
      message: /bert\.pooler\.dense\.weight: non-finite value NaN/,
    },
  ];
  for (const b of bad) {
    it(b.name, () => {
      const c = base();
      b.edit(c);
      let error: unknown;
      try {
        convertBertTensors(c.config, c.tensors);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConvertError);
      expect((error as Error).message).toMatch(b.message);
      expect((error as Error).message).not.toContain('\n');
    });
  }

  for (const b of bad.filter((x) =>
    ['missing tensor', 'non-binary mask', 'hidden_act gelu_new'].includes(x.name),
  )) {
    it(`through the CLI: ${b.name}`, async () => {
      const c = base();
      b.edit(c);
      const src = writeFolder(`bad-${b.name.replace(/\W+/g, '-')}`, c.config, c.tensors, 'safetensors');
      const run = promisify(execFile)(process.execPath, [CLI, 'convert', src, '--out', join(tmp, 'never')]);
      const err = (await run.then(
        () => null,
        (e: unknown) => e,
      )) as { code: number; stderr: string } | null;
      expect(err, 'convert must fail').not.toBeNull();
      expect(err!.code).not.toBe(0);
      const lines = err!.stderr.split('\n').filter((l) => l.trim() && !l.startsWith('npm warn'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(b.message);
      expect(err!.stderr).not.toMatch(/^\s+at /m);
    });
  }
});
