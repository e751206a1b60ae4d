/**
 * Writing models: small graphs inline, large ones with their initializers in one external-data file next to the
 * graph (`<name>.onnx.data`, each tensor 64-byte aligned), so the protobuf stays under its 2 GB limit and the
 * weights can be hashed, shared and memory-mapped by onnxruntime.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, openSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { DataLocation, ONNX_DTYPE, onnx } from './proto.js';
import { inlineTensor, type GraphBuilder } from './builder.js';
import { tensorBytes, type HostTensor } from '../tensor.js';

export interface WriteOptions {
  producer?: string;
  docString?: string;
  metadata?: Record<string, string>;
  opset?: number;
  /** Tensors of at least this many bytes go to the external-data file; Infinity keeps everything inline. */
  externalThresholdBytes?: number;
  /** Name of the external-data file in the graph's folder (default `<graph file>.data`). */
  dataFile?: string;
  /**
   * Reuse the external-data file another graph wrote (its `WrittenModel.external`) instead of writing one: every
   * tensor at or over the threshold must be in it under its name with the same bytes (checked by sha256), so
   * graphs that differ only in small constants (bucket graphs of one model) share one weights file.
   */
  sharedData?: ExternalData;
}

/** Where each tensor of an external-data file lies, and a hash of its bytes. */
export interface ExternalData {
  /** The data file's name (relative to the graph's folder). */
  location: string;
  threshold: number;
  tensors: Map<string, { offset: number; length: number; sha256: string }>;
}

export interface WrittenModel {
  graphPath: string;
  dataPath: string | null;
  /** sha256 over the initializers' names, dtypes, shapes and bytes, in graph order. */
  weightsSha256: string;
  initializerBytes: number;
  totalBytes: number;
  /** The external-data layout (null when inline), for `WriteOptions.sharedData` of sibling graphs. */
  external: ExternalData | null;
}

const ALIGN = 64;
const DEFAULT_THRESHOLD = 1024;
/** Models whose initializers stay below this size are written inline in one file. */
const INLINE_MODEL_LIMIT = 64 * 1024 * 1024;

export function hashInitializers(g: GraphBuilder): string {
  const h = createHash('sha256');
  for (const [name, t] of g.initializerEntries()) {
    h.update(`${name}|${t.dtype}|${t.shape.join('x')}|`);
    h.update(tensorBytes(t));
  }
  return h.digest('hex');
}

export function writeModel(g: GraphBuilder, graphPath: string, opts: WriteOptions = {}): WrittenModel {
  mkdirSync(dirname(graphPath), { recursive: true });
  const weightsSha256 = hashInitializers(g);
  const total = g.initializerBytes;
  const threshold =
    opts.externalThresholdBytes ?? (total < INLINE_MODEL_LIMIT ? Infinity : DEFAULT_THRESHOLD);
  const modelOpts = {
    producer: opts.producer,
    docString: opts.docString,
    metadata: opts.metadata,
    opset: opts.opset,
  };

  if (!Number.isFinite(threshold)) {
    const bytes = onnx.ModelProto.encode(g.toModel(modelOpts)).finish();
    writeFileSync(graphPath, bytes);
    return {
      graphPath,
      dataPath: null,
      weightsSha256,
      initializerBytes: total,
      totalBytes: bytes.byteLength,
      external: null,
    };
  }
  if (opts.sharedData) return writeSharingData(g, graphPath, opts.sharedData, modelOpts, weightsSha256);

  const dataPath = opts.dataFile ? join(dirname(graphPath), opts.dataFile) : `${graphPath}.data`;
  const location = basename(dataPath);
  const external: ExternalData = { location, threshold, tensors: new Map() };
  const fd = openSync(dataPath, 'w');
  let offset = 0;
  const pad = new Uint8Array(ALIGN);
  try {
    const model = g.toModel(modelOpts, (name: string, t: HostTensor) => {
      const bytes = tensorBytes(t);
      if (bytes.byteLength < threshold) return inlineTensor(name, t);
      const gap = (ALIGN - (offset % ALIGN)) % ALIGN;
      if (gap) writeSync(fd, pad, 0, gap);
      offset += gap;
      writeSync(fd, bytes);
      external.tensors.set(name, { offset, length: bytes.byteLength, sha256: sha256(bytes) });
      const entry = externalEntry(name, t, location, offset, bytes.byteLength);
      offset += bytes.byteLength;
      return entry;
    });
    const bytes = onnx.ModelProto.encode(model).finish();
    writeFileSync(graphPath, bytes);
    return {
      graphPath,
      dataPath: join(dirname(graphPath), location),
      weightsSha256,
      initializerBytes: total,
      totalBytes: bytes.byteLength + offset,
      external,
    };
  } finally {
    closeSync(fd);
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function externalEntry(name: string, t: HostTensor, location: string, offset: number, length: number) {
  return {
    name,
    dims: [...t.shape],
    dataType: ONNX_DTYPE[t.dtype],
    dataLocation: DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  };
}

/** The graph alone, its large tensors pointing into an existing data file whose bytes they must equal. */
function writeSharingData(
  g: GraphBuilder,
  graphPath: string,
  shared: ExternalData,
  modelOpts: Parameters<GraphBuilder['toModel']>[0],
  weightsSha256: string,
): WrittenModel {
  const model = g.toModel(modelOpts, (name: string, t: HostTensor) => {
    const bytes = tensorBytes(t);
    if (bytes.byteLength < shared.threshold) return inlineTensor(name, t);
    const entry = shared.tensors.get(name);
    if (!entry || entry.length !== bytes.byteLength || entry.sha256 !== sha256(bytes))
      throw new Error(`${graphPath}: initializer ${name} is not in ${shared.location} with the same bytes`);
    return externalEntry(name, t, shared.location, entry.offset, entry.length);
  });
  const bytes = onnx.ModelProto.encode(model).finish();
  writeFileSync(graphPath, bytes);
  return {
    graphPath,
    dataPath: join(dirname(graphPath), shared.location),
    weightsSha256,
    initializerBytes: g.initializerBytes,
    totalBytes: bytes.byteLength,
    external: shared,
  };
}

/** Encodes a small model to bytes in memory (tests, per-batch-size variants). */
export function encodeModel(
  g: GraphBuilder,
  opts: Omit<WriteOptions, 'externalThresholdBytes'> = {},
): Uint8Array {
  return onnx.ModelProto.encode(g.toModel(opts)).finish();
}
