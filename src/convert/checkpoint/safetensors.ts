/**
 * safetensors: 8-byte little-endian header length N, N bytes of JSON (names -> dtype / shape / data_offsets, plus
 * an optional `__metadata__` of strings), then the data section. Also the element decoding shared with the torch
 * reader: every float type becomes float32, every integer type int64, bool / uint8 stay bytes.
 */
import type { DType, HostTensor } from '../../tensor.js';
import { BYTES_PER_ELEMENT, checked, numel, tensorBytes } from '../../tensor.js';
import { CheckpointError, fail, type ByteSource } from './errors.js';

/** Element types as stored in a file (safetensors codes; torch storages map onto them). */
export type StoredDType =
  'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

// prettier-ignore
export const STORED_SIZE: Record<StoredDType, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** `bytes` itself if it may be adopted and is aligned, else an aligned copy (an ArrayBuffer of its own). */
function alignedBytes(bytes: Uint8Array, owned: boolean, align: number): Uint8Array {
  // new Uint8Array(view) copies (one memcpy); Buffer#slice would not.
  return owned && bytes.byteOffset % align === 0 ? bytes : new Uint8Array(bytes);
}

let halfTable: Float32Array | null = null;

function halfToFloat(src: Uint16Array): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1;
      const e = (h >> 10) & 0x1f;
      const m = h & 0x3ff;
      halfTable[h] =
        e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
    }
  }
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = halfTable[src[i]!]!;
  return out;
}

/**
 * Decodes `count` little-endian elements of type `s` from `bytes` (at least count * size bytes). Contiguous
 * float32 / int64 / uint8 data is adopted (`owned`) or copied with one memcpy; other types are converted.
 */
export function decodeElements(
  bytes: Uint8Array,
  s: StoredDType,
  count: number,
  owned: boolean,
): Float32Array | BigInt64Array | Uint8Array {
  if (!LITTLE_ENDIAN) fail('big-endian hosts are not supported');
  const nbytes = count * STORED_SIZE[s];
  if (bytes.byteLength < nbytes)
    fail(`${bytes.byteLength} bytes for ${count} ${s} elements (needs ${nbytes})`);
  const raw = bytes.byteLength === nbytes ? bytes : bytes.subarray(0, nbytes);
  const own = owned && raw === bytes;
  switch (s) {
    case 'F32': {
      const b = alignedBytes(raw, own, 4);
      return new Float32Array(b.buffer, b.byteOffset, count);
    }
    case 'I64': {
      const b = alignedBytes(raw, own, 8);
      return new BigInt64Array(b.buffer, b.byteOffset, count);
    }
    case 'U8':
    case 'BOOL': {
      const b = own ? raw : new Uint8Array(raw);
      if (s === 'BOOL') for (let i = 0; i < b.length; i++) if (b[i]! > 1) b[i] = 1;
      return b;
    }
    case 'F64': {
      const b = alignedBytes(raw, false, 8);
      return new Float32Array(new Float64Array(b.buffer, b.byteOffset, count));
    }
    case 'F16': {
      const b = alignedBytes(raw, false, 2);
      return halfToFloat(new Uint16Array(b.buffer, b.byteOffset, count));
    }
    case 'BF16': {
      const b = alignedBytes(raw, false, 2);
      const src = new Uint16Array(b.buffer, b.byteOffset, count);
      const out = new Uint32Array(count);
      for (let i = 0; i < count; i++) out[i] = src[i]! << 16;
      return new Float32Array(out.buffer);
    }
    case 'U64': {
      const b = alignedBytes(raw, own, 8);
      const out = new BigInt64Array(b.buffer, b.byteOffset, count);
      for (let i = 0; i < count; i++) if (out[i]! < 0n) fail('U64 value beyond the int64 range');
      return out;
    }
    case 'I32':
    case 'I16':
    case 'I8':
    case 'U32':
    case 'U16': {
      const b = alignedBytes(raw, false, STORED_SIZE[s]);
      const Ctor = { I32: Int32Array, I16: Int16Array, I8: Int8Array, U32: Uint32Array, U16: Uint16Array }[s];
      const src = new Ctor(b.buffer as ArrayBuffer, b.byteOffset, count);
      const out = new BigInt64Array(count);
      for (let i = 0; i < count; i++) out[i] = BigInt(src[i]!);
      return out;
    }
  }
}

/** Builds a HostTensor from decoded elements (the dtype follows the array type). */
export function hostTensor(data: Float32Array | BigInt64Array | Uint8Array, shape: number[]): HostTensor {
  const dtype: DType =
    data instanceof Float32Array ? 'float32' : data instanceof BigInt64Array ? 'int64' : 'uint8';
  return { dtype, shape, data } as HostTensor;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

export interface SafetensorsEntry {
  name: string;
  dtype: StoredDType;
  shape: number[];
  /** Absolute byte range in the file. */
  begin: number;
  end: number;
}

export interface SafetensorsLayout {
  /** In data order (file order). */
  entries: SafetensorsEntry[];
  metadata: Record<string, string>;
}

/** Largest header we accept (the reference implementation's limit). */
const MAX_HEADER = 100_000_000;

/** Header length N from the first 8 bytes, checked against the file size. */
export function headerLength(first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || first8.length < 8) fail(`not a safetensors file (only ${fileSize} bytes)`);
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER))
    fail(`safetensors header length ${n} is implausible (corrupt or not a safetensors file)`);
  if (Number(n) + 8 > fileSize)
    fail(`safetensors header length ${n} exceeds the file size (${fileSize} bytes; truncated?)`);
  return Number(n);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses and validates the JSON header; `fileSize` bounds the data offsets. */
export function parseSafetensorsHeader(header: Uint8Array, fileSize: number): SafetensorsLayout {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(header));
  } catch (e) {
    fail(`invalid safetensors header JSON (${(e as Error).message})`);
  }
  if (!isRecord(json)) fail('safetensors header is not a JSON object');
  const dataStart = 8 + header.length;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isRecord(v)) fail('safetensors __metadata__ is not an object');
      for (const [k, mv] of Object.entries(v)) {
        if (typeof mv === 'string') metadata[k] = mv;
        else if (typeof mv === 'number' || typeof mv === 'boolean') metadata[k] = String(mv);
        else fail(`safetensors __metadata__.${k} is not a string`);
      }
      continue;
    }
    if (!isRecord(v)) fail(`tensor ${name}: header entry is not an object`);
    const dtype = v.dtype;
    if (typeof dtype !== 'string' || !(dtype in STORED_SIZE))
      fail(`tensor ${name}: unsupported dtype ${JSON.stringify(dtype)}`);
    const shape = v.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      fail(`tensor ${name}: invalid shape ${JSON.stringify(shape)}`);
    }
    const offs = v.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && (o as number) >= 0)
    ) {
      fail(`tensor ${name}: invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [b, e] = offs as [number, number];
    const count = numel(shape as number[]);
    const want = count * STORED_SIZE[dtype as StoredDType];
    if (e < b) fail(`tensor ${name}: data_offsets [${b}, ${e}] are reversed`);
    if (e > dataSize)
      fail(
        `tensor ${name}: data_offsets [${b}, ${e}] lie beyond the data section (${dataSize} bytes; truncated?)`,
      );
    if (e - b !== want) {
      fail(
        `tensor ${name}: data_offsets [${b}, ${e}] hold ${e - b} bytes, but ${dtype} [${(shape as number[]).join(', ')}] needs ${want}`,
      );
    }
    entries.push({
      name,
      dtype: dtype as StoredDType,
      shape: [...(shape as number[])],
      begin: dataStart + b,
      end: dataStart + e,
    });
  }
  entries.sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < entries.length; i++) {
    const prev = entries[i - 1]!;
    const cur = entries[i]!;
    if (cur.begin < prev.end) fail(`tensors ${prev.name} and ${cur.name} overlap in the data section`);
  }
  return { entries, metadata };
}

export interface ParsedCheckpoint {
  tensors: Map<string, HostTensor>;
  metadata: Record<string, string>;
}

/** Reads an in-memory safetensors file (tensors are copies; `bytes` is not retained). */
export function parseSafetensorsBytes(bytes: Uint8Array): ParsedCheckpoint {
  const n = headerLength(bytes.subarray(0, 8), bytes.byteLength);
  const layout = parseSafetensorsHeader(bytes.subarray(8, 8 + n), bytes.byteLength);
  const tensors = new Map<string, HostTensor>();
  for (const e of layout.entries) {
    const data = decodeElements(bytes.subarray(e.begin, e.end), e.dtype, numel(e.shape), false);
    tensors.set(e.name, hostTensor(data, e.shape));
  }
  return { tensors, metadata: layout.metadata };
}

/** Reads a safetensors file through a ByteSource, one read per tensor in file order. */
export async function readSafetensorsSource(src: ByteSource): Promise<ParsedCheckpoint> {
  const n = headerLength(await src.read(0, Math.min(8, src.size)), src.size);
  const layout = parseSafetensorsHeader(await src.read(8, n), src.size);
  const tensors = new Map<string, HostTensor>();
  for (const e of layout.entries) {
    const data = decodeElements(
      await src.read(e.begin, e.end - e.begin),
      e.dtype,
      numel(e.shape),
      src.ownsReads,
    );
    tensors.set(e.name, hostTensor(data, e.shape));
  }
  return { tensors, metadata: layout.metadata };
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

const WRITE_CODE: Record<DType, StoredDType> = {
  float32: 'F32',
  int64: 'I64',
  int32: 'I32',
  uint8: 'U8',
  bool: 'BOOL',
};
/** Order of the reference implementation (its Dtype enum, descending): I64, F32, I32, U8, BOOL. */
const WRITE_RANK: Record<DType, number> = { int64: 4, float32: 3, int32: 2, uint8: 1, bool: 0 };

function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Writes a safetensors file laid out like the reference implementation: tensors ordered by dtype (larger first)
 * then name, contiguous without gaps, header JSON padded with spaces to a multiple of 8, `__metadata__` first
 * (omitted when empty). Writing what `readSafetensors` read from such a file gives the same bytes.
 */
export function writeSafetensors(
  tensors: Map<string, HostTensor> | [string, HostTensor][],
  metadata: Record<string, string>,
): Uint8Array {
  const list = [...tensors];
  const seen = new Set<string>();
  for (const [name, t] of list) {
    if (seen.has(name)) throw new CheckpointError(`writeSafetensors: duplicate tensor name ${name}`);
    seen.add(name);
    if (name === '__metadata__')
      throw new CheckpointError('writeSafetensors: "__metadata__" is not a valid tensor name');
    if (!(t.dtype in WRITE_CODE))
      throw new CheckpointError(`writeSafetensors: tensor ${name} has unsupported dtype ${t.dtype}`);
    try {
      checked(t, name);
    } catch (e) {
      throw new CheckpointError(`writeSafetensors: ${(e as Error).message}`);
    }
  }
  list.sort(([na, a], [nb, b]) => WRITE_RANK[b.dtype] - WRITE_RANK[a.dtype] || compareUtf8(na, nb));

  const parts: string[] = [];
  const metaKeys = Object.keys(metadata);
  if (metaKeys.length) {
    parts.push(
      `"__metadata__":{${metaKeys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(String(metadata[k]))}`).join(',')}}`,
    );
  }
  let offset = 0;
  for (const [name, t] of list) {
    const nbytes = numel(t.shape) * BYTES_PER_ELEMENT[t.dtype];
    parts.push(
      `${JSON.stringify(name)}:{"dtype":"${WRITE_CODE[t.dtype]}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + nbytes}]}`,
    );
    offset += nbytes;
  }
  let header = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = Math.ceil(header.length / 8) * 8;
  if (padded !== header.length) header = Buffer.concat([header, Buffer.alloc(padded - header.length, 0x20)]);

  const out = new Uint8Array(8 + header.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(header.length), true);
  out.set(header, 8);
  let p = 8 + header.length;
  for (const [, t] of list) {
    const b = tensorBytes(t);
    out.set(b, p);
    p += b.byteLength;
  }
  return out;
}
