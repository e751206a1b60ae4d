/**
 * The per-model request queue: bounded, FIFO within a priority level, entries that carry their own metadata
 * (payload, length for token budgets, enqueue time, deadline, abort signal, response settlement). An entry leaves
 * the queue in exactly one of three ways: taken into a batch, expired (deadline_exceeded), or cancelled
 * (client_cancelled); the queue settles the entry's promise for the last two itself, so a request whose client
 * has gone or whose deadline has passed never reaches the model.
 */
import { DEFAULT_RETRY_AFTER_S, ServeError } from '../observability/errors.js';

/** Time source, injectable so that tests can drive deadlines and delays by hand. Milliseconds, monotonic. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** What the batcher hands back for one entry. */
export interface EntryResult<R> {
  value: R;
  /** Milliseconds between enqueue and the start of the entry's batch. */
  queueMs: number;
  /** Milliseconds the batch took on the instance (collation, transfer, compute, split). */
  inferenceMs: number;
  /** Rows in the batch the entry ran in. */
  batchSize: number;
}

export type EntryState = 'queued' | 'running' | 'done';

export interface SubmitOptions {
  /** Absolute deadline on the queue's clock (ms). */
  deadline: number;
  /** Aborted when the client goes away: the entry is dropped if it is still queued. */
  signal?: AbortSignal;
  /** Lower runs first; FIFO within a level. Default 0. */
  priority?: number;
}

export interface QueueItem<P> {
  payload: P;
  /** Token count for token-budget policies (1 for images). */
  length: number;
}

let nextId = 1;

export class QueueEntry<P, R> {
  readonly id = nextId++;
  state: EntryState = 'queued';
  readonly promise: Promise<EntryResult<R>>;
  resolve!: (r: EntryResult<R>) => void;
  reject!: (e: unknown) => void;
  /** Set by the queue: deadline timer and abort listener to clean up. */
  timer: unknown = null;
  onAbort: (() => void) | null = null;

  constructor(
    readonly payload: P,
    readonly length: number,
    readonly priority: number,
    readonly enqueuedAt: number,
    readonly deadline: number,
    readonly signal: AbortSignal | undefined,
  ) {
    this.promise = new Promise<EntryResult<R>>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // Rejections are always observed by the submitter; this keeps an unobserved one from crashing the process.
    this.promise.catch(() => undefined);
  }
}

export interface QueueOptions {
  maxSize: number;
  clock?: Clock;
  /** Seconds a rejected client should wait (Retry-After of the 429). */
  retryAfterS?: number;
  /** Called when an entry leaves the queue by itself (expired or cancelled). */
  onDrop?: (reason: 'deadline_exceeded' | 'client_cancelled', entry: QueueEntry<unknown, unknown>) => void;
  /** Called whenever entries are added (the batcher wakes up). */
  onEnqueue?: () => void;
  /** A label for error messages (the model name). */
  name?: string;
}

export class RequestQueue<P, R> {
  /** Priority level → entries in FIFO order. Levels are kept sorted ascending. */
  private readonly levels = new Map<number, QueueEntry<P, R>[]>();
  private sortedLevels: number[] = [];
  private count = 0;
  readonly clock: Clock;

  constructor(private readonly opts: QueueOptions) {
    this.clock = opts.clock ?? systemClock;
  }

  get size(): number {
    return this.count;
  }

  get maxSize(): number {
    return this.opts.maxSize;
  }

  /**
   * Throws the queue's `rejected_queue_full` error (HTTP 429) when `n` more rows would not fit now: `push` checks
   * it, and a caller may ask first, before it spends work on rows it could not queue (an image decode).
   */
  checkRoom(n: number): void {
    if (this.count + n <= this.opts.maxSize) return;
    throw new ServeError(
      'rejected_queue_full',
      'queue_full',
      `${this.opts.name ? `model ${this.opts.name}` : 'the model'} is overloaded: its queue holds ${this.count} of ${this.opts.maxSize} requests, ${n} more asked for`,
      {
        retryAfterS: this.opts.retryAfterS ?? DEFAULT_RETRY_AFTER_S,
        details: { queue_size: this.count, max_queue_size: this.opts.maxSize },
      },
    );
  }

  /**
   * Enqueues all items or none: when the queue cannot hold them all, throws a `rejected_queue_full` error
   * (HTTP 429) immediately. Throws `deadline_exceeded` if the deadline has already passed and
   * `client_cancelled` if the signal is already aborted.
   */
  push(items: readonly QueueItem<P>[], opts: SubmitOptions): QueueEntry<P, R>[] {
    if (opts.signal?.aborted) throw cancelledError(this.opts.name);
    const now = this.clock.now();
    if (opts.deadline <= now) throw expiredError(this.opts.name);
    this.checkRoom(items.length);
    const priority = opts.priority ?? 0;
    const level = this.level(priority);
    const entries = items.map(
      (it) => new QueueEntry<P, R>(it.payload, it.length, priority, now, opts.deadline, opts.signal),
    );
    for (const e of entries) {
      level.push(e);
      this.count++;
      e.timer = this.clock.setTimeout(
        () => this.drop(e, 'deadline_exceeded'),
        Math.max(0, opts.deadline - now),
      );
      if (opts.signal) {
        e.onAbort = () => this.drop(e, 'client_cancelled');
        opts.signal.addEventListener('abort', e.onAbort, { once: true });
      }
    }
    this.opts.onEnqueue?.();
    return entries;
  }

  /** Live entries in service order: priority level ascending, FIFO within a level. */
  *ordered(): Generator<QueueEntry<P, R>> {
    for (const p of this.sortedLevels) yield* this.levels.get(p) ?? [];
  }

  /** The entry that is served next, if any. */
  head(): QueueEntry<P, R> | undefined {
    for (const p of this.sortedLevels) {
      const l = this.levels.get(p);
      if (l && l.length) return l[0];
    }
    return undefined;
  }

  /** Oldest enqueue time among queued entries (what the max-queue-delay timer waits on). */
  oldestEnqueuedAt(): number | undefined {
    let oldest: number | undefined;
    for (const l of this.levels.values())
      if (l.length && (oldest === undefined || l[0]!.enqueuedAt < oldest)) oldest = l[0]!.enqueuedAt;
    return oldest;
  }

  /** Removes the given entries (chosen by a policy from `ordered()`) and marks them running. */
  take(entries: readonly QueueEntry<P, R>[]): void {
    const chosen = new Set(entries);
    for (const [p, l] of this.levels) {
      const kept = l.filter((e) => !chosen.has(e));
      this.levels.set(p, kept);
    }
    for (const e of entries) {
      if (e.state !== 'queued') throw new Error(`queue: entry ${e.id} is ${e.state}, not queued`);
      this.detach(e);
      e.state = 'running';
      this.count--;
    }
    this.prune();
  }

  /** Rejects every queued entry with `err` (shutdown, unload). */
  clear(err: unknown): void {
    for (const e of [...this.ordered()]) {
      this.remove(e);
      e.state = 'done';
      e.reject(err);
    }
  }

  private level(priority: number): QueueEntry<P, R>[] {
    let l = this.levels.get(priority);
    if (!l) {
      l = [];
      this.levels.set(priority, l);
      this.sortedLevels = [...this.levels.keys()].sort((a, b) => a - b);
    }
    return l;
  }

  private prune(): void {
    let changed = false;
    for (const [p, l] of this.levels) {
      if (l.length === 0 && p !== 0) {
        this.levels.delete(p);
        changed = true;
      }
    }
    if (changed) this.sortedLevels = [...this.levels.keys()].sort((a, b) => a - b);
  }

  private detach(e: QueueEntry<P, R>): void {
    if (e.timer !== null) this.clock.clearTimeout(e.timer);
    e.timer = null;
    if (e.onAbort && e.signal) e.signal.removeEventListener('abort', e.onAbort);
    e.onAbort = null;
  }

  private remove(e: QueueEntry<P, R>): void {
    const l = this.levels.get(e.priority);
    const i = l ? l.indexOf(e) : -1;
    if (i < 0) return;
    l!.splice(i, 1);
    this.count--;
    this.detach(e);
    this.prune();
  }

  private drop(e: QueueEntry<P, R>, reason: 'deadline_exceeded' | 'client_cancelled'): void {
    if (e.state !== 'queued') return;
    this.remove(e);
    e.state = 'done';
    e.reject(reason === 'deadline_exceeded' ? expiredError(this.opts.name) : cancelledError(this.opts.name));
    this.opts.onDrop?.(reason, e as QueueEntry<unknown, unknown>);
  }
}

function expiredError(name?: string): ServeError {
  return new ServeError(
    'deadline_exceeded',
    'deadline_exceeded',
    `deadline exceeded while queued${name ? ` for model ${name}` : ''}`,
  );
}

function cancelledError(name?: string): ServeError {
  return new ServeError(
    'client_cancelled',
    'client_cancelled',
    `client went away before ${name ?? 'the model'} ran the request`,
  );
}
