/** What `padserve bench resnet` and `bench bert` parse alike: their common options and the `--models` list. */
import { CliError } from './args.js';

/** Options both model benches take (each adds its own). */
export const BENCH_OPTIONS = {
  quick: { type: 'boolean' },
  models: { type: 'string' },
  model: { type: 'string', multiple: true },
  seconds: { type: 'string' },
  threads: { type: 'string' },
  seed: { type: 'string' },
  name: { type: 'string' },
  worker: { type: 'string' },
} as const;

/** `--models LIST` checked against the bench's variants ("none": only --model folders). */
export function benchVariants<V extends string>(value: string | undefined, known: readonly V[]): V[] {
  const variants = value === 'none' ? [] : (value ?? known.join(',')).split(',');
  for (const v of variants)
    if (!(known as readonly string[]).includes(v))
      throw new CliError(`--models: unknown variant "${v}" (${known.join(', ')})`, 2);
  return variants as V[];
}
