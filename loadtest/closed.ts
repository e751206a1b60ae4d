/**
 * Closed loop: `connections` clients each keep one request in flight (autocannon's programmatic API, bodies as
 * Buffers, rotating through the pre-built requests). Latency and status are recorded per response from
 * autocannon's `response` events, so any percentile can be computed and nothing depends on its histograms.
 */
import autocannon, { type AutocannonRequest } from 'autocannon';

export interface RequestSpec {
  method: 'GET' | 'POST';
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
  /** What the request is, for reports ("coffee.jpg", "mnli 31 words"). */
  label?: string;
}

/** What one load run saw, before it is combined with the server's side into a Point. */
export interface RawRun {
  /** Latencies (ms) of 2xx responses. */
  latenciesMs: number[];
  status: Record<string, number>;
  /** Transport errors and timeouts. */
  errors: number;
  sent: number;
  wallS: number;
  clientCpuS: number;
}

export interface ClosedOptions {
  baseUrl: string;
  requests: readonly RequestSpec[];
  connections: number;
  durationS: number;
  /** Per-request timeout (s). */
  timeoutS?: number;
}

export function toAutocannonRequests(requests: readonly RequestSpec[]): AutocannonRequest[] {
  if (!requests.length) throw new Error('no requests to send');
  return requests.map((r) => ({
    method: r.method,
    path: r.path,
    headers: { ...r.headers },
    ...(r.body ? { body: r.body } : {}),
  }));
}

function cpuSeconds(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return (d.user + d.system) / 1e6;
}

export interface Window {
  /** Seconds of load before the measurement window opens (the pipeline fills: steady state). */
  warmupS: number;
  /** Seconds of the measurement window. */
  durationS: number;
  /** Called as the window opens and closes (the server-side scrape), while the load keeps running. */
  onOpen?: () => Promise<void>;
  onClose?: () => Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One or several closed loops (the mixed scenario) under a single measurement window: the connections run
 * through warmup and window without a break, and only responses that *complete inside the window* count, so a
 * slow server is measured in steady state instead of while its queue fills. The loops stop when the window
 * closes (their in-flight requests are abandoned; padserve drops queued ones whose client has gone).
 */
export async function runClosedWindow(
  runs: readonly Omit<ClosedOptions, 'durationS'>[],
  w: Window,
): Promise<RawRun[]> {
  let counting = w.warmupS <= 0;
  const records = runs.map(() => ({
    latenciesMs: [] as number[],
    status: {} as Record<string, number>,
    errors: 0,
  }));
  const total = w.warmupS + w.durationS;
  const instances = runs.map((opts, i) => {
    const rec = records[i]!;
    const instance = autocannon({
      url: opts.baseUrl,
      connections: opts.connections,
      // Stopped explicitly when the window closes; the margin only bounds a stuck run.
      duration: Math.ceil(total + 60),
      timeout: opts.timeoutS ?? 30,
      requests: toAutocannonRequests(opts.requests),
      sampleInt: 200,
    });
    instance.on(
      'response',
      (_client: unknown, statusCode: number, _bytes: number, responseTimeMs: number) => {
        if (!counting) return;
        rec.status[statusCode] = (rec.status[statusCode] ?? 0) + 1;
        if (statusCode >= 200 && statusCode < 300) rec.latenciesMs.push(responseTimeMs);
      },
    );
    instance.on('reqError', () => {
      if (counting) rec.errors++;
    });
    return instance;
  });
  const finished = Promise.all(instances.map((i) => Promise.resolve(i)));
  if (w.warmupS > 0) await sleep(w.warmupS * 1000);
  await w.onOpen?.();
  counting = true;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(w.durationS * 1000);
  counting = false;
  const wallS = (performance.now() - t0) / 1000;
  const clientCpuS = cpuSeconds(cpu0);
  await w.onClose?.();
  for (const i of instances) i.stop();
  await finished;
  return records.map((r) => {
    const answered = Object.values(r.status).reduce((a, b) => a + b, 0);
    return { ...r, sent: answered + r.errors, wallS, clientCpuS };
  });
}
