#!/usr/bin/env node
/**
 * Soak test: drives a mixed load (images, GLUE pairs and lists, V2 text, and ~10 % bad requests) at a padserve
 * server for N minutes and samples the server's resident memory, then says whether RSS growth flattened after
 * the warmup. Not part of `npm test`.
 *
 *   npm run soak -- --minutes 30                          # starts `padserve serve` over models/ (lazy policy)
 *   npm run soak -- --minutes 5 --model-repository DIR    # serve DIR as it is (no default-model build)
 *   npm run soak -- --minutes 60 --url http://127.0.0.1:8080   # a running server (RSS from /metrics)
 *
 * Options: --clients C (closed-loop clients, default 8), --sample-s S (RSS sample period, default 10),
 * --warmup-frac F (share of the run counted as warmup, default 0.25), --max-slope MiB/min (verdict bound,
 * default 2), --out FILE (JSON with every sample). Exit code 0 when growth flattened, 1 when it did not.
 * Only loopback URLs are accepted.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
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
  console.log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0]);
  process.exit(0);
}
const minutes = Number(a.minutes);
const clients = Number(a.clients);
const sampleMs = Number(a['sample-s']) * 1000;

async function startServer() {
  // Log level info: the "Server listening at" line is how the URL is learnt (later lines are dropped).
  const args = ['serve', '--port', '0', '--log-level', 'info', '--load-policy', 'lazy'];
  if (a['model-repository'])
    args.push('--model-repository', a['model-repository'], '--no-build-default-models');
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'padserve.js'), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = await new Promise((resolve, reject) => {
    let found = false;
    const on = (d) => {
      if (found) return;
      out += d.toString();
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        found = true;
        out = '';
        resolve(m[1]);
      }
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => reject(new Error(`server exited (${code}):\n${out}`)));
  });
  return { child, url };
}

const { child, url } = a.url ? { child: null, url: a.url } : await startServer();
if (!/^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\/?$/.test(url)) {
  console.error(`refusing a non-loopback URL: ${url}`);
  process.exit(2);
}
const stop = () => child?.kill('SIGTERM');
process.on('SIGINT', () => {
  stop();
  process.exit(130);
});

async function rssBytes() {
  if (child) {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  }
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = /^process_resident_memory_bytes (\S+)/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

// Wait for readiness (a first start may build the default models: minutes).
for (;;) {
  const r = await fetch(`${url}/v2/health/ready`).catch(() => null);
  if (r?.status === 200) break;
  await new Promise((res) => setTimeout(res, 1000));
}
const ready = await (await fetch(`${url}/v2/health/ready`)).json();
const names = Object.keys(ready.models);
const meta = await Promise.all(
  names.map(async (n) => ({ name: n, ...(await (await fetch(`${url}/v2/models/${n}`)).json()) })),
);
const imageModels = meta.filter((m) => m.parameters?.family === 'resnet').map((m) => m.name);
const textModels = meta.filter((m) => m.parameters?.family === 'bert');
// GLUE tasks the server serves: asked for directly (404 task_not_served / unknown_task otherwise).
const tasks = [];
for (const t of ['cola', 'sst2', 'mrpc', 'qqp', 'stsb', 'mnli', 'qnli', 'rte', 'wnli']) {
  const single = t === 'cola' || t === 'sst2';
  const body = single ? { sentence: 'a test' } : { pairs: [['a test', 'a test']] };
  const r = await fetch(`${url}/glue/${t}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json' },
  });
  if (r.status !== 404) tasks.push(t);
  await r.arrayBuffer();
}
console.log(
  `soak: ${url}, ${minutes} min, ${clients} clients; image models ${imageModels.join(',') || '-'}, GLUE tasks ${tasks.join(',') || '-'}`,
);

// Inputs: a few generated JPEG/PNG photos of different sizes, random sentences.
let seed = 12345;
const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
const images = [];
for (const [w, h] of [
  [320, 240],
  [640, 480],
  [224, 224],
  [500, 375],
]) {
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 31 + ((i / (w * 3)) | 0) * 17) & 255;
  images.push({
    type: 'image/jpeg',
    body: await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .jpeg()
      .toBuffer(),
  });
  images.push({
    type: 'image/png',
    body: await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer(),
  });
}
const WORDS =
  'the a man woman dog cat plays reads guitar book quickly slowly river city music quiet loud never always good bad film'.split(
    ' ',
  );
const sentence = () =>
  Array.from({ length: 3 + Math.floor(rand() * 20) }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(
    ' ',
  );
const pick = (xs) => xs[Math.floor(rand() * xs.length)];

const kinds = [];
if (imageModels.length) kinds.push('image', 'image');
if (tasks.length) kinds.push('glue', 'glue-list');
if (textModels.length) kinds.push('v2-text');
kinds.push('bad');

function request() {
  const kind = pick(kinds);
  if (kind === 'image') {
    const img = pick(images);
    return { kind, path: `/classify?model=${pick(imageModels)}`, body: img.body, type: img.type };
  }
  if (kind === 'glue' || kind === 'glue-list') {
    const task = pick(tasks);
    const single = task === 'cola' || task === 'sst2';
    const item = () => (single ? sentence() : [sentence(), sentence()]);
    const body =
      kind === 'glue'
        ? single
          ? { sentence: sentence() }
          : { pairs: [item()] }
        : { pairs: Array.from({ length: 1 + Math.floor(rand() * 8) }, item) };
    return { kind, path: `/glue/${task}`, body: JSON.stringify(body), type: 'application/json' };
  }
  if (kind === 'v2-text') {
    const m = pick(textModels);
    const body = {
      inputs: [
        { name: 'text', shape: [1], datatype: 'BYTES', data: [sentence()] },
        { name: 'text_pair', shape: [1], datatype: 'BYTES', data: [sentence()] },
      ],
    };
    return { kind, path: `/v2/models/${m.name}/infer`, body: JSON.stringify(body), type: 'application/json' };
  }
  const bad = [
    { path: '/classify', body: Buffer.from('not an image'), type: 'image/jpeg' },
    { path: '/classify', body: pick(images).body.subarray(0, 500), type: 'image/jpeg' },
    { path: `/glue/${tasks[0] ?? 'mnli'}`, body: '{"premise": 5', type: 'application/json' },
    {
      path: `/v2/models/${names[0]}/infer`,
      body: JSON.stringify({ inputs: [{ name: 'x', shape: [-1], datatype: 'FP32', data: [1] }] }),
      type: 'application/json',
    },
  ];
  return { kind, ...pick(bad) };
}

const counts = {};
let total = 0;
let fiveXX = 0;
const t0 = Date.now();
const end = t0 + minutes * 60_000;
const samples = [];
const sample = async () =>
  samples.push({ s: (Date.now() - t0) / 1000, rssMiB: (await rssBytes()) / 2 ** 20, requests: total });
await sample();
const timer = setInterval(() => {
  void sample().then(() => {
    const x = samples.at(-1);
    console.log(
      `${x.s.toFixed(0).padStart(5)} s  RSS ${x.rssMiB.toFixed(1).padStart(7)} MiB  requests ${x.requests}  ${JSON.stringify(counts)}`,
    );
  });
}, sampleMs);

async function client() {
  while (Date.now() < end) {
    const r = request();
    try {
      const res = await fetch(`${url}${r.path}`, {
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
}
await Promise.all(Array.from({ length: clients }, client));
clearInterval(timer);
await sample();

// Verdict: after the warmup, a least-squares line through RSS over time; flat when its slope is small.
const warm = samples.filter((x) => x.s >= minutes * 60 * Number(a['warmup-frac']));
const n = warm.length;
const mx = warm.reduce((s, x) => s + x.s, 0) / n;
const my = warm.reduce((s, x) => s + x.rssMiB, 0) / n;
const slope =
  (warm.reduce((s, x) => s + (x.s - mx) * (x.rssMiB - my), 0) /
    Math.max(
      1e-9,
      warm.reduce((s, x) => s + (x.s - mx) ** 2, 0),
    )) *
  60;
const first = samples[0].rssMiB;
const atWarm = warm[0]?.rssMiB ?? NaN;
const last = samples.at(-1).rssMiB;
const flat = n >= 3 && slope <= Number(a['max-slope']);
// Robust to the sawtooth of garbage collection: mean RSS of the last third of the post-warmup samples minus the
// mean of the first third.
const third = Math.max(1, Math.floor(n / 3));
const mean = (xs) => xs.reduce((t, x) => t + x.rssMiB, 0) / xs.length;
const thirdsDelta = mean(warm.slice(-third)) - mean(warm.slice(0, third));
const summary = {
  url,
  minutes,
  clients,
  requests: total,
  rps: total / ((Date.now() - t0) / 1000),
  fiveXX,
  counts,
  rssMiB: { start: first, afterWarmup: atWarm, end: last, max: Math.max(...samples.map((x) => x.rssMiB)) },
  growthAfterWarmupMiB: last - atWarm,
  slopeAfterWarmupMiBPerMin: slope,
  lastThirdMinusFirstThirdMiB: thirdsDelta,
  flattened: flat,
  samples,
};
console.log(
  `\nsoak: ${total} requests (${summary.rps.toFixed(1)}/s), 5xx ${fiveXX}; RSS ${first.toFixed(0)} → ${atWarm.toFixed(0)} (after warmup) → ${last.toFixed(0)} MiB, max ${summary.rssMiB.max.toFixed(0)}; after warmup: ${summary.growthAfterWarmupMiB >= 0 ? '+' : ''}${summary.growthAfterWarmupMiB.toFixed(1)} MiB, slope ${slope.toFixed(2)} MiB/min, last third − first third ${thirdsDelta.toFixed(1)} MiB → ${flat ? 'FLAT' : 'STILL GROWING (or too few samples)'}`,
);
if (a.out) writeFileSync(a.out, `${JSON.stringify(summary, null, 2)}\n`);
stop();
process.exit(flat && fiveXX === 0 ? 0 : 1);
