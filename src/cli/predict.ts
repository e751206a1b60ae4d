/**
 * `padserve predict <model-dir> --tensor name=file:dtype:shape ... [--out file]`
 * Runs a model folder through the same ModelSession the server's workers use and writes the first output as raw
 * little-endian float32 (how the fixtures are checked). `--image FILE` and `--text A [--text-pair B]` run the
 * model's own preprocessing and print labels and scores instead.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { CliError, intOption, parse } from './args.js';
import { ModelSession } from '../runtime/session.js';
import { checked, numel, type DType, type HostTensor } from '../tensor.js';
import { describeOutputs, prepareInputs } from './predict-inputs.js';

const USAGE = `usage: padserve predict <model-dir> [options]

  --tensor NAME=FILE:DTYPE:SHAPE   raw little-endian input tensor, e.g. pixel_values=input.bin:float32:3x3x224x224
                                   (repeatable; DTYPE float32 | int64 | int32)
  --image FILE                     an image file, preprocessed as the model's card says (repeatable)
  --text TEXT [--text-pair TEXT]   a sentence (pair) for a BERT model, tokenised server-side
  --out FILE                       write the first output as raw float32 (default: print a summary)
  --threads N                      intra-op threads (default: onnxruntime's choice)
  --buckets LIST                   run on these bucket graphs only (e.g. 2: a batch of 3 runs as 2 + 2 padded;
                                   default: all the model has)
  --top-k K                        predictions to print for --image / --text (default 5)`;

const TYPED: Record<string, { dtype: DType; make: (buf: ArrayBuffer) => HostTensor['data'] }> = {
  float32: { dtype: 'float32', make: (b) => new Float32Array(b) },
  int64: { dtype: 'int64', make: (b) => new BigInt64Array(b) },
  int32: { dtype: 'int32', make: (b) => new Int32Array(b) },
};

export function parseTensorArg(arg: string): [string, HostTensor] {
  const m = /^([^=]+)=(.+):([a-z0-9]+):(\d+(?:x\d+)*)$/.exec(arg);
  if (!m)
    throw new CliError(
      `--tensor "${arg}": expected NAME=FILE:DTYPE:SHAPE (e.g. pixel_values=x.bin:float32:1x3x224x224)`,
      2,
    );
  const [, name, file, dtypeName, shapeText] = m as unknown as [string, string, string, string, string];
  const kind = TYPED[dtypeName];
  if (!kind)
    throw new CliError(`--tensor ${name}: unsupported dtype "${dtypeName}" (float32, int64, int32)`, 2);
  const shape = shapeText.split('x').map(Number);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new CliError(
      `--tensor ${name}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const elementBytes = kind.dtype === 'int64' ? 8 : 4;
  if (bytes.byteLength !== numel(shape) * elementBytes) {
    throw new CliError(
      `--tensor ${name}: ${file} has ${bytes.byteLength} bytes, shape ${shapeText} of ${kind.dtype} needs ${numel(shape) * elementBytes}`,
    );
  }
  const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  return [name, checked({ dtype: kind.dtype, shape, data: kind.make(copy) } as HostTensor, name)];
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    {
      tensor: { type: 'string', multiple: true },
      image: { type: 'string', multiple: true },
      text: { type: 'string' },
      'text-pair': { type: 'string' },
      out: { type: 'string' },
      threads: { type: 'string' },
      buckets: { type: 'string' },
      'top-k': { type: 'string' },
    },
    USAGE,
  );
  const [dir] = positionals;
  if (!dir) throw new CliError(`missing <model-dir>\n\n${USAGE}`, 2);
  const session = await ModelSession.load(dir, {
    intraOpThreads: intOption(values.threads, 'threads', 0) || undefined,
    buckets: values.buckets?.split(',').map((b) => intOption(b.trim(), 'buckets', 1, 1)),
  });
  const feeds = values.tensor?.length
    ? Object.fromEntries(values.tensor.map(parseTensorArg))
    : await prepareInputs(session.card, {
        images: values.image ?? [],
        text: values.text,
        textPair: values['text-pair'],
      });
  const missing = session.inputNames.filter((n) => !(n in feeds));
  if (missing.length)
    throw new CliError(
      `model ${dir} needs inputs ${session.inputNames.join(', ')}; missing ${missing.join(', ')}`,
      2,
    );
  const outputs = await session.run(feeds);
  const first = outputs[session.outputNames[0]!]!;
  if (values.out) {
    writeFileSync(
      values.out,
      new Uint8Array(first.data.buffer, first.data.byteOffset, first.data.byteLength),
    );
    console.error(`wrote ${session.outputNames[0]} [${first.shape.join(', ')}] float32 to ${values.out}`);
  } else {
    console.log(
      JSON.stringify(
        describeOutputs(session.card, first, intOption(values['top-k'], 'top-k', 5, 1)),
        null,
        2,
      ),
    );
  }
  await session.release();
}
