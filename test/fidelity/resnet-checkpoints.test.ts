/**
 * Checkpoints the converter has never seen: random small PAD-Net ResNets (other widths, three stages, BasicBlock,
 * 7 classes, masks of ratio 0 / 1 / random, τ = 0.7 and 2.5, `module.` prefix, no stem/classifier masks, stray
 * mask keys on non-PAD modules) written as torch zip or safetensors, converted through `padserve convert`'s code
 * path and compared with the independent float64 reference (test/support/resnet-reference.ts). Invariants:
 * M = 0 is the static ResNet built from Θ̄ (the dynamic tensors do not matter), M = 1 with λ_d = 1 is DY-Conv
 * (Θ̄ does not matter). Bad checkpoints give one-line ConvertErrors naming the tensor, also through the CLI.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../../src/convert/checkpoint/index.js';
import { convertCommand, convertResNetTensors } from '../../src/convert/resnet/command.js';
import { ConvertError } from '../../src/convert/options.js';
import type { ModelCard } from '../../src/model/card.js';
import { ModelSession } from '../../src/runtime/session.js';
import type { HostTensor } from '../../src/tensor.js';
import {
  FIXTURES,
  compare,
  randomImages,
  randomResNetStateDict,
  type RandomResNetOptions,
} from '../support/resnet-fixtures.js';
import { MNIST_PREPROCESS } from '../support/mnist-model.js';
import { referenceForward } from '../support/resnet-reference.js';
import { writeTorchZip, type ExtraValue } from '../support/torch-writer.js';

const tmp = mkdtempSync(join(tmpdir(), 'padserve-resnet-ckpt-'));
const log = console.log;
beforeAll(() => {
  console.log = () => undefined;
});
afterAll(() => {
  console.log = log;
  rmSync(tmp, { recursive: true, force: true });
});

const TOL = { atol: 1e-4, rtol: 1e-3 };
const SIZE = 40;

function writeCheckpoint(
  file: string,
  sd: Map<string, HostTensor>,
  temperature: number | null,
  format: 'torch' | 'safetensors',
): string {
  const path = join(tmp, file);
  if (format === 'torch') {
    const extra: Record<string, ExtraValue> = { arch: 'DyResNet50_PAD', epoch: 0, best_prec1: { float: 0 } };
    if (temperature !== null) extra.temperature = { float: temperature };
    writeFileSync(path, writeTorchZip({ stateDict: sd, extra }, file.replace(/\.[^.]*$/, '')));
  } else {
    writeFileSync(
      path,
      writeSafetensors(
        sd,
        temperature === null ? { format: 'pt' } : { format: 'pt', temperature: String(temperature) },
      ),
    );
  }
  return path;
}

async function logitsOf(
  dir: string,
  x: Float32Array,
  batch: number,
  buckets?: number[],
): Promise<Float32Array> {
  const s = await ModelSession.load(dir, { intraOpThreads: 2, buckets });
  try {
    return (await s.run({ pixel_values: { dtype: 'float32', shape: [batch, 3, SIZE, SIZE], data: x } }))
      .logits!.data;
  } finally {
    await s.release();
  }
}

function expectClose(actual: Float32Array, reference: Float64Array[], label: string): void {
  const r = compare(
    actual,
    reference.flatMap((row) => [...row]),
    TOL,
  );
  expect(r.worstRatio, `${label}: max |Δ| ${r.maxAbs}`).toBeLessThanOrEqual(1);
}

interface Case {
  name: string;
  opts: RandomResNetOptions;
  tau: number;
  format: 'torch' | 'safetensors';
  variant: ModelCard['variant'];
}

const cases: Case[] = [
  {
    name: 'bottleneck [2,1,1], 7 classes, random ratio, τ 0.7, module. prefix, stray masks, torch zip',
    opts: {
      seed: 1,
      block: 'bottleneck',
      blocks: [2, 1, 1],
      planes: 8,
      stem: 16,
      classes: 7,
      ratio: 0.4,
      prefix: 'module.',
      strayMasks: true,
    },
    tau: 0.7,
    format: 'torch',
    variant: 'pad',
  },
  {
    name: 'BasicBlock [2,2] (ResNet-18-like), per-layer ratios 0 / 1 / random, τ 2.5, stem masks, safetensors',
    opts: {
      seed: 2,
      block: 'basic',
      blocks: [2, 2],
      planes: 16,
      stem: 16,
      classes: 5,
      ratio: (i) => [0, 1, 0.25, 0.7][i % 4]!,
      stemMasks: true,
    },
    tau: 2.5,
    format: 'safetensors',
    variant: 'pad',
  },
  {
    name: 'bottleneck [1,1,1,1], width not a multiple of 8, kernels_bias, K = 3, torch zip',
    opts: {
      seed: 3,
      block: 'bottleneck',
      blocks: [1, 1, 1, 1],
      planes: 5,
      stem: 12,
      classes: 3,
      ratio: 0.3,
      kernels: 3,
      kernelsBias: true,
    },
    tau: 1,
    format: 'torch',
    variant: 'pad',
  },
];

describe('random PAD-Net ResNets match the reference', () => {
  it.each(cases.map((c) => [c.name, c]))('%s', async (_name, c) => {
    const { stateDict } = randomResNetStateDict(c.opts);
    const path = writeCheckpoint(
      `${c.opts.seed}.${c.format === 'torch' ? 'pth.tar' : 'safetensors'}`,
      stateDict,
      c.tau,
      c.format,
    );
    const dir = join(tmp, `model-${c.opts.seed}`);
    const card = await convertCommand(path, dir, {
      graph: { layout: 'probe', buckets: [1, 2, 4], cudaForm: false },
    });
    expect(card.variant).toBe(c.variant);
    expect(card.graph.buckets?.map((b) => b.batch)).toEqual([1, 2, 4]);
    expect(card.architecture).toMatchObject({
      block: c.opts.block,
      blocks: c.opts.blocks,
      stemChannels: c.opts.stem,
      numClasses: c.opts.classes,
      temperature: c.tau,
    });
    // Three images: per sample (bucket 1), padded into bucket 4, and split over buckets 2 + 1.
    const x = randomImages(c.opts.seed, 3, SIZE);
    const reference = referenceForward(stateDict, x, [3, 3, SIZE, SIZE], c.tau);
    for (const buckets of [[1], [4], [1, 2]])
      expectClose(await logitsOf(dir, x, 3, buckets), reference, `${c.name}, buckets ${buckets.join(',')}`);
  });
});

describe('invariants', () => {
  const base: RandomResNetOptions = {
    seed: 11,
    block: 'bottleneck',
    blocks: [1, 1],
    planes: 8,
    stem: 16,
    classes: 4,
    ratio: 0,
  };
  const source = { kind: 'checkpoint' as const, path: 'mem', format: 'safetensors' as const, sha256: '' };
  const x = randomImages(5, 2, SIZE);
  const perturb = (sd: Map<string, HostTensor>, which: (key: string) => boolean) =>
    new Map(
      [...sd].map(([k, t]) => [
        k,
        which(k) ? { ...t, data: (t.data as Float32Array).map((v, i) => v + 0.5 * Math.sin(i + 1)) } : t,
      ]),
    );
  /** Θ̄ of every PAD conv: `<conv>.weight` next to `<conv>.kernels_weights`. */
  const isStaticKernel = (sd: Map<string, HostTensor>) => (k: string) =>
    k.endsWith('.weight') && sd.has(k.replace(/weight$/, 'kernels_weights'));

  async function convertAndRun(
    sd: Map<string, HostTensor>,
    name: string,
  ): Promise<{ logits: Float32Array; card: ModelCard }> {
    const c = convertResNetTensors(sd, { temperature: '1.0' }, { name, source });
    const { writeConverted } = await import('../../src/convert/resnet/command.js');
    const card = writeConverted(join(tmp, name), c);
    return { logits: await logitsOf(join(tmp, name), x, 2), card };
  }

  it('M = 0 is the static ResNet built from Θ̄ (routers and Θ_k are ignored)', async () => {
    const { stateDict } = randomResNetStateDict(base);
    const a = await convertAndRun(stateDict, 'm0');
    expect(a.card.variant).toBe('static');
    expect(a.card.graph.maxRunBatch).toBeNull();
    const noisy = perturb(
      stateDict,
      (k) => k.endsWith('.kernels_weights') || k.endsWith('.attention.fc1.weight'),
    );
    const b = await convertAndRun(noisy, 'm0-noisy');
    expect(compare(b.logits, a.logits, { atol: 1e-6, rtol: 1e-6 }).pass).toBe(true);
    const reference = referenceForward(stateDict, x, [2, 3, SIZE, SIZE], 1);
    expect(Math.max(...reference.flatMap((r) => [...r].map(Math.abs)))).toBeGreaterThan(0.1);
    expectClose(a.logits, reference, 'M = 0');
  });

  it('M = 1 with λ_d = 1 is DY-Conv (Θ̄ is ignored)', async () => {
    const { stateDict } = randomResNetStateDict({ ...base, seed: 12, ratio: 1, phiD: 0 });
    const a = await convertAndRun(stateDict, 'm1');
    expect(a.card.variant).toBe('dyconv');
    const b = await convertAndRun(perturb(stateDict, isStaticKernel(stateDict)), 'm1-noisy');
    expect(compare(b.logits, a.logits, { atol: 1e-6, rtol: 1e-6 }).pass).toBe(true);
    expectClose(a.logits, referenceForward(stateDict, x, [2, 3, SIZE, SIZE], 1), 'M = 1');
  });
});

describe('bad checkpoints', () => {
  const good = () =>
    randomResNetStateDict({
      seed: 21,
      block: 'bottleneck',
      blocks: [1, 1],
      planes: 8,
      stem: 16,
      classes: 4,
      ratio: 0.3,
    }).stateDict;
  const source = { kind: 'checkpoint' as const, path: 'mem', format: 'safetensors' as const, sha256: '' };
  const convert = (
    sd: Map<string, HostTensor>,
    meta: Record<string, string> = { temperature: '1.0' },
    temperature?: string,
  ) => convertResNetTensors(sd, meta, { name: 'bad', source, temperature });
  const edit = (name: string, f: (t: HostTensor) => HostTensor | null) => {
    const sd = good();
    const t = f(sd.get(name)!);
    if (t) sd.set(name, t);
    else sd.delete(name);
    return sd;
  };
  const f32 = (t: HostTensor, g: (d: Float32Array) => void): HostTensor => {
    const data = Float32Array.from(t.data as Float32Array);
    g(data);
    return { ...t, data };
  };

  const bad: [string, () => Map<string, HostTensor>, RegExp][] = [
    [
      'missing tensor',
      () => edit('layer2.layers.0.conv2.phi_d', () => null),
      /^layer2\.layers\.0\.conv2\.phi_d: missing \(expected shape \[1\]\)$/,
    ],
    [
      'misshapen tensor',
      () =>
        edit('layer2.layers.0.conv2.kernels_weights_mask', (t) => ({
          ...t,
          shape: [1, 16, 16, 9],
          data: t.data,
        })),
      /^layer2\.layers\.0\.conv2\.kernels_weights_mask: expected shape \[1, 16, 16, 3, 3\], got \[1, 16, 16, 9\]$/,
    ],
    [
      'NaN weight',
      () => edit('layer1.layers.0.conv3.kernels_weights', (t) => f32(t, (d) => (d[5] = NaN))),
      /^layer1\.layers\.0\.conv3\.kernels_weights: non-finite value NaN at index 5$/,
    ],
    [
      'non-binary mask',
      () => edit('layer1.layers.0.conv1.kernels_weights_mask', (t) => f32(t, (d) => (d[17] = 0.5))),
      /^layer1\.layers\.0\.conv1\.kernels_weights_mask: mask must be 0\/1, found 0\.5 at index 17$/,
    ],
    [
      'inconsistent channels',
      () =>
        edit('layer1.layers.0.bn2.running_var', (t) => ({
          ...t,
          shape: [7],
          data: (t.data as Float32Array).subarray(0, 7),
        })),
      /^layer1\.layers\.0\.bn2\.running_var: expected shape \[8\], got \[7\]$/,
    ],
    [
      'negative variance',
      () => edit('bn1.running_var', (t) => f32(t, (d) => (d[3] = -1))),
      /^bn1\.running_var: BatchNorm variance must be ≥ 0/,
    ],
  ];
  it.each(bad)('%s → one-line ConvertError naming the tensor', (_what, make, message) => {
    expect(() => convert(make())).toThrow(ConvertError);
    try {
      convert(make());
    } catch (err) {
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('no temperature: an error unless --temperature is given; never a default', () => {
    expect(() => convert(good(), {})).toThrow(/^temperature: not in the checkpoint/);
    expect(convert(good(), {}, '1.5').spec.temperature).toBe(1.5);
    expect(() => convert(good(), {}, 'abc')).toThrow(/--temperature: expected a positive number/);
  });

  it('not a ResNet at all (the BERT fixture) → one line', async () => {
    const bert = join(FIXTURES, 'bert-tiny', 'model.safetensors');
    await expect(convertCommand(bert, join(tmp, 'bert-as-resnet'), {})).rejects.toThrow(
      /^conv1\.weight: missing: not a PAD-Net ResNet checkpoint/,
    );
  });

  function cli(args: string[]) {
    return spawnSync(process.execPath, ['bin/padserve.js', ...args], { encoding: 'utf8', timeout: 120_000 });
  }
  const expectOneLine = (r: ReturnType<typeof cli>, pattern: RegExp) => {
    expect(r.status).not.toBe(0);
    const lines = r.stderr.trim().split('\n');
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  };

  it('through the CLI: non-zero exit, one line on stderr, no stack trace', () => {
    const nonBinary = writeCheckpoint('nonbinary.safetensors', bad[3]![1](), 1, 'safetensors');
    expectOneLine(
      cli(['convert', nonBinary, '--out', join(tmp, 'cli-bad')]),
      /^padserve convert: layer1\.layers\.0\.conv1\.kernels_weights_mask: mask must be 0\/1, found 0\.5 at index 17$/,
    );
    expect(existsSync(join(tmp, 'cli-bad'))).toBe(false);
    const noTau = writeCheckpoint('notau.pth.tar', good(), null, 'torch');
    expectOneLine(
      cli(['convert', noTau, '--out', join(tmp, 'cli-notau')]),
      /^padserve convert: temperature: not in the checkpoint/,
    );
    const garbage = join(tmp, 'garbage.pth');
    writeFileSync(garbage, 'this is not a checkpoint');
    expectOneLine(
      cli(['convert', garbage, '--out', join(tmp, 'cli-garbage')]),
      /^padserve convert: .*garbage\.pth: /,
    );
  });
});

describe('convert options', () => {
  const sd = () =>
    randomResNetStateDict({
      seed: 31,
      block: 'basic',
      blocks: [1],
      planes: 16,
      stem: 16,
      classes: 3,
      ratio: 0.3,
    }).stateDict;
  const path = () => writeCheckpoint('options.safetensors', sd(), 1, 'safetensors');

  it('--labels and --preprocess go into the card; the summary is one line', async () => {
    const labels = join(tmp, 'labels.txt');
    writeFileSync(labels, 'cat\ndog\nbird\n');
    const pre = join(tmp, 'pre.json');
    const spec = { ...MNIST_PREPROCESS, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
    writeFileSync(pre, JSON.stringify(spec));
    const lines: string[] = [];
    console.log = (...a: unknown[]) => lines.push(a.join(' '));
    try {
      const card = await convertCommand(path(), join(tmp, 'opts'), {
        labelsFile: labels,
        preprocessFile: pre,
        name: 'tiny-basic',
      });
      expect(card.labels).toEqual(['cat', 'dog', 'bird']);
      expect(card.name).toBe('tiny-basic');
      expect(card.family === 'resnet' && card.preprocess).toEqual(spec);
    } finally {
      console.log = () => undefined;
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      /^resnet pad: basic \[1\] widths 16 stem 16 K=4 τ=1 3 classes; 2 PAD convs, \d+\.\d% dynamic; .* MiB \((nchwc\d+|nchw) per-sample, weights: auto, buckets 1\)$/,
    );
  });

  it('bad --labels / --preprocess files are one-line errors naming the problem', async () => {
    const labels = join(tmp, 'labels2.txt');
    writeFileSync(labels, 'a\nb\n');
    await expect(convertCommand(path(), join(tmp, 'o1'), { labelsFile: labels })).rejects.toThrow(
      /--labels .*: 2 labels for a model with 3 classes/,
    );
    const pre = join(tmp, 'pre2.json');
    writeFileSync(
      pre,
      // valid but for the kernel
      JSON.stringify({
        ...MNIST_PREPROCESS,
        size: 224,
        kernel: 'lanczos',
        mean: [0, 0, 0],
        std: [1, 1, 1],
        scale: 1,
      }),
    );
    await expect(convertCommand(path(), join(tmp, 'o2'), { preprocessFile: pre })).rejects.toThrow(
      /--preprocess .*: kernel: expected one of pil-bilinear/,
    );
    writeFileSync(pre, '{ not json');
    await expect(convertCommand(path(), join(tmp, 'o3'), { preprocessFile: pre })).rejects.toThrow(
      /--preprocess .*: invalid JSON/,
    );
    writeFileSync(
      pre,
      JSON.stringify({
        size: 224,
        resize: 'direct',
        kernel: 'nearest',
        channels: 'rgb',
        mean: [0, 0],
        std: [1, 1, 1],
        scale: 1,
      }),
    );
    await expect(convertCommand(path(), join(tmp, 'o4'), { preprocessFile: pre })).rejects.toThrow(
      /mean: expected 3 numbers/,
    );
  });

  it('1000 classes get the ImageNet names', () => {
    const big = randomResNetStateDict({
      seed: 32,
      block: 'basic',
      blocks: [1],
      planes: 16,
      stem: 16,
      classes: 1000,
      ratio: 0,
    }).stateDict;
    const c = convertResNetTensors(
      big,
      { temperature: '1' },
      { name: 'imagenet', source: { kind: 'checkpoint', path: 'm', format: 'safetensors', sha256: '' } },
    );
    expect(c.draft.labels).toHaveLength(1000);
    expect(c.draft.labels[0]).toBe('tench, Tinca tinca');
    expect(c.draft.labels[999]).toBe('toilet tissue, toilet paper, bathroom tissue');
  });
});
