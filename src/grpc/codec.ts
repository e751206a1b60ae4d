/**
 * gRPC tensors ↔ the V2 pipeline's tensors. Inputs come either as `raw_input_contents` (one little-endian byte
 * string per input, in input order; BYTES elements length-prefixed, as in the HTTP binary extension) or as the
 * typed `InferTensorContents` field that matches the datatype; each is decoded by the same per-tensor decoders
 * as HTTP's binary tail and JSON `data` (src/inference/v2-codec.ts), so validation and error codes are shared.
 * Outputs always go back as `raw_output_contents`, as Triton answers (its clients read raw contents).
 */
import { invalidInput } from '../observability/errors.js';
import {
  bytesElements,
  checkDatatype,
  checkShape,
  decodeJsonTensor,
  decodeRawTensor,
  type DecodedTensor,
  type V2Datatype,
} from '../inference/v2-codec.js';
import type {
  InferParameter,
  InferTensorContents,
  InferInputTensor,
  InferOutputTensor,
  Int64,
  ModelInferRequest,
} from './messages.js';

/** The InferTensorContents field that carries each datatype (the protocol's table). */
const CONTENTS_FIELD: Record<V2Datatype, keyof InferTensorContents | null> = {
  BOOL: 'bool_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  FP16: null, // raw contents only: the protocol has no 16-bit float field
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

/** Every typed contents field (a client may fill the wrong one). */
const CONTENTS_FIELDS = Object.keys({
  bool_contents: true,
  int_contents: true,
  int64_contents: true,
  uint_contents: true,
  uint64_contents: true,
  fp32_contents: true,
  fp64_contents: true,
  bytes_contents: true,
} satisfies Record<keyof InferTensorContents, true>) as (keyof InferTensorContents)[];

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** An InferParameter as the plain JSON value the V2 pipeline reads (REST's `parameters` values). */
export function parameterValue(p: InferParameter): boolean | number | string | undefined {
  switch (p.parameter_choice) {
    case 'bool_param':
      return p.bool_param;
    case 'string_param':
      return p.string_param;
    case 'double_param':
      return p.double_param;
    case 'int64_param':
    case 'uint64_param': {
      const raw = p[p.parameter_choice]!;
      const n = Number(raw);
      if (!Number.isSafeInteger(n))
        throw invalidInput('invalid_parameter', `parameter value ${String(raw)} is not a safe integer`);
      return n;
    }
    default:
      return undefined;
  }
}

export function parameterMap(params: Record<string, InferParameter> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(params ?? {})) {
    const v = parameterValue(p);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function shapeOf(t: InferInputTensor): number[] {
  // int64 dims arrive as decimal strings; anything that is not a safe integer fails checkShape's checks.
  return t.shape.map((d: Int64) => {
    const n = Number(d);
    return Number.isSafeInteger(n) ? n : Number.NaN;
  });
}

function contentsValues(t: InferInputTensor, dt: V2Datatype): unknown[] | undefined {
  const c = t.contents;
  const field = CONTENTS_FIELD[dt];
  const used = c ? CONTENTS_FIELDS.filter((k) => c[k]?.length) : [];
  if (!used.length) return undefined;
  if (field === null)
    throw invalidInput('invalid_data', `input ${t.name}: ${dt} data must come as raw_input_contents`);
  if (used.length > 1 || used[0] !== field)
    throw invalidInput(
      'invalid_data',
      `input ${t.name}: ${dt} data goes in contents.${field}, got ${used.map((k) => `contents.${k}`).join(', ')}`,
    );
  const values = c![field] as unknown[];
  if (dt === 'BYTES')
    return (values as Buffer[]).map((b, i) => {
      try {
        return utf8.decode(b);
      } catch {
        throw invalidInput('invalid_utf8', `input ${t.name}: element ${i} is not valid UTF-8`);
      }
    });
  // 64-bit contents arrive as decimal strings: as numbers, a value beyond 2^53 fails the decoder's check.
  if (field === 'int64_contents' || field === 'uint64_contents') return values.map((v) => Number(v));
  return values;
}

/** Decodes every input of a ModelInferRequest (raw or typed contents) with the V2 validation. */
export function decodeGrpcInputs(req: ModelInferRequest, maxElements: number): DecodedTensor[] {
  const raw = req.raw_input_contents;
  if (!req.inputs.length) throw invalidInput('missing_input', 'the request has no inputs');
  if (raw.length && raw.length !== req.inputs.length)
    throw invalidInput(
      'invalid_binary_data',
      `${raw.length} raw_input_contents for ${req.inputs.length} inputs (one per input, in input order)`,
    );
  const seen = new Set<string>();
  return req.inputs.map((t, i) => {
    if (!t.name) throw invalidInput('invalid_request', `input ${i} has no name`);
    if (seen.has(t.name)) throw invalidInput('duplicate_input', `input ${t.name} given twice`);
    seen.add(t.name);
    const dt = checkDatatype(t.name, t.datatype);
    const shape = shapeOf(t);
    const n = checkShape({ name: t.name, shape }, maxElements);
    const values = contentsValues(t, dt);
    if (raw.length) {
      if (values !== undefined)
        throw invalidInput(
          'invalid_data',
          `input ${t.name}: both contents and raw_input_contents given (the protocol allows one)`,
        );
      return decodeRawTensor(t.name, dt, shape, n, raw[i]!);
    }
    if (values === undefined && n > 0)
      throw invalidInput('missing_data', `input ${t.name}: no data (contents or raw_input_contents)`);
    return decodeJsonTensor(t.name, dt, shape, n, values ?? []);
  });
}

/** An output tensor of the V2 pipeline (FP32 scores, BYTES classification strings, ...). */
export interface OutputTensor {
  name: string;
  datatype: string;
  shape: number[];
  data: ArrayBufferView | readonly string[];
}

/** One output as its raw bytes: typed arrays as they lie in memory (little-endian), BYTES length-prefixed. */
export function rawContents(o: OutputTensor): Buffer {
  if (ArrayBuffer.isView(o.data)) return Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength);
  return bytesElements(o.data);
}

export function encodeOutputs(outputs: readonly OutputTensor[]): {
  outputs: InferOutputTensor[];
  raw_output_contents: Buffer[];
} {
  return {
    outputs: outputs.map((o) => ({ name: o.name, datatype: o.datatype, shape: o.shape })),
    raw_output_contents: outputs.map(rawContents),
  };
}
