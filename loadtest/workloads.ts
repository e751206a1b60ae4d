/**
 * The request mixes of the scenarios: `classify` (multipart photo uploads of several sizes and formats) and
 * `glue` (sentence pairs of varied lengths for several tasks), as pre-built requests that autocannon rotates
 * through and the open-loop client cycles over.
 */
import type { RequestSpec } from './closed.js';
import { loadImageSet, multipartBody, multipartContentType, smallImage, type ImageFile } from './images.js';
import { glueRequests, isGlueTask, wordsOf } from './text.js';
import { LoadtestError } from './url.js';
import type { GlueTaskName } from '../src/preprocess/glue-tasks.js';

export const DEFAULT_GLUE_TASKS: readonly GlueTaskName[] = ['mnli', 'qqp', 'sst2', 'stsb'];

function withQuery(path: string, query: Record<string, string | undefined>): string {
  const q = Object.entries(query).filter(([, v]) => v !== undefined) as [string, string][];
  return q.length ? `${path}?${new URLSearchParams(q).toString()}` : path;
}

export function classifyRequest(image: ImageFile, model?: string): RequestSpec {
  return {
    method: 'POST',
    path: withQuery('/classify', { model }),
    headers: { 'content-type': multipartContentType() },
    body: multipartBody(image),
    label: `${image.name} ${image.width}×${image.height}`,
  };
}

export async function classifyRequests(
  opts: { model?: string; small?: boolean } = {},
): Promise<RequestSpec[]> {
  const images = opts.small ? [await smallImage()] : await loadImageSet();
  return images.map((img) => classifyRequest(img, opts.model));
}

export function parseTasks(list: string): GlueTaskName[] {
  const tasks = list
    .split(',')
    .map((t) => t.trim().toLowerCase())
    .filter(Boolean);
  const bad = tasks.filter((t) => !isGlueTask(t));
  if (bad.length || !tasks.length)
    throw new LoadtestError(`unknown GLUE task(s): ${bad.join(', ') || '(none)'}`);
  return tasks as GlueTaskName[];
}

export function glueRequestSpecs(
  opts: { tasks?: readonly GlueTaskName[]; count?: number; seed?: number; model?: string } = {},
): RequestSpec[] {
  const reqs = glueRequests(opts.tasks ?? DEFAULT_GLUE_TASKS, opts.count ?? 64, opts.seed ?? 42);
  return reqs.map((r) => ({
    method: 'POST',
    path: withQuery(`/glue/${r.task}`, { model: opts.model }),
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(r.body)),
    label: `${r.task} ${wordsOf(r.body)} words`,
  }));
}

export function describe(requests: readonly RequestSpec[]): string {
  const paths = [...new Set(requests.map((r) => r.path))];
  return `${requests[0]?.method ?? 'GET'} ${paths.join(', ')} (${requests.length} bodies)`;
}

export interface PrimeFailure {
  spec: RequestSpec;
  status: number;
  body: string;
}

export interface PrimeResult {
  failures: PrimeFailure[];
  /** Latency of each request (ms), sent one at a time. */
  latenciesMs: number[];
}

/**
 * Sends every distinct request once, one at a time, and waits (loads lazily loaded models, checks the routes
 * answer 2xx before any timing). Returns the failures.
 */
export async function prime(
  baseUrl: string,
  requests: readonly RequestSpec[],
  timeoutS = 600,
): Promise<PrimeResult> {
  const failures: PrimeFailure[] = [];
  const latenciesMs: number[] = [];
  for (const spec of requests) {
    const t0 = performance.now();
    const res = await fetch(new URL(spec.path, baseUrl), {
      method: spec.method,
      headers: spec.headers,
      ...(spec.body ? { body: new Uint8Array(spec.body) } : {}),
      signal: AbortSignal.timeout(timeoutS * 1000),
    });
    const body = await res.text();
    latenciesMs.push(performance.now() - t0);
    if (res.status < 200 || res.status >= 300)
      failures.push({ spec, status: res.status, body: body.slice(0, 300) });
  }
  return { failures, latenciesMs };
}

/** Up to `perPath` requests of each distinct path (all images, a couple of pairs per GLUE task). */
export function primeSample(requests: readonly RequestSpec[], perPath: number): RequestSpec[] {
  const seen = new Map<string, number>();
  return requests.filter((r) => {
    const n = seen.get(r.path) ?? 0;
    seen.set(r.path, n + 1);
    return n < perPath;
  });
}

/**
 * Primes (see prime) and throws on any failure. Returns the unloaded rate estimate (requests/s, from the median
 * sequential latency; the first request of a lazily loaded model does not skew it) for sizing the first points.
 */
export async function primeOrThrow(
  baseUrl: string,
  requests: readonly RequestSpec[],
  perPath = 16,
): Promise<number> {
  const { failures, latenciesMs } = await prime(baseUrl, primeSample(requests, perPath));
  if (failures.length) {
    const f = failures[0]!;
    throw new LoadtestError(
      `${failures.length}/${requests.length} requests failed before the load test, e.g. ${f.spec.method} ${f.spec.path} (${f.spec.label ?? ''}) → ${f.status} ${f.body}`,
    );
  }
  const sorted = [...latenciesMs].sort((a, b) => a - b);
  return 1000 / Math.max(0.1, sorted[Math.floor(sorted.length / 2)] ?? 1000);
}
