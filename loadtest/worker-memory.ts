/**
 * Measures the server's resident memory after load + warm-up + traffic with different inference worker counts
 * (default 1 and 4) over the same model repository, to check that weights are held once per process:
 * RSS(--workers 4) must stay within 1.25 × RSS(--workers 1).
 *
 *   npx tsx loadtest/worker-memory.ts [--model-repository models] [--workers 1,4] [--requests 32]
 *                                     [--serve-arg=--load-policy=all ...] [--json out.json]
 *
 * Each run starts `padserve serve --no-build-default-models --workers N` (server.ts: a free loopback port, waits
 * for /v2/health/ready), sends every model a few requests (a generated image / sentence pairs, then a concurrent
 * burst so that batches form), reads VmRSS and VmHWM from /proc/<pid>/status and PSS from smaps_rollup, then
 * stops it. Run `npm run build` first to measure the production (compiled) worker threads; without dist/ the
 * CLI falls back to tsx.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { RESULTS_DIR } from './paths.js';
import { startServer } from './server.js';
import { LoadtestError } from './url.js';

interface ProcMemory {
  rssMb: number;
  peakMb: number;
  pssMb: number;
  anonMb: number;
  rssFileMb: number;
  threads: number;
}

/**
 * VmRSS counts a file page once per mapping: several sessions that memory-map one weights file (shared weights)
 * inflate it. PSS (proportional set size) and anonymous memory are reported too; PSS is what the process costs.
 */
function procMemory(pid: number): ProcMemory {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const mb = (t: string, key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN) / 1024;
  return {
    rssMb: mb(text, 'VmRSS'),
    peakMb: mb(text, 'VmHWM'),
    pssMb: mb(roll, 'Pss'),
    anonMb: mb(roll, 'Anonymous'),
    rssFileMb: mb(text, 'RssFile'),
    threads: Number(/^Threads:\s+(\d+)/m.exec(text)?.[1]),
  };
}

async function testImage(): Promise<Buffer> {
  const w = 640;
  const h = 480;
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

const WORDS = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'a', 'lazy', 'dog'];
const words = (n: number) => Array.from({ length: n }, (_, i) => WORDS[i % WORDS.length]).join(' ');

/** Every model once, one at a time, then `requests` at once; returns what was sent and how many failed. */
async function traffic(url: string, image: Buffer, requests: number) {
  const ready = (await (await fetch(`${url}/v2/health/ready`)).json()) as { models: Record<string, unknown> };
  const names = Object.keys(ready.models);
  const jobs: (() => Promise<Response>)[] = [];
  for (const name of names) {
    const meta = (await (await fetch(`${url}/v2/models/${name}`)).json()) as {
      parameters?: { family?: string };
    };
    if (meta.parameters?.family === 'resnet') {
      jobs.push(() =>
        fetch(`${url}/classify?model=${name}`, {
          method: 'POST',
          body: image,
          headers: { 'content-type': 'image/jpeg' },
        }),
      );
    } else {
      const inputs = [
        { name: 'text', shape: [2], datatype: 'BYTES', data: [words(12), words(90)] },
        { name: 'text_pair', shape: [2], datatype: 'BYTES', data: [words(8), words(30)] },
      ];
      jobs.push(() =>
        fetch(`${url}/v2/models/${name}/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ inputs }),
        }),
      );
    }
  }
  let failed = 0;
  for (const j of jobs) if (!(await j()).ok) failed++;
  const burst = Array.from({ length: requests }, (_, i) => jobs[i % jobs.length]!());
  for (const r of await Promise.all(burst)) if (!r.ok) failed++;
  return { models: names.length, sent: jobs.length + requests, failed };
}

async function measure(
  repo: string,
  workers: number,
  serveArgs: readonly string[],
  opts: { requests: number; readyTimeoutS: number; image: Buffer },
) {
  const server = await startServer({
    repository: repo,
    args: ['--no-build-default-models', '--workers', String(workers), ...serveArgs],
    logFile: join(RESULTS_DIR, 'worker-memory', `serve-workers-${workers}.log`),
    readyTimeoutS: opts.readyTimeoutS,
  });
  try {
    const pid = server.pid!;
    const afterLoad = procMemory(pid);
    const t = await traffic(server.baseUrl, opts.image, opts.requests);
    const after = procMemory(pid);
    return {
      workers,
      readyS: server.readyS,
      rssAfterLoadMb: afterLoad.rssMb,
      pssAfterLoadMb: afterLoad.pssMb,
      ...after,
      ...t,
    };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'model-repository': { type: 'string', default: 'models' },
      workers: { type: 'string', default: '1,4' },
      requests: { type: 'string', default: '32' },
      'serve-arg': { type: 'string', multiple: true, default: [] },
      json: { type: 'string' },
      'ready-timeout-s': { type: 'string', default: '1800' },
    },
  });
  const repo = resolve(values['model-repository']);
  const opts = {
    requests: Number(values.requests),
    readyTimeoutS: Number(values['ready-timeout-s']),
    image: await testImage(),
  };
  const results = [];
  const f = (x: number) => x.toFixed(0);
  for (const n of values.workers.split(',').map(Number)) {
    const r = await measure(repo, n, values['serve-arg'], opts);
    results.push(r);
    console.log(
      `--workers ${n}: ready in ${r.readyS.toFixed(1)} s; after load RSS ${f(r.rssAfterLoadMb)} MB (PSS ${f(r.pssAfterLoadMb)}); after ${r.sent} requests RSS ${f(r.rssMb)} MB ` +
        `(peak ${f(r.peakMb)}, file-backed ${f(r.rssFileMb)}), PSS ${f(r.pssMb)} MB, anonymous ${f(r.anonMb)} MB; ${r.threads} threads; ${r.failed} failed`,
    );
  }
  const base = results[0]!;
  for (const r of results.slice(1)) {
    const ratio = r.rssMb / base.rssMb;
    console.log(
      `RSS(--workers ${r.workers}) / RSS(--workers ${base.workers}) = ${ratio.toFixed(3)} (target ≤ 1.25)${ratio <= 1.25 ? '' : '  ** over target **'}; PSS ratio ${(r.pssMb / base.pssMb).toFixed(3)}`,
    );
  }
  if (values.json) writeFileSync(values.json, `${JSON.stringify({ repository: repo, results }, null, 2)}\n`);
}

main().catch((err: unknown) => {
  console.error(err instanceof LoadtestError ? err.message : err);
  process.exit(2);
});
