/**
 * Rows in, batch tensors out, and back. A queue entry is one sample (one image, one sentence pair); the batcher
 * stacks images, pads token rows to the batch's bucket length (attention mask 0 on padding, so a row's answer
 * does not depend on its batch-mates), and splits the outputs back into rows that own their memory (they are
 * sent to different requests).
 */
import type { TensorSpec } from '../model/card.js';
import { numel, type HostTensor } from '../tensor.js';

/** One preprocessed image: float32 CHW, as the model's pixel input without the batch axis. */
export interface ImageRow {
  kind: 'image';
  data: Float32Array;
}

/** One tokenised sequence (any length ≥ 1; padded at collation). `mask` may hold zeros (client padding). */
export interface TokenRow {
  kind: 'tokens';
  ids: BigInt64Array;
  mask: BigInt64Array;
  types: BigInt64Array;
}

export type Row = ImageRow | TokenRow;

/** One row of every output: shape without the batch axis. */
export type RowOutputs = Record<string, { shape: number[]; data: Float32Array }>;

export type BatchFeeds = Record<string, HostTensor>;

/** Stacks image rows into the model's pixel input [n, ...rowShape] (rowShape: e.g. [3, 224, 224]). */
export function collateImages(
  rows: readonly ImageRow[],
  inputName: string,
  rowShape: readonly number[],
): BatchFeeds {
  const plane = numel(rowShape);
  const data = new Float32Array(rows.length * plane);
  rows.forEach((r, i) => {
    if (r.data.length !== plane)
      throw new Error(`image row ${i} has ${r.data.length} values, the model takes ${plane}`);
    data.set(r.data, i * plane);
  });
  return { [inputName]: { dtype: 'float32', shape: [rows.length, ...rowShape], data } };
}

export type TokenRole = 'ids' | 'mask' | 'types';

/** Which token tensor feeds a graph input, from its name (Hugging Face naming). */
export function tokenRole(inputName: string): TokenRole | null {
  if (/input_ids$/.test(inputName)) return 'ids';
  if (/attention_mask$/.test(inputName)) return 'mask';
  if (/token_type_ids$/.test(inputName)) return 'types';
  return null;
}

/** Pads token rows to `length` (≥ every row's length) and builds the graph's token inputs [n, length]. */
export function collateTokens(
  rows: readonly TokenRow[],
  length: number,
  inputs: readonly TensorSpec[],
): BatchFeeds {
  const n = rows.length;
  const feeds: BatchFeeds = {};
  for (const spec of inputs) {
    const role = tokenRole(spec.name);
    if (!role)
      throw new Error(`text model input ${spec.name} is not input_ids, attention_mask or token_type_ids`);
    const out = new BigInt64Array(n * length);
    rows.forEach((r, i) => {
      const src = r[role];
      if (src.length > length)
        throw new Error(`token row ${i} has ${src.length} tokens, batch is padded to ${length}`);
      out.set(src, i * length);
    });
    if (spec.dtype === 'int32') {
      feeds[spec.name] = { dtype: 'int32', shape: [n, length], data: Int32Array.from(out, (v) => Number(v)) };
    } else {
      feeds[spec.name] = { dtype: 'int64', shape: [n, length], data: out };
    }
  }
  return feeds;
}

/** Splits batch outputs [n, ...] into n rows, each a copy with its own buffer (transferable, independent). */
export function splitRows(outputs: Record<string, HostTensor<'float32'>>, n: number): RowOutputs[] {
  const rows: RowOutputs[] = Array.from({ length: n }, () => ({}));
  for (const [name, t] of Object.entries(outputs)) {
    if (t.shape[0] !== n) throw new Error(`output ${name} has batch ${t.shape[0]}, expected ${n}`);
    const shape = t.shape.slice(1);
    const width = numel(shape);
    for (let i = 0; i < n; i++)
      rows[i]![name] = { shape: [...shape], data: t.data.slice(i * width, (i + 1) * width) };
  }
  return rows;
}

/** Buffers to transfer with a feeds message (each tensor owns its buffer here: built by the collators). */
export function transferList(feeds: BatchFeeds): ArrayBuffer[] {
  const seen = new Set<ArrayBuffer>();
  for (const t of Object.values(feeds)) {
    const buf = t.data.buffer;
    if (buf instanceof ArrayBuffer && t.data.byteOffset === 0 && t.data.byteLength === buf.byteLength)
      seen.add(buf);
  }
  return [...seen];
}
