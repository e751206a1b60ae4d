/** `padserve bench bert`: parses the options and runs src/bench/bert.ts (or, with --worker, one model's child). */
import { CliError, floatOption, intOption, parse } from './args.js';
import { BENCH_OPTIONS, benchVariants } from './bench-options.js';
import { BERT_BENCH_VARIANTS, runBertBench, runWorker } from '../bench/bert.js';

const USAGE = `usage: padserve bench bert [options]

  --quick                short run (15 s per batch size, at least 4 turns)
  --models LIST          synthesised variants to run (default dense,pad,moe; "none" for only --model)
  --model LABEL=DIR[:no-prepack]  also run this model folder (repeatable; e.g. other PAD-MoE strategies)
  --seconds S            time budget per batch size (default 60; every turn runs each model once)
  --min-turns N          at least this many turns per batch size (default 10)
  --threads N            intra-op threads per model (default 2)
  --no-prepack           session config disable_prepacking=1 (weights used from the memory-mapped file)
  --seed S               seed of the synthetic models (default 0)
  --name NAME            report name under bench/results (default bert; only "bert" is copied to docs/bench)`;

export async function benchCommand(argv: string[]): Promise<void> {
  const { values } = parse(
    argv,
    { ...BENCH_OPTIONS, 'min-turns': { type: 'string' }, 'no-prepack': { type: 'boolean' } },
    USAGE,
  );
  const threads = intOption(values.threads, 'threads', 2, 1);
  const noPrepack = values['no-prepack'] ?? false;
  if (values.worker) return runWorker(values.worker, threads, noPrepack);

  const quick = values.quick ?? false;
  const variants = benchVariants(values.models, BERT_BENCH_VARIANTS);
  const extra = (values.model ?? []).map((spec) => {
    const m = /^([^=]+)=(.+?)(:no-prepack)?$/.exec(spec);
    if (!m) throw new CliError(`--model ${spec}: expected LABEL=DIR[:no-prepack]`, 2);
    return { label: m[1]!, dir: m[2]!, noPrepack: noPrepack || m[3] !== undefined };
  });
  if (!variants.length && !extra.length) throw new CliError('nothing to run', 2);
  await runBertBench({
    quick,
    seconds: floatOption(values.seconds, 'seconds', quick ? 15 : 60, 0),
    minTurns: intOption(values['min-turns'], 'min-turns', quick ? 4 : 10, 1),
    threads,
    noPrepack,
    seed: intOption(values.seed, 'seed', 0),
    name: values.name ?? 'bert',
    variants,
    extra,
    command: `npm run bench:bert${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
  });
}
