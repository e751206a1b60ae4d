#!/usr/bin/env node
// Measures the server's resident memory after load + warmup + traffic with different inference worker counts
// (default 1 and 4) over the same model repository, to check that weights are held once per process:
// RSS(--workers 4) must stay within 1.25 × RSS(--workers 1).
//
//   node scripts/measure-worker-memory.mjs [--model-repository models] [--workers 1,4] [--requests 32]
//                                          [--root .] [--serve-arg=--load-policy=all ...] [--json out.json]
//
// Each run spawns `node <root>/bin/padserve.js serve --port 0 --no-build-default-models --workers N`, waits for
// /v2/health/ready, sends every model a few requests (generated image / sentence pairs, some concurrently so that
// batches form), reads VmRSS and VmHWM from /proc/<pid>/status, then stops it with SIGTERM. Run `npm run build`
// first to measure the production (compiled) worker threads; without dist/ the CLI falls back to tsx.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';

const { values } = parseArgs({
  options: {
    'model-repository': { type: 'string', default: 'models' },
    workers: { type: 'string', default: '1,4' },
    requests: { type: 'string', default: '32' },
    root: { type: 'string', default: join(dirname(fileURLToPath(import.meta.url)), '..') },
    'serve-arg': { type: 'string', multiple: true, default: [] },
    json: { type: 'string' },
    'ready-timeout-s': { type: 'string', default: '1800' },
  },
});

const repo = resolve(values['model-repository']);
const root = resolve(values.root);
const counts = values.workers.split(',').map(Number);
const requests = Number(values.requests);

// VmRSS counts a file page once per mapping: several sessions that memory-map one weights file (shared weights)
// inflate it. PSS (proportional set size) and anonymous memory are reported too; PSS is what the process costs.
function procStatus(pid) {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (t, key) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(t)?.[1] ?? NaN) / 1024;
  return {
    rssMb: kb(text, 'VmRSS'),
    peakMb: kb(text, 'VmHWM'),
    pssMb: kb(roll, 'Pss'),
    anonMb: kb(roll, 'Anonymous'),
    rssFileMb: kb(text, 'RssFile'),
    threads: Number(/^Threads:\s+(\d+)/m.exec(text)?.[1]),
  };
}

async function waitReady(url, timeoutMs) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const r = await fetch(`${url}/v2/health/ready`).catch(() => null);
    if (r?.status === 200) return;
    await new Promise((res) => setTimeout(res, 500));
  }
  throw new Error(`not ready after ${timeoutMs / 1000} s`);
}

async function testImage() {
  const w = 640;
  const h = 480;
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * 2654435761) >>> 24;
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

async function traffic(url, image) {
  const models = await (await fetch(`${url}/v2/health/ready`)).json();
  const names = Object.keys(models.models);
  const jobs = [];
  for (const name of names) {
    const meta = await (await fetch(`${url}/v2/models/${name}`)).json();
    if (meta.parameters?.family === 'resnet') {
      jobs.push(() =>
        fetch(`${url}/classify?model=${name}`, {
          method: 'POST',
          body: image,
          headers: { 'content-type': 'image/jpeg' },
        }),
      );
    } else {
      const text = (n) =>
        Array.from(
          { length: n },
          (_, i) => ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'a', 'lazy', 'dog'][i % 9],
        ).join(' ');
      jobs.push(() =>
        fetch(`${url}/v2/models/${name}/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            inputs: [
              { name: 'text', shape: [2], datatype: 'BYTES', data: [text(12), text(90)] },
              { name: 'text_pair', shape: [2], datatype: 'BYTES', data: [text(8), text(30)] },
            ],
          }),
        }),
      );
    }
  }
  let failed = 0;
  // one at a time, then all at once (batches form)
  for (const j of jobs) if (!(await j()).ok) failed++;
  const burst = Array.from({ length: requests }, (_, i) => jobs[i % jobs.length]());
  for (const r of await Promise.all(burst)) if (!r.ok) failed++;
  return { models: names.length, sent: jobs.length + requests, failed };
}

async function measure(workers, image) {
  const args = [
    join(root, 'bin', 'padserve.js'),
    'serve',
    '--model-repository',
    repo,
    '--port',
    '0',
    '--no-build-default-models',
    '--workers',
    String(workers),
    '--log-level',
    'info',
    ...values['serve-arg'],
  ];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const url = await new Promise((res, rej) => {
    const on = (d) => {
      out += d;
      const m = /Server listening at (http:\/\/[^"\s]+)/.exec(out);
      if (m) res(m[1]);
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', (code) => rej(new Error(`serve exited ${code}:\n${out}`)));
  });
  const t0 = Date.now();
  await waitReady(url, Number(values['ready-timeout-s']) * 1000);
  const readyS = (Date.now() - t0) / 1000;
  const afterLoad = procStatus(child.pid);
  const t = await traffic(url, image);
  const after = procStatus(child.pid);
  const exited = new Promise((res) => child.on('exit', res));
  child.kill('SIGTERM');
  const code = await exited;
  return {
    workers,
    readyS,
    rssAfterLoadMb: afterLoad.rssMb,
    pssAfterLoadMb: afterLoad.pssMb,
    ...after,
    ...t,
    exitCode: code,
  };
}

const image = await testImage();
const results = [];
for (const n of counts) {
  const r = await measure(n, image);
  results.push(r);
  const f = (x) => x.toFixed(0);
  console.log(
    `--workers ${n}: ready in ${r.readyS.toFixed(1)} s; after load RSS ${f(r.rssAfterLoadMb)} MB (PSS ${f(r.pssAfterLoadMb)}); after ${r.sent} requests RSS ${f(r.rssMb)} MB ` +
      `(peak ${f(r.peakMb)}, file-backed ${f(r.rssFileMb)}), PSS ${f(r.pssMb)} MB, anonymous ${f(r.anonMb)} MB; ${r.threads} threads; ${r.failed} failed; exit ${r.exitCode}`,
  );
}
const base = results[0];
for (const r of results.slice(1)) {
  const ratio = r.rssMb / base.rssMb;
  console.log(
    `RSS(--workers ${r.workers}) / RSS(--workers ${base.workers}) = ${ratio.toFixed(3)} (target ≤ 1.25)${ratio <= 1.25 ? '' : '  ** over target **'}; PSS ratio ${(r.pssMb / base.pssMb).toFixed(3)}`,
  );
}
if (values.json) writeFileSync(values.json, `${JSON.stringify({ repository: repo, results }, null, 2)}\n`);
