/**
 * What differs between the model families, in one place: the row kind a model takes, its batching policy, how
 * rows become the graph's feeds, the rows that warm it, its input geometry and its head. The request path asks
 * `familyOf(card)` instead of testing `card.family` (src/repository/model.ts, src/inference/); a new family is a
 * new entry here.
 */
import {
  collateImages,
  collateTokens,
  type BatchFeeds,
  type ImageRow,
  type Row,
  tokenRole,
  type TokenRow,
} from '../batching/collate.js';
import { CountPolicy, TokenBudgetPolicy, type BatchPolicy } from '../batching/policy.js';
import type { BertCard, ModelCard, ResNetCard, TensorSpec } from '../model/card.js';
import { isRegression } from '../model/decode.js';
import type { ServingConfig } from './serving.js';

export interface ModelFamily<C extends ModelCard = ModelCard> {
  /** The kind of row the family's models take (`Row['kind']`). */
  readonly rowKind: Row['kind'];
  /** An input row's shape without the batch axis (image models, e.g. [3, 224, 224]); [] for token rows. */
  rowShape(card: C): number[];
  /** The longest token sequence accepted (text models: the tokenizer's limit within the position table); 0 else. */
  maxLength(card: C): number;
  policy(card: C, serving: ServingConfig): BatchPolicy;
  /** A batch of rows as the graph's feeds (token rows padded to `padded`). */
  collate(card: C, rows: Row[], padded: number, rowShape: readonly number[]): BatchFeeds;
  /** Rows of the given count and length that exercise one batch shape at warm-up. */
  warmupRows(card: C, rows: number, length: number): Row[];
  /** The head is a regression (one score per row), not a classifier over `card.labels`. */
  regression(card: C): boolean;
  // Metadata (V2 model metadata and config, gRPC alike).
  /** A graph input's dims without the batch axis, -1 where the graph leaves a size free. */
  inputDims(card: C, input: TensorSpec): number[];
  /** Inputs a client may leave out (the server fills them: attention mask all 1, token types all 0). */
  optionalInput(name: string): boolean;
  /** Memory layout of the pixel input, or null (token inputs). */
  readonly layout: 'NCHW' | null;
  /** The GLUE task the model was trained for, if the card names one. */
  task(card: C): string | null;
}

/** Symbolic sizes as -1 (V2 metadata's "variable"). */
export const metadataDims = (shape: readonly (number | string)[]): number[] =>
  shape.map((d) => (typeof d === 'number' ? d : -1));

const image: ModelFamily<ResNetCard> = {
  rowKind: 'image',
  rowShape(card) {
    const spec = card.inputs[0]!;
    return spec.shape
      .slice(1)
      .map((d, i) => (typeof d === 'number' ? d : i === 0 ? 3 : card.preprocess.size));
  },
  maxLength: () => 0,
  policy: (card, serving) =>
    new CountPolicy(
      serving.max_batch_size,
      card.graph.buckets?.map((b) => b.batch),
    ),
  collate: (card, rows, _padded, rowShape) =>
    collateImages(rows as ImageRow[], card.inputs[0]!.name, rowShape),
  warmupRows(card, rows) {
    const plane = this.rowShape(card).reduce((a, b) => a * b, 1);
    return Array.from(
      { length: rows },
      () => ({ kind: 'image', data: new Float32Array(plane) }) satisfies ImageRow,
    );
  },
  regression: () => false,
  inputDims(card, input) {
    return input.name === card.inputs[0]!.name ? this.rowShape(card) : metadataDims(input.shape.slice(1));
  },
  optionalInput: () => false,
  layout: 'NCHW',
  task: () => null,
};

/** [CLS] and [SEP] of the bert-base-uncased vocabulary, around "the" (1996): a plausible warm-up sentence. */
const CLS = 101n;
const SEP = 102n;
const THE = 1996n;

const text: ModelFamily<BertCard> = {
  rowKind: 'tokens',
  rowShape: () => [],
  maxLength: (card) => Math.min(card.tokenizer.maxLength, card.architecture.maxPositions),
  policy(card, serving) {
    const maxLen = this.maxLength(card);
    const buckets = [...serving.length_buckets.filter((b) => b < maxLen), maxLen];
    return new TokenBudgetPolicy({
      maxBatchSize: serving.max_batch_size,
      maxBatchTokens: Math.max(serving.max_batch_tokens, maxLen),
      buckets,
    });
  },
  collate: (card, rows, padded) => collateTokens(rows as TokenRow[], padded, card.inputs),
  warmupRows: (_card, rows, length) =>
    Array.from({ length: rows }, () => {
      const ids = new BigInt64Array(length).fill(THE);
      ids[0] = CLS;
      ids[length - 1] = SEP;
      return {
        kind: 'tokens',
        ids,
        mask: new BigInt64Array(length).fill(1n),
        types: new BigInt64Array(length),
      } satisfies TokenRow;
    }),
  regression: isRegression,
  inputDims: (_card, input) => metadataDims(input.shape.slice(1)),
  optionalInput: (name) => tokenRole(name) === 'mask' || tokenRole(name) === 'types',
  layout: null,
  task: (card) => card.task,
};

const FAMILIES: { [F in ModelCard['family']]: ModelFamily<Extract<ModelCard, { family: F }>> } = {
  resnet: image,
  bert: text,
};

/** The family of a card (its functions take that card). */
export function familyOf(card: ModelCard): ModelFamily {
  return FAMILIES[card.family] as ModelFamily;
}

/** The card of a model that takes image rows (callers checked `rowKind` first: this narrows the type). */
export function imageCard(card: ModelCard): ResNetCard {
  if (card.family !== 'resnet') throw new Error(`${card.family} is not an image model family`);
  return card;
}

/** The card of a model that takes token rows (callers checked `rowKind` first: this narrows the type). */
export function textCard(card: ModelCard): BertCard {
  if (card.family !== 'bert') throw new Error(`${card.family} is not a text model family`);
  return card;
}
