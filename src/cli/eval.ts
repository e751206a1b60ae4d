/**
 * `padserve eval <model> <folder>`: accuracy through the HTTP server. Posts every image of a folder named
 * `<index>_<label>.<ext>` (e.g. `0029_0.png`) to `POST /classify?model=<model>` with `--concurrency` requests in
 * flight, and reports accuracy, throughput (images/s, from the first request to the last response) and the
 * confusion matrix (a text table, or everything as JSON with `--json`). The server is the one at `--url`
 * (loopback only), or, without `--url`, one started here on a free loopback port over `--model-repository`.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CliError, floatOption, intOption, parse } from './args.js';
import {
  confusionTable,
  imageMimeType,
  listLabelledImages,
  score,
  type GoldenResult,
  type Prediction,
} from '../repository/golden.js';

const USAGE = `usage: padserve eval <model> <folder> [options]

  <folder>                 labelled images named <index>_<label>.<ext> (e.g. 0029_0.png), label = a model label
  --url URL                a running server (loopback only, e.g. http://127.0.0.1:8080)
  --model-repository DIR   without --url: start a server over DIR on a free loopback port for the run
  --concurrency N          requests in flight (default 8)
  --limit N                only the first N images (by index)
  --min-accuracy X         exit with status 1 when the accuracy is below X (0..1)
  --json                   print the whole result as JSON (confusion matrix, per class, misclassified)`;

/** Hosts a URL may name: loopback only (eval posts a whole data set; it is not a load generator for others). */
export function checkLoopbackUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`--url ${text}: not a URL`, 2);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new CliError(`--url ${text}: expected http(s)://`, 2);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const loopback = host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!loopback) throw new CliError(`--url ${text}: only loopback servers (127.0.0.0/8, ::1, localhost)`, 2);
  return url;
}

export interface EvalResult extends GoldenResult {
  model: string;
  version: string | null;
  url: string;
  concurrency: number;
  seconds: number;
  images_per_second: number;
  skipped: string[];
}

export interface EvalOptions {
  url: string;
  model: string;
  folder: string;
  concurrency: number;
  limit?: number;
  /** Give up retrying a 503 / 429 after this long (ms). */
  retryForMs?: number;
}

interface ClassifyResponse {
  version: string;
  predictions: { label: string; index: number; score: number }[];
}

async function classify(
  base: string,
  model: string,
  bytes: Buffer,
  type: string,
  retryForMs: number,
): Promise<ClassifyResponse> {
  const end = Date.now() + retryForMs;
  const target = `${base.replace(/\/$/, '')}/classify?model=${encodeURIComponent(model)}&top_k=1`;
  for (;;) {
    const res = await fetch(target, {
      method: 'POST',
      body: new Uint8Array(bytes),
      headers: { 'content-type': type },
    });
    if (res.ok) return (await res.json()) as ClassifyResponse;
    const body = await res.text();
    if ((res.status === 503 || res.status === 429) && Date.now() < end) {
      const after = Number(res.headers.get('retry-after') ?? '1');
      await new Promise((r) => setTimeout(r, Math.min(2000, Math.max(50, after * 1000))));
      continue;
    }
    let why = body;
    try {
      const j = JSON.parse(body) as { code?: string; error?: string };
      why = `${j.code ?? res.status}: ${j.error ?? body}`;
    } catch {
      /* not JSON */
    }
    throw new Error(`HTTP ${res.status} ${why}`);
  }
}

/** Posts the folder to a running server and scores the answers. */
export async function evaluate(opts: EvalOptions): Promise<EvalResult> {
  const { images: all, skipped } = listLabelledImages(opts.folder);
  const images = opts.limit ? all.slice(0, opts.limit) : all;
  if (!images.length) throw new CliError(`${opts.folder}: no images named <index>_<label>.<ext>`);
  const payloads = images.map((img) => ({
    img,
    bytes: readFileSync(img.file),
    type: imageMimeType(img.file),
  }));
  const predictions: Prediction[] = new Array(payloads.length);
  let next = 0;
  let version: string | null = null;
  const t0 = performance.now();
  const lane = async () => {
    for (let i = next++; i < payloads.length; i = next++) {
      const { img, bytes, type } = payloads[i]!;
      try {
        const r = await classify(opts.url, opts.model, bytes, type, opts.retryForMs ?? 60_000);
        const top = r.predictions[0]!;
        version ??= r.version;
        predictions[i] = { file: img.file, label: img.label, predicted: top.label, score: top.score };
      } catch (err) {
        predictions[i] = { file: img.file, label: img.label, predicted: null, error: (err as Error).message };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.concurrency, payloads.length)) }, lane));
  const seconds = (performance.now() - t0) / 1000;
  return {
    model: opts.model,
    version,
    url: opts.url,
    concurrency: opts.concurrency,
    seconds,
    images_per_second: payloads.length / seconds,
    skipped,
    ...score(predictions),
  };
}

export function formatResult(r: EvalResult): string {
  const lines = [
    `model ${r.model}${r.version ? ` version ${r.version}` : ''} at ${r.url}`,
    `accuracy ${(100 * r.accuracy).toFixed(2)}% (${r.correct}/${r.images})${r.errors ? `, ${r.errors} error(s)` : ''}`,
    `throughput ${r.images_per_second.toFixed(1)} images/s (${r.images} images in ${r.seconds.toFixed(2)} s, concurrency ${r.concurrency})`,
    '',
    'confusion matrix (rows: true label, columns: predicted)',
    confusionTable(r),
  ];
  const wrong = r.misclassified.slice(0, 20);
  if (wrong.length) {
    lines.push(
      '',
      `misclassified${r.misclassified.length > wrong.length ? ` (first ${wrong.length})` : ''}:`,
    );
    for (const p of wrong) lines.push(`  ${p.file}: ${p.label} → ${p.predicted ?? `error (${p.error})`}`);
  }
  if (r.skipped.length) lines.push('', `skipped ${r.skipped.length} file(s) not named <index>_<label>.<ext>`);
  return lines.join('\n');
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parse(
    argv,
    {
      url: { type: 'string' },
      'model-repository': { type: 'string' },
      concurrency: { type: 'string' },
      limit: { type: 'string' },
      'min-accuracy': { type: 'string' },
      json: { type: 'boolean' },
    },
    USAGE,
  );
  const [model, folder] = positionals;
  if (!model || !folder) throw new CliError(`missing <model> or <folder>\n\n${USAGE}`, 2);
  const concurrency = intOption(values.concurrency, 'concurrency', 8, 1);
  const limit = intOption(values.limit, 'limit', 0, 0) || undefined;
  const minAccuracy = floatOption(values['min-accuracy'], 'min-accuracy', 0, 0, 1);
  if (values.url && values['model-repository'])
    throw new CliError('give --url or --model-repository, not both', 2);
  if (!values.url && !values['model-repository'])
    throw new CliError(`give --url of a running server or --model-repository to start one\n\n${USAGE}`, 2);

  let url: string;
  let stop: (() => Promise<unknown>) | null = null;
  if (values.url) {
    url = checkLoopbackUrl(values.url).toString();
  } else {
    const { defaultConfig } = await import('../../server/config.js');
    const { startServer } = await import('../../server/main.js');
    const server = await startServer(
      defaultConfig({
        host: '127.0.0.1',
        port: 0,
        modelRepository: resolve(values['model-repository']!),
        buildDefaultModels: false,
        logLevel: 'warn',
      }),
    );
    stop = () => server.shutdown('eval done');
    url = server.address;
    try {
      await server.loaded;
    } catch (err) {
      await stop();
      throw new CliError(
        `server over ${values['model-repository']} failed to start: ${(err as Error).message}`,
      );
    }
    const status = server.models.status(model);
    if (!status) {
      await stop();
      throw new CliError(
        `model ${model} is not in ${values['model-repository']} (models: ${server.models.names().join(', ') || 'none'})`,
      );
    }
    if (!status.loaded.length) {
      await stop();
      throw new CliError(`model ${model} did not load: ${status.error ?? 'unknown error'}`);
    }
  }
  let result: EvalResult;
  try {
    result = await evaluate({ url, model, folder, concurrency, limit, retryForMs: stop ? 5_000 : 60_000 });
  } finally {
    if (stop) await stop();
  }
  console.log(values.json ? JSON.stringify(result, null, 2) : formatResult(result));
  if (result.errors === result.images)
    throw new CliError(`every request failed (first: ${result.misclassified[0]?.error ?? '?'})`);
  if (result.accuracy < minAccuracy)
    throw new CliError(
      `accuracy ${(100 * result.accuracy).toFixed(2)}% is below --min-accuracy ${(100 * minAccuracy).toFixed(2)}%`,
    );
}
