/**
 * Reading and writing model folders (`config.json` + `model.onnx` [+ `model.onnx.data`]). Converters and synth
 * call `writeModelFolder`; the runtime and the repository call `readModelCard`.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { GraphBuilder } from '../onnx/builder.js';
import { writeModel, type WrittenModel } from '../onnx/serialize.js';
import { DEFAULT_OPSET } from '../onnx/proto.js';
import {
  graphFiles,
  MODEL_CARD_FORMAT,
  MODEL_CARD_VERSION,
  type GraphFiles,
  type ModelCard,
} from './card.js';

export const CARD_FILE = 'config.json';

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
  /** Description of the form (GraphFiles.form). */
  form?: string;
  /** A CUDA form written next to the CPU one (card.cudaGraph). */
  cuda?: GraphForm;
}

/**
 * One form of a model's graph: a single graph (`graph`), or bucket graphs each built on demand (`buckets`, built,
 * written and dropped one at a time, so only one graph's weights are in memory), all sharing one weights file.
 */
export interface GraphForm {
  /** File stem: `model` → model.onnx / model.b<B>.onnx and model.onnx.data. */
  stem: string;
  graph?: GraphBuilder;
  buckets?: { batch: number; build: () => GraphBuilder }[];
  parameters?: number;
  maxRunBatch?: number | null;
  form?: string;
  externalThresholdBytes?: number;
  /**
   * A second form (CUDA) only: reference the CPU form's weights file instead of writing its own; every tensor at
   * or over the CPU form's threshold must be one of the CPU form's, byte for byte (BERT's forms share their experts).
   */
  shareCpuData?: boolean;
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
  const { cuda, ...cpu } = opts;
  return writeModelForms(dir, draft, { stem: 'model', graph: g, ...cpu }, cuda);
}

/** `writeModelFolder` for any forms: the CPU form (card.graph) and optionally a CUDA form (card.cudaGraph). */
export function writeModelForms(dir: string, draft: CardDraft, cpu: GraphForm, cuda?: GraphForm): ModelCard {
  // Unique per host and process: replicas sharing one volume must not clobber each other's half-written folders.
  const tmp = `${dir}.tmp-${hostname()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(tmp, { recursive: true });
  try {
    const { files: graph, written } = writeForm(tmp, draft, cpu);
    const cudaGraph = cuda
      ? writeForm(tmp, draft, cuda, cuda.shareCpuData ? written : null).files
      : undefined;
    const card = {
      format: MODEL_CARD_FORMAT,
      formatVersion: MODEL_CARD_VERSION,
      ...draft,
      graph,
      ...(cudaGraph ? { cudaGraph } : {}),
    } as ModelCard;
    writeFileSync(join(tmp, CARD_FILE), `${JSON.stringify(card, null, 2)}\n`);
    replaceFolder(tmp, dir);
    return card;
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

function writeForm(
  tmp: string,
  draft: CardDraft,
  form: GraphForm,
  base: WrittenModel | null = null,
): { files: GraphFiles; written: WrittenModel } {
  const write = (g: GraphBuilder, file: string, first: WrittenModel | null): WrittenModel =>
    writeModel(g, join(tmp, file), {
      producer: 'padserve',
      metadata: { family: draft.family, variant: draft.variant, source: draft.source.kind },
      // Bucket graphs always keep their weights in the shared file (even small models), so the weights are
      // resident once however many buckets are loaded.
      // A form reading the CPU form's file takes its threshold (an inline default would skip the sharing).
      externalThresholdBytes:
        form.externalThresholdBytes ??
        base?.external?.threshold ??
        (form.buckets && form.buckets.length > 1 ? 1024 : undefined),
      // One weights file per form, named after the form (not after its first bucket graph); bucket graphs after
      // the first point into it (checked byte for byte).
      dataFile: `${form.stem}.onnx.data`,
      sharedData: (first ?? base)?.external ?? undefined,
    });
  let written: WrittenModel;
  let buckets: GraphFiles['buckets'];
  if (form.buckets) {
    const sizes = form.buckets.map((b) => b.batch);
    if (!sizes.length || sizes.some((b, i) => !Number.isInteger(b) || b < 1 || (i > 0 && b <= sizes[i - 1]!)))
      throw new RangeError(`buckets must be ascending positive integers, got [${sizes.join(', ')}]`);
    let first: WrittenModel | null = null;
    buckets = [];
    for (const b of form.buckets) {
      const file = `${form.stem}.b${b.batch}.onnx`;
      const w = write(b.build(), file, first);
      first ??= w;
      buckets.push({ batch: b.batch, file });
    }
    written = first!;
  } else {
    if (!form.graph) throw new Error(`form ${form.stem}: neither a graph nor buckets`);
    written = write(form.graph, `${form.stem}.onnx`, null);
  }
  const files: GraphFiles = {
    file: buckets ? buckets[0]!.file : `${form.stem}.onnx`,
    dataFile: written.dataPath ? basename(written.dataPath) : null,
    opset: DEFAULT_OPSET,
    initializerBytes: written.initializerBytes,
    parameters: form.parameters ?? Math.round(written.initializerBytes / 4),
    weightsSha256: written.weightsSha256,
    maxRunBatch: buckets ? buckets[buckets.length - 1]!.batch : (form.maxRunBatch ?? null),
    ...(buckets ? { buckets } : {}),
    ...(form.form ? { form: form.form } : {}),
  };
  return { files, written };
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
  for (const form of [card.graph, card.cudaGraph]) {
    if (!form) continue;
    for (const file of graphFiles(form))
      if (!existsSync(join(dir, file))) throw new ModelFolderError(`${dir}: graph file ${file} is missing`);
    if (form.dataFile && !existsSync(join(dir, form.dataFile)))
      throw new ModelFolderError(`${dir}: weights file ${form.dataFile} is missing`);
  }
  return card;
}
