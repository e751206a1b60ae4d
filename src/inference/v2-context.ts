/**
 * What the transport-neutral functions (the pipeline, its tasks, the V2 core) need from the server (a structural
 * subset of `ServerContext`, server-context.ts, so `app.padserve` passes as is), the narrow service interfaces
 * both hold (the members the transports and the pipeline call, so a route test can hand in fakes:
 * test/http/routes-fakes.test.ts), and the per-request track they report phase timings into (`RequestTrack`
 * satisfies it; another transport can pass its own).
 */
import type { EntryResult } from '../batching/queue.js';
import type { Metrics } from '../observability/metrics.js';
import type { PreprocessPool } from '../preprocess/preprocess-pool.js';
import type { ModelManager } from '../repository/manager.js';

/** The model repository as the transports see it: lookup, state, control, task and family indexes. */
export type ModelService = Pick<
  ModelManager,
  | 'get'
  | 'peek'
  | 'entry'
  | 'names'
  | 'status'
  | 'policy'
  | 'ready'
  | 'load'
  | 'unload'
  | 'modelsOf'
  | 'modelForTask'
  | 'tasks'
>;

/** The metrics the transports record (request outcomes, in-flight, phase durations) and render. */
export type MetricsService = Pick<
  Metrics,
  'observeRequest' | 'inflight' | 'preprocessDuration' | 'postprocessDuration' | 'statistics' | 'render'
>;

/** Preprocessing off the event loop: image decode/resize, tokenisation. */
export type PreprocessService = Pick<PreprocessPool, 'image' | 'text'>;

export interface InferenceContext {
  models: ModelService;
  metrics: MetricsService;
  preprocess: PreprocessService;
  limits: { maxBodyBytes: number; maxTextChars: number; maxPairsPerRequest: number; retryAfterS: number };
  lifecycle: { draining: boolean };
  /** padserve's version (server metadata). */
  version: string;
}

/** One inference request's deadline, cancellation, priority and phase timings. */
export interface InferTrack {
  /** Absolute deadline on performance.now()'s clock. */
  readonly deadline: number;
  /** Aborted when the client goes away: queued rows are dropped. */
  readonly signal: AbortSignal;
  /** Queue priority, -9..9, lower first (the request parameter `priority` overrides it). */
  readonly priority: number;
  /** Set by the pipeline once the model is resolved. */
  model: string;
  /** Milliseconds; the pipeline adds its own preprocessing time (a transport may add its decode time first). */
  preprocessMs: number;
  postprocessMs: number;
  /** Folds the batcher's per-row results in (queue / inference time, batch size). */
  absorb(results: readonly EntryResult<unknown>[]): void;
}
