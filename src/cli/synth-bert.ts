/** `padserve synth bert`: full-size PAD-MoE BERT (or its dense / fully dynamic MoE baselines) with seeded weights. */
import { CliError, Progress, floatOption, intOption, parse } from './args.js';
import { GLUE_TASK_NAMES, parseGlueTaskName } from '../preprocess/glue-tasks.js';
import { MOE_STRATEGIES, type MoeStrategy } from '../convert/bert/moe.js';
import {
  BERT_BASE,
  DEFAULT_DYNAMIC_RATIO,
  DEFAULT_SEED,
  synthesizeBert,
  synthesizeGlueSuite,
  type BertVariant,
} from '../synth/bert.js';

const USAGE = `usage: padserve synth bert --task TASK --out DIR [options]

  --task TASK            GLUE task of the classifier head: ${GLUE_TASK_NAMES.join(', ')};
                         "all" or a comma-separated list writes one folder per task under DIR, sharing one
                         encoder and one weights file (hard links)
  --out DIR              model folder to write (or the root folder with several tasks)
  --seed S               random seed (default ${DEFAULT_SEED}); the encoder depends on the seed only
  --dynamic-ratio R      fraction of dynamic entries per PAD-MoE linear (default ${DEFAULT_DYNAMIC_RATIO})
  --variant V            pad (default) | dense (static BERT) | moe (fully dynamic MoE)
  --layers N, --hidden H smaller models (default BERT-base: ${BERT_BASE.layers} layers, hidden ${BERT_BASE.hidden})
  --strategy S           PAD-MoE graph strategy: ${MOE_STRATEGIES.join(' | ')} (default routed; see docs/bert-graph.md)`;

const VARIANTS: readonly BertVariant[] = ['pad', 'dense', 'moe'];

export async function synthCommand(argv: string[]): Promise<void> {
  const { values } = parse(
    argv,
    {
      task: { type: 'string' },
      out: { type: 'string', short: 'o' },
      seed: { type: 'string' },
      'dynamic-ratio': { type: 'string' },
      variant: { type: 'string' },
      layers: { type: 'string' },
      hidden: { type: 'string' },
      strategy: { type: 'string' },
    },
    USAGE,
  );
  if (!values.task) throw new CliError(`missing --task\n\n${USAGE}`, 2);
  if (!values.out) throw new CliError(`missing --out DIR\n\n${USAGE}`, 2);
  const variant = (values.variant ?? 'pad') as BertVariant;
  if (!VARIANTS.includes(variant))
    throw new CliError(`--variant must be one of ${VARIANTS.join(', ')} (got "${values.variant}")`, 2);
  const strategy = values.strategy as MoeStrategy | undefined;
  if (strategy !== undefined && !MOE_STRATEGIES.includes(strategy))
    throw new CliError(`--strategy must be one of ${MOE_STRATEGIES.join(', ')}`, 2);
  const taskNames =
    values.task === 'all' ? [...GLUE_TASK_NAMES] : values.task.split(',').map((t) => t.trim());
  const tasks = taskNames.map((t) => {
    const name = parseGlueTaskName(t);
    if (!name)
      throw new CliError(`--task: unknown GLUE task "${t}" (${GLUE_TASK_NAMES.join(', ')}, or all)`, 2);
    return name;
  });
  const seed = intOption(values.seed, 'seed', DEFAULT_SEED);
  const dynamicRatio = floatOption(values['dynamic-ratio'], 'dynamic-ratio', DEFAULT_DYNAMIC_RATIO, 0, 1);
  const layers = intOption(values.layers, 'layers', BERT_BASE.layers, 1);
  const hidden = intOption(values.hidden, 'hidden', BERT_BASE.hidden, 1);

  const progress = new Progress(`synth bert ${variant}`);
  const started = performance.now();
  const stageTimes: string[] = [];
  let stageStart = started;
  let lastStage = 'weights';
  const onProgress = (done: number, total: number, stage: string) => {
    if (stage !== lastStage) {
      stageTimes.push(`${lastStage} ${((performance.now() - stageStart) / 1000).toFixed(1)} s`);
      stageStart = performance.now();
    }
    lastStage = stage;
    progress.update(done, total, stage);
  };
  if (tasks.length === 1 && values.task !== 'all' && !values.task.includes(',')) {
    const card = await synthesizeBert({
      outDir: values.out,
      task: tasks[0]!,
      seed,
      dynamicRatio,
      variant,
      layers,
      hidden,
      strategy,
      onProgress,
    });
    console.error(
      `wrote ${values.out}: ${card.variant} BERT, ${tasks[0]} head, ${(card.graph.initializerBytes / 2 ** 20).toFixed(0)} MB of weights, ` +
        `dynamic ratio ${card.dynamic.ratio.toFixed(3)}, in ${((performance.now() - started) / 1000).toFixed(1)} s (${stageTimes.join(', ')})`,
    );
    return;
  }
  if (
    values['dynamic-ratio'] !== undefined ||
    values.layers !== undefined ||
    values.hidden !== undefined ||
    strategy !== undefined
  ) {
    throw new CliError(
      '--dynamic-ratio, --layers, --hidden and --strategy apply to a single task; the task suite is full-size with the defaults',
      2,
    );
  }
  const dirs = await synthesizeGlueSuite({ rootDir: values.out, tasks, seed, variant, onProgress });
  console.error(
    `wrote ${Object.keys(dirs).length} task folders under ${values.out} sharing one weights file, in ${((performance.now() - started) / 1000).toFixed(1)} s (${stageTimes.join(', ')})`,
  );
}
