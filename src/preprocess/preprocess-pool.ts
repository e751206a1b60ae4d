/**
 * The preprocessing pool (piscina): images are decoded, resized and normalised off the HTTP thread. Text is
 * tokenised inline when the request is small (a short pair costs ~0.1 ms, a 128-token one ~0.6 ms on the
 * reference 2-core machine: less than a worker round trip) and in the pool above `inlineTextChars` characters.
 * Failures come back as `PreprocessError`s carrying the preprocessing module's typed code (its reason and status:
 * the code registry, src/observability/error-codes.ts).
 */
import { Piscina } from 'piscina';
import type { ImagePreprocessSpec } from '../model/card.js';
import { piscinaEntry } from '../threads.js';
import type { ImageResult, PreprocessFailure, PreprocessTask, TextResult } from './preprocess-worker.js';
import { runText } from './preprocess-worker.js';

export class PreprocessError extends Error {
  override name = 'PreprocessError';
  constructor(
    readonly code: PreprocessFailure['code'],
    message: string,
  ) {
    super(message);
  }
}

export interface PreprocessPoolOptions {
  threads: number;
  maxInputPixels: number;
  /** Text requests with more characters than this are tokenised in the pool. */
  inlineTextChars: number;
  /** Tasks waiting for a worker; beyond it `run` fails at once (`isQueueFull`). Default: unbounded. */
  maxQueue?: number;
}

/** True for the error of a task refused because the pool's queue is full. */
export function isQueueFull(err: unknown): boolean {
  return err instanceof Error && /task queue is at limit/i.test(err.message);
}

export interface TokenEncoding {
  ids: number[];
  types: number[];
}

export class PreprocessPool {
  private readonly pool: Piscina<PreprocessTask, ImageResult | TextResult | null>;
  private pendingImages = 0;

  constructor(private readonly opts: PreprocessPoolOptions) {
    const entry = piscinaEntry(import.meta.url, 'preprocess-worker');
    this.pool = new Piscina({
      filename: entry.filename,
      execArgv: entry.execArgv,
      minThreads: Math.max(1, opts.threads),
      maxThreads: Math.max(1, opts.threads),
      idleTimeout: Infinity,
      name: 'default',
    });
  }

  get threads(): number {
    return this.pool.threads.length;
  }

  /**
   * Loads the tokenizer on this thread (inline tokenisation) and waits until the workers are up. Workers load
   * the vocabulary only if a large text request reaches them.
   */
  async warm(): Promise<void> {
    runText({ kind: 'text', pairs: [{ a: 'warm up', b: null }], maxLength: 16 });
    await Promise.all(
      Array.from({ length: Math.max(1, this.opts.threads) }, () => this.pool.run({ kind: 'ping' })),
    );
  }

  /** Image bytes → float32 CHW of the model input. */
  async image(
    bytes: Uint8Array,
    spec: ImagePreprocessSpec,
    signal?: AbortSignal,
  ): Promise<{ data: Float32Array; ms: number }> {
    // Bounded: images beyond the workers plus `maxQueue` are refused at once (counted here: piscina's balancer
    // hands tasks to busy workers, so its own maxQueue does not bound them).
    if (this.opts.maxQueue !== undefined && this.pendingImages >= this.opts.maxQueue + this.threads)
      throw new Error('Task queue is at limit');
    this.pendingImages++;
    try {
      return await this.runImage(bytes, spec, signal);
    } finally {
      this.pendingImages--;
    }
  }

  private async runImage(
    bytes: Uint8Array,
    spec: ImagePreprocessSpec,
    signal?: AbortSignal,
  ): Promise<{ data: Float32Array; ms: number }> {
    const own =
      bytes.byteOffset === 0 &&
      bytes.byteLength === bytes.buffer.byteLength &&
      bytes.buffer instanceof ArrayBuffer;
    const r = (await this.pool.run(
      { kind: 'image', bytes, spec, maxInputPixels: this.opts.maxInputPixels },
      { transferList: own ? [bytes.buffer as ArrayBuffer] : [], ...(signal ? { signal } : {}) },
    )) as ImageResult;
    if (!r.ok) throw new PreprocessError(r.code, r.message);
    return { data: r.data, ms: r.ms };
  }

  /** Sentence pairs → token ids and type ids (truncated to `maxLength`), inline when small. */
  async text(
    pairs: { a: string; b: string | null }[],
    maxLength: number,
  ): Promise<{ encodings: TokenEncoding[]; ms: number }> {
    const chars = pairs.reduce((n, p) => n + p.a.length + (p.b?.length ?? 0), 0);
    const task = { kind: 'text' as const, pairs, maxLength };
    const r =
      chars <= this.opts.inlineTextChars ? runText(task) : ((await this.pool.run(task)) as TextResult);
    if (!r.ok) throw new PreprocessError(r.code, r.message);
    return { encodings: r.encodings, ms: r.ms };
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}
