/**
 * One onnxruntime session over a model folder. Hides the graph's `maxRunBatch` (a family may compile a
 * per-sample form; callers always pass any batch size) and converts between HostTensor and ort.Tensor.
 * Blocking: create/run hold the calling thread, so the server calls this only inside inference workers.
 */
import ort from 'onnxruntime-node';
import { join } from 'node:path';
import { readModelCard } from '../model/folder.js';
import type { ModelCard } from '../model/card.js';
import { checked, numel, type DType, type HostTensor } from '../tensor.js';

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
}

export type Feeds = Record<string, HostTensor>;
export type Fetches = Record<string, HostTensor<'float32'>>;

export class ModelSession {
  private constructor(
    readonly dir: string,
    readonly card: ModelCard,
    private readonly session: ort.InferenceSession,
    readonly device: ExecutionDevice,
    readonly loadMs: number,
  ) {}

  static async load(dir: string, opts: SessionOptions = {}): Promise<ModelSession> {
    const card = readModelCard(dir);
    const started = performance.now();
    const device = opts.device ?? 'cpu';
    const session = await ort.InferenceSession.create(
      join(dir, card.graph.file),
      sessionOptions(opts, device),
    );
    return new ModelSession(dir, card, session, device, performance.now() - started);
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * The outputs a run fetches by default: every graph output except the card's telemetry output (the primary
   * `card.outputs`, plus debug outputs of test graphs). Telemetry is fetched only when asked for.
   */
  get defaultOutputs(): readonly string[] {
    const telemetry = this.card.telemetry?.output;
    return this.session.outputNames.filter((n) => n !== telemetry);
  }

  /**
   * Runs any batch size; splits into chunks of `maxRunBatch` when the graph requires it. `outputs` names the
   * outputs to fetch (default `defaultOutputs`); only fetched outputs are copied out. onnxruntime 1.30 still
   * executes every node of the graph (measured: scratch/ort-prune.mts), so extra outputs must be cheap to compute.
   * Every output is batch-major, so split runs concatenate.
   */
  async run(feeds: Feeds, outputs?: readonly string[]): Promise<Fetches> {
    const fetch = outputs ?? this.defaultOutputs;
    for (const name of fetch)
      if (!this.session.outputNames.includes(name)) throw new Error(`the graph has no output ${name}`);
    const batch = batchSize(feeds);
    const limit = this.card.graph.maxRunBatch ?? batch;
    if (batch <= limit) return this.runOnce(feeds, fetch);
    const parts: Fetches[] = [];
    for (let start = 0; start < batch; start += limit) {
      parts.push(await this.runOnce(sliceBatch(feeds, start, Math.min(batch, start + limit)), fetch));
    }
    return concatBatch(parts);
  }

  private async runOnce(feeds: Feeds, fetch: readonly string[]): Promise<Fetches> {
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds))
      ortFeeds[name] = new ort.Tensor(t.dtype, t.data as never, [...t.shape]);
    const out = await this.session.run(ortFeeds, [...fetch]);
    const result: Fetches = {};
    for (const [name, t] of Object.entries(out)) {
      if (t.type !== 'float32') throw new Error(`output ${name} has type ${t.type}, expected float32`);
      result[name] = { dtype: 'float32', shape: [...t.dims], data: t.data as Float32Array };
    }
    return result;
  }

  async release(): Promise<void> {
    await this.session.release();
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
