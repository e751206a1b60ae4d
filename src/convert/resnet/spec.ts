/**
 * PAD-Net ResNet: architecture inference and validation from the state dict alone (docs/padnet.md §1, fixtures
 * README "ResNet"). Pure: works on a `Map<string, HostTensor>` + metadata so tests and synth need no files.
 *
 * Everything is read from tensor names and shapes: block type (Bottleneck: conv1/conv2/conv3, expansion 4;
 * BasicBlock: conv1/conv2, expansion 1), stages present (layer1..layerN) and blocks per stage, widths, stem
 * channels, K, classes. Strides follow ResNet v1.5 (stage 1 stride 1, later stages 2 on their first block; the
 * stride sits on the 3×3 conv2 of a Bottleneck, on conv1 of a BasicBlock). Every problem is a one-line
 * ConvertError naming the tensor and what was expected; nothing is guessed (τ included).
 */
import { formatShape, sameShape, type HostTensor } from '../../tensor.js';
import {
  batchNorm,
  fail,
  padConv,
  plainConv,
  resolveTemperature,
  stripModulePrefix,
  TensorReader,
  type BatchNorm,
  type PadConv,
  type PlainConv,
} from './reader.js';

export type { BatchNorm, PadConv, PlainConv };
export { resolveTemperature, stripModulePrefix };

export interface ResNetBlock {
  name: string;
  stride: number;
  inChannels: number;
  outChannels: number;
  /** conv1..conv3 (Bottleneck) or conv1..conv2 (BasicBlock), each followed by its BatchNorm. */
  convs: PadConv[];
  norms: BatchNorm[];
  shortcut: { conv: PadConv; norm: BatchNorm } | null;
}

export interface ResNetSpec {
  block: 'bottleneck' | 'basic';
  expansion: number;
  blocks: number[];
  widths: number[];
  stemChannels: number;
  numClasses: number;
  kernels: number;
  temperature: number;
  stem: PlainConv;
  stemNorm: BatchNorm;
  stages: ResNetBlock[][];
  classifier: PlainConv;
  /** PAD convs in forward order (block: conv1, conv2, [conv3], shortcut). */
  padConvs: PadConv[];
  dynamicRatio: number;
}

/** Sorted distinct integers captured by `re` over the keys (e.g. stage numbers). */
function indicesOf(keys: readonly string[], re: RegExp): number[] {
  const found = new Set<number>();
  for (const k of keys) {
    const m = re.exec(k);
    if (m) found.add(Number(m[1]));
  }
  return [...found].sort((a, b) => a - b);
}

function requireContiguous(
  found: number[],
  first: number,
  what: string,
  example: (i: number) => string,
): void {
  found.forEach((v, i) => {
    if (v !== first + i)
      fail(
        `${example(first + i)}: missing (${what} ${found.join(', ')} present, expected consecutive from ${first})`,
      );
  });
}

/**
 * Infers and validates the architecture. `tensors` may carry a `module.` prefix; `temperatureOverride` is the
 * command line's --temperature (string, validated here).
 */
export function inferResNetSpec(
  input: Map<string, HostTensor>,
  metadata: Record<string, string>,
  temperatureOverride?: string,
): ResNetSpec {
  const tensors = stripModulePrefix(input);
  const keys = [...tensors.keys()];
  if (!tensors.has('conv1.weight') && !keys.some((k) => k.startsWith('layer1.'))) {
    const example = keys.slice(0, 2).join(', ') || 'no tensors at all';
    fail(
      `conv1.weight: missing: not a PAD-Net ResNet checkpoint (no stem conv1.weight, no layer1.* tensors; found ${example}${keys.length > 2 ? ', ...' : ''})`,
    );
  }
  const r = new TensorReader(tensors);
  const stemShape = r.shape('conv1.weight', 4, '(stem channels, 3, k, k)');
  const [stemChannels, stemIn, stemK] = stemShape as [number, number, number, number];
  if (stemIn !== 3 || stemShape[3] !== stemK || stemK % 2 === 0)
    fail(`conv1.weight: expected shape [C, 3, k, k] with odd k (RGB stem), got ${formatShape(stemShape)}`);
  const stem = plainConv(r, 'conv1', stemShape, false);
  const stemNorm = batchNorm(r, 'bn1', stemChannels);

  const stageNumbers = indicesOf(keys, /^layer(\d+)\.layers\.\d+\./);
  if (!stageNumbers.length)
    fail('layer1.layers.0.conv1.kernels_weights: missing (no PAD-Net stages layer1.layers.* found)');
  requireContiguous(stageNumbers, 1, 'stages', (s) => `layer${s}.layers.0.conv1.kernels_weights`);
  const bottleneck = keys.some((k) => k.startsWith('layer1.layers.0.conv3.'));
  const expansion = bottleneck ? 4 : 1;
  const convCount = bottleneck ? 3 : 2;

  let kernels: number | undefined;
  let inChannels = stemChannels;
  const stages: ResNetBlock[][] = [];
  const blocks: number[] = [];
  const widths: number[] = [];
  for (const s of stageNumbers) {
    const ids = indicesOf(keys, new RegExp(`^layer${s}\\.layers\\.(\\d+)\\.`));
    requireContiguous(ids, 0, `layer${s} blocks`, (i) => `layer${s}.layers.${i}.conv1.kernels_weights`);
    const firstConv = r.shape(`layer${s}.layers.0.conv1.kernels_weights`, 5, '(K, planes, in, k, k)');
    const planes = firstConv[1]!;
    kernels ??= firstConv[0]!;
    const stage: ResNetBlock[] = [];
    for (const i of ids) {
      const name = `layer${s}.layers.${i}`;
      const stride = i === 0 && s > 1 ? 2 : 1;
      const out = expansion * planes;
      const convs: PadConv[] = [];
      const norms: BatchNorm[] = [];
      for (let c = 1; c <= convCount; c++) {
        const kernel = bottleneck ? (c === 2 ? 3 : 1) : 3;
        const convStride = (bottleneck ? c === 2 : c === 1) ? stride : 1;
        const convIn = c === 1 ? inChannels : planes;
        const convOut = c === convCount ? out : planes;
        convs.push(
          padConv(r, `${name}.conv${c}`, {
            inChannels: convIn,
            outChannels: convOut,
            kernel,
            stride: convStride,
            kernels,
          }),
        );
        norms.push(batchNorm(r, `${name}.bn${c}`, convOut));
      }
      for (const k of keys) {
        if (k.startsWith(`${name}.conv${convCount + 1}.`))
          fail(
            `${k}: unexpected (a ${bottleneck ? 'Bottleneck' : 'BasicBlock'} has conv1..conv${convCount}; block type is read from layer1.layers.0)`,
          );
      }
      let shortcut: ResNetBlock['shortcut'] = null;
      const scName = `${name}.shortcut.layers.0`;
      if (r.has(`${scName}.kernels_weights`)) {
        shortcut = {
          conv: padConv(r, scName, { inChannels, outChannels: out, kernel: 1, stride, kernels }),
          norm: batchNorm(r, `${name}.shortcut.layers.1`, out),
        };
      } else if (stride !== 1 || inChannels !== out) {
        fail(
          `${scName}.kernels_weights: missing (block ${name} maps ${inChannels} → ${out} channels with stride ${stride}, so it needs a projection shortcut)`,
        );
      }
      stage.push({ name, stride, inChannels, outChannels: out, convs, norms, shortcut });
      inChannels = out;
    }
    stages.push(stage);
    blocks.push(ids.length);
    widths.push(planes);
  }

  const linShape = r.shape(
    'linear.weight',
    tensors.get('linear.weight')?.shape.length === 2 ? 2 : 4,
    `(classes, ${inChannels}, 1, 1)`,
  );
  const numClasses = linShape[0]!;
  const wantLin = linShape.length === 2 ? [numClasses, inChannels] : [numClasses, inChannels, 1, 1];
  if (!sameShape(linShape, wantLin) || numClasses < 1)
    fail(`linear.weight: expected shape ${formatShape(wantLin)}, got ${formatShape(linShape)}`);
  const classifier = plainConv(r, 'linear', wantLin, true);

  const padConvs = stages.flat().flatMap((b) => [...b.convs, ...(b.shortcut ? [b.shortcut.conv] : [])]);
  const entries = padConvs.reduce((n, c) => n + c.mask.length, 0);
  const dynamic = padConvs.reduce((n, c) => n + c.dynamicEntries, 0);
  return {
    block: bottleneck ? 'bottleneck' : 'basic',
    expansion,
    blocks,
    widths,
    stemChannels,
    numClasses,
    kernels: kernels!,
    temperature: resolveTemperature(metadata, temperatureOverride),
    stem,
    stemNorm,
    stages,
    classifier,
    padConvs,
    dynamicRatio: entries ? dynamic / entries : 0,
  };
}

/** Reads a lone PAD conv layer checkpoint (tensor names without prefix; stride/padding from metadata). */
export function inferPadConvLayer(
  input: Map<string, HostTensor>,
  metadata: Record<string, string>,
  temperatureOverride?: string,
): { conv: PadConv; temperature: number } {
  const tensors = stripModulePrefix(input);
  const r = new TensorReader(tensors);
  const kw = r.shape('kernels_weights', 5, '(K, O, I, k, k)');
  const int = (key: string, fallback: number): number => {
    const text = metadata[key];
    if (text === undefined) return fallback;
    const v = Number(text);
    if (!Number.isInteger(v) || v < 0)
      fail(`metadata ${key}: expected a non-negative integer, got "${text}"`);
    return v;
  };
  for (const key of ['groups', 'dilation'])
    if (int(key, 1) !== 1) fail(`metadata ${key}: only ${key} = 1 is supported, got ${metadata[key]}`);
  const conv = padConv(r, '', { inChannels: kw[2]!, kernel: kw[3]!, stride: int('stride', 1) });
  const padding = int('padding', conv.padding);
  const named = { ...conv, name: 'padconv', padding };
  if (named.stride < 1) fail(`metadata stride: expected ≥ 1, got ${named.stride}`);
  return { conv: named, temperature: resolveTemperature(metadata, temperatureOverride) };
}

/** Parameter count of the checkpoint's inference tensors (what the PyTorch model holds), for summaries. */
export function checkpointParameters(spec: ResNetSpec): number {
  let n = spec.stem.weight.length + 4 * spec.stemChannels + spec.classifier.weight.length + spec.numClasses;
  for (const b of spec.stages.flat()) {
    const convs = [...b.convs, ...(b.shortcut ? [b.shortcut.conv] : [])];
    for (const c of convs)
      n +=
        c.kernelsWeights.length +
        c.weight.length +
        1 +
        c.fc1.length +
        c.fc2.length +
        c.fc2Bias.length +
        (c.kernelsBias?.length ?? 0);
    for (const bn of [...b.norms, ...(b.shortcut ? [b.shortcut.norm] : [])]) n += 4 * bn.weight.length;
  }
  return n;
}
