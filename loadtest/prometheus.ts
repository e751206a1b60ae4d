/**
 * Reading padserve's Prometheus `/metrics` around a load point: parse the text format, and diff two scrapes into
 * what the point did on the server (batches, mean batch size per model, rejected requests, CPU seconds, RSS).
 */

/** One sample: metric name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function parseValue(raw: string): number {
  if (raw === '+Inf') return Infinity;
  if (raw === '-Inf') return -Infinity;
  return Number(raw);
}

function unescapeLabel(v: string): string {
  return v.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

/** Parses the Prometheus text exposition format (comments and malformed lines are skipped). */
export function parsePrometheus(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#')) continue;
    const m = LINE.exec(trimmed);
    if (!m) continue;
    const value = parseValue(m[4]!);
    if (Number.isNaN(value) && m[4] !== 'NaN') continue;
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? '').matchAll(LABEL)) labels[l[1]!] = unescapeLabel(l[2]!);
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}

export type Scrape = Sample[];

function matches(s: Sample, labels: Record<string, string>): boolean {
  return Object.entries(labels).every(([k, v]) => s.labels[k] === v);
}

/** Sum of the samples of a metric whose labels include `labels`. */
export function total(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  return scrape.filter((s) => s.name === name && matches(s, labels)).reduce((a, s) => a + s.value, 0);
}

/** The value of a single-sample metric (gauges like process_resident_memory_bytes), NaN when absent. */
export function gauge(scrape: Scrape, name: string): number {
  const s = scrape.find((x) => x.name === name);
  return s ? s.value : NaN;
}

/** Distinct values of a label on a metric. */
export function labelValues(scrape: Scrape, name: string, label: string): string[] {
  return [
    ...new Set(
      scrape.filter((s) => s.name === name && s.labels[label] !== undefined).map((s) => s.labels[label]!),
    ),
  ].sort();
}

export interface HistogramDelta {
  count: number;
  sum: number;
  mean: number;
  /** Cumulative bucket counts by upper bound (`le`), in the order of the bounds. */
  buckets: { le: number; count: number }[];
}

/** The change of a histogram between two scrapes (after − before), over the series matching `labels`. */
export function histogramDelta(
  before: Scrape,
  after: Scrape,
  name: string,
  labels: Record<string, string> = {},
): HistogramDelta {
  const count = total(after, `${name}_count`, labels) - total(before, `${name}_count`, labels);
  const sum = total(after, `${name}_sum`, labels) - total(before, `${name}_sum`, labels);
  const les = [
    ...new Set(
      after.filter((s) => s.name === `${name}_bucket` && matches(s, labels)).map((s) => s.labels.le!),
    ),
  ];
  const buckets = les
    .map((le) => ({
      le: parseValue(le),
      count:
        total(after, `${name}_bucket`, { ...labels, le }) -
        total(before, `${name}_bucket`, { ...labels, le }),
    }))
    .sort((a, b) => a.le - b.le);
  return { count, sum, mean: count > 0 ? sum / count : NaN, buckets };
}

/** Counter change (after − before) of the series matching `labels`. */
export function counterDelta(
  before: Scrape,
  after: Scrape,
  name: string,
  labels: Record<string, string> = {},
): number {
  return total(after, name, labels) - total(before, name, labels);
}

export const BATCH_HISTOGRAM = 'padserve_batch_size';

export interface ServerDelta {
  /** Mean rows per executed batch, per model (models that ran no batch are left out). */
  meanBatch: Record<string, number>;
  batches: Record<string, number>;
  /** Text models: mean padded sequence length of the computed rows (padded tokens / rows). */
  meanPaddedLength: Record<string, number>;
  cpuSeconds: number;
  rssMb: number;
  /** Requests by outcome as the server counted them. */
  outcomes: Record<string, number>;
}

export function serverDelta(before: Scrape, after: Scrape): ServerDelta {
  const meanBatch: Record<string, number> = {};
  const batches: Record<string, number> = {};
  for (const model of labelValues(after, `${BATCH_HISTOGRAM}_count`, 'model')) {
    const d = histogramDelta(before, after, BATCH_HISTOGRAM, { model });
    if (d.count > 0) {
      meanBatch[model] = d.mean;
      batches[model] = d.count;
    }
  }
  const meanPaddedLength: Record<string, number> = {};
  for (const model of labelValues(after, 'padserve_padded_tokens_total', 'model')) {
    const tokens = counterDelta(before, after, 'padserve_padded_tokens_total', { model });
    const rows = counterDelta(before, after, 'padserve_inference_rows_total', { model });
    if (tokens > 0 && rows > 0) meanPaddedLength[model] = tokens / rows;
  }
  const outcomes: Record<string, number> = {};
  for (const outcome of labelValues(after, 'padserve_requests_total', 'outcome')) {
    const n = counterDelta(before, after, 'padserve_requests_total', { outcome });
    if (n) outcomes[outcome] = n;
  }
  return {
    meanBatch,
    batches,
    meanPaddedLength,
    cpuSeconds: counterDelta(before, after, 'process_cpu_seconds_total'),
    rssMb: gauge(after, 'process_resident_memory_bytes') / 2 ** 20,
    outcomes,
  };
}

/** Mean batch size over all models of a delta (weighted by batches). */
export function overallMeanBatch(d: Pick<ServerDelta, 'meanBatch' | 'batches'>): number {
  let rows = 0;
  let n = 0;
  for (const [model, mean] of Object.entries(d.meanBatch)) {
    rows += mean * (d.batches[model] ?? 0);
    n += d.batches[model] ?? 0;
  }
  return n ? rows / n : NaN;
}

/** GET `<base>/metrics` and parse it; an empty scrape when the server has no metrics endpoint. */
export async function scrape(baseUrl: string, timeoutMs = 5000): Promise<Scrape> {
  try {
    const res = await fetch(new URL('/metrics', baseUrl), { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return [];
    return parsePrometheus(await res.text());
  } catch {
    return [];
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the server has no request in flight, nothing queued, and its process has gone (nearly) idle: a batch
 * whose clients have gone still runs to its end, and the next point must not pay for it. Returns the seconds
 * waited; gives up after maxS. A server without these metrics is not waited for.
 */
export async function settle(baseUrl: string, maxS = 60, idleCpuFraction = 0.2): Promise<number> {
  const t0 = performance.now();
  let prev: { cpu: number; at: number } | null = null;
  for (;;) {
    const s = await scrape(baseUrl);
    if (!s.length) return 0;
    const at = performance.now();
    const cpu = total(s, 'process_cpu_seconds_total');
    const busy = total(s, 'padserve_inflight_requests') + total(s, 'padserve_queue_depth');
    const idle = prev !== null && (cpu - prev.cpu) / ((at - prev.at) / 1000) < idleCpuFraction;
    const waited = (at - t0) / 1000;
    if ((busy <= 0 && idle) || waited > maxS) return waited;
    prev = { cpu, at };
    await sleep(250);
  }
}
