/**
 * Reading and writing model folders (`config.json` + `model.onnx` [+ `model.onnx.data`]). Converters and synth
 * call `writeModelFolder`; the runtime and the repository call `readModelCard`.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { GraphBuilder } from '../onnx/builder.js';
import { writeModel } from '../onnx/serialize.js';
import { DEFAULT_OPSET } from '../onnx/proto.js';
import { MODEL_CARD_FORMAT, MODEL_CARD_VERSION, type GraphFiles, type ModelCard } from './card.js';

export const CARD_FILE = 'config.json';
export const GRAPH_FILE = 'model.onnx';

/** A card before the graph is written: the writer fills `graph` in. */
export type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;
export type CardDraft = DistributiveOmit<ModelCard, 'graph' | 'format' | 'formatVersion'>;

export class ModelFolderError extends Error {
  override name = 'ModelFolderError';
  readonly userFacing = true;
}

export interface WriteFolderOptions {
  /** Number of stored weight values (defaults to initializer bytes / 4). */
  parameters?: number;
  maxRunBatch?: number | null;
  externalThresholdBytes?: number;
}

/**
 * Writes graph and card into `dir` atomically enough for a model repository: files go to a temporary sibling
 * folder first and are renamed into place, so a reader never sees a half-written model.
 */
export function writeModelFolder(
  dir: string,
  g: GraphBuilder,
  draft: CardDraft,
  opts: WriteFolderOptions = {},
): ModelCard {
  // Unique per host and process: replicas sharing one volume must not clobber each other's half-written folders.
  const tmp = `${dir}.tmp-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(tmp, { recursive: true });
  const written = writeModel(g, join(tmp, GRAPH_FILE), {
    producer: 'padserve',
    metadata: { family: draft.family, variant: draft.variant, source: draft.source.kind },
    externalThresholdBytes: opts.externalThresholdBytes,
  });
  const graph: GraphFiles = {
    file: GRAPH_FILE,
    dataFile: written.dataPath ? basename(written.dataPath) : null,
    opset: DEFAULT_OPSET,
    initializerBytes: written.initializerBytes,
    parameters: opts.parameters ?? Math.round(written.initializerBytes / 4),
    weightsSha256: written.weightsSha256,
    maxRunBatch: opts.maxRunBatch ?? null,
  };
  const card = { format: MODEL_CARD_FORMAT, formatVersion: MODEL_CARD_VERSION, ...draft, graph } as ModelCard;
  writeFileSync(join(tmp, CARD_FILE), `${JSON.stringify(card, null, 2)}\n`);
  replaceFolder(tmp, dir);
  return card;
}

/** Moves `from` into place at `to`; an existing `to` is moved aside first and removed after the swap. */
function replaceFolder(from: string, to: string): void {
  if (!existsSync(to)) {
    renameSync(from, to);
    return;
  }
  const old = `${to}.old-${randomBytes(4).toString('hex')}`;
  renameSync(to, old);
  renameSync(from, to);
  rmSync(old, { recursive: true, force: true });
}

export function readModelCard(dir: string): ModelCard {
  const path = join(dir, CARD_FILE);
  if (!existsSync(path)) throw new ModelFolderError(`${dir}: not a model folder (no ${CARD_FILE})`);
  let card: ModelCard;
  try {
    card = JSON.parse(readFileSync(path, 'utf8')) as ModelCard;
  } catch (err) {
    throw new ModelFolderError(`${path}: invalid JSON (${(err as Error).message})`);
  }
  if (card.format !== MODEL_CARD_FORMAT)
    throw new ModelFolderError(`${path}: not a padserve model card (format "${String(card.format)}")`);
  if (card.formatVersion !== MODEL_CARD_VERSION) {
    throw new ModelFolderError(
      `${path}: model card version ${String(card.formatVersion)} is not supported (expected ${MODEL_CARD_VERSION})`,
    );
  }
  if (card.family !== 'resnet' && card.family !== 'bert')
    throw new ModelFolderError(
      `${path}: unknown model family "${String((card as { family: unknown }).family)}"`,
    );
  if (!existsSync(join(dir, card.graph.file)))
    throw new ModelFolderError(`${dir}: graph file ${card.graph.file} is missing`);
  if (card.graph.dataFile && !existsSync(join(dir, card.graph.dataFile)))
    throw new ModelFolderError(`${dir}: weights file ${card.graph.dataFile} is missing`);
  return card;
}
