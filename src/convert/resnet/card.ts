/**
 * Model-card pieces for ResNet models: labels (--labels file, ImageNet names for 1000 classes, else "0".."n-1"),
 * image preprocessing (--preprocess JSON, validated), and the card draft itself.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  IMAGENET_PREPROCESS,
  type ImagePreprocessSpec,
  type ResNetCard,
  type WeightSource,
} from '../../model/card.js';
import type { CardDraft } from '../../model/folder.js';
import { ConvertError } from '../options.js';
import type { ResNetSpec } from './spec.js';

/** The repository's data/ folder, found from this module (src/ under tsx, dist/src/ when built). */
function dataFile(name: string): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'data', name);
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new ConvertError(
    `data/${name}: not found (it ships with padserve; regenerate with scripts/extract-imagenet-classes.mjs)`,
  );
}

export function imagenetLabels(): string[] {
  return readFileSync(dataFile('imagenet-classes.txt'), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0);
}

export function readLabels(file: string | undefined, classes: number): string[] {
  if (file === undefined)
    return classes === 1000 ? imagenetLabels() : Array.from({ length: classes }, (_, i) => String(i));
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConvertError(
      `--labels ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const labels = text.split(/\r?\n/);
  if (labels.at(-1) === '') labels.pop();
  if (labels.length !== classes)
    throw new ConvertError(
      `--labels ${file}: ${labels.length} labels for a model with ${classes} classes (one label per line)`,
    );
  return labels;
}

const KERNELS: ImagePreprocessSpec['kernel'][] = ['pil-bilinear', 'pil-bicubic', 'nearest', 'sharp-linear'];

/** Validates an ImagePreprocessSpec-shaped value; every problem is one line naming the field. */
export function validatePreprocess(value: unknown, where: string): ImagePreprocessSpec {
  const bad = (field: string, what: string): never => {
    throw new ConvertError(`${where}: ${field}: ${what}`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    bad('(root)', 'expected a JSON object');
  const v = value as Record<string, unknown>;
  const known = new Set(['size', 'resize', 'resizeShorter', 'kernel', 'channels', 'mean', 'std', 'scale']);
  for (const k of Object.keys(v))
    if (!known.has(k)) bad(k, `unknown field (expected ${[...known].join(', ')})`);
  const positiveInt = (k: string): number => {
    const n = v[k];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1)
      bad(k, `expected a positive integer, got ${JSON.stringify(n)}`);
    return n as number;
  };
  const triple = (k: string, positive: boolean): [number, number, number] => {
    const a = v[k];
    if (
      !Array.isArray(a) ||
      a.length !== 3 ||
      !a.every((x) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0))
    ) {
      bad(k, `expected 3 ${positive ? 'positive ' : ''}numbers (R, G, B), got ${JSON.stringify(a)}`);
    }
    return a as [number, number, number];
  };
  const size = positiveInt('size');
  const resize = v.resize;
  if (resize !== 'shorter-side-then-center-crop' && resize !== 'direct')
    bad('resize', `expected "shorter-side-then-center-crop" or "direct", got ${JSON.stringify(resize)}`);
  const spec: ImagePreprocessSpec = {
    size,
    resize: resize as ImagePreprocessSpec['resize'],
    kernel: v.kernel as ImagePreprocessSpec['kernel'],
    channels: 'rgb',
    mean: triple('mean', false),
    std: triple('std', true),
    scale: 0,
  };
  if (resize === 'shorter-side-then-center-crop') {
    spec.resizeShorter = positiveInt('resizeShorter');
    if (spec.resizeShorter < size)
      bad('resizeShorter', `must be ≥ size (${size}), got ${spec.resizeShorter}`);
  } else if (v.resizeShorter !== undefined)
    bad('resizeShorter', 'only used with resize "shorter-side-then-center-crop"');
  if (!KERNELS.includes(spec.kernel))
    bad('kernel', `expected one of ${KERNELS.join(', ')}, got ${JSON.stringify(v.kernel)}`);
  if (v.channels !== 'rgb') bad('channels', `expected "rgb", got ${JSON.stringify(v.channels)}`);
  if (typeof v.scale !== 'number' || !(v.scale > 0) || !Number.isFinite(v.scale))
    bad(
      'scale',
      `expected a positive number (e.g. 0.00392156862745098 = 1/255), got ${JSON.stringify(v.scale)}`,
    );
  spec.scale = v.scale as number;
  return spec;
}

export function readPreprocess(file: string | undefined): ImagePreprocessSpec {
  if (file === undefined) return IMAGENET_PREPROCESS;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConvertError(
      `--preprocess ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConvertError(`--preprocess ${file}: invalid JSON (${(err as Error).message})`);
  }
  return validatePreprocess(json, `--preprocess ${file}`);
}

export type ResNetVariant = 'pad' | 'static' | 'dyconv';

/** 'static' when no entry is dynamic, 'dyconv' when every entry is, else 'pad'. */
export function variantOf(spec: ResNetSpec): ResNetVariant {
  const anyBias = spec.padConvs.some((c) => c.kernelsBias !== null);
  if (spec.dynamicRatio === 0 && !anyBias) return 'static';
  return spec.dynamicRatio === 1 ? 'dyconv' : 'pad';
}

export function resnetCardDraft(
  spec: ResNetSpec,
  info: {
    name: string;
    source: WeightSource;
    labels: string[];
    preprocess: ImagePreprocessSpec;
    createdBy: string;
  },
): CardDraft {
  const draft: Omit<ResNetCard, 'graph' | 'format' | 'formatVersion'> = {
    family: 'resnet',
    name: info.name,
    variant: variantOf(spec),
    source: info.source,
    inputs: [{ name: 'pixel_values', dtype: 'float32', shape: ['batch', 3, 'height', 'width'] }],
    outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', spec.numClasses] }],
    labels: info.labels,
    dynamic: {
      ratio: spec.dynamicRatio,
      layers: spec.padConvs.map((c) => ({
        name: c.name,
        ratio: c.dynamicEntries / c.mask.length,
        entries: c.mask.length,
      })),
    },
    createdBy: info.createdBy,
    architecture: {
      block: spec.block,
      blocks: spec.blocks,
      stemChannels: spec.stemChannels,
      widths: spec.widths,
      expansion: spec.expansion,
      numClasses: spec.numClasses,
      kernels: spec.kernels,
      temperature: spec.temperature,
      padConvs: spec.padConvs.length,
    },
    preprocess: info.preprocess,
  };
  return draft;
}
