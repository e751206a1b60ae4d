/**
 * The Open Inference Protocol V2 inference pipeline, transport-neutral (HTTP in src/routes/v2.ts, gRPC import it
 * too; nothing here imports fastify).
 *
 * API
 * - `inferV2(ctx, name, version, request, track): Promise<V2InferResponse>`
 *   - `ctx`: `InferenceContext` (v2-context.ts; the HTTP `app.padserve` object is one).
 *   - `name`, `version`: model name and optional version number (absent: the highest loaded version; with the
 *     lazy policy the model is loaded on first use).
 *   - `request`: `{ id?, parameters?, inputs, outputs? }` with inputs already decoded into `DecodedTensor`s
 *     (typed arrays, or `string[]` for BYTES: decode them with v2-codec.ts `checkDatatype`, `checkShape`,
 *     `decodeJsonTensor`, `decodeRawTensor`, whose element limit is `maxElements(ctx)`). Each input and output may
 *     carry `parameters`.
 *   - `track`: `InferTrack` (deadline, abort signal, default priority; receives phase timings).
 *   - Resolves with `{ model_name, model_version, id?, outputs }`: FP32 outputs as `Float32Array` with their
 *     batch-major shape, classification outputs as BYTES `string[]` of shape `[batch, k]`. The transport encodes
 *     it (JSON, binary extension, or gRPC `raw_output_contents` with v2-codec.ts `outputBytes`).
 *   - Fails with `ServeError` (observability/errors.ts): `reason` says the kind (invalid_input → HTTP 400 / gRPC
 *     INVALID_ARGUMENT, not_found, deadline_exceeded, rejected_queue_full, not_ready, ...), `code` the cause.
 * - Request parameters (`checkParameters`; anything else is refused with 400 `unsupported_parameter`):
 *   `priority` (Triton schedule policy: 0 = default, 1..19 → padserve queue priority -9..9, 1 first), `timeout`
 *   (microseconds, 0 = none; shortens the deadline), `binary_data_output` (HTTP binary extension); per output
 *   `classification` (top-k as "value:index:label") and `binary_data`; per input `binary_data_size`.
 * - Inference statistics (Triton's statistics extension, v2-models.ts `modelStatistics`) are recorded here.
 */
import type { ModelCard } from '../model/card.js';
import { invalidInput } from '../observability/errors.js';
import { familyOf } from '../repository/family.js';
import { runTask } from './task.js';
import type { InferenceContext, InferTrack } from './v2-context.js';
import type { DecodedTensor, V2OutputTensor } from './v2-codec.js';
import { imageRows, tensorTokenRows, textRows } from './v2-rows.js';

export type { InferenceContext, InferTrack } from './v2-context.js';

export type Parameters = Record<string, unknown>;
export type V2InferInput = DecodedTensor & { parameters?: Parameters };

export interface V2InferRequest {
  id?: string;
  parameters?: Parameters;
  inputs: V2InferInput[];
  outputs?: { name: string; parameters?: Parameters }[];
}

export interface V2InferResponse {
  model_name: string;
  model_version: string;
  id?: string;
  outputs: V2OutputTensor[];
}

/** Parameters padserve implements, per place. Every other name is refused (400 `unsupported_parameter`). */
export const KNOWN_PARAMETERS = {
  request: ['priority', 'timeout', 'binary_data_output'],
  input: ['binary_data_size'],
  output: ['classification', 'binary_data'],
} as const;

/** Triton priority levels padserve declares: 1..19 map to queue priorities -9..9; 0 = the request's default. */
export const PRIORITY_LEVELS = 19;
export const DEFAULT_PRIORITY_LEVEL = 10;

/** Element limit for decoding a request's tensors (the body limit at 4 bytes an element). */
export function maxElements(ctx: InferenceContext): number {
  return Math.floor(ctx.limits.maxBodyBytes / 4);
}

function refuseUnknown(where: string, params: Parameters | undefined, known: readonly string[]): void {
  if (params === undefined) return;
  if (typeof params !== 'object' || params === null || Array.isArray(params))
    throw invalidInput('invalid_parameter', `${where} parameters must be an object`);
  for (const k of Object.keys(params))
    if (!known.includes(k))
      throw invalidInput(
        'unsupported_parameter',
        `${where} parameter "${k}" is not supported (supported: ${known.join(', ')})`,
      );
}

function nonNegativeInt(where: string, v: unknown, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max)
    throw invalidInput(
      'invalid_parameter',
      `${where} must be an integer in [0, ${max}], got ${JSON.stringify(v)}`,
    );
  return v;
}

/**
 * Checks every parameter of a request (names and types) and returns the scheduling it asks for: the queue
 * priority and the deadline (the track's, shortened by `timeout`), plus per output the classification count.
 */
export function checkParameters(
  req: Pick<V2InferRequest, 'parameters' | 'outputs'> & {
    inputs: { name: string; parameters?: Parameters }[];
  },
  track: Pick<InferTrack, 'deadline' | 'priority'>,
  now = performance.now(),
): { priority: number; deadline: number; classification: Map<string, number> } {
  refuseUnknown('request', req.parameters, KNOWN_PARAMETERS.request);
  for (const i of req.inputs) refuseUnknown(`input ${i.name}`, i.parameters, KNOWN_PARAMETERS.input);
  const classification = new Map<string, number>();
  for (const o of req.outputs ?? []) {
    refuseUnknown(`output ${o.name}`, o.parameters, KNOWN_PARAMETERS.output);
    const b = o.parameters?.binary_data;
    if (b !== undefined && typeof b !== 'boolean')
      throw invalidInput('invalid_parameter', `output ${o.name}: binary_data must be a boolean`);
    const k = o.parameters?.classification;
    if (k !== undefined) {
      if (typeof k !== 'number' || !Number.isInteger(k) || k < 1)
        throw invalidInput(
          'invalid_parameter',
          `output ${o.name}: classification must be a positive integer (the class count), got ${JSON.stringify(k)}`,
        );
      classification.set(o.name, k);
    }
  }
  const p = req.parameters ?? {};
  if (p.binary_data_output !== undefined && typeof p.binary_data_output !== 'boolean')
    throw invalidInput('invalid_parameter', 'binary_data_output must be a boolean');
  let priority = track.priority;
  if (p.priority !== undefined) {
    const level = nonNegativeInt('priority', p.priority, PRIORITY_LEVELS);
    if (level !== 0) priority = level - DEFAULT_PRIORITY_LEVEL;
  }
  let deadline = track.deadline;
  if (p.timeout !== undefined) {
    const us = nonNegativeInt('timeout (microseconds)', p.timeout, Number.MAX_SAFE_INTEGER);
    if (us > 0) deadline = Math.min(deadline, now + us / 1000);
  }
  return { priority, deadline, classification };
}

/** Top-k of each row as Triton's classification strings "value:index[:label]" (value as C's %f). */
export function classify(
  name: string,
  out: { shape: number[]; data: Float32Array },
  k: number,
  labels: readonly string[],
): V2OutputTensor {
  const rows = out.shape[0] ?? 1;
  const width = rows ? out.data.length / rows : 0;
  const count = Math.min(k, width);
  const data: string[] = [];
  for (let r = 0; r < rows; r++) {
    const row = out.data.subarray(r * width, (r + 1) * width);
    const order = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b);
    for (const i of order.slice(0, count)) {
      const label = labels[i];
      data.push(`${row[i]!.toFixed(6)}:${i}${label !== undefined ? `:${label}` : ''}`);
    }
  }
  return { name, datatype: 'BYTES', shape: [rows, count], data };
}

/** Runs one V2 inference request (see the API at the top of this file). */
export async function inferV2(
  ctx: InferenceContext,
  name: string,
  version: number | undefined,
  req: V2InferRequest,
  track: InferTrack,
): Promise<V2InferResponse> {
  const started = performance.now();
  const { priority, deadline, classification } = checkParameters(req, track, started);
  if (!Array.isArray(req.inputs) || req.inputs.length === 0)
    throw invalidInput('invalid_request', 'a request needs at least one input');
  const stats = ctx.metrics.statistics;
  const maxRows = ctx.limits.maxPairsPerRequest;
  let card!: ModelCard; // the resolved version's: its outputs and labels answer the request
  const { target, results, answer } = await runTask(
    ctx,
    track,
    {
      name,
      version,
      schedule: { deadline, priority },
      accept(m) {
        card = m.card;
        const known = card.outputs.map((o) => o.name);
        for (const o of req.outputs ?? [])
          if (!known.includes(o.name))
            throw invalidInput('unknown_output', `unknown output ${o.name} (outputs: ${known.join(', ')})`);
      },
      rows(m) {
        const inputs = req.inputs;
        if (familyOf(m.card).rowKind === 'image') return imageRows(m.card, inputs, maxRows);
        if (inputs.some((t) => t.datatype === 'BYTES')) return textRows(ctx, m, inputs, maxRows);
        return tensorTokenRows(m, inputs, maxRows);
      },
      decode(_target, rs) {
        const names = req.outputs?.length ? req.outputs.map((o) => o.name) : card.outputs.map((o) => o.name);
        return names.map((n): V2OutputTensor => {
          const first = rs[0]!.value[n]!;
          const width = first.data.length;
          const data = new Float32Array(width * rs.length);
          rs.forEach((r, i) => data.set(r.value[n]!.data, i * width));
          const tensor = { name: n, datatype: 'FP32' as const, shape: [rs.length, ...first.shape], data };
          const k = classification.get(n);
          return k === undefined ? tensor : classify(n, tensor, k, card.labels);
        });
      },
    },
    (m) => stats.failure(name, m.version, performance.now() - started),
  );
  stats.success(name, target.version, results.length, performance.now() - started, {
    queueMs: Math.max(0, ...results.map((r) => r.queueMs)),
    inputMs: track.preprocessMs,
    inferMs: Math.max(0, ...results.map((r) => r.inferenceMs)),
    outputMs: track.postprocessMs,
  });
  return {
    model_name: name,
    model_version: String(target.version),
    ...(req.id !== undefined ? { id: req.id } : {}),
    outputs: answer,
  };
}
