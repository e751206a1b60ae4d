/** Builds model inputs for `padserve predict --image/--text` from the model card's own preprocessing. */
import { CliError } from './args.js';
import type { ModelCard } from '../model/card.js';
import { decodeRows } from '../model/decode.js';
import type { FloatTensor } from '../tensor.js';
import type { Feeds } from '../runtime/session.js';

export interface RawInputs {
  images: string[];
  text?: string;
  textPair?: string;
}

export async function prepareInputs(card: ModelCard, raw: RawInputs): Promise<Feeds> {
  if (card.family === 'resnet') {
    if (!raw.images.length) throw new CliError('give --tensor or --image for an image model', 2);
    throw new CliError('--image is not available yet', 2);
  }
  if (raw.text === undefined) throw new CliError('give --tensor or --text for a text model', 2);
  throw new CliError('--text is not available yet', 2);
}

export function describeOutputs(card: ModelCard, logits: FloatTensor, k: number) {
  return { model: card.name, variant: card.variant, source: card.source.kind, results: decodeRows(card, logits, k) };
}
