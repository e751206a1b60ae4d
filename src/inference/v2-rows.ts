/**
 * V2 inference inputs → batcher rows: pixel tensors for image models (FP32 / FP16 already normalised, NCHW; or
 * UINT8 0–255 in NCHW `[n, C, H, W]` or NHWC `[n, H, W, C]`, normalised here with the card's scale / mean / std);
 * INT64/INT32 token tensors or BYTES text (tokenised server-side) for text models. Checks everything against the
 * model: names, datatypes, ranks, row shapes, sequence length, id / mask / type ranges, batch limits.
 *
 * Text models take one of two input sets, never a mix (400 `mixed_inputs`): token tensors (`input_ids`, with
 * optional `attention_mask` (default all 1) and `token_type_ids` (default all 0)), or BYTES `text` with an
 * optional `text_pair`.
 */
import type { ImageRow, Row, TokenRow } from '../batching/collate.js';
import type { ModelCard } from '../model/card.js';
import { invalidInput } from '../observability/errors.js';
import { imageCard, textCard } from '../repository/family.js';
import { imageRowShape, type ServedModel } from '../repository/model.js';
import { checkText, tokenRow } from './text.js';
import type { DecodedTensor } from './v2-codec.js';
import type { InferenceContext } from './v2-context.js';

export const TEXT_INPUT = 'text';
export const TEXT_PAIR_INPUT = 'text_pair';

function batchOf(t: DecodedTensor, rank: number, maxRows: number): number {
  if (t.shape.length !== rank)
    throw invalidInput('invalid_shape', `input ${t.name}: rank ${t.shape.length}, expected ${rank}`);
  const n = t.shape[0]!;
  if (n < 1) throw invalidInput('empty_batch', `input ${t.name}: batch dimension is 0`);
  if (n > maxRows)
    throw invalidInput('batch_too_large', `input ${t.name}: batch of ${n}, at most ${maxRows} per request`);
  return n;
}

export function imageRows(model: ModelCard, inputs: DecodedTensor[], maxRows: number): Row[] {
  const card = imageCard(model);
  const spec = card.inputs[0]!;
  const t = inputs.find((x) => x.name === spec.name);
  const extra = inputs.find((x) => x.name !== spec.name);
  if (extra) throw invalidInput('unknown_input', `model takes only ${spec.name}, got ${extra.name}`);
  if (!t) throw invalidInput('missing_input', `missing input ${spec.name}`);
  if (t.datatype !== 'FP32' && t.datatype !== 'FP16' && t.datatype !== 'UINT8')
    throw invalidInput('wrong_datatype', `input ${t.name} must be FP32, FP16 or UINT8, got ${t.datatype}`);
  const n = batchOf(t, spec.shape.length, maxRows);
  const want = imageRowShape(card);
  const same = (shape: number[]) => t.shape.slice(1).every((d, i) => d === shape[i]);
  const [c, h, w] = want as [number, number, number];
  const nhwc = t.datatype === 'UINT8' && want.length === 3 && !same(want) && same([h, w, c]);
  if (!same(want) && !nhwc) {
    throw invalidInput(
      'invalid_shape',
      `input ${t.name}: shape [${t.shape.join(', ')}], expected [n, ${want.join(', ')}]${t.datatype === 'UINT8' ? ` (NCHW) or [n, ${h}, ${w}, ${c}] (NHWC)` : ''}`,
    );
  }
  const plane = t.data.length / n;
  if (t.datatype === 'UINT8') {
    const { scale, mean, std } = card.preprocess;
    const px = t.data;
    const hw = h * w;
    return Array.from({ length: n }, (_, i) => {
      const data = new Float32Array(plane);
      const base = i * plane;
      for (let ch = 0; ch < c; ch++) {
        const m = mean[ch] ?? 0;
        const sd = std[ch] ?? 1;
        for (let p = 0; p < hw; p++) {
          const v = nhwc ? px[base + p * c + ch]! : px[base + ch * hw + p]!;
          data[ch * hw + p] = (v * scale - m) / sd;
        }
      }
      return { kind: 'image', data } satisfies ImageRow;
    });
  }
  return Array.from(
    { length: n },
    (_, i) =>
      ({
        kind: 'image',
        data: (t.data as Float32Array).subarray(i * plane, (i + 1) * plane),
      }) satisfies ImageRow,
  );
}

export function tensorTokenRows(model: ServedModel, inputs: DecodedTensor[], maxRows: number): Row[] {
  const card = textCard(model.card);
  const byRole = {
    ids: null as DecodedTensor | null,
    mask: null as DecodedTensor | null,
    types: null as DecodedTensor | null,
  };
  for (const t of inputs) {
    const role = /input_ids$/.test(t.name)
      ? 'ids'
      : /attention_mask$/.test(t.name)
        ? 'mask'
        : /token_type_ids$/.test(t.name)
          ? 'types'
          : null;
    if (!role || !card.inputs.some((s) => s.name === t.name))
      throw invalidInput(
        'unknown_input',
        `unknown input ${t.name} (model inputs: ${card.inputs.map((s) => s.name).join(', ')}, or BYTES ${TEXT_INPUT}/${TEXT_PAIR_INPUT})`,
      );
    if (t.datatype !== 'INT64' && t.datatype !== 'INT32')
      throw invalidInput('wrong_datatype', `input ${t.name} must be INT64 (or INT32), got ${t.datatype}`);
    byRole[role] = t;
  }
  const ids = byRole.ids;
  if (!ids) throw invalidInput('missing_input', 'missing input input_ids');
  const n = batchOf(ids, 2, maxRows);
  const len = ids.shape[1]!;
  if (len < 1 || len > model.maxLength)
    throw invalidInput(
      'invalid_shape',
      `input ${ids.name}: sequence length ${len}, expected 1..${model.maxLength}`,
    );
  for (const t of [byRole.mask, byRole.types]) {
    if (t && (t.shape.length !== 2 || t.shape[0] !== n || t.shape[1] !== len))
      throw invalidInput(
        'shape_mismatch',
        `input ${t.name}: shape [${t.shape.join(', ')}] differs from input_ids [${n}, ${len}]`,
      );
  }
  const arch = card.architecture;
  const check = (t: DecodedTensor | null, lo: number, hi: number, what: string) => {
    if (!t) return;
    for (const v of t.data as BigInt64Array)
      if (v < BigInt(lo) || v >= BigInt(hi))
        throw invalidInput('value_out_of_range', `input ${t.name}: ${what} ${v} outside [${lo}, ${hi})`);
  };
  check(ids, 0, arch.vocabSize, 'token id');
  check(byRole.mask, 0, 2, 'mask value');
  check(byRole.types, 0, arch.typeVocabSize, 'token type');
  const rows: TokenRow[] = [];
  for (let i = 0; i < n; i++) {
    const sl = (t: DecodedTensor | null) =>
      t ? (t.data as BigInt64Array).slice(i * len, (i + 1) * len) : null;
    rows.push({
      kind: 'tokens',
      ids: sl(ids)!,
      mask: sl(byRole.mask) ?? new BigInt64Array(len).fill(1n),
      types: sl(byRole.types) ?? new BigInt64Array(len),
    });
  }
  return rows;
}

export async function textRows(
  ctx: InferenceContext,
  model: ServedModel,
  inputs: DecodedTensor[],
  maxRows: number,
): Promise<Row[]> {
  const a = inputs.find((t) => t.name === TEXT_INPUT);
  const b = inputs.find((t) => t.name === TEXT_PAIR_INPUT);
  const other = inputs.find((t) => t.name !== TEXT_INPUT && t.name !== TEXT_PAIR_INPUT);
  if (other)
    throw invalidInput(
      'mixed_inputs',
      `give either BYTES ${TEXT_INPUT}/${TEXT_PAIR_INPUT} or token tensors, not both (got ${other.name})`,
    );
  if (!a) throw invalidInput('missing_input', `missing BYTES input ${TEXT_INPUT}`);
  for (const t of [a, b])
    if (t && t.datatype !== 'BYTES') throw invalidInput('wrong_datatype', `input ${t.name} must be BYTES`);
  const n = batchOf(a, a.shape.length === 2 ? 2 : 1, maxRows);
  if (a.shape.length === 2 && a.shape[1] !== 1)
    throw invalidInput('invalid_shape', `input ${TEXT_INPUT}: shape [n] or [n, 1] expected`);
  if (b && b.data.length !== n)
    throw invalidInput(
      'shape_mismatch',
      `${TEXT_PAIR_INPUT} has ${b.data.length} elements, ${TEXT_INPUT} ${n}`,
    );
  const texts = [...(a.data as string[]), ...((b?.data as string[] | undefined) ?? [])];
  texts.forEach((s, i) => checkText(s, ctx.limits.maxTextChars, `text element ${i}`));
  const pairs = (a.data as string[]).map((x, i) => ({ a: x, b: b ? (b.data as string[])[i]! : null }));
  const { encodings } = await ctx.preprocess.text(pairs, model.maxLength);
  return encodings.map((e) => tokenRow(e.ids, e.types));
}
