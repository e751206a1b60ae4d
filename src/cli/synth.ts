/** `padserve synth <resnet50 | bert> ...`: full-size models with seeded synthetic weights. */
import { CliError } from './args.js';

const USAGE = `usage: padserve synth resnet50 --out DIR [--seed S] [--dynamic-ratio 0.3] [--variant pad|static|dyconv]
       padserve synth bert --task TASK --out DIR [--seed S] [--dynamic-ratio 0.5] [--variant pad|dense|moe]

Run 'padserve synth resnet50 --help' or 'padserve synth bert --help' for all options.`;

export async function run(argv: string[]): Promise<void> {
  const [family, ...rest] = argv;
  if (family === 'resnet50' || family === 'resnet')
    return (await import('./synth-resnet.js')).synthCommand(rest);
  if (family === 'bert') return (await import('./synth-bert.js')).synthCommand(rest);
  if (family === '--help' || family === '-h') {
    console.log(USAGE);
    return;
  }
  throw new CliError(`unknown model family "${family ?? ''}"\n\n${USAGE}`, 2);
}
