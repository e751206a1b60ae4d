/**
 * A second graph form in a model folder that already holds its CPU form: the CUDA form (`card.cudaGraph`, loaded
 * by `--device cuda`, see `graphFor`). Initializers that the CPU form keeps in its external-data file and that are
 * the very same tensors in the new form are referenced in that file (same location, offset and length), so the
 * weights are stored, hard-linked and memory-mapped once whatever the number of forms. When a large initializer of
 * the new form is not in that file, the form gets its own data file (`<file>.data`) instead.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inlineTensor, type GraphBuilder } from '../onnx/builder.js';
import { DataLocation, DEFAULT_OPSET, onnx, type ITensorProto } from '../onnx/proto.js';
import { hashInitializers, writeModel } from '../onnx/serialize.js';
import { tensorBytes, type HostTensor } from '../tensor.js';
import type { GraphFiles, ModelCard } from './card.js';
import { CARD_FILE, readModelCard } from './folder.js';

export const CUDA_GRAPH_FILE = 'model.cuda.onnx';

/** Initializers this small may be stored inline in a form even when the CPU form lacks them (index constants). */
const INLINE_EXTRA_BYTES = 1024;

export interface ExtraFormOptions {
  /** The builder of the CPU form in the folder: tensors identical to its are referenced, not stored again. */
  base: GraphBuilder;
  file?: string;
  /** Informational description (GraphFiles.form). */
  form?: string;
  /** External-data threshold if the form needs its own data file (writeModel's default otherwise). */
  externalThresholdBytes?: number;
  producer?: string;
  metadata?: Record<string, string>;
}

function sameTensor(a: HostTensor, b: HostTensor): boolean {
  if (a === b) return true;
  if (a.dtype !== b.dtype || a.shape.join('x') !== b.shape.join('x')) return false;
  return Buffer.from(tensorBytes(a)).equals(Buffer.from(tensorBytes(b)));
}

/**
 * The external entries of `g`'s initializers in the CPU form's data file, or null when some large initializer of
 * `g` is not there (then `g` needs its own data file). Tensors the CPU form stores inline stay inline.
 */
function sharedEntries(
  dir: string,
  cpu: GraphFiles,
  g: GraphBuilder,
  base: GraphBuilder,
): Map<string, ITensorProto> | null {
  const model = onnx.ModelProto.decode(readFileSync(join(dir, cpu.file)));
  const external = new Map<string, InstanceType<typeof onnx.TensorProto>>();
  const inline = new Set<string>();
  const graph = model.graph as InstanceType<typeof onnx.GraphProto>; // decode() builds class instances
  for (const t of graph.initializer as InstanceType<typeof onnx.TensorProto>[]) {
    if (t.dataLocation === DataLocation.EXTERNAL) external.set(t.name, t);
    else inline.add(t.name);
  }
  const baseTensors = new Map(base.initializerEntries());
  const entries = new Map<string, ITensorProto>();
  for (const [name, t] of g.initializerEntries()) {
    const entry = external.get(name);
    const same = baseTensors.get(name);
    if (entry && same && sameTensor(same, t)) {
      entries.set(name, {
        name,
        dims: [...t.shape],
        dataType: entry.dataType,
        dataLocation: DataLocation.EXTERNAL,
        externalData: entry.externalData.map((e) => ({ key: e.key, value: e.value })),
      });
    } else if (entry || (!inline.has(name) && tensorBytes(t).byteLength >= INLINE_EXTRA_BYTES)) {
      return null;
    }
  }
  return entries;
}

/** Writes `bytes` to `path` through a temporary sibling and a rename (readers never see half a file). */
function replaceFile(path: string, bytes: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

/**
 * Adds `g` as the CUDA form of the model folder `dir` (whose CPU form was built by `opts.base`) and records it in
 * the card's `cudaGraph`. Returns the updated card.
 */
export function writeCudaForm(dir: string, g: GraphBuilder, opts: ExtraFormOptions): ModelCard {
  const card = readModelCard(dir);
  const file = opts.file ?? CUDA_GRAPH_FILE;
  const modelOpts = { producer: opts.producer ?? 'padserve', metadata: opts.metadata };
  const shared = card.graph.dataFile ? sharedEntries(dir, card.graph, g, opts.base) : null;
  let dataFile: string | null;
  if (shared) {
    const model = g.toModel(modelOpts, (name, t) => shared.get(name) ?? inlineTensor(name, t));
    replaceFile(join(dir, file), onnx.ModelProto.encode(model).finish());
    dataFile = card.graph.dataFile;
    rmSync(join(dir, `${file}.data`), { force: true }); // an own data file of an earlier, different form
  } else {
    // Own data file: written in a scratch folder under its final names, then moved in (data first).
    const scratch = join(dir, `.form-${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirSync(scratch);
    try {
      const written = writeModel(g, join(scratch, file), {
        ...modelOpts,
        externalThresholdBytes: opts.externalThresholdBytes,
      });
      dataFile = written.dataPath ? `${file}.data` : null;
      if (dataFile) renameSync(join(scratch, dataFile), join(dir, dataFile));
      else rmSync(join(dir, `${file}.data`), { force: true });
      renameSync(join(scratch, file), join(dir, file));
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  const cudaGraph: GraphFiles = {
    file,
    dataFile,
    opset: DEFAULT_OPSET,
    initializerBytes: g.initializerBytes,
    parameters: Math.round(g.initializerBytes / 4),
    weightsSha256: hashInitializers(g),
    maxRunBatch: card.graph.maxRunBatch,
    ...(opts.form ? { form: opts.form } : {}),
  };
  const updated: ModelCard = { ...card, cudaGraph };
  replaceFile(join(dir, CARD_FILE), `${JSON.stringify(updated, null, 2)}\n`);
  return updated;
}
