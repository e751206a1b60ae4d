/**
 * What the transport-neutral V2 functions need from the server (a structural subset of the HTTP layer's
 * `ServerContext`, so `app.padserve` passes as is), and the per-request track they report phase timings into
 * (the HTTP layer's `RequestTrack` satisfies it; another transport can pass its own).
 */
import type { EntryResult } from '../batching/queue.js';
import type { Metrics } from '../observability/metrics.js';
import type { PreprocessPool } from '../preprocess/preprocess-pool.js';
import type { ModelManager } from '../repository/manager.js';

export interface InferenceContext {
  models: ModelManager;
  metrics: Metrics;
  preprocess: PreprocessPool;
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
