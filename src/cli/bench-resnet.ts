/** `padserve bench resnet`: parses the options and runs src/bench/resnet.ts (or, with --worker, one model's child). */
import { CliError, floatOption, intOption, parse } from './args.js';
import { BENCH_OPTIONS, benchVariants } from './bench-options.js';
import { RESNET_BENCH_VARIANTS, runResNetBench, runWorker } from '../bench/resnet.js';

const USAGE = `usage: padserve bench resnet [options]

  --quick                short run (6 rounds of 0.5 s segments)
  --models LIST          synthesised models to run (default static,pad,dyconv,pad-bucketed,dyconv-bucketed;
                         "none" for only --model)
  --model LABEL=DIR      also run this model folder (repeatable; e.g. other graph strategies)
  --rounds N, --seconds S  round-robin rounds and seconds per segment (default 10 × 2 s)
  --threads N            intra-op threads per model (default 2)
  --seed S               seed of the synthetic models (default 0)
  --name NAME            report name under bench/results (default resnet; only "resnet" is copied to docs/bench)`;

export async function benchCommand(argv: string[]): Promise<void> {
  const { values } = parse(
    argv,
    { ...BENCH_OPTIONS, rounds: { type: 'string' }, buckets: { type: 'string' } },
    USAGE,
  );
  const threads = intOption(values.threads, 'threads', 2, 1);
  if (values.worker) return runWorker(values.worker, threads, values.buckets?.split(',').map(Number));

  const quick = values.quick ?? false;
  const variants = benchVariants(values.models, RESNET_BENCH_VARIANTS);
  const extra = (values.model ?? []).map((spec) => {
    const [label, dir] = spec.split('=');
    if (!label || !dir) throw new CliError(`--model ${spec}: expected LABEL=DIR`, 2);
    return { label, dir };
  });
  if (!variants.length && !extra.length) throw new CliError('nothing to run', 2);
  await runResNetBench({
    quick,
    rounds: intOption(values.rounds, 'rounds', quick ? 6 : 10, 1),
    seconds: floatOption(values.seconds, 'seconds', quick ? 0.5 : 2, 0.1),
    threads,
    seed: intOption(values.seed, 'seed', 0),
    name: values.name ?? 'resnet',
    variants,
    extra,
  });
}
