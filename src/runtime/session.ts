/**
 * The onnxruntime sessions over a model folder's graph form for a device: one session, or one per bucket graph
 * (fixed-batch graphs sharing one weights file). Hides both `maxRunBatch` and the buckets: callers pass any batch
 * size; a batch runs as the cheapest plan of bucket runs (padding a bucket with zero rows or splitting, by
 * measured cost: `calibrate`, run.ts). Converts between HostTensor and ort.Tensor.
 * Blocking: create/run hold the calling thread, so the server calls this only inside inference workers.
 */
import ort from 'onnxruntime-node';
import { join } from 'node:path';
import { readModelCard } from '../model/folder.js';
import { graphFor, type GraphFiles, type ModelCard } from '../model/card.js';
import { checked, numel, type DType, type HostTensor } from '../tensor.js';
import { defaultBucketCosts, planBatch, type RunChunk } from './plan.js';

export type ExecutionDevice = 'cpu' | 'cuda';

export interface SessionOptions {
  /** Intra-op threads (default: onnxruntime's own choice, all cores). */
  intraOpThreads?: number;
  device?: ExecutionDevice;
  /** ORT graph optimisation level (default 'all'). */
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Write an onnxruntime profile (JSON) with this prefix. */
  profilePrefix?: string;
  /**
   * Skip weight prepacking (`session.disable_prepacking`). With external weights, onnxruntime then memory-maps
   * the data file instead of copying it: sessions over the same file (instances, workers, or models whose
   * weights files are hard links of one another) share one copy in the page cache. Costs some MatMul/Conv speed.
   */
  disablePrepacking?: boolean;
  /**
   * Load only these bucket graphs of a bucketed form (default: all). For comparisons and tests (`padserve predict
   * --buckets`, benchmarks); the planner then covers every batch with the loaded buckets.
   */
  buckets?: readonly number[];
}

export type Feeds = Record<string, HostTensor>;
export type Fetches = Record<string, HostTensor<'float32'>>;

/** One loaded graph: a bucket graph (exactly `batch` rows) or the form's one graph (`batch` null: any). */
interface LoadedGraph {
  batch: number | null;
  session: ort.InferenceSession;
}

export class ModelSession {
  /** Measured (or, until `calibrate`, modelled) cost of one run of each bucket, ms. */
  private costs: Map<number, number>;

  private constructor(
    readonly dir: string,
    readonly card: ModelCard,
    /** The graph form loaded (card.graph, or card.cudaGraph on CUDA). */
    readonly form: GraphFiles,
    private readonly graphs: LoadedGraph[],
    readonly device: ExecutionDevice,
    readonly loadMs: number,
  ) {
    this.costs = defaultBucketCosts(this.buckets);
  }

  static async load(dir: string, opts: SessionOptions = {}): Promise<ModelSession> {
    const card = readModelCard(dir);
    const started = performance.now();
    const device = opts.device ?? 'cpu';
    const form = graphFor(card, device);
    let entries: { batch: number | null; file: string }[] = form.buckets ?? [
      { batch: null, file: form.file },
    ];
    if (opts.buckets && form.buckets) {
      const want = opts.buckets;
      entries = form.buckets.filter((b) => want.includes(b.batch));
      const missing = want.filter((b) => !entries.some((e) => e.batch === b));
      if (missing.length)
        throw new RangeError(
          `${dir}: no bucket graph for batch ${missing.join(', ')} (buckets: ${form.buckets.map((b) => b.batch).join(', ')})`,
        );
    }
    // Bucket sessions allocate from their arenas chunk by chunk instead of one memory-pattern block per bucket:
    // the four bucket sessions of the full-size PAD ResNet-50 held 2,471 MB RSS with patterns, 1,757 MB without,
    // at the same speed within noise (docs/resnet-graph.md, "Buckets: measured").
    const options = sessionOptions(opts, device);
    if (entries.length > 1) options.enableMemPattern = false;
    const graphs: LoadedGraph[] = [];
    try {
      for (const e of entries)
        graphs.push({
          batch: e.batch,
          session: await ort.InferenceSession.create(join(dir, e.file), options),
        });
    } catch (err) {
      await Promise.all(graphs.map((g) => g.session.release()));
      throw err;
    }
    return new ModelSession(dir, card, form, graphs, device, performance.now() - started);
  }

  /** The bucket sizes (ascending), empty when the form is one graph. */
  get buckets(): number[] {
    return this.graphs.flatMap((g) => (g.batch === null ? [] : [g.batch]));
  }

  /** Cost per bucket run used by the planner (ms; relative until `calibrate`). */
  get bucketCosts(): ReadonlyMap<number, number> {
    return this.costs;
  }

  /** Replaces the planner's bucket costs with measured ones (ms per run), e.g. from warm-up timings. */
  setBucketCosts(costs: ReadonlyMap<number, number>): void {
    for (const b of this.buckets)
      if (!((costs.get(b) ?? NaN) > 0)) throw new RangeError(`no positive cost for bucket ${b}`);
    this.costs = new Map(costs);
  }

  /** How `run` executes a batch of `rows`: the bucket runs, in order. */
  plan(rows: number): RunChunk[] {
    const buckets = this.buckets;
    if (buckets.length) return planBatch(rows, this.costs);
    const limit = this.form.maxRunBatch ?? rows;
    const chunks: RunChunk[] = [];
    for (let start = 0; start < rows; start += limit)
      chunks.push({ start, rows: Math.min(limit, rows - start), bucket: null });
    return chunks;
  }

  private get first(): ort.InferenceSession {
    return this.graphs[0]!.session;
  }

  get inputNames(): readonly string[] {
    return this.first.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.first.outputNames;
  }

  /**
   * The outputs a run fetches by default: every graph output except the card's telemetry output (the primary
   * `card.outputs`, plus debug outputs of test graphs). Telemetry is fetched only when asked for.
   */
  get defaultOutputs(): readonly string[] {
    const telemetry = this.card.telemetry?.output;
    return this.first.outputNames.filter((n) => n !== telemetry);
  }

  /**
   * Runs any batch size as `plan(rows)`: chunks of `maxRunBatch`, or bucket runs, each bucket padded with zero
   * rows when the chunk is smaller (every bucket graph computes each row from that row alone: per-sample routers
   * and grouped convs, so padding never changes a real row; the padded rows' outputs are dropped). `outputs` names
   * the outputs to fetch (default `defaultOutputs`); only fetched outputs are copied out. onnxruntime 1.30 still
   * executes every node of the graph, so extra outputs must be cheap to compute. Every output is batch-major,
   * so chunks concatenate.
   */
  async run(feeds: Feeds, outputs?: readonly string[]): Promise<Fetches> {
    const fetch = outputs ?? this.defaultOutputs;
    for (const name of fetch)
      if (!this.outputNames.includes(name)) throw new Error(`the graph has no output ${name}`);
    const chunks = this.plan(batchSize(feeds));
    if (chunks.length === 1 && chunks[0]!.bucket === null) return this.runOnce(this.first, feeds, fetch);
    const parts: Fetches[] = [];
    for (const c of chunks) {
      const part = sliceBatch(feeds, c.start, c.start + c.rows);
      const graph = this.graphs.find((g) => g.batch === c.bucket)!;
      if (c.bucket === null || c.bucket === c.rows)
        parts.push(await this.runOnce(graph.session, part, fetch));
      else
        parts.push(sliceFetches(await this.runOnce(graph.session, padBatch(part, c.bucket), fetch), c.rows));
    }
    return parts.length === 1 ? parts[0]! : concatBatch(parts);
  }

  /**
   * Warms every bucket graph (one run each, so the first request of a new size pays no start-up) and measures
   * each bucket's run time (best of `runs` further runs) for the planner. No-op for one-graph forms.
   */
  async calibrate(runs = 2): Promise<ReadonlyMap<number, number>> {
    const costs = new Map<number, number>();
    for (const b of this.buckets) {
      await this.timeBucket(b);
      let best = Infinity;
      for (let i = 0; i < runs; i++) best = Math.min(best, await this.timeBucket(b));
      costs.set(b, Math.max(best, 1e-3));
    }
    if (costs.size) this.setBucketCosts(costs);
    return this.costs;
  }

  /** One run of the bucket graph `bucket` on zero rows (warm-up), returning its wall time in ms. */
  async timeBucket(bucket: number): Promise<number> {
    const graph = this.graphs.find((g) => g.batch === bucket);
    if (!graph) throw new RangeError(`no bucket ${bucket}`);
    const feeds: Feeds = {};
    for (const spec of this.card.inputs) {
      const shape = [bucket, ...spec.shape.slice(1).map((d) => (typeof d === 'number' ? d : 1))];
      if (spec.dtype !== 'float32') throw new Error(`timeBucket: input ${spec.name} is not float32`);
      feeds[spec.name] = { dtype: 'float32', shape, data: new Float32Array(numel(shape)) };
    }
    const started = performance.now();
    await this.runOnce(graph.session, feeds, this.defaultOutputs);
    return performance.now() - started;
  }

  private async runOnce(
    session: ort.InferenceSession,
    feeds: Feeds,
    fetch: readonly string[],
  ): Promise<Fetches> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds))
      ortFeeds[name] = new ort.Tensor(t.dtype, t.data as never, [...t.shape]);
    const out = await session.run(ortFeeds, [...fetch]);
    const result: Fetches = {};
    for (const [name, t] of Object.entries(out)) {
      if (t.type !== 'float32') throw new Error(`output ${name} has type ${t.type}, expected float32`);
      result[name] = { dtype: 'float32', shape: [...t.dims], data: t.data as Float32Array };
    }
    return result;
  }

  async release(): Promise<void> {
    await Promise.all(this.graphs.map((g) => g.session.release()));
  }
}

function sessionOptions(opts: SessionOptions, device: ExecutionDevice): ort.InferenceSession.SessionOptions {
  const o: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: opts.graphOptimization ?? 'all',
    executionProviders: device === 'cuda' ? ['cuda', 'cpu'] : ['cpu'],
    executionMode: 'sequential',
  };
  if (opts.intraOpThreads) o.intraOpNumThreads = opts.intraOpThreads;
  if (opts.disablePrepacking) o.extra = { session: { disable_prepacking: '1' } };
  if (opts.profilePrefix) {
    o.enableProfiling = true;
    o.profileFilePrefix = opts.profilePrefix;
  }
  return o;
}

export function batchSize(feeds: Feeds): number {
  const sizes = new Set(Object.values(feeds).map((t) => t.shape[0]));
  if (sizes.size !== 1) throw new Error(`inputs disagree on the batch size: ${[...sizes].join(', ')}`);
  const [n] = sizes;
  if (n === undefined || n < 1) throw new Error('empty batch');
  return n;
}

function rowSlice<D extends DType>(t: HostTensor<D>, start: number, end: number): HostTensor<D> {
  const row = numel(t.shape.slice(1));
  return {
    dtype: t.dtype,
    shape: [end - start, ...t.shape.slice(1)],
    data: t.data.subarray(start * row, end * row) as HostTensor<D>['data'],
  };
}

/** The batch grown to `rows` with zero rows after the real ones. */
export function padBatch(feeds: Feeds, rows: number): Feeds {
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) {
    const shape = [rows, ...t.shape.slice(1)];
    const data = new (t.data.constructor as new (n: number) => HostTensor['data'])(numel(shape));
    (data as Float32Array).set(t.data as Float32Array);
    out[name] = { dtype: t.dtype, shape, data } as HostTensor;
  }
  return out;
}

/** The first `rows` rows of every output. */
function sliceFetches(fetches: Fetches, rows: number): Fetches {
  const out: Fetches = {};
  for (const [name, t] of Object.entries(fetches)) out[name] = rowSlice(t, 0, rows);
  return out;
}

export function sliceBatch(feeds: Feeds, start: number, end: number): Feeds {
  const out: Feeds = {};
  for (const [name, t] of Object.entries(feeds)) out[name] = rowSlice(t, start, end);
  return out;
}

export function concatBatch(parts: Fetches[]): Fetches {
  const out: Fetches = {};
  const names = Object.keys(parts[0] ?? {});
  for (const name of names) {
    const pieces = parts.map((p) => p[name]!);
    const total = pieces.reduce((n, p) => n + p.data.length, 0);
    const data = new Float32Array(total);
    let offset = 0;
    for (const p of pieces) {
      data.set(p.data, offset);
      offset += p.data.length;
    }
    const rows = pieces.reduce((n, p) => n + p.shape[0]!, 0);
    out[name] = checked({ dtype: 'float32', shape: [rows, ...pieces[0]!.shape.slice(1)], data });
  }
  return out;
}
