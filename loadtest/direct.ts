/**
 * The in-process baseline of the server-overhead comparison: the same model folder run directly through
 * onnxruntime (ModelSession, same intra-op threads as the server's single worker) at the batch size (and, for
 * text, the padded length) the server formed under load. Only inference is timed: no decoding, resizing or
 * tokenising, no HTTP, no queueing. Run it while no server is busy on the machine.
 */
import { availableParallelism } from 'node:os';
import { ModelSession, type Feeds } from '../src/runtime/session.js';
import { tokenRole } from '../src/batching/collate.js';
import type { TensorSpec } from '../src/model/card.js';
import type { HostTensor } from '../src/tensor.js';
import { seededRandom, type Random } from './random.js';
import { latencyMs } from './point.js';
import type { Point } from './types.js';

function dims(spec: TensorSpec, batch: number, seqLength: number): number[] {
  return spec.shape.map((d, i) => (typeof d === 'number' ? d : i === 0 ? batch : seqLength));
}

function tensorFor(spec: TensorSpec, shape: number[], random: Random): HostTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const role = tokenRole(spec.name);
  if (spec.dtype === 'float32') {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = random() * 4 - 2;
    return { dtype: 'float32', shape, data };
  }
  const value = (i: number) =>
    role === 'mask'
      ? 1
      : role === 'types'
        ? i % shape[shape.length - 1]! >= shape[shape.length - 1]! / 2
          ? 1
          : 0
        : 1000 + Math.floor(random() * 28000);
  if (spec.dtype === 'int64')
    return {
      dtype: 'int64',
      shape,
      data: BigInt64Array.from({ length: n }, (_, i) => BigInt(value(i))),
    } as HostTensor;
  if (spec.dtype === 'int32')
    return { dtype: 'int32', shape, data: Int32Array.from({ length: n }, (_, i) => value(i)) } as HostTensor;
  throw new Error(`input ${spec.name}: dtype ${spec.dtype} not supported by the direct baseline`);
}

/**
 * Random feeds of the card's inputs: images as floats, token ids in the word-piece range, masks of ones. Every
 * symbolic size but the batch becomes `size` (the image side, or the sequence length).
 */
export function syntheticFeeds(inputs: readonly TensorSpec[], batch: number, size: number, seed = 1): Feeds {
  const random = seededRandom(seed);
  const feeds: Feeds = {};
  for (const spec of inputs) feeds[spec.name] = tensorFor(spec, dims(spec, batch, size), random);
  return feeds;
}

export interface DirectOptions {
  batch: number;
  seqLength?: number;
  seconds: number;
  intraOpThreads?: number;
}

/** Rows per second of `session.run` at a fixed batch size (warmup excluded). */
export async function directPoint(modelDir: string, o: DirectOptions): Promise<Point> {
  const session = await ModelSession.load(modelDir, {
    intraOpThreads: o.intraOpThreads ?? availableParallelism(),
  });
  try {
    // Symbolic sizes: an image model's are its preprocessing size (what the server feeds it), a text model's the
    // padded length the server formed.
    const card = session.card;
    const size = card.family === 'resnet' ? card.preprocess.size : (o.seqLength ?? 128);
    const feeds = syntheticFeeds(card.inputs, o.batch, size);
    for (let i = 0; i < 2; i++) await session.run(feeds);
    const samples: number[] = [];
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    while (samples.length < 3 || performance.now() - t0 < o.seconds * 1000) {
      const t = performance.now();
      await session.run(feeds);
      samples.push(performance.now() - t);
    }
    const wall = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const perS = samples.length / wall;
    return {
      mode: 'direct',
      durationS: wall,
      offeredRps: perS,
      throughputRps: perS,
      rowsPerS: perS * o.batch,
      requests: samples.length,
      ok: samples.length,
      errors: 0,
      status429: 0,
      status: {},
      latencyMs: latencyMs(samples),
      meanBatch: null,
      serverCpuPct: null,
      serverRssMb: null,
      clientCpuPct: (100 * (cpu.user + cpu.system)) / 1e6 / wall,
      batchSize: o.batch,
      ...(o.seqLength ? { seqLength: o.seqLength } : {}),
    };
  } finally {
    await session.release();
  }
}
