/**
 * How a batch runs over fixed-batch bucket graphs: the cheapest sequence of bucket runs that covers its rows,
 * each run padded with zero rows up to its bucket when the chunk is smaller. Pure; costs are per bucket run
 * (measured at warm-up by the repository, or modelled until then).
 *
 * Example with costs 1: 10, 2: 14, 4: 22, 8: 40 (ms): 3 rows → bucket 4 (22 < 14 + 10); 5 → 4 + 1 (32 < 40);
 * 7 → 8 (40 < 22 + 14 + 10); 11 → 8 + 4 (62).
 */

export interface RunChunk {
  /** First row of the batch this chunk holds. */
  start: number;
  rows: number;
  /** The bucket graph it runs on (≥ rows: padded), or null for a graph that takes any batch. */
  bucket: number | null;
}

/**
 * Costs before any measurement: a run of bucket b costs b + 1 row-equivalents (the work per row plus a fixed
 * per-run overhead, which is what makes padding 7 rows into 8 cheaper than 4 + 2 + 1).
 */
export function defaultBucketCosts(buckets: readonly number[]): Map<number, number> {
  return new Map(buckets.map((b) => [b, b + 1]));
}

/** Minimum-cost cover of `rows` by bucket runs (dynamic programming over row counts; ties: fewer runs). */
export function planBatch(rows: number, costs: ReadonlyMap<number, number>): RunChunk[] {
  if (!Number.isInteger(rows) || rows < 1)
    throw new RangeError(`rows must be a positive integer, got ${rows}`);
  const buckets = [...costs.keys()].sort((a, b) => b - a);
  if (!buckets.length) throw new RangeError('no buckets');
  const best = new Float64Array(rows + 1).fill(Infinity);
  const runs = new Int32Array(rows + 1);
  const choice = new Int32Array(rows + 1);
  best[0] = 0;
  for (let n = 1; n <= rows; n++) {
    for (const b of buckets) {
      const rest = Math.max(0, n - b);
      const cost = costs.get(b)! + best[rest]!;
      if (cost < best[n]! - 1e-9 || (Math.abs(cost - best[n]!) <= 1e-9 && runs[rest]! + 1 < runs[n]!)) {
        best[n] = cost;
        runs[n] = runs[rest]! + 1;
        choice[n] = b;
      }
    }
  }
  // Largest runs first, so the padded (partial) run, if any, is the last one.
  const sizes: number[] = [];
  for (let n = rows; n > 0; n = Math.max(0, n - choice[n]!)) sizes.push(choice[n]!);
  sizes.sort((a, b) => b - a);
  const chunks: RunChunk[] = [];
  let start = 0;
  for (const b of sizes) {
    const take = Math.min(b, rows - start);
    chunks.push({ start, rows: take, bucket: b });
    start += take;
  }
  return chunks;
}
