/**
 * The micro-batcher of one model version: a pull-when-free loop over a `RequestQueue`.
 *
 * Each model instance is an executor slot. When a slot is free and the queue is not empty, the policy picks the
 * next batch; if the batch is not yet full and its oldest entry has waited less than `maxQueueDelayMs`, the
 * batcher waits (one timer) for more requests, otherwise it dispatches at once. While a batch runs, the next one
 * forms in the queue (pipeline depth 1 per instance). With `maxQueueDelayMs = 0` this is TEI's timer-less loop;
 * with a delay it is Triton's dynamic batcher.
 *
 * Results are matched to entries by position; an executor that returns the wrong number of rows fails the
 * whole batch (never a silent mismatch).
 */
import { ServeError } from '../observability/errors.js';
import type { BatchEvent } from '../observability/events.js';
import type { BatchPolicy } from './policy.js';
import {
  RequestQueue,
  type Clock,
  type EntryResult,
  type QueueEntry,
  type QueueItem,
  type SubmitOptions,
} from './queue.js';

/** Runs one batch on one model instance; returns one result per payload, in order. */
export type BatchExecutor<P, R> = (payloads: P[], paddedLength: number) => Promise<R[]>;

export interface BatcherOptions {
  name: string;
  policy: BatchPolicy;
  maxQueueSize: number;
  maxQueueDelayMs: number;
  clock?: Clock;
  retryAfterS?: number;
  /** Metrics hooks: a batch finished; an entry was dropped from the queue; the queue depth changed. */
  onBatch?: (e: BatchEvent) => void;
  onDrop?: (reason: 'deadline_exceeded' | 'client_cancelled') => void;
  onDepth?: (depth: number) => void;
}

export class Batcher<P, R> {
  readonly queue: RequestQueue<P, R>;
  private readonly free: BatchExecutor<P, R>[];
  private running = 0;
  private timer: unknown = null;
  private timerAt = Infinity;
  private closed: ServeError | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(
    executors: BatchExecutor<P, R>[],
    private readonly opts: BatcherOptions,
  ) {
    if (!executors.length) throw new RangeError('a batcher needs at least one executor');
    this.free = [...executors];
    this.queue = new RequestQueue<P, R>({
      maxSize: opts.maxQueueSize,
      clock: opts.clock,
      retryAfterS: opts.retryAfterS,
      name: opts.name,
      onEnqueue: () => this.pump(),
      onDrop: (reason) => {
        opts.onDrop?.(reason);
        this.depthChanged();
        this.checkIdle();
      },
    });
  }

  get policy(): BatchPolicy {
    return this.opts.policy;
  }

  /** Requests in the queue (not counting running batches). */
  get depth(): number {
    return this.queue.size;
  }

  /** Capacity of the queue (rows). */
  get maxDepth(): number {
    return this.queue.maxSize;
  }

  /** Refuses (the queue's own 429 `queue_full`) when `rows` more would not fit in the queue now. */
  admit(rows: number): void {
    this.queue.checkRoom(rows);
  }

  /** Batches running now. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Queues the items as one request (all or none, see `RequestQueue.push`) and resolves with their results in
   * order. Rejects with the first failure of any item.
   */
  submit(items: readonly QueueItem<P>[], opts: SubmitOptions): Promise<EntryResult<R>[]> {
    if (this.closed) return Promise.reject(this.closed);
    const entries = this.queue.push(items, opts);
    this.depthChanged();
    return Promise.all(entries.map((e) => e.promise));
  }

  /**
   * Stops taking requests: new submits and everything still queued fail with `err`; running batches finish.
   * Use `idle()` to wait for them.
   */
  close(err: ServeError): void {
    this.closed = err;
    this.clearTimer();
    this.queue.clear(err);
    this.depthChanged();
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (this.running === 0 && this.queue.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    const clock = this.queue.clock;
    while (this.free.length && this.queue.size) {
      const sel = this.opts.policy.select(this.queue.ordered());
      if (!sel.entries.length) break;
      if (!sel.full && this.opts.maxQueueDelayMs > 0) {
        const releaseAt = (this.queue.oldestEnqueuedAt() ?? clock.now()) + this.opts.maxQueueDelayMs;
        if (clock.now() < releaseAt) {
          this.armTimer(releaseAt);
          break;
        }
      }
      this.clearTimer();
      this.queue.take(sel.entries);
      this.depthChanged();
      void this.dispatch(this.free.shift()!, sel.entries, sel.paddedLength);
    }
    this.checkIdle();
  }

  private async dispatch(
    exec: BatchExecutor<P, R>,
    entries: QueueEntry<P, R>[],
    paddedLength: number,
  ): Promise<void> {
    this.running++;
    const clock = this.queue.clock;
    const start = clock.now();
    const queueMs = entries.map((e) => start - e.enqueuedAt);
    let ok = false;
    try {
      const results = await exec(
        entries.map((e) => e.payload),
        paddedLength,
      );
      if (results.length !== entries.length) {
        throw new ServeError(
          'internal',
          'batch_result_mismatch',
          `model ${this.opts.name} returned ${results.length} results for a batch of ${entries.length}`,
        );
      }
      const inferenceMs = clock.now() - start;
      entries.forEach((e, i) => {
        e.state = 'done';
        e.resolve({ value: results[i]!, queueMs: queueMs[i]!, inferenceMs, batchSize: entries.length });
      });
      ok = true;
    } catch (err) {
      for (const e of entries) {
        e.state = 'done';
        e.reject(err);
      }
    } finally {
      this.running--;
      this.free.push(exec);
      this.opts.onBatch?.({
        size: entries.length,
        paddedLength,
        queueMs,
        inferenceMs: clock.now() - start,
        ok,
      });
      if (this.closed) this.checkIdle();
      else this.pump();
    }
  }

  private armTimer(at: number): void {
    if (this.timer !== null && this.timerAt <= at) return;
    this.clearTimer();
    const clock = this.queue.clock;
    this.timerAt = at;
    this.timer = clock.setTimeout(
      () => {
        this.timer = null;
        this.timerAt = Infinity;
        this.pump();
      },
      Math.max(0, at - clock.now()),
    );
  }

  private clearTimer(): void {
    if (this.timer !== null) this.queue.clock.clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private depthChanged(): void {
    this.opts.onDepth?.(this.queue.size);
  }

  private checkIdle(): void {
    if (this.running === 0 && this.queue.size === 0 && this.idleWaiters.length) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
