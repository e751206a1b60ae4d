/**
 * What the route plugins share, handed to them as a fastify decorator (`app.padserve`), and the per-request
 * tracking object (`request.track`) that carries an inference request's deadline, cancellation signal, phase
 * timings and outcome from arrival to response. Timing headers and metrics fall out of it.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { EntryResult } from '../batching/queue.js';
import { ServeError } from '../observability/errors.js';
import type { Metrics, Outcome } from '../observability/metrics.js';
import type { PreprocessPool } from '../preprocess/preprocess-pool.js';
import type { ModelManager } from '../repository/manager.js';

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

export interface ServerContext {
  models: ModelManager;
  metrics: Metrics;
  preprocess: PreprocessPool;
  limits: RouteLimits;
  lifecycle: Lifecycle;
  /** Empty = admin API off. */
  adminToken: string;
  /** Empty = inference routes need no bearer token. */
  apiToken: string;
  version: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    padserve: ServerContext;
  }
  interface FastifyRequest {
    track: RequestTrack | null;
  }
  interface FastifyContextConfig {
    /** Marks an inference route: tracked, timed, counted, refused while draining. */
    inference?: boolean;
  }
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

/** Deadline from the server default, shortened (never lengthened) by a valid `x-deadline-ms` header. */
export function deadlineFor(req: FastifyRequest, defaultMs: number): number {
  const h = req.headers['x-deadline-ms'];
  let ms = defaultMs;
  if (h !== undefined) {
    const v = Number(Array.isArray(h) ? h[0] : h);
    if (!Number.isFinite(v) || v <= 0)
      throw new ServeError(
        'invalid_input',
        'invalid_deadline',
        `x-deadline-ms must be a positive number of milliseconds, got "${String(h)}"`,
      );
    ms = Math.min(ms, v);
  }
  return performance.now() + ms;
}

/** Queue priority from `x-priority` (integer -9..9, lower first, default 0). */
export function priorityFor(req: FastifyRequest): number {
  const h = req.headers['x-priority'];
  if (h === undefined) return 0;
  const v = Number(Array.isArray(h) ? h[0] : h);
  if (!Number.isInteger(v) || v < -9 || v > 9)
    throw new ServeError(
      'invalid_input',
      'invalid_priority',
      `x-priority must be an integer in [-9, 9], got "${String(h)}"`,
    );
  return v;
}

export function trackOf(req: FastifyRequest): RequestTrack {
  if (!req.track) throw new Error(`route ${req.url} is not marked as an inference route`);
  return req.track;
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

/** Sets the TEI-style timing headers of an inference response. */
export function timingHeaders(reply: FastifyReply, track: RequestTrack): void {
  const f = (x: number) => x.toFixed(3);
  reply.header('x-preprocess-time', f(track.preprocessMs));
  reply.header('x-queue-time', f(track.queueMs));
  reply.header('x-inference-time', f(track.inferenceMs));
  reply.header('x-postprocess-time', f(track.postprocessMs));
  reply.header('x-total-time', f(performance.now() - track.start));
  reply.header('x-batch-size', String(track.batchSize));
}
