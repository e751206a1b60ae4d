/**
 * Model folders that share one weights file: task models with the same encoder and different classifier heads
 * (the nine GLUE defaults). The first folder is written normally with the classifier kept inline in model.onnx
 * (`SHARED_EXTERNAL_THRESHOLD`), so its `model.onnx.data` holds the encoder only; every other task folder gets
 * a copy of that model.onnx with its own classifier initializers and output width, and a hard link to the same
 * data file (one inode: one copy on disk, one set of page-cache pages).
 *
 * Memory (measured, docs/bert-graph.md): onnxruntime memory-maps external data, so sessions over one inode
 * share physical pages for every weight used in place. Prepacked Gemm weights are private copies; a server
 * that wants the nine sessions to share the encoder sets the session config entry `session.disable_prepacking=1`.
 */
import { createHash, type Hash } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { inlineTensor, type GraphBuilder } from '../../onnx/builder.js';
import { dtypeFromOnnx, onnx } from '../../onnx/proto.js';
import { CARD_FILE, readModelCard } from '../../model/folder.js';
import { graphFor, type BertCard, type GraphFiles } from '../../model/card.js';
import { tensorBytes, type DType, type FloatTensor, type HostTensor } from '../../tensor.js';

/** Tensors below this size stay inside model.onnx: biases, LayerNorms, and any classifier head (labels·hidden·4 B). */
export const SHARED_EXTERNAL_THRESHOLD = 64 * 1024;
const HEAD_NAMES = ['classifier.weight', 'classifier.bias'] as const;

/** Same digest as serialize.hashInitializers, split so that the shared encoder is hashed once for all heads. */
export class InitializerHash {
  private readonly h: Hash;
  constructor(from?: Hash) {
    this.h = from ?? createHash('sha256');
  }

  static encoderOf(g: GraphBuilder): InitializerHash {
    const out = new InitializerHash();
    for (const [name, t] of g.initializerEntries())
      if (!(HEAD_NAMES as readonly string[]).includes(name)) out.add(name, t);
    return out;
  }

  add(name: string, t: HostTensor): this {
    return this.addBytes(name, t.dtype, t.shape, tensorBytes(t));
  }

  addBytes(name: string, dtype: DType, shape: readonly number[], bytes: Uint8Array): this {
    this.h.update(`${name}|${dtype}|${shape.join('x')}|`);
    this.h.update(bytes);
    return this;
  }

  /** Digest with a head appended (the encoder state is kept for the next head). */
  withHead(weight: FloatTensor, bias: FloatTensor): string {
    return new InitializerHash(this.h.copy())
      .add('classifier.weight', weight)
      .add('classifier.bias', bias)
      .h.digest('hex');
  }
}

export interface HeadFolder {
  dir: string;
  card: Omit<BertCard, 'graph' | 'cudaGraph' | 'format' | 'formatVersion'>;
  classifier: { weight: FloatTensor; bias: FloatTensor };
  weightsSha256: string;
  /** Digest of the CUDA form's initializers with this head (required when the source has a CUDA form). */
  cudaWeightsSha256?: string;
}

/** The source graph file `file` with `head` swapped in (inline initializers and the logits width). */
function withHead(sourceDir: string, file: string, head: HeadFolder): Uint8Array {
  const model = onnx.ModelProto.decode(readFileSync(join(sourceDir, file)));
  const graph = model.graph as InstanceType<typeof onnx.GraphProto>; // decode() builds class instances
  const labels = head.classifier.weight.shape[0]!;
  for (const name of HEAD_NAMES) {
    const i = graph.initializer.findIndex((t) => t.name === name);
    const existing = graph.initializer[i];
    if (i < 0 || !existing || existing.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
      throw new Error(`${sourceDir}: ${name} is not stored inline; cannot swap heads`);
    graph.initializer[i] = onnx.TensorProto.fromObject(
      inlineTensor(name, name === 'classifier.weight' ? head.classifier.weight : head.classifier.bias),
    );
  }
  const logits = graph.output.find((o) => o.name === 'logits');
  const dims = logits?.type?.tensorType?.shape?.dim;
  if (!dims || dims.length !== 2) throw new Error(`${sourceDir}: graph has no [batch, labels] logits output`);
  dims[1] = onnx.TensorShapeProto.Dimension.fromObject({ dimValue: labels });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * Writes `head.dir` as a copy of the model folder `sourceDir` with another classifier head, sharing its weights
 * file(s) through hard links (a copy when the filesystem refuses links). Both forms (CPU and, where present, CUDA)
 * get the new head. Atomic like writeModelFolder.
 */
export function writeHeadFolder(sourceDir: string, head: HeadFolder): BertCard {
  const source = readModelCard(sourceDir);
  if (source.family !== 'bert' || !source.graph.dataFile)
    throw new Error(`${sourceDir}: not a BERT model folder with external weights`);
  if (source.cudaGraph && head.cudaWeightsSha256 === undefined)
    throw new Error(`${sourceDir} has a CUDA form: the head folder needs its digest (cudaWeightsSha256)`);
  const forms = [source.graph, ...(source.cudaGraph ? [source.cudaGraph] : [])];
  const tmp = `${head.dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  for (const form of forms) writeFileSync(join(tmp, form.file), withHead(sourceDir, form.file, head));
  for (const dataFile of new Set(forms.map((f) => f.dataFile).filter((f): f is string => f !== null))) {
    try {
      linkSync(join(sourceDir, dataFile), join(tmp, dataFile));
    } catch {
      copyFileSync(join(sourceDir, dataFile), join(tmp, dataFile));
    }
  }
  const labels = head.classifier.weight.shape[0]!;
  const headValues = (rows: number) => rows * (source.architecture.hiddenSize + 1);
  const withHeadParameters = (form: GraphFiles) =>
    form.parameters - headValues(Number(source.outputs[0]?.shape[1] ?? 0)) + headValues(labels);
  const card: BertCard = {
    format: source.format,
    formatVersion: source.formatVersion,
    ...head.card,
    graph: {
      ...source.graph,
      weightsSha256: head.weightsSha256,
      parameters: withHeadParameters(source.graph),
    },
    ...(source.cudaGraph
      ? {
          cudaGraph: {
            ...source.cudaGraph,
            weightsSha256: head.cudaWeightsSha256!,
            parameters: withHeadParameters(source.cudaGraph),
          },
        }
      : {}),
  };
  writeFileSync(join(tmp, CARD_FILE), `${JSON.stringify(card, null, 2)}\n`);
  rmSync(head.dir, { recursive: true, force: true });
  renameSync(tmp, head.dir);
  return card;
}

/**
 * The encoder digest of an existing folder's CPU form (or CUDA form: `device` 'cuda'), every initializer but the
 * head, reading external data from disk.
 */
export function hashFolderEncoder(dir: string, device: 'cpu' | 'cuda' = 'cpu'): InitializerHash {
  const form = graphFor(readModelCard(dir), device);
  const model = onnx.ModelProto.decode(readFileSync(join(dir, form.file)));
  const out = new InitializerHash();
  const fd = form.dataFile ? openSync(join(dir, form.dataFile), 'r') : null;
  try {
    const graph = model.graph as InstanceType<typeof onnx.GraphProto>;
    for (const t of graph.initializer as InstanceType<typeof onnx.TensorProto>[]) {
      if ((HEAD_NAMES as readonly string[]).includes(t.name)) continue;
      const dtype = dtypeFromOnnx(t.dataType);
      const shape = t.dims.map(Number);
      let bytes: Uint8Array;
      if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
        const entry = (key: string) => Number(t.externalData.find((e) => e.key === key)?.value ?? 0);
        bytes = new Uint8Array(entry('length'));
        readSync(fd!, bytes, 0, bytes.length, entry('offset'));
      } else {
        bytes = t.rawData;
      }
      out.addBytes(t.name, dtype, shape, bytes);
    }
  } finally {
    if (fd !== null) closeSync(fd);
  }
  return out;
}
