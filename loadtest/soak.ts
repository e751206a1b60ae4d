/**
 * Soak test (`npm run soak`): drives a mixed load (images, GLUE pairs and lists, V2 text, and ~10 % bad requests)
 * at a padserve server for N minutes and samples the server's resident memory, then says whether RSS growth
 * flattened after the warmup. Not part of `npm test`. Server start, readiness and RSS come from the load test's
 * own helpers (server.ts, prometheus.ts), sentences from text.ts.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { gauge, scrape } from './prometheus.js';
import { REPO_ROOT, RESULTS_DIR } from './paths.js';
import { pick, seededRandom } from './random.js';
import {
  connectTarget,
  procRssMb,
  startServer,
  stopOnSignal,
  waitReady,
  type ServerTarget,
} from './server.js';
import { sentence } from './text.js';
import { LoadtestError } from './url.js';

const USAGE = `usage: npm run soak -- [options]

  npm run soak -- --minutes 30                          # starts padserve serve over models/ (lazy policy)
  npm run soak -- --minutes 5 --model-repository DIR    # serve DIR as it is (no default-model build)
  npm run soak -- --minutes 60 --url http://127.0.0.1:8080   # a running server (RSS from /metrics)

  --minutes N           how long to drive load (default 10)
  --clients C           closed-loop clients (default 8)
  --sample-s S          RSS sample period in seconds (default 10)
  --warmup-frac F       share of the run counted as warmup (default 0.25)
  --max-slope MiB/min   verdict bound on the post-warmup RSS slope (default 2)
  --out FILE            JSON with every sample
Exit code 0 when growth flattened with no 5xx, 1 otherwise. Only loopback URLs are accepted.`;

const GLUE = ['cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli'];
const single = (task: string) => task === 'cola' || task === 'sst2';
const IMAGE_SIZES: readonly [number, number][] = [
  [320, 240],
  [640, 480],
  [224, 224],
  [500, 375],
];

interface SoakRequest {
  kind: string;
  path: string;
  body: Buffer | string;
  type: string;
}

interface RssSample {
  s: number;
  rssMiB: number;
  requests: number;
}

interface Served {
  names: string[];
  imageModels: string[];
  textModels: string[];
  tasks: string[];
}

function options() {
  const { values: a } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      url: { type: 'string' },
      'model-repository': { type: 'string' },
      clients: { type: 'string', default: '8' },
      'sample-s': { type: 'string', default: '10' },
      'warmup-frac': { type: 'string', default: '0.25' },
      'max-slope': { type: 'string', default: '2' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (a.help) {
    console.log(USAGE);
    process.exit(0);
  }
  return {
    minutes: Number(a.minutes),
    clients: Number(a.clients),
    sampleMs: Number(a['sample-s']) * 1000,
    warmupFrac: Number(a['warmup-frac']),
    maxSlope: Number(a['max-slope']),
    url: a.url,
    repository: a['model-repository'],
    out: a.out,
  };
}

/** A running server (`--url`) or `padserve serve` started here (readiness may include the default-model build). */
async function target(url: string | undefined, repository: string | undefined): Promise<ServerTarget> {
  if (url) {
    const t = connectTarget(url);
    await waitReady(t.baseUrl, 3600);
    return t;
  }
  return startServer({
    repository: repository ? resolve(repository) : join(REPO_ROOT, 'models'),
    args: ['--load-policy', 'lazy', ...(repository ? ['--no-build-default-models'] : [])],
    logFile: join(RESULTS_DIR, 'soak', 'server.log'),
    readyTimeoutS: 3600,
  });
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  return (await (await fetch(url)).json()) as Record<string, unknown>;
}

/** The served models by family, and the GLUE tasks the server answers (asked directly: 404 when not served). */
async function served(baseUrl: string): Promise<Served> {
  const ready = await getJson(`${baseUrl}/v2/health/ready`);
  const names = Object.keys(ready.models as Record<string, unknown>);
  const meta = await Promise.all(
    names.map(async (name) => ({ name, ...(await getJson(`${baseUrl}/v2/models/${name}`)) })),
  );
  const family = (m: Record<string, unknown>) => (m.parameters as { family?: string } | undefined)?.family;
  const tasks: string[] = [];
  for (const t of GLUE) {
    const body = single(t) ? { sentence: 'a test' } : { pairs: [['a test', 'a test']] };
    const r = await fetch(`${baseUrl}/glue/${t}`, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
    });
    if (r.status !== 404) tasks.push(t);
    await r.arrayBuffer();
  }
  return {
    names,
    imageModels: meta.filter((m) => family(m) === 'resnet').map((m) => m.name),
    textModels: meta.filter((m) => family(m) === 'bert').map((m) => m.name),
    tasks,
  };
}

/** JPEG and PNG of four sizes (a fixed pattern: the soak measures memory, not accuracy). */
async function soakImages(): Promise<{ type: string; body: Buffer }[]> {
  const images: { type: string; body: Buffer }[] = [];
  for (const [w, h] of IMAGE_SIZES) {
    const px = Buffer.alloc(w * h * 3);
    for (let i = 0; i < px.length; i++) px[i] = (i * 31 + Math.floor(i / (w * 3)) * 17) & 255;
    const raw = () => sharp(px, { raw: { width: w, height: h, channels: 3 } });
    images.push({ type: 'image/jpeg', body: await raw().jpeg().toBuffer() });
    images.push({ type: 'image/png', body: await raw().png().toBuffer() });
  }
  return images;
}

/** Draws one request of the mix; `bad` requests are malformed on purpose (they must get 4xx, never 5xx). */
function requestMaker(s: Served, images: { type: string; body: Buffer }[]): () => SoakRequest {
  const random = seededRandom(12345);
  const text = () => sentence(random, 3 + Math.floor(random() * 20));
  const kinds: string[] = [];
  if (s.imageModels.length) kinds.push('image', 'image');
  if (s.tasks.length) kinds.push('glue', 'glue-list');
  if (s.textModels.length) kinds.push('v2-text');
  kinds.push('bad');
  const json = 'application/json';
  return () => {
    const kind = pick(random, kinds);
    if (kind === 'image') {
      const img = pick(random, images);
      return { kind, path: `/classify?model=${pick(random, s.imageModels)}`, body: img.body, type: img.type };
    }
    if (kind === 'glue' || kind === 'glue-list') {
      const task = pick(random, s.tasks);
      const item = () => (single(task) ? text() : [text(), text()]);
      const body =
        kind === 'glue'
          ? single(task)
            ? { sentence: text() }
            : { pairs: [item()] }
          : { pairs: Array.from({ length: 1 + Math.floor(random() * 8) }, item) };
      return { kind, path: `/glue/${task}`, body: JSON.stringify(body), type: json };
    }
    if (kind === 'v2-text') {
      const inputs = [
        { name: 'text', shape: [1], datatype: 'BYTES', data: [text()] },
        { name: 'text_pair', shape: [1], datatype: 'BYTES', data: [text()] },
      ];
      const model = pick(random, s.textModels);
      return { kind, path: `/v2/models/${model}/infer`, body: JSON.stringify({ inputs }), type: json };
    }
    const v2Bad = { inputs: [{ name: 'x', shape: [-1], datatype: 'FP32', data: [1] }] };
    const bad = [
      { path: '/classify', body: Buffer.from('not an image'), type: 'image/jpeg' },
      { path: '/classify', body: pick(random, images).body.subarray(0, 500), type: 'image/jpeg' },
      { path: `/glue/${s.tasks[0] ?? 'mnli'}`, body: '{"premise": 5', type: json },
      { path: `/v2/models/${s.names[0]}/infer`, body: JSON.stringify(v2Bad), type: json },
    ];
    return { kind, ...pick(random, bad) };
  };
}

/**
 * After the warmup, a least-squares line through RSS over time (MiB/min), and — robust to the sawtooth of garbage
 * collection — the mean RSS of the last third of the post-warmup samples minus that of the first third.
 */
function rssTrend(warm: readonly RssSample[]): { slope: number; thirdsDelta: number } {
  const n = warm.length;
  const mx = warm.reduce((t, x) => t + x.s, 0) / n;
  const my = warm.reduce((t, x) => t + x.rssMiB, 0) / n;
  const sxy = warm.reduce((t, x) => t + (x.s - mx) * (x.rssMiB - my), 0);
  const sxx = warm.reduce((t, x) => t + (x.s - mx) ** 2, 0);
  const third = Math.max(1, Math.floor(n / 3));
  const mean = (xs: readonly RssSample[]) => xs.reduce((t, x) => t + x.rssMiB, 0) / xs.length;
  return {
    slope: (sxy / Math.max(1e-9, sxx)) * 60,
    thirdsDelta: mean(warm.slice(-third)) - mean(warm.slice(0, third)),
  };
}

async function main(): Promise<void> {
  const opts = options();
  const server = await target(opts.url, opts.repository);
  const releaseSignal = stopOnSignal(server);
  const { baseUrl, pid } = server;
  const rssMiB = async () =>
    pid !== null
      ? (procRssMb(pid) ?? NaN)
      : gauge(await scrape(baseUrl), 'process_resident_memory_bytes') / 2 ** 20;
  const s = await served(baseUrl);
  console.log(
    `soak: ${baseUrl}, ${opts.minutes} min, ${opts.clients} clients; image models ${s.imageModels.join(',') || '-'}, GLUE tasks ${s.tasks.join(',') || '-'}`,
  );
  const request = requestMaker(s, await soakImages());

  const counts: Record<string, number> = {};
  let total = 0;
  let fiveXX = 0;
  const t0 = Date.now();
  const end = t0 + opts.minutes * 60_000;
  const samples: RssSample[] = [];
  const sample = async () => {
    samples.push({ s: (Date.now() - t0) / 1000, rssMiB: await rssMiB(), requests: total });
  };
  await sample();
  const timer = setInterval(() => {
    void sample().then(() => {
      const x = samples.at(-1)!;
      console.log(
        `${x.s.toFixed(0).padStart(5)} s  RSS ${x.rssMiB.toFixed(1).padStart(7)} MiB  requests ${x.requests}  ${JSON.stringify(counts)}`,
      );
    });
  }, opts.sampleMs);

  const client = async () => {
    while (Date.now() < end) {
      const r = request();
      try {
        const res = await fetch(`${baseUrl}${r.path}`, {
          method: 'POST',
          body: r.body,
          headers: { 'content-type': r.type },
        });
        await res.arrayBuffer();
        const key = `${r.kind} ${res.status}`;
        counts[key] = (counts[key] ?? 0) + 1;
        if (res.status >= 500) fiveXX++;
      } catch {
        counts[`${r.kind} error`] = (counts[`${r.kind} error`] ?? 0) + 1;
      }
      total++;
    }
  };
  await Promise.all(Array.from({ length: opts.clients }, client));
  clearInterval(timer);
  await sample();

  const warm = samples.filter((x) => x.s >= opts.minutes * 60 * opts.warmupFrac);
  const { slope, thirdsDelta } = rssTrend(warm);
  const first = samples[0]!.rssMiB;
  const atWarm = warm[0]?.rssMiB ?? NaN;
  const last = samples.at(-1)!.rssMiB;
  const flat = warm.length >= 3 && slope <= opts.maxSlope;
  const rps = total / ((Date.now() - t0) / 1000);
  const max = Math.max(...samples.map((x) => x.rssMiB));
  const growth = last - atWarm;
  const summary = {
    url: baseUrl,
    minutes: opts.minutes,
    clients: opts.clients,
    requests: total,
    rps,
    fiveXX,
    counts,
    rssMiB: { start: first, afterWarmup: atWarm, end: last, max },
    growthAfterWarmupMiB: growth,
    slopeAfterWarmupMiBPerMin: slope,
    lastThirdMinusFirstThirdMiB: thirdsDelta,
    flattened: flat,
    samples,
  };
  console.log(
    `\nsoak: ${total} requests (${rps.toFixed(1)}/s), 5xx ${fiveXX}; RSS ${first.toFixed(0)} → ${atWarm.toFixed(0)} (after warmup) → ${last.toFixed(0)} MiB, max ${max.toFixed(0)}; after warmup: ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MiB, slope ${slope.toFixed(2)} MiB/min, last third − first third ${thirdsDelta.toFixed(1)} MiB → ${flat ? 'FLAT' : 'STILL GROWING (or too few samples)'}`,
  );
  if (opts.out) writeFileSync(opts.out, `${JSON.stringify(summary, null, 2)}\n`);
  releaseSignal();
  await server.stop();
  // Exit now: idle keep-alive sockets to the server would hold the process open for seconds.
  process.exit(flat && fiveXX === 0 ? 0 : 1);
}

main().catch((err: unknown) => {
  console.error(err instanceof LoadtestError ? err.message : err);
  process.exit(2);
});
