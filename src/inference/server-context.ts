/**
 * What both transports (the HTTP routes, src/routes/, and the gRPC service, src/grpc/) share: the server context
 * (models, metrics, preprocessing, limits, lifecycle, tokens) and the per-request tracking object that carries an
 * inference request's deadline, cancellation signal, phase timings and outcome from arrival to response. Nothing
 * here imports fastify or gRPC; the HTTP layer hands the context to its plugins as the `app.padserve` decorator.
 */
import type { EntryResult } from '../batching/queue.js';
import type { Outcome } from '../observability/metrics.js';
import type { MetricsService, ModelService, PreprocessService } from './v2-context.js';

export interface RouteLimits {
  requestTimeoutMs: number;
  maxBodyBytes: number;
  maxTextChars: number;
  maxPairsPerRequest: number;
  defaultImageModel: string;
  /** Seconds in the `Retry-After` header of 429 and 503 answers (`--retry-after-s`). */
  retryAfterS: number;
}

export interface Lifecycle {
  /** True once SIGTERM (or close) started: readiness false, new inference requests 503. */
  draining: boolean;
  /** Requests between arrival and response (the drain waits for 0). */
  inflight: number;
}

/** Narrow services (v2-context.ts): the server entry passes the real ones, a route test may pass fakes. */
export interface ServerContext {
  models: ModelService;
  metrics: MetricsService;
  preprocess: PreprocessService;
  limits: RouteLimits;
  lifecycle: Lifecycle;
  /** Empty = admin API off. */
  adminToken: string;
  /** Empty = inference routes need no bearer token. */
  apiToken: string;
  version: string;
}

/** Phase timings and outcome of one inference request. */
export class RequestTrack {
  readonly start = performance.now();
  readonly controller = new AbortController();
  model = '';
  preprocessMs = 0;
  queueMs = 0;
  inferenceMs = 0;
  postprocessMs = 0;
  batchSize = 0;
  outcome: Outcome | null = null;

  constructor(
    readonly route: string,
    /** Absolute deadline on performance.now()'s clock. */
    readonly deadline: number,
    /** Queue priority: lower is served first; FIFO within a level. */
    readonly priority = 0,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Folds the batcher's per-row results in (max over rows: the request waited for its slowest row). */
  absorb(results: readonly EntryResult<unknown>[]): void {
    for (const r of results) {
      this.queueMs = Math.max(this.queueMs, r.queueMs);
      this.inferenceMs = Math.max(this.inferenceMs, r.inferenceMs);
      this.batchSize = Math.max(this.batchSize, r.batchSize);
    }
  }

  timing(): {
    preprocess_ms: number;
    queue_ms: number;
    inference_ms: number;
    postprocess_ms: number;
    total_ms: number;
    batch_size: number;
  } {
    const r = (x: number) => Math.round(x * 1000) / 1000;
    return {
      preprocess_ms: r(this.preprocessMs),
      queue_ms: r(this.queueMs),
      inference_ms: r(this.inferenceMs),
      postprocess_ms: r(this.postprocessMs),
      total_ms: r(performance.now() - this.start),
      batch_size: this.batchSize,
    };
  }
}

/**
 * TEI-style timing of an answer (ms, 3 decimals) as name/value pairs: HTTP sends them as headers, gRPC as initial
 * metadata.
 */
export function timingValues(t: RequestTrack): [string, string][] {
  const f = (x: number) => x.toFixed(3);
  return [
    ['x-preprocess-time', f(t.preprocessMs)],
    ['x-queue-time', f(t.queueMs)],
    ['x-inference-time', f(t.inferenceMs)],
    ['x-postprocess-time', f(t.postprocessMs)],
    ['x-total-time', f(performance.now() - t.start)],
    ['x-batch-size', String(t.batchSize)],
  ];
}

/** Records the outcome once (metrics), whichever of response / disconnect comes first. */
export function finish(ctx: ServerContext, track: RequestTrack, outcome: Outcome): void {
  if (track.outcome !== null) return;
  track.outcome = outcome;
  ctx.metrics.observeRequest(
    track.route,
    track.model || 'none',
    outcome,
    (performance.now() - track.start) / 1000,
  );
  if (track.preprocessMs > 0 && track.model)
    ctx.metrics.preprocessDuration.observe({ model: track.model }, track.preprocessMs / 1000);
  if (outcome === 'ok' && track.model)
    ctx.metrics.postprocessDuration.observe({ model: track.model }, track.postprocessMs / 1000);
}
