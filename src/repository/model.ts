/**
 * One served model version: its card and serving config, its instances (sessions inside inference workers) and
 * the micro-batcher that feeds them. Life cycle: loading → warming → ready → retiring → unloaded. A retiring
 * version takes no new requests (the manager routes them to its successor) but finishes what it has queued.
 */
import { Batcher } from '../batching/batcher.js';
import { splitRows, transferList, type Row, type RowOutputs } from '../batching/collate.js';
import { TokenBudgetPolicy, type BatchPolicy } from '../batching/policy.js';
import type { EntryResult, SubmitOptions } from '../batching/queue.js';
import type { ModelCard, TelemetrySpec } from '../model/card.js';
import { ServeError } from '../observability/errors.js';
import type { BatchEvent, ModelState } from '../observability/events.js';
import type { InferencePool, InstanceHandle } from '../runtime/inference-pool.js';
import type { PlacementCheck } from '../runtime/placement.js';
import type { ExecutionDevice } from '../runtime/session.js';
import type { HostTensor } from '../tensor.js';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { familyOf } from './family.js';
import type { ServingConfig, WeightsMode } from './serving.js';

export interface ModelObserver {
  batch(model: string, version: number, e: BatchEvent): void;
  drop(model: string, version: number, reason: 'deadline_exceeded' | 'client_cancelled'): void;
  depth(model: string, version: number, depth: number): void;
  loaded(model: string, version: number, seconds: number, warmupSeconds: number): void;
  state(model: string, version: number, state: ModelState): void;
  /** A load / reload that did not swap in: `reason` is a GoldenFailure or 'load_error'. */
  loadFailed?(model: string, reason: string): void;
  /** A sampled batch's telemetry output (see `LoadArgs.telemetrySampleEvery`), batch-major. */
  telemetry?(model: string, version: number, spec: TelemetrySpec, output: HostTensor<'float32'>): void;
}

export interface LoadArgs {
  name: string;
  version: number;
  dir: string;
  card: ModelCard;
  serving: ServingConfig;
  /** Memory-map the weights instead of a prepacked copy per session (see `sharesWeights`). */
  shareWeights: boolean;
  pool: InferencePool;
  device: ExecutionDevice;
  /** When the load profiles a probe run for node placement (inference-pool.ts `InstanceSpec.placementCheck`). */
  placementCheck?: PlacementCheck;
  intraOpThreads: number;
  retryAfterS: number;
  observer: ModelObserver;
  /** Fetch the card's telemetry output on every Nth batch (warmup excluded); 0 or absent: never. */
  telemetrySampleEvery?: number;
}

/**
 * Bytes a loaded instance is expected to add (weights plus onnxruntime's working memory, roughly). Shared
 * (memory-mapped) weights are page cache, held once per file and reclaimable: they are not counted.
 */
export function estimateInstanceBytes(card: ModelCard, shared = false): number {
  return (shared ? 0 : Math.round(card.graph.initializerBytes * 1.3)) + 32 * 1024 * 1024;
}

/** Identity of a model version's external weights file (`dev:ino`), or null when its weights are inline. */
export function weightsFileId(dir: string, card: ModelCard): { id: string; links: number } | null {
  if (!card.graph.dataFile) return null;
  try {
    const st = statSync(join(dir, card.graph.dataFile));
    return { id: `${st.dev}:${st.ino}`, links: st.nlink };
  } catch {
    return null;
  }
}

/**
 * Whether a model version's sessions should memory-map its weights. Only external weights can be mapped.
 * `auto`: when more than one session will read the same file (several instances, a file with hard links, or
 * a file several repository entries point to: `uses` counts them).
 */
export function sharesWeights(
  mode: WeightsMode,
  dir: string,
  card: ModelCard,
  instances: number,
  uses: ReadonlyMap<string, number>,
): boolean {
  const file = weightsFileId(dir, card);
  if (!file || mode === 'private') return false;
  if (mode === 'shared') return true;
  return instances > 1 || file.links > 1 || (uses.get(file.id) ?? 0) > 1;
}

/** The longest token sequence a text model takes (its tokenizer's max length, within its position table); 0 else. */
export function maxSequenceLength(card: ModelCard): number {
  return familyOf(card).maxLength(card);
}

/** An image model's input without the batch axis, symbolic sizes taken from its preprocessing (e.g. [3, 224, 224]). */
export function imageRowShape(card: ModelCard): number[] {
  return familyOf(card).rowShape(card);
}

export function policyFor(card: ModelCard, serving: ServingConfig): BatchPolicy {
  return familyOf(card).policy(card, serving);
}

export class ServedModel {
  state: ModelState = 'loading';
  lastUsed = Date.now();
  readonly batcher: Batcher<Row, RowOutputs>;
  readonly policy: BatchPolicy;
  warmupMs = 0;
  /** The version that replaced this one (reload). */
  successor: ServedModel | null = null;
  /** Image models: the input row shape, e.g. [3, 224, 224]. */
  readonly rowShape: number[];
  /** Batches executed (warmup excluded), for telemetry sampling. */
  private batchCount = 0;

  private constructor(
    private readonly args: LoadArgs,
    readonly instances: InstanceHandle[],
    readonly loadMs: number,
  ) {
    this.policy = policyFor(args.card, args.serving);
    this.rowShape = imageRowShape(args.card);
    const obs = args.observer;
    this.batcher = new Batcher<Row, RowOutputs>(
      instances.map((h) => (rows, padded) => this.execute(h, rows, padded)),
      {
        name: `${args.name}/${args.version}`,
        policy: this.policy,
        maxQueueSize: args.serving.max_queue_size,
        maxQueueDelayMs: args.serving.max_queue_delay_ms,
        retryAfterS: args.retryAfterS,
        onBatch: (e) => obs.batch(args.name, args.version, e),
        onDrop: (reason) => obs.drop(args.name, args.version, reason),
        onDepth: (d) => obs.depth(args.name, args.version, d),
      },
    );
  }

  /** Loads `serving.instances` sessions (one per instance, placed by the pool) and warms them. */
  static async load(args: LoadArgs): Promise<ServedModel> {
    args.observer.state(args.name, args.version, 'loading');
    const started = performance.now();
    const handles: InstanceHandle[] = [];
    try {
      for (let i = 0; i < args.serving.instances; i++) {
        handles.push(
          await args.pool.load({
            key: `${args.name}/${args.version}#${i}`,
            dir: args.dir,
            device: args.device,
            intraOpThreads: args.intraOpThreads,
            shareWeights: args.shareWeights,
            weightBytes: estimateInstanceBytes(args.card, args.shareWeights),
            placementCheck: args.placementCheck,
          }),
        );
      }
    } catch (err) {
      await Promise.all(handles.map((h) => h.release()));
      args.observer.state(args.name, args.version, 'failed');
      throw err;
    }
    const m = new ServedModel(args, handles, performance.now() - started);
    m.setState('warming');
    const w0 = performance.now();
    try {
      await m.warm();
    } catch (err) {
      await m.release();
      m.setState('failed');
      throw err;
    }
    m.warmupMs = performance.now() - w0;
    m.setState('ready');
    args.observer.loaded(args.name, args.version, m.loadMs / 1000, m.warmupMs / 1000);
    return m;
  }

  get name(): string {
    return this.args.name;
  }
  get version(): number {
    return this.args.version;
  }
  get card(): ModelCard {
    return this.args.card;
  }
  get serving(): ServingConfig {
    return this.args.serving;
  }
  get dir(): string {
    return this.args.dir;
  }
  get device(): ExecutionDevice {
    return this.instances[0]?.device ?? this.args.device;
  }
  get memoryBytes(): number {
    return estimateInstanceBytes(this.args.card, this.args.shareWeights) * this.instances.length;
  }
  get sharedWeights(): boolean {
    return this.args.shareWeights;
  }
  get busy(): boolean {
    return this.batcher.depth > 0 || this.batcher.inFlight > 0;
  }
  /** Longest token sequence accepted (text models), 0 for image models. */
  get maxLength(): number {
    return this.policy instanceof TokenBudgetPolicy ? this.policy.maxLength : 0;
  }

  /**
   * The version to run a request on now: this one while it is ready, else (after a reload swapped it out) its
   * successor. Call it right before `infer` (same tick) so that a request that picked this version before a
   * reload is not refused.
   */
  current(): ServedModel {
    if (this.state === 'ready' || !this.successor || familyOf(this.successor.card) !== familyOf(this.card))
      return this;
    return this.successor.current();
  }

  /**
   * Refuses at once (429 `queue_full`, the queue's own error) when `rows` more rows would not fit in the queue:
   * a request asks before it spends work on its rows.
   */
  admit(rows: number): void {
    this.batcher.admit(rows);
  }

  /** Queues the rows of one request; resolves with one result per row, in order. */
  infer(rows: Row[], opts: SubmitOptions): Promise<EntryResult<RowOutputs>[]> {
    if (this.state !== 'ready') {
      return Promise.reject(
        new ServeError(
          'not_ready',
          'model_not_ready',
          `model ${this.name} version ${this.version} is ${this.state}`,
          { retryAfterS: this.args.retryAfterS },
        ),
      );
    }
    const want = familyOf(this.card).rowKind;
    if (rows.some((r) => r.kind !== want))
      throw new ServeError('invalid_input', 'wrong_input_kind', `model ${this.name} takes ${want} inputs`);
    this.lastUsed = Date.now();
    const maxLen = this.maxLength;
    const items = rows.map((r) => {
      const length = r.kind === 'tokens' ? r.ids.length : 1;
      if (maxLen && length > maxLen)
        throw new ServeError(
          'invalid_input',
          'sequence_too_long',
          `sequence of ${length} tokens; model ${this.name} takes at most ${maxLen}`,
        );
      return { payload: r, length };
    });
    return this.batcher.submit(items, opts);
  }

  /**
   * Stops taking requests (new ones go to `successor`, if any), lets queued and running batches finish, then
   * releases the sessions.
   */
  async retire(successor?: ServedModel): Promise<void> {
    if (this.state === 'unloaded' || this.state === 'retiring') return;
    this.successor = successor ?? null;
    this.setState('retiring');
    await this.batcher.idle();
    this.batcher.close(
      new ServeError(
        'not_ready',
        'model_unloaded',
        `model ${this.name} version ${this.version} was unloaded`,
        { retryAfterS: this.args.retryAfterS },
      ),
    );
    await this.release();
    this.setState('unloaded');
  }

  private async release(): Promise<void> {
    await Promise.all(this.instances.map((h) => h.release()));
  }

  private setState(s: ModelState): void {
    this.state = s;
    this.args.observer.state(this.name, this.version, s);
  }

  private async execute(
    h: InstanceHandle,
    rows: Row[],
    padded: number,
    warmup = false,
  ): Promise<RowOutputs[]> {
    const card = this.args.card;
    const feeds = familyOf(card).collate(card, rows, padded, this.rowShape);
    const telemetry = warmup ? undefined : this.sampleTelemetry(h);
    const fetch = telemetry
      ? [...h.outputNames.filter((n) => n !== telemetry.output), telemetry.output]
      : undefined;
    const r = await h.run(feeds, transferList(feeds), fetch);
    if (telemetry) {
      const t = r.outputs[telemetry.output];
      delete r.outputs[telemetry.output];
      if (t) {
        try {
          this.args.observer.telemetry?.(this.name, this.version, telemetry, t);
        } catch {
          /* telemetry never fails a batch */
        }
      }
    }
    return splitRows(r.outputs, rows.length);
  }

  /** The card's telemetry spec when this batch is sampled (every Nth batch of this version), else undefined. */
  private sampleTelemetry(h: InstanceHandle): TelemetrySpec | undefined {
    const every = this.args.telemetrySampleEvery ?? 0;
    const spec = this.args.card.telemetry;
    if (!every || !spec || !this.args.observer.telemetry || !h.outputNames.includes(spec.output))
      return undefined;
    return this.batchCount++ % every === 0 ? spec : undefined;
  }

  /**
   * Runs the batch shapes the warmup mode selects, on every instance, before the model reports ready. Rows
   * beyond the graph's `maxRunBatch` are run per chunk by the session, so they add no new graph shape.
   */
  private async warm(): Promise<void> {
    for (const h of this.instances) {
      for (const s of warmupShapes(this.policy, this.args.serving.warmup, this.args.card.graph.maxRunBatch)) {
        const card = this.args.card;
        await this.execute(h, familyOf(card).warmupRows(card, s.rows, s.length), s.length, true);
      }
    }
  }
}

/** The shapes a warmup mode runs (see serving.ts). */
export function warmupShapes(
  policy: BatchPolicy,
  mode: ServingConfig['warmup'],
  maxRunBatch: number | null,
): { rows: number; length: number }[] {
  if (mode === 'none') return [];
  let shapes = policy.shapes();
  if (maxRunBatch) shapes = shapes.filter((s) => s.rows <= maxRunBatch);
  const maxRows = new Map<number, number>();
  for (const s of shapes) maxRows.set(s.length, Math.max(maxRows.get(s.length) ?? 0, s.rows));
  if (mode === 'powers-of-two')
    shapes = shapes.filter((s) => (s.rows & (s.rows - 1)) === 0 || s.rows === maxRows.get(s.length));
  if (mode === 'buckets') shapes = shapes.filter((s) => s.rows === 1);
  return shapes;
}
