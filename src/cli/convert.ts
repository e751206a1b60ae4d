/**
 * `padserve convert <checkpoint> --out <model-dir>`: a PAD-Net ResNet checkpoint file (.pth/.pth.tar/.safetensors,
 * or a bare state dict), or a Hugging Face style PAD-Net BERT folder (config.json + weights), into a model folder.
 */
import { statSync } from 'node:fs';
import { CliError, parse } from './args.js';
import { GRAPH_OPTIONS, GRAPH_USAGE, parseGraphOptions } from './graph-options.js';

const USAGE = `usage: padserve convert <checkpoint-file | bert-folder> --out <model-dir> [options]

  --out DIR              model folder to write (config.json, model.onnx[, model.onnx.data])
  --name NAME            model name in its card (default: the folder's name)
  --labels FILE          labels, one per line (default: from the checkpoint / config.json, else "0".."n-1")
  --preprocess FILE      image preprocessing JSON for ResNet models (default: ImageNet)
  --temperature T        override the router temperature (default: the checkpoint's own)
${GRAPH_USAGE}`;

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    {
      out: { type: 'string', short: 'o' },
      name: { type: 'string' },
      labels: { type: 'string' },
      preprocess: { type: 'string' },
      temperature: { type: 'string' },
      ...GRAPH_OPTIONS,
    },
    USAGE,
  );
  const [input] = positionals;
  if (!input) throw new CliError(`missing <checkpoint>\n\n${USAGE}`, 2);
  if (!values.out) throw new CliError(`missing --out <model-dir>\n\n${USAGE}`, 2);
  let isDir: boolean;
  try {
    isDir = statSync(input).isDirectory();
  } catch {
    throw new CliError(`${input}: no such file or folder`);
  }
  const opts = {
    name: values.name,
    labelsFile: values.labels,
    preprocessFile: values.preprocess,
    temperature: values.temperature,
    graph: parseGraphOptions(values),
  };
  const { convertCommand } = isDir
    ? await import('../convert/bert/command.js')
    : await import('../convert/resnet/command.js');
  await convertCommand(input, values.out, opts);
}
