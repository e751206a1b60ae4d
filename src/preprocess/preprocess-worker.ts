/**
 * Preprocessing worker (a piscina task file): image decode + resize + normalise (sharp and the Pillow-exact
 * resampler, CPU work that must not run on the HTTP thread) and, for large text requests, tokenisation. Typed
 * errors come back as values (`{ ok: false, code, status, message }`): class identity and custom fields do not
 * survive a thread boundary.
 */
import sharp from 'sharp';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import type { ImagePreprocessSpec } from '../model/card.js';
import { imageToTensor, isImageError } from './image.js';
import type { ImageErrorCode } from './image-errors.js';
import { BertTokenizer, TokenizerInputError } from './text/index.js';

// One libvips thread per preprocessing worker: the worker count is the parallelism knob.
sharp.concurrency(1);
sharp.cache(false);

export interface ImageTask {
  kind: 'image';
  bytes: Uint8Array;
  spec: ImagePreprocessSpec;
  maxInputPixels: number;
}

export interface TextTask {
  kind: 'text';
  pairs: { a: string; b: string | null }[];
  maxLength: number;
}

/** Starts the thread (piscina) without loading anything else. */
export interface PingTask {
  kind: 'ping';
}

export type PreprocessTask = ImageTask | TextTask | PingTask;

export type PreprocessFailure = { ok: false; code: ImageErrorCode | 'invalid_text'; message: string };
export type ImageResult = { ok: true; data: Float32Array; ms: number } | PreprocessFailure;
export type TextResult =
  { ok: true; encodings: { ids: number[]; types: number[] }[]; ms: number } | PreprocessFailure;

export function runImage(task: ImageTask): Promise<ImageResult> {
  const t0 = performance.now();
  return imageToTensor(task.bytes, task.spec, { maxInputPixels: task.maxInputPixels }).then(
    (t) => ({ ok: true as const, data: t.data, ms: performance.now() - t0 }),
    (err: unknown) => {
      if (isImageError(err)) return { ok: false as const, code: err.code, message: err.message };
      throw err;
    },
  );
}

export function runText(task: TextTask): TextResult {
  const t0 = performance.now();
  const tok = BertTokenizer.load();
  try {
    const encodings = task.pairs.map((p) => {
      const e = tok.encode(p.a, p.b, { maxLength: task.maxLength });
      return { ids: e.inputIds, types: e.tokenTypeIds };
    });
    return { ok: true, encodings, ms: performance.now() - t0 };
  } catch (err) {
    if (err instanceof TokenizerInputError) return { ok: false, code: 'invalid_text', message: err.message };
    throw err;
  }
}

/** The piscina entry: results move back (their buffers are transferred, not copied). */
export default async function preprocess(task: PreprocessTask): Promise<ImageResult | TextResult | null> {
  if (task.kind === 'ping') return null;
  if (task.kind === 'text') return runText(task);
  const r = await runImage(task);
  if (!r.ok || r.data.byteOffset !== 0 || r.data.byteLength !== r.data.buffer.byteLength) return r;
  // A Transferable wrapper: the result object is posted with its pixel buffer in the transfer list.
  const wrapped = { [transferableSymbol]: [r.data.buffer], [valueSymbol]: r };
  return move(wrapped as never) as unknown as ImageResult;
}
