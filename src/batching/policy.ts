/**
 * Which queued entries form the next batch. Two policies:
 * - `CountPolicy` (images): up to `maxBatchSize` entries, in service order; with the model's bucket sizes (fixed-
 *   batch graphs), a count between buckets is rounded down to the largest bucket that it fills, and the rest
 *   waits for the next batch (which forms while this one runs) instead of being padded: full buckets when the
 *   queue allows. Such a batch is not `full`, so max_queue_delay_ms still lets the queue grow first.
 * - `TokenBudgetPolicy` (BERT): entries are padded to a length bucket; a batch's cost is
 *   bucket(longest) × rows and must stay within `maxBatchTokens` (and rows within `maxBatchSize`). The queue's
 *   head always goes in (so nothing starves), then later entries are added in service order while the budget
 *   holds; an entry that does not fit is skipped for this batch, not dropped.
 *
 * `full` says whether waiting longer could make the batch any bigger: when false, the batcher may hold the batch
 * back for up to `max_queue_delay_ms`.
 */
import type { QueueEntry } from './queue.js';

export interface Selection<P, R> {
  entries: QueueEntry<P, R>[];
  /** True when the batch is as large as the limits allow (send now); false when more entries would fit. */
  full: boolean;
  /** Padded length (token policy) or 0 (count policy). */
  paddedLength: number;
}

export interface BatchPolicy {
  readonly kind: 'count' | 'tokens';
  readonly maxBatchSize: number;
  select<P, R>(ordered: Iterable<QueueEntry<P, R>>): Selection<P, R>;
  /** Every batch shape [rows, paddedLength] this policy can produce (what warmup must cover). */
  shapes(): { rows: number; length: number }[];
}

export class CountPolicy implements BatchPolicy {
  readonly kind = 'count';
  /** Bucket sizes within maxBatchSize, ascending (empty: any count is as good as another). */
  readonly buckets: readonly number[];

  constructor(
    readonly maxBatchSize: number,
    buckets: readonly number[] = [],
  ) {
    if (!Number.isInteger(maxBatchSize) || maxBatchSize < 1)
      throw new RangeError(`max_batch_size must be ≥ 1, got ${maxBatchSize}`);
    // One bucket (the per-sample form) never pads: nothing to round to.
    const within = [...buckets].filter((b) => b <= maxBatchSize).sort((a, b) => a - b);
    this.buckets = within.length > 1 ? within : [];
  }

  select<P, R>(ordered: Iterable<QueueEntry<P, R>>): Selection<P, R> {
    const entries: QueueEntry<P, R>[] = [];
    for (const e of ordered) {
      if (entries.length === this.maxBatchSize) break;
      entries.push(e);
    }
    const fits = this.buckets.filter((b) => b <= entries.length);
    const bucket = fits[fits.length - 1];
    if (bucket !== undefined && bucket < entries.length && entries.length < this.maxBatchSize) {
      // Between two buckets: the full smaller one rather than padding up to the larger one. Not `full`: the batcher
      // may still hold it for max_queue_delay_ms in case the queue fills the larger bucket.
      return { entries: entries.slice(0, bucket), full: false, paddedLength: 0 };
    }
    return { entries, full: entries.length === this.maxBatchSize, paddedLength: 0 };
  }

  shapes(): { rows: number; length: number }[] {
    return Array.from({ length: this.maxBatchSize }, (_, i) => ({ rows: i + 1, length: 0 }));
  }
}

export interface TokenBudgetOptions {
  maxBatchSize: number;
  /** Padded tokens per batch: bucket(longest) × rows ≤ maxBatchTokens. */
  maxBatchTokens: number;
  /** Ascending sequence lengths entries are padded to; the last one is the longest accepted input. */
  buckets: readonly number[];
}

export class TokenBudgetPolicy implements BatchPolicy {
  readonly kind = 'tokens';
  readonly maxBatchSize: number;
  readonly maxBatchTokens: number;
  readonly buckets: readonly number[];

  constructor(opts: TokenBudgetOptions) {
    const b = [...opts.buckets];
    if (!b.length || b.some((x, i) => !Number.isInteger(x) || x < 1 || (i > 0 && x <= b[i - 1]!))) {
      throw new RangeError(`length buckets must be ascending positive integers, got [${b.join(', ')}]`);
    }
    if (!Number.isInteger(opts.maxBatchSize) || opts.maxBatchSize < 1)
      throw new RangeError(`max_batch_size must be ≥ 1, got ${opts.maxBatchSize}`);
    if (!Number.isInteger(opts.maxBatchTokens) || opts.maxBatchTokens < b[b.length - 1]!) {
      throw new RangeError(
        `max_batch_tokens (${opts.maxBatchTokens}) must hold at least one sequence of the longest bucket (${b[b.length - 1]})`,
      );
    }
    this.maxBatchSize = opts.maxBatchSize;
    this.maxBatchTokens = opts.maxBatchTokens;
    this.buckets = b;
  }

  /** The longest sequence accepted (the last bucket). */
  get maxLength(): number {
    return this.buckets[this.buckets.length - 1]!;
  }

  /** The padded length for a sequence of `length` tokens. */
  bucketOf(length: number): number {
    for (const b of this.buckets) if (length <= b) return b;
    throw new RangeError(
      `sequence of ${length} tokens is longer than the longest bucket (${this.maxLength})`,
    );
  }

  /** Most rows a batch padded to `bucket` may hold. */
  rowsFor(bucket: number): number {
    return Math.max(1, Math.min(this.maxBatchSize, Math.floor(this.maxBatchTokens / bucket)));
  }

  select<P, R>(ordered: Iterable<QueueEntry<P, R>>): Selection<P, R> {
    const entries: QueueEntry<P, R>[] = [];
    let padded = 0;
    let skipped = false;
    for (const e of ordered) {
      const b = Math.max(padded, this.bucketOf(e.length));
      if (entries.length && entries.length + 1 > this.rowsFor(b)) {
        skipped = true;
        if (entries.length >= this.rowsFor(padded)) break;
        continue;
      }
      entries.push(e);
      padded = b;
      if (entries.length >= this.rowsFor(padded)) break;
    }
    return {
      entries,
      full: skipped || (entries.length > 0 && entries.length >= this.rowsFor(padded)),
      paddedLength: padded,
    };
  }

  shapes(): { rows: number; length: number }[] {
    const out: { rows: number; length: number }[] = [];
    for (const b of this.buckets) for (let r = 1; r <= this.rowsFor(b); r++) out.push({ rows: r, length: b });
    return out;
  }
}
