import { describe, expect, it } from 'vitest';
import { Batcher, type BatchExecutor, type BatcherOptions } from '../../src/batching/batcher.js';
import type { BatchEvent } from '../../src/observability/events.js';
import { CountPolicy, TokenBudgetPolicy } from '../../src/batching/policy.js';
import { RequestQueue, type Clock, type QueueEntry } from '../../src/batching/queue.js';
import { collateTokens, splitRows, type TokenRow } from '../../src/batching/collate.js';
import { ServeError } from '../../src/observability/errors.js';

/** A clock driven by hand: timers fire only when `advance` passes their time. */
class FakeClock implements Clock {
  t = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, x]) => x.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = due[1].at;
      due[1].fn();
    }
    this.t = end;
  }
  get pending(): number {
    return this.timers.size;
  }
}

const flush = () => new Promise((r) => setImmediate(r));

/** An executor whose batches the test completes by hand. */
function manualExecutor() {
  const calls: { payloads: number[]; resolve: (r: number[]) => void; reject: (e: unknown) => void }[] = [];
  const exec = (payloads: number[]) =>
    new Promise<number[]>((resolve, reject) => calls.push({ payloads, resolve, reject }));
  return { exec, calls };
}

/**
 * The batcher these tests drive: model 'm', a count policy of `maxBatchSize`, room for 100 queued, no queue delay
 * unless `more` sets one, on the hand-driven clock.
 */
function countBatcher(
  execs: BatchExecutor<number, number>[],
  clock: FakeClock,
  maxBatchSize: number,
  more: Partial<BatcherOptions> = {},
): Batcher<number, number> {
  return new Batcher<number, number>(execs, {
    name: 'm',
    policy: new CountPolicy(maxBatchSize),
    maxQueueSize: 100,
    maxQueueDelayMs: 0,
    clock,
    ...more,
  });
}

describe('RequestQueue', () => {
  it('is FIFO within a priority level and serves lower priority numbers first', () => {
    const q = new RequestQueue<string, string>({ maxSize: 10, clock: new FakeClock() });
    q.push([{ payload: 'a', length: 1 }], { deadline: 100 });
    q.push([{ payload: 'b', length: 1 }], { deadline: 100, priority: 1 });
    q.push([{ payload: 'c', length: 1 }], { deadline: 100 });
    q.push([{ payload: 'd', length: 1 }], { deadline: 100, priority: -1 });
    expect([...q.ordered()].map((e) => e.payload)).toEqual(['d', 'a', 'c', 'b']);
  });

  it('refuses a request that does not fit, all or nothing, with a 429 error', () => {
    const q = new RequestQueue<number, number>({ maxSize: 3, clock: new FakeClock(), retryAfterS: 2 });
    q.push(
      [
        { payload: 1, length: 1 },
        { payload: 2, length: 1 },
      ],
      { deadline: 100 },
    );
    let err: unknown;
    try {
      q.push(
        [
          { payload: 3, length: 1 },
          { payload: 4, length: 1 },
        ],
        { deadline: 100 },
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ServeError);
    expect((err as ServeError).status).toBe(429);
    expect((err as ServeError).reason).toBe('rejected_queue_full');
    expect((err as ServeError).retryAfterS).toBe(2);
    expect(q.size).toBe(2);
  });

  it('drops an entry at its deadline and when its client aborts, before anything runs it', async () => {
    const clock = new FakeClock();
    const drops: string[] = [];
    const q = new RequestQueue<number, number>({ maxSize: 10, clock, onDrop: (r) => drops.push(r) });
    const ac = new AbortController();
    const [a] = q.push([{ payload: 1, length: 1 }], { deadline: 50 });
    const [b] = q.push([{ payload: 2, length: 1 }], { deadline: 1000, signal: ac.signal });
    const [c] = q.push([{ payload: 3, length: 1 }], { deadline: 1000 });
    clock.advance(60);
    await expect(a!.promise).rejects.toMatchObject({ reason: 'deadline_exceeded', status: 504 });
    ac.abort();
    await expect(b!.promise).rejects.toMatchObject({ reason: 'client_cancelled' });
    expect(drops).toEqual(['deadline_exceeded', 'client_cancelled']);
    expect([...q.ordered()]).toEqual([c]);
    expect(q.size).toBe(1);
  });

  it('rejects at once when the signal is already aborted or the deadline passed', () => {
    const clock = new FakeClock();
    clock.t = 10;
    const q = new RequestQueue<number, number>({ maxSize: 10, clock });
    const ac = new AbortController();
    ac.abort();
    expect(() => q.push([{ payload: 1, length: 1 }], { deadline: 100, signal: ac.signal })).toThrow(
      /client went away/,
    );
    expect(() => q.push([{ payload: 1, length: 1 }], { deadline: 10 })).toThrow(/deadline/);
  });

  it('clears its timers and listeners when entries are taken', () => {
    const clock = new FakeClock();
    const q = new RequestQueue<number, number>({ maxSize: 10, clock });
    const ac = new AbortController();
    const entries = q.push([{ payload: 1, length: 1 }], { deadline: 100, signal: ac.signal });
    expect(clock.pending).toBe(1);
    q.take(entries);
    expect(clock.pending).toBe(0);
    ac.abort(); // no effect on a running entry
    expect(entries[0]!.state).toBe('running');
  });
});

describe('policies', () => {
  const entries = (lengths: number[]) => {
    const q = new RequestQueue<number, number>({ maxSize: 100, clock: new FakeClock() });
    lengths.forEach((l, i) => q.push([{ payload: i, length: l }], { deadline: 1e9 }));
    return [...q.ordered()] as QueueEntry<number, number>[];
  };

  it('count: up to max_batch_size, full only when it reaches it', () => {
    const p = new CountPolicy(4);
    expect(p.select(entries([1, 1, 1])).entries.length).toBe(3);
    expect(p.select(entries([1, 1, 1])).full).toBe(false);
    const s = p.select(entries([1, 1, 1, 1, 1, 1]));
    expect(s.entries.map((e) => e.payload)).toEqual([0, 1, 2, 3]);
    expect(s.full).toBe(true);
    expect(p.shapes().map((x) => x.rows)).toEqual([1, 2, 3, 4]);
  });

  it('count with buckets: a count between buckets is rounded down to the full smaller bucket', () => {
    const p = new CountPolicy(8, [1, 2, 4, 8]);
    const sizes = [1, 2, 3, 4, 5, 7, 8, 9].map((n) => {
      const s = p.select(entries(Array<number>(n).fill(1)));
      return [s.entries.length, s.full];
    });
    expect(sizes).toEqual([
      [1, false],
      [2, false],
      [2, false],
      [4, false],
      [4, false],
      [4, false],
      [8, true],
      [8, true],
    ]);
    // Service order is kept: the rounded-down batch is the head of the queue.
    expect(p.select(entries([1, 1, 1])).entries.map((e) => e.payload)).toEqual([0, 1]);
    // Buckets beyond max_batch_size are ignored; between the largest bucket and the maximum, all go.
    const q = new CountPolicy(6, [1, 2, 4, 8]);
    expect(q.buckets).toEqual([1, 2, 4]);
    expect(q.select(entries(Array<number>(6).fill(1))).entries.length).toBe(6);
    expect(q.select(entries(Array<number>(5).fill(1))).entries.length).toBe(4);
    // The per-sample form (one bucket, 1) batches as if it had none.
    const perSample = new CountPolicy(8, [1]);
    expect(perSample.select(entries(Array<number>(5).fill(1))).entries.length).toBe(5);
  });

  it('tokens: padded cost bucket(longest) × rows stays within the budget; the head always goes in', () => {
    const p = new TokenBudgetPolicy({ maxBatchSize: 8, maxBatchTokens: 128, buckets: [16, 32, 64] });
    expect(p.bucketOf(1)).toBe(16);
    expect(p.bucketOf(17)).toBe(32);
    expect(() => p.bucketOf(65)).toThrow(RangeError);
    // 4 short (bucket 16) then a long one (64): 5 rows at 64 = 320 > 128, so the long one waits
    const s = p.select(entries([10, 12, 9, 14, 60, 8]));
    expect(s.entries.map((e) => e.payload)).toEqual([0, 1, 2, 3, 5]);
    expect(s.paddedLength).toBe(16);
    expect(s.full).toBe(true);
    // head long: 2 rows of 64 fit, a third does not
    const t = p.select(entries([60, 10, 10, 10]));
    expect(t.entries.map((e) => e.payload)).toEqual([0, 1]);
    expect(t.paddedLength).toBe(64);
    expect(t.entries.length * t.paddedLength).toBeLessThanOrEqual(128);
  });

  it('tokens: never exceeds the budget nor max_batch_size, for random queues', () => {
    const p = new TokenBudgetPolicy({ maxBatchSize: 6, maxBatchTokens: 256, buckets: [8, 16, 32, 64, 128] });
    let seed = 7;
    const rnd = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let trial = 0; trial < 200; trial++) {
      const lens = Array.from({ length: 1 + Math.floor(rnd() * 20) }, () => 1 + Math.floor(rnd() * 128));
      const s = p.select(entries(lens));
      expect(s.entries.length).toBeGreaterThan(0);
      expect(s.entries[0]!.payload).toBe(0);
      expect(s.entries.length).toBeLessThanOrEqual(6);
      expect(s.entries.length * s.paddedLength).toBeLessThanOrEqual(256);
      expect(Math.max(...s.entries.map((e) => e.length))).toBeLessThanOrEqual(s.paddedLength);
    }
  });
});

describe('Batcher', () => {
  it('dispatches at once when free and batches what arrives while busy (pipeline depth 1)', async () => {
    const clock = new FakeClock();
    const { exec, calls } = manualExecutor();
    const b = countBatcher([exec], clock, 4);
    const first = b.submit([{ payload: 1, length: 1 }], { deadline: 1e9 });
    expect(calls.length).toBe(1);
    const rest = [2, 3, 4, 5, 6].map((x) => b.submit([{ payload: x, length: 1 }], { deadline: 1e9 }));
    expect(calls.length).toBe(1); // busy: the next batch forms
    expect(b.depth).toBe(5);
    calls[0]!.resolve([10]);
    expect((await first)[0]!.value).toBe(10);
    await flush();
    expect(calls.length).toBe(2);
    expect(calls[1]!.payloads).toEqual([2, 3, 4, 5]);
    calls[1]!.resolve([20, 30, 40, 50]);
    await flush();
    expect(calls[2]!.payloads).toEqual([6]);
    calls[2]!.resolve([60]);
    const values = (await Promise.all(rest)).map((r) => r[0]!.value);
    expect(values).toEqual([20, 30, 40, 50, 60]);
    expect((await rest[1]!)[0]!.batchSize).toBe(4);
  });

  it('holds a partial batch for max_queue_delay_ms, and sends a full one at once', async () => {
    const clock = new FakeClock();
    const { exec, calls } = manualExecutor();
    const b = countBatcher([exec], clock, 3, { maxQueueDelayMs: 10 });
    void b.submit([{ payload: 1, length: 1 }], { deadline: 1e9 });
    clock.advance(5);
    void b.submit([{ payload: 2, length: 1 }], { deadline: 1e9 });
    expect(calls.length).toBe(0);
    clock.advance(5); // the oldest has waited 10 ms
    expect(calls.length).toBe(1);
    expect(calls[0]!.payloads).toEqual([1, 2]);
    calls[0]!.resolve([1, 2]);
    await flush();
    void b.submit(
      [
        { payload: 3, length: 1 },
        { payload: 4, length: 1 },
        { payload: 5, length: 1 },
      ],
      { deadline: 1e9 },
    );
    expect(calls.length).toBe(2); // full: no waiting
    expect(calls[1]!.payloads).toEqual([3, 4, 5]);
  });

  it('routes results back by position and fails the whole batch on a row-count mismatch', async () => {
    const clock = new FakeClock();
    const { exec, calls } = manualExecutor();
    const b = countBatcher([exec], clock, 8);
    const p = b.submit([{ payload: 1, length: 1 }], { deadline: 1e9 });
    calls[0]!.resolve([1, 2]);
    await expect(p).rejects.toMatchObject({ code: 'batch_result_mismatch', status: 500 });
  });

  it('uses every instance: two executors run two batches at the same time', async () => {
    const clock = new FakeClock();
    const a = manualExecutor();
    const c = manualExecutor();
    const events: BatchEvent[] = [];
    const b = countBatcher([a.exec, c.exec], clock, 2, { onBatch: (e) => events.push(e) });
    const ps = [1, 2, 3].map((x) => b.submit([{ payload: x, length: 1 }], { deadline: 1e9 }));
    expect(a.calls.length + c.calls.length).toBe(2);
    a.calls[0]!.resolve(a.calls[0]!.payloads.map((x) => x * 10));
    await flush();
    c.calls[0]!.resolve(c.calls[0]!.payloads.map((x) => x * 10));
    if (a.calls[1]) a.calls[1].resolve(a.calls[1].payloads.map((x) => x * 10));
    await flush();
    if (c.calls[1]) c.calls[1].resolve(c.calls[1].payloads.map((x) => x * 10));
    expect((await Promise.all(ps)).map((r) => r[0]!.value)).toEqual([10, 20, 30]);
    expect(events.every((e) => e.ok)).toBe(true);
  });

  it('never runs a cancelled or expired entry, and close() fails what is queued', async () => {
    const clock = new FakeClock();
    const { exec, calls } = manualExecutor();
    const b = countBatcher([exec], clock, 8);
    const busy = b.submit([{ payload: 0, length: 1 }], { deadline: 1e9 });
    const ac = new AbortController();
    const cancelled = b.submit([{ payload: 1, length: 1 }], { deadline: 1e9, signal: ac.signal });
    const expired = b.submit([{ payload: 2, length: 1 }], { deadline: 5 });
    const kept = b.submit([{ payload: 3, length: 1 }], { deadline: 1e9 });
    ac.abort();
    clock.advance(10);
    await expect(cancelled).rejects.toMatchObject({ reason: 'client_cancelled' });
    await expect(expired).rejects.toMatchObject({ reason: 'deadline_exceeded' });
    calls[0]!.resolve([0]);
    await busy;
    await flush();
    expect(calls[1]!.payloads).toEqual([3]);
    const late = b.submit([{ payload: 4, length: 1 }], { deadline: 1e9 });
    b.close(new ServeError('not_ready', 'model_unloaded', 'gone'));
    await expect(late).rejects.toMatchObject({ code: 'model_unloaded' });
    calls[1]!.resolve([3]);
    expect((await kept)[0]!.value).toBe(3);
    await b.idle();
  });
});

describe('collation', () => {
  it('pads token rows to the batch length with mask 0 and splits outputs into owned rows', () => {
    const row = (ids: number[]): TokenRow => ({
      kind: 'tokens',
      ids: BigInt64Array.from(ids.map(BigInt)),
      mask: new BigInt64Array(ids.length).fill(1n),
      types: new BigInt64Array(ids.length),
    });
    const feeds = collateTokens([row([101, 7, 102]), row([101, 102])], 4, [
      { name: 'input_ids', dtype: 'int64', shape: ['batch', 'sequence'] },
      { name: 'attention_mask', dtype: 'int64', shape: ['batch', 'sequence'] },
    ]);
    expect(feeds.input_ids!.shape).toEqual([2, 4]);
    expect(Array.from(feeds.input_ids!.data as BigInt64Array)).toEqual([
      101n,
      7n,
      102n,
      0n,
      101n,
      102n,
      0n,
      0n,
    ]);
    expect(Array.from(feeds.attention_mask!.data as BigInt64Array)).toEqual([1n, 1n, 1n, 0n, 1n, 1n, 0n, 0n]);
    const rows = splitRows(
      { logits: { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) } },
      2,
    );
    expect(Array.from(rows[1]!.logits!.data)).toEqual([4, 5, 6]);
    expect(rows[1]!.logits!.data.buffer).not.toBe(rows[0]!.logits!.data.buffer);
  });
});
