/**
 * Open Inference Protocol V2 tensors in and out, transport-neutral: JSON `data` (flat or nested, row-major) and
 * Triton's binary tensor extension (`Inference-Header-Content-Length: N`: N bytes of JSON, then each input with
 * `parameters.binary_data_size` as raw little-endian bytes in input order; BYTES elements are a 4-byte
 * little-endian length + the bytes). `decodeJsonTensor` / `decodeRawTensor` decode one tensor (the gRPC
 * `contents` / `raw_input_contents` use them too). Validation is strict: datatype, shape (non-negative
 * integers, element count that fits the limits), data length, finite floats, integer ranges, UTF-8 text; every
 * problem is a 400 with a code.
 */
import { invalidInput, ServeError } from '../observability/errors.js';
import { floatToHalf, halfToFloat } from './half.js';

export const V2_DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const;
export type V2Datatype = (typeof V2_DATATYPES)[number];

/** Datatypes the server decodes (what its models take: pixels as FP32 / FP16 / UINT8, token ids, text). */
export const SUPPORTED_DATATYPES = ['FP32', 'FP16', 'UINT8', 'INT64', 'INT32', 'BYTES'] as const;
export type SupportedDatatype = (typeof SUPPORTED_DATATYPES)[number];
type Supported = SupportedDatatype;
const ELEMENT_BYTES: Record<Exclude<Supported, 'BYTES'>, number> = {
  FP32: 4,
  FP16: 2,
  UINT8: 1,
  INT64: 8,
  INT32: 4,
};
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

export interface V2InputJson {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: Record<string, unknown>;
  data?: unknown;
}

export interface V2RequestJson {
  id?: string;
  parameters?: Record<string, unknown>;
  inputs: V2InputJson[];
  outputs?: { name: string; parameters?: Record<string, unknown> }[];
}

/** A decoded input tensor. FP16 arrives widened to float32 (its values are exactly representable). */
export type DecodedTensor =
  | { name: string; datatype: 'FP32' | 'FP16'; shape: number[]; data: Float32Array }
  | { name: string; datatype: 'UINT8'; shape: number[]; data: Uint8Array }
  | { name: string; datatype: 'INT64' | 'INT32'; shape: number[]; data: BigInt64Array }
  | { name: string; datatype: 'BYTES'; shape: number[]; data: string[] };

/** Splits a binary-extension body into its JSON header and the binary tail. */
export function splitBinaryBody(
  body: Buffer,
  headerLength: string | string[] | undefined,
): { json: unknown; tail: Buffer | null } {
  if (headerLength === undefined) return { json: parseJson(body), tail: null };
  const n = Number(Array.isArray(headerLength) ? headerLength[0] : headerLength);
  if (!Number.isInteger(n) || n < 0 || n > body.length) {
    throw invalidInput(
      'invalid_binary_header',
      `Inference-Header-Content-Length ${String(headerLength)} does not fit a body of ${body.length} bytes`,
    );
  }
  // Raw binary request: the body is the one input tensor, without a JSON header (see rawBinaryRequest).
  if (n === 0) return { json: null, tail: body };
  return { json: parseJson(body.subarray(0, n)), tail: body.subarray(n) };
}

function parseJson(buf: Buffer): unknown {
  if (!buf.length) throw invalidInput('empty_body', 'empty request body');
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw invalidInput('invalid_json', `request body is not valid JSON: ${(err as Error).message}`);
  }
}

/** Checks a tensor's shape; returns its element count. */
export function checkShape(input: { name: string; shape: unknown }, maxElements: number): number {
  if (!Array.isArray(input.shape))
    throw invalidInput('invalid_shape', `input ${input.name}: shape must be an array`);
  const shape: unknown[] = input.shape;
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw invalidInput(
        'invalid_shape',
        `input ${input.name}: shape [${shape.join(', ')}] has an invalid dimension ${JSON.stringify(d)} (non-negative integers only)`,
      );
    }
    n *= d;
  }
  if (n > maxElements)
    throw new ServeError(
      'payload_too_large',
      'tensor_too_large',
      `input ${input.name}: ${n} elements, at most ${maxElements} accepted`,
    );
  return n;
}

function flatten(data: unknown, out: unknown[], name: string, depth = 0): void {
  if (depth > 8) throw invalidInput('invalid_data', `input ${name}: data nested too deeply`);
  if (Array.isArray(data)) for (const x of data) flatten(x, out, name, depth + 1);
  else out.push(data);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes every input of a request (JSON data or binary tail). */
export function decodeInputs(req: V2RequestJson, tail: Buffer | null, maxElements: number): DecodedTensor[] {
  let offset = 0;
  const out: DecodedTensor[] = [];
  const seen = new Set<string>();
  for (const input of req.inputs) {
    if (seen.has(input.name)) throw invalidInput('duplicate_input', `input ${input.name} given twice`);
    seen.add(input.name);
    const dt = checkDatatype(input.name, input.datatype);
    const n = checkShape(input, maxElements);
    const shape = [...input.shape];
    const binSize = input.parameters?.binary_data_size;
    if (binSize !== undefined) {
      if (!tail)
        throw invalidInput(
          'missing_binary_data',
          `input ${input.name}: binary_data_size given without Inference-Header-Content-Length`,
        );
      if (
        typeof binSize !== 'number' ||
        !Number.isInteger(binSize) ||
        binSize < 0 ||
        offset + binSize > tail.length
      ) {
        throw invalidInput(
          'invalid_binary_data',
          `input ${input.name}: binary_data_size ${String(binSize)} exceeds the ${tail.length - offset} binary bytes left`,
        );
      }
      if (input.data !== undefined)
        throw invalidInput('invalid_data', `input ${input.name}: both data and binary_data_size given`);
      const bytes = tail.subarray(offset, offset + binSize);
      offset += binSize;
      out.push(decodeRawTensor(input.name, dt, shape, n, bytes));
    } else {
      if (input.data === undefined)
        throw invalidInput('missing_data', `input ${input.name}: no data (JSON "data" or binary_data_size)`);
      out.push(decodeJsonTensor(input.name, dt, shape, n, input.data));
    }
  }
  if (tail && offset !== tail.length)
    throw invalidInput('invalid_binary_data', `${tail.length - offset} binary bytes after the last input`);
  return out;
}

/** A datatype name the server decodes, or a 400 (`invalid_datatype` unknown, `unsupported_datatype` not taken). */
export function checkDatatype(name: string, datatype: string): Supported {
  if (!(V2_DATATYPES as readonly string[]).includes(datatype))
    throw invalidInput('invalid_datatype', `input ${name}: unknown datatype ${datatype}`);
  if (!(SUPPORTED_DATATYPES as readonly string[]).includes(datatype)) {
    throw invalidInput(
      'unsupported_datatype',
      `input ${name}: datatype ${datatype} is not taken by padserve models (${SUPPORTED_DATATYPES.join(', ')})`,
    );
  }
  return datatype as Supported;
}

/** One tensor from JSON `data` (flat or nested) of `n` elements. */
export function decodeJsonTensor(
  name: string,
  dt: Supported,
  shape: number[],
  n: number,
  json: unknown,
): DecodedTensor {
  const flat: unknown[] = [];
  flatten(json, flat, name);
  if (flat.length !== n)
    throw invalidInput(
      'data_length_mismatch',
      `input ${name}: ${flat.length} values for shape [${shape.join(', ')}] (${n} expected)`,
    );
  if (dt === 'FP32' || dt === 'FP16') {
    const data = new Float32Array(flat.length);
    flat.forEach((v, i) => {
      // FP16 values are rounded to half precision, as a half tensor holds them (65520 and beyond: infinite).
      const x = typeof v === 'number' && dt === 'FP16' ? halfToFloat(floatToHalf(v)) : v;
      if (typeof x !== 'number' || !Number.isFinite(x))
        throw invalidInput(
          'non_finite_value',
          `input ${name}: element ${i} is ${JSON.stringify(v)}, expected a finite number${dt === 'FP16' ? ' within FP16 range' : ''}`,
        );
      data[i] = x;
    });
    return { name, datatype: dt, shape, data };
  }
  if (dt === 'UINT8') {
    const data = new Uint8Array(flat.length);
    flat.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 255)
        throw invalidInput(
          'invalid_data',
          `input ${name}: element ${i} is ${JSON.stringify(v)}, expected an integer in [0, 255] (UINT8)`,
        );
      data[i] = v;
    });
    return { name, datatype: dt, shape, data };
  }
  if (dt === 'BYTES') {
    const data = flat.map((v, i) => {
      if (typeof v !== 'string')
        throw invalidInput('invalid_data', `input ${name}: element ${i} must be a string`);
      return v;
    });
    return { name, datatype: dt, shape, data };
  }
  const data = new BigInt64Array(flat.length);
  flat.forEach((v, i) => {
    if (
      typeof v !== 'number' ||
      !Number.isSafeInteger(v) ||
      (dt === 'INT32' && (v < INT32_MIN || v > INT32_MAX))
    ) {
      throw invalidInput(
        'invalid_data',
        `input ${name}: element ${i} is ${JSON.stringify(v)}, expected an integer (${dt})`,
      );
    }
    data[i] = BigInt(v);
  });
  return { name, datatype: dt, shape, data };
}

/** One tensor from its raw little-endian bytes (binary extension tail, gRPC `raw_input_contents`). */
export function decodeRawTensor(
  name: string,
  dt: Supported,
  shape: number[],
  n: number,
  bytes: Uint8Array,
): DecodedTensor {
  if (dt === 'BYTES') {
    const data: string[] = [];
    let o = 0;
    while (o < bytes.length) {
      if (o + 4 > bytes.length)
        throw invalidInput('invalid_binary_data', `input ${name}: truncated BYTES element length`);
      const len = new DataView(bytes.buffer, bytes.byteOffset + o, 4).getUint32(0, true);
      o += 4;
      if (o + len > bytes.length)
        throw invalidInput(
          'invalid_binary_data',
          `input ${name}: BYTES element ${data.length} overruns the data`,
        );
      try {
        data.push(utf8.decode(bytes.subarray(o, o + len)));
      } catch {
        throw invalidInput('invalid_utf8', `input ${name}: element ${data.length} is not valid UTF-8`);
      }
      o += len;
    }
    if (data.length !== n)
      throw invalidInput(
        'data_length_mismatch',
        `input ${name}: ${data.length} BYTES elements for shape [${shape.join(', ')}] (${n} expected)`,
      );
    return { name, datatype: dt, shape, data };
  }
  const size = ELEMENT_BYTES[dt];
  if (bytes.length !== n * size) {
    throw invalidInput(
      'data_length_mismatch',
      `input ${name}: ${bytes.length} bytes for shape [${shape.join(', ')}] of ${dt} (${n * size} expected)`,
    );
  }
  const copy = new Uint8Array(bytes); // aligned, own buffer
  if (dt === 'FP32') {
    const data = new Float32Array(copy.buffer);
    for (let i = 0; i < data.length; i++)
      if (!Number.isFinite(data[i]!))
        throw invalidInput(
          'non_finite_value',
          `input ${name}: element ${i} is ${data[i]}, expected a finite number`,
        );
    return { name, datatype: dt, shape, data };
  }
  if (dt === 'UINT8') return { name, datatype: dt, shape, data: copy };
  if (dt === 'FP16') {
    const half = new Uint16Array(copy.buffer);
    const data = new Float32Array(half.length);
    for (let i = 0; i < half.length; i++) {
      data[i] = halfToFloat(half[i]!);
      if (!Number.isFinite(data[i]!))
        throw invalidInput(
          'non_finite_value',
          `input ${name}: element ${i} is ${data[i]}, expected a finite number`,
        );
    }
    return { name, datatype: dt, shape, data };
  }
  if (dt === 'INT32')
    return {
      name,
      datatype: dt,
      shape,
      data: BigInt64Array.from(new Int32Array(copy.buffer), (v) => BigInt(v)),
    };
  return { name, datatype: dt, shape, data: new BigInt64Array(copy.buffer) };
}

/** An output tensor: model outputs are FP32; classification outputs are BYTES ("value:index[:label]"). */
export type V2OutputTensor =
  | { name: string; datatype: 'FP32'; shape: number[]; data: Float32Array }
  | { name: string; datatype: 'BYTES'; shape: number[]; data: string[] };

/** Raw little-endian bytes of an output (binary extension, gRPC `raw_output_contents`). */
export function outputBytes(o: V2OutputTensor): Buffer {
  if (o.datatype === 'FP32') return Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength);
  return bytesElements(o.data);
}

/** BYTES elements in the binary form of both protocols: each a 4-byte little-endian length, then its UTF-8. */
export function bytesElements(items: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const s of items) {
    const b = Buffer.from(s, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    parts.push(len, b);
  }
  return Buffer.concat(parts);
}

/** Whether the client asked for binary outputs (per output, or request-wide `binary_data_output`). */
export function wantsBinary(req: V2RequestJson, output: string): boolean {
  const per = req.outputs?.find((o) => o.name === output)?.parameters?.binary_data;
  if (typeof per === 'boolean') return per;
  return req.parameters?.binary_data_output === true;
}

/** The response: plain JSON, or the JSON header + binary tensors when any output is binary. */
export function encodeResponse(
  head: { model_name: string; model_version: string; id?: string },
  req: V2RequestJson,
  outputs: V2OutputTensor[],
): { body: Buffer | Record<string, unknown>; headerLength: number | null } {
  const binaries: Buffer[] = [];
  const outJson = outputs.map((o) => {
    if (wantsBinary(req, o.name)) {
      const b = outputBytes(o);
      binaries.push(b);
      return {
        name: o.name,
        datatype: o.datatype,
        shape: o.shape,
        parameters: { binary_data_size: b.length },
      };
    }
    return { name: o.name, datatype: o.datatype, shape: o.shape, data: Array.from<number | string>(o.data) };
  });
  const json = { ...head, ...(req.id !== undefined ? { id: req.id } : {}), outputs: outJson };
  if (!binaries.length) return { body: json, headerLength: null };
  const header = Buffer.from(JSON.stringify(json), 'utf8');
  return { body: Buffer.concat([header, ...binaries]), headerLength: header.length };
}
