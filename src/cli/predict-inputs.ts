/** Builds model inputs for `padserve predict --image/--text` from the model card's own preprocessing. */
import { CliError } from './args.js';
import type { ModelCard } from '../model/card.js';
import { decodeRows } from '../model/decode.js';
import type { FloatTensor } from '../tensor.js';
import type { Feeds } from '../runtime/session.js';
import { readFileSync } from 'node:fs';
import { BertTokenizer } from '../preprocess/text/index.js';
import { imageToTensor, isImageError, stackImages } from '../preprocess/image.js';

/** Pixel limit for CLI inputs (the server has its own setting). */
const CLI_MAX_INPUT_PIXELS = 100_000_000;

export interface RawInputs {
  images: string[];
  text?: string;
  textPair?: string;
}

export async function prepareInputs(card: ModelCard, raw: RawInputs): Promise<Feeds> {
  if (card.family === 'resnet') {
    if (!raw.images.length) throw new CliError('give --tensor or --image for an image model', 2);
    const spec = card.preprocess;
    const tensors = [];
    for (const file of raw.images) {
      try {
        tensors.push(await imageToTensor(readFileSync(file), spec, { maxInputPixels: CLI_MAX_INPUT_PIXELS }));
      } catch (err) {
        if (isImageError(err)) throw new CliError(`${file}: ${err.message}`);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new CliError(`${file}: no such file`);
        throw err;
      }
    }
    return { [card.inputs[0]!.name]: stackImages(tensors, spec.size) };
  }
  if (raw.text === undefined) throw new CliError('give --tensor or --text for a text model', 2);
  const tokenizer = BertTokenizer.load();
  const batch = tokenizer.encodeBatch([{ a: raw.text, b: raw.textPair ?? null }], {
    maxLength: card.tokenizer.maxLength,
  });
  return {
    input_ids: batch.inputIds,
    attention_mask: batch.attentionMask,
    token_type_ids: batch.tokenTypeIds,
  };
}

export function describeOutputs(card: ModelCard, logits: FloatTensor, k: number) {
  return {
    model: card.name,
    variant: card.variant,
    source: card.source.kind,
    results: decodeRows(card, logits, k),
  };
}
