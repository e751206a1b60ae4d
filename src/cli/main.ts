/**
 * `padserve <command>`: a thin dispatcher. Each command lives in its own module and is imported lazily so that
 * `padserve predict` does not load fastify and `padserve serve` does not load the converters.
 */
import { CliError } from './args.js';

type CommandModule = { run(argv: string[]): Promise<void> };

const COMMANDS: Record<string, { load: () => Promise<CommandModule>; summary: string }> = {
  convert: {
    load: () => import('./convert.js'),
    summary: 'convert a PAD-Net checkpoint into a model folder',
  },
  synth: {
    load: () => import('./synth.js'),
    summary: 'write a full-size model with seeded synthetic weights',
  },
  predict: { load: () => import('./predict.js'), summary: 'run a model folder on tensors, an image or text' },
  serve: { load: () => import('./serve.js'), summary: 'start the HTTP server' },
  bench: { load: () => import('./bench.js'), summary: 'run benchmarks (resnet | bert | all)' },
  eval: {
    load: () => import('./eval.js'),
    summary: 'accuracy of an image model through the server on a labelled folder',
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(9)} ${c.summary}`);
  return `usage: padserve <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'padserve <command> --help' for a command's options.`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`padserve: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  try {
    const mod = await command.load();
    await mod.run(rest);
    return 0;
  } catch (err) {
    if (err instanceof CliError || (err instanceof Error && 'userFacing' in err)) {
      console.error(`padserve ${name}: ${err.message}`);
      return err instanceof CliError ? err.exitCode : 1;
    }
    throw err;
  }
}

const code = await main(process.argv.slice(2));
if (code !== 0) process.exitCode = code;
