/** `padserve synth resnet50`: full-size PAD-Net ResNet-50 (or its static / DY-Conv baselines) with seeded weights. */
import { CliError, Progress, floatOption, intOption, parse } from './args.js';
import { GRAPH_OPTIONS, GRAPH_USAGE, parseGraphOptions } from './graph-options.js';
import { formName } from '../convert/resnet/command.js';
import { synthesizeResNetConverted, type ResNetSynthVariant } from '../synth/resnet.js';

const USAGE = `usage: padserve synth resnet50 --out DIR [options]

  --out DIR              model folder to write
  --seed S               random seed (default 0)
  --dynamic-ratio R      fraction of dynamic entries per PAD conv (default 0.3)
  --variant V            pad (default) | static (M = 0: plain ResNet-50) | dyconv (M = 1: fully dynamic DY-Conv)
  --scale X              width scale (default 1: ResNet-50 widths 64·X … 512·X)
  --blocks LIST          Bottleneck blocks per stage (default 3,4,6,3)
  --classes N            classifier size (default 1000, ImageNet labels)
${GRAPH_USAGE}

Weights are synthetic (seeded, BatchNorm calibrated so activations stay in range): predictions are meaningless.`;

const VARIANTS: readonly ResNetSynthVariant[] = ['pad', 'static', 'dyconv'];

export async function synthCommand(argv: string[]): Promise<void> {
  const { values } = parse(
    argv,
    {
      out: { type: 'string', short: 'o' },
      seed: { type: 'string' },
      'dynamic-ratio': { type: 'string' },
      variant: { type: 'string' },
      scale: { type: 'string' },
      blocks: { type: 'string' },
      classes: { type: 'string' },
      ...GRAPH_OPTIONS,
    },
    USAGE,
  );
  if (!values.out) throw new CliError(`missing --out DIR\n\n${USAGE}`, 2);
  const variant = (values.variant ?? 'pad') as ResNetSynthVariant;
  if (!VARIANTS.includes(variant))
    throw new CliError(`--variant must be one of ${VARIANTS.join(', ')} (got "${values.variant}")`, 2);
  const blocks = values.blocks?.split(',').map((b) => intOption(b.trim(), 'blocks', 1, 1));
  if (blocks && !blocks.length)
    throw new CliError('--blocks: expected a comma-separated list such as 3,4,6,3', 2);
  const progress = new Progress(`synth resnet50 ${variant}`);
  const started = performance.now();
  const { card, converted, timings } = await synthesizeResNetConverted({
    outDir: values.out,
    seed: intOption(values.seed, 'seed', 0),
    dynamicRatio: floatOption(values['dynamic-ratio'], 'dynamic-ratio', 0.3, 0, 1),
    variant,
    scale: floatOption(values.scale, 'scale', 1, 1 / 64, 16),
    blocks,
    classes: intOption(values.classes, 'classes', 1000, 1),
    graph: parseGraphOptions(values),
    onProgress: (done, total, stage) => progress.update(done, total, stage),
  });
  const s = (key: string) => ((timings[key] ?? 0) / 1000).toFixed(1);
  console.log(
    `${values.out}: ${card.variant} ResNet, ${(100 * card.dynamic.ratio).toFixed(1)}% dynamic, ${(converted.parameters / 1e6).toFixed(1)}M stored values, ` +
      `${(card.graph.initializerBytes / 2 ** 20).toFixed(0)} MiB (${formName(converted.built, converted.buckets)}${converted.buckets.length ? `, buckets ${converted.buckets.join(',')}` : ''}) ` +
      `in ${((performance.now() - started) / 1000).toFixed(1)} s (weights ${s('weightsMs')} s, calibration ${s('calibrationMs')} s, convert ${s('convertMs')} s, write ${s('writeMs')} s)`,
  );
}
