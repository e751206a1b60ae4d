/** `padserve bench <resnet | bert | all>`: side-by-side benchmarks, written under bench/results/. */
import { CliError } from './args.js';

const USAGE = `usage: padserve bench <resnet | bert | all> [options]`;

export async function run(argv: string[]): Promise<void> {
  const [which, ...rest] = argv;
  if (which === 'resnet') return (await import('./bench-resnet.js')).benchCommand(rest);
  if (which === 'bert') return (await import('./bench-bert.js')).benchCommand(rest);
  if (which === 'all') {
    await (await import('./bench-resnet.js')).benchCommand(rest);
    await (await import('./bench-bert.js')).benchCommand(rest);
    return;
  }
  throw new CliError(`unknown benchmark "${which ?? ''}"\n\n${USAGE}`, 2);
}
