/**
 * The CPU image, built and run by a real Docker engine (`npm run test:container`; CI runs it after `npm test`).
 * Builds the base image stand-in when no registry has it (scripts/docker-base.sh), `docker build`s ./Dockerfile
 * with the classic builder, builds a small model repository on the host (the trained MNIST PAD-Net and the tiny
 * PAD BERT fixture, converted by `padserve convert`), runs the image on it with the host network, the server
 * bound to 127.0.0.1 on a free port, and checks: readiness, /classify and /glue/mnli answer what `padserve
 * predict` computes on the host, the server runs as uid 10001 and listens only on loopback, the HEALTHCHECK turns
 * healthy, the CUDA provider is detected as absent (and tried, then given up, when its files are present), and
 * `docker stop` drains queued requests and exits 0. Times and the image size are printed.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, PADNET_FIXTURES, REPO_ROOT } from '../test/support/paths.js';
import { metricValue, waitFor, writeServing } from '../test/support/server.js';
import {
  docker,
  dockerOk,
  ensureDaemon,
  ensureDockerInstalled,
  registryBuildArgs,
  runAsync,
  type Daemon,
} from './docker.js';

const IMAGE = process.env.PADSERVE_TEST_IMAGE ?? 'padserve:container-test';
const MNIST = join(PADNET_FIXTURES, 'resnet-mnist');
const BERT = join(PADNET_FIXTURES, 'bert-tiny');
const EXAMPLES = join(REPO_ROOT, 'examples');
const SAMPLES = (
  JSON.parse(readFileSync(join(MNIST, 'fixture.json'), 'utf8')) as { samples: { files: string[] } }
).samples.files
  .slice(0, 6)
  .map((f) => join(MNIST, f));
const PAIRS: [string, string][] = [
  ['A man is playing a guitar on stage.', 'Someone is making music.'],
  ['The cat sleeps on the warm windowsill.', 'A dog is running in the park.'],
  ['Nobody came to the meeting.', 'The meeting was crowded.'],
];

const say = (line: string) => console.log(`container: ${line}`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const times: Record<string, string> = {};

let daemon: Daemon | undefined;
let repo: string;
let container: string | undefined;
let url: string;
let port: number;

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`padserve ${args.join(' ')} failed: ${r.stderr}`);
}

const floats = (file: string) => {
  const b = readFileSync(file);
  return Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
};
function softmax(row: number[]): number[] {
  const m = Math.max(...row);
  const e = row.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/** `padserve predict` on the host: the first output's values (logits). */
function hostLogits(modelDir: string, input: string[]): number[] {
  const out = join(repo, '.host-logits.bin');
  cli(['predict', modelDir, ...input, '--out', out]);
  const v = floats(out);
  rmSync(out);
  return v;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

/** The container can read the repository as uid 10001 (mkdtemp makes 0700 folders). */
function openUp(dir: string): void {
  chmodSync(dir, 0o755);
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) openUp(p);
    else chmodSync(p, 0o644);
  }
}

beforeAll(async () => {
  ensureDockerInstalled(say);
  daemon = await ensureDaemon(say);

  let t = Date.now();
  const base = await runAsync('bash', [join(REPO_ROOT, 'scripts', 'docker-base.sh')], 1_800_000);
  if (base.status !== 0) throw new Error(`scripts/docker-base.sh failed: ${base.stderr.slice(-4000)}`);
  times.base = seconds(Date.now() - t);
  say(`base image ready in ${times.base}: ${base.stderr.trim().split('\n').at(-1)}`);

  t = Date.now();
  const build = await runAsync(
    'docker',
    ['build', '--network', 'host', ...registryBuildArgs(), '-t', IMAGE, REPO_ROOT],
    2_400_000,
  );
  if (build.status !== 0)
    throw new Error(`docker build failed: ${(build.stdout + build.stderr).slice(-6000)}`);
  times.build = seconds(Date.now() - t);
  const context = /Sending build context to Docker daemon\s+([\d.]+\s*[kMG]?B)/.exec(build.stdout)?.[1];
  times.context = context ?? '?';
  times.image = `${(Number(dockerOk(['image', 'inspect', '-f', '{{.Size}}', IMAGE])) / 1e6).toFixed(0)} MB`;
  say(`docker build ${times.build} (context ${times.context}), image ${IMAGE} ${times.image}`);

  repo = mkdtempSync(join(tmpdir(), 'padserve-container-'));
  cli([
    'convert',
    join(MNIST, 'model.safetensors'),
    '--out',
    join(repo, 'mnist', '1'),
    '--name',
    'mnist',
    '--preprocess',
    join(EXAMPLES, 'mnist-preprocess.json'),
    '--labels',
    join(EXAMPLES, 'mnist-labels.txt'),
  ]);
  writeServing(repo, 'mnist', { max_batch_size: 8, max_queue_delay_ms: 2 });
  // The same model behind a long batching window: requests wait in its queue, so they are in flight at SIGTERM.
  cpSync(join(repo, 'mnist', '1'), join(repo, 'mnist-drain', '1'), { recursive: true });
  writeServing(repo, 'mnist-drain', { max_batch_size: 8, max_queue_delay_ms: 3000 });
  cli(['convert', BERT, '--out', join(repo, 'bert-tiny', '1'), '--name', 'bert-tiny']);
  writeServing(repo, 'bert-tiny', { tasks: ['mnli'], max_batch_size: 16, length_buckets: [16, 32, 64] });
  openUp(repo);

  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  container = `padserve-container-test-${process.pid}`;
  t = Date.now();
  dockerOk([
    'run',
    '-d',
    '--name',
    container,
    '--network',
    'host',
    '-v',
    `${repo}:/models:ro`,
    '-e',
    'PADSERVE_HOST=127.0.0.1',
    '-e',
    `PADSERVE_PORT=${port}`,
    '-e',
    'PADSERVE_BUILD_DEFAULT_MODELS=false',
    '-e',
    'PADSERVE_DEFAULT_IMAGE_MODEL=mnist',
    '-e',
    'PADSERVE_WORKERS=1',
    '-e',
    'PADSERVE_INTRA_OP_THREADS=1',
    '--health-interval',
    '1s',
    '--stop-timeout',
    '45',
    IMAGE,
  ]);
  await waitFor(
    async () => (await fetch(`${url}/v2/health/ready`).catch(() => null))?.status === 200,
    'the container to be ready',
    300_000,
  );
  times.firstReady = seconds(Date.now() - t);
  say(`container ready ${times.firstReady} after docker run`);
}, 3_600_000);

afterAll(async () => {
  if (container) {
    const logs = docker(['logs', container]);
    if (logs.status === 0)
      say(`container log tail:\n${(logs.stdout + logs.stderr).split('\n').slice(-15).join('\n')}`);
    docker(['rm', '-f', container]);
  }
  if (repo) rmSync(repo, { recursive: true, force: true });
  await daemon?.stop();
  say(`times: ${JSON.stringify(times)}`);
}, 120_000);

/** A throwaway container with no network, as root (the app files are root's). */
const offlineAsRoot = ['run', '--rm', '--network', 'none', '--user', '0'];

describe('the CPU image in a real container', () => {
  it('was built from a small context holding only the app files (.dockerignore) and ships only the runtime set', () => {
    // node_modules alone is ~700 MB here; the context measured 1.45 MB (docs/deploy.md).
    const m = /^([\d.]+)\s*([kMG]?)B$/.exec(times.context!);
    expect(m, times.context).not.toBeNull();
    const bytes = Number(m![1]) * ({ '': 1, k: 1e3, M: 1e6, G: 1e9 } as Record<string, number>)[m![2]!]!;
    expect(bytes).toBeLessThan(50e6);
    expect(dockerOk(['exec', container!, 'ls', '-A', '/app']).split('\n')).toEqual([
      'bin',
      'data',
      'dist',
      'node_modules',
      'package.json',
    ]);
  });

  it('answers /classify as padserve predict does on the host', async () => {
    for (const file of SAMPLES) {
      const expected = softmax(hostLogits(join(repo, 'mnist', '1'), ['--image', file]));
      const res = await fetch(`${url}/classify?model=mnist&top_k=10`, {
        method: 'POST',
        body: readFileSync(file),
        headers: { 'content-type': 'image/png' },
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as { predictions: { label: string; index: number; score: number }[] };
      const best = expected.indexOf(Math.max(...expected));
      expect(body.predictions[0]!.index, file).toBe(best);
      expect(file).toMatch(new RegExp(`_${body.predictions[0]!.label}\\.png$`));
      for (const p of body.predictions) expect(Math.abs(p.score - expected[p.index]!)).toBeLessThan(1e-4);
    }
  });

  it('answers /glue/mnli as padserve predict does on the host', async () => {
    const card = JSON.parse(readFileSync(join(repo, 'bert-tiny', '1', 'config.json'), 'utf8')) as {
      labels: string[];
    };
    for (const [premise, hypothesis] of PAIRS) {
      const expected = softmax(
        hostLogits(join(repo, 'bert-tiny', '1'), ['--text', premise, '--text-pair', hypothesis]),
      );
      const res = await fetch(`${url}/glue/mnli`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ premise, hypothesis }),
      });
      expect(res.status, await res.clone().text()).toBe(200);
      const body = (await res.json()) as { label: string; probabilities: Record<string, number> };
      expect(body.label).toBe(card.labels[expected.indexOf(Math.max(...expected))]);
      card.labels.forEach((label, i) =>
        expect(Math.abs(body.probabilities[label]! - expected[i]!), label).toBeLessThan(1e-4),
      );
    }
  });

  it('runs the server as uid 10001 (not root), listening only on loopback of the host network it was given', () => {
    expect(dockerOk(['inspect', '-f', '{{.Config.User}} {{.HostConfig.NetworkMode}}', container!])).toBe(
      '10001:10001 host',
    );
    // Every process in the container: tini (PID 1) and node, all as 10001.
    const procs = dockerOk([
      'exec',
      container!,
      'node',
      '-e',
      `const fs=require('fs');for(const p of fs.readdirSync('/proc').filter(x=>/^\\d+$/.test(x))){try{const s=fs.readFileSync('/proc/'+p+'/status','utf8');console.log(/^Name:\\s*(\\S+)/m.exec(s)[1],/^Uid:\\s*(\\d+)/m.exec(s)[1])}catch{}}`,
    ]);
    const lines = procs.split('\n').map((l) => l.split(' '));
    expect(lines.map((l) => l[0])).toEqual(expect.arrayContaining(['tini', 'node']));
    for (const [name, uid] of lines) expect(uid, name).toBe('10001');
    // The host network: the container's sockets are this machine's. Those owned by uid 10001 that listen
    // (state 0A) must all be on 127.0.0.1 (0100007F) or ::1, and one of them on the port given.
    const listening: { addr: string; port: number }[] = [];
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6'])
      for (const row of readFileSync(f, 'utf8').split('\n').slice(1)) {
        const c = row.trim().split(/\s+/);
        if (c.length < 8 || c[3] !== '0A' || c[7] !== '10001') continue;
        const [addr, hexPort] = c[1]!.split(':');
        listening.push({ addr: addr!, port: parseInt(hexPort!, 16) });
      }
    expect(listening.map((l) => l.port)).toContain(port);
    for (const l of listening) expect(['0100007F', '00000000000000000000000001000000']).toContain(l.addr);
  });

  it('turns healthy through its HEALTHCHECK', async () => {
    const status = () => dockerOk(['inspect', '-f', '{{.State.Health.Status}}', container!]);
    await waitFor(() => status() === 'healthy', 'HEALTHCHECK healthy', 120_000);
    expect(status()).toBe('healthy');
  });

  it('finds no CUDA provider on disk; with provider files present it tries CUDA and falls back to the CPU', () => {
    const probe = dockerOk([
      'exec',
      container!,
      'node',
      '--input-type=module',
      '-e',
      "const m = await import('/app/dist/src/runtime/device.js'); console.log(JSON.stringify(m.deviceAvailable('cuda')))",
    ]);
    const absent = JSON.parse(probe) as { ok: boolean; why: string };
    expect(absent.ok).toBe(false);
    expect(absent.why).toMatch(/libonnxruntime_providers_cuda\.so/);
    // A throwaway container as root (the app files are root's): empty provider files make deviceAvailable say
    // yes, and creating the session on CUDA then fails and falls back, as on a host without a working CUDA.
    const tried = dockerOk([
      ...offlineAsRoot,
      '-v',
      `${repo}:/models:ro`,
      '--entrypoint',
      'node',
      IMAGE,
      '--input-type=module',
      '-e',
      [
        "import { writeFileSync } from 'node:fs';",
        "const m = await import('/app/dist/src/runtime/device.js');",
        "for (const f of m.PROVIDER_LIBRARIES.cuda) writeFileSync(m.ortBindingDir() + '/' + f, '');",
        "const avail = m.deviceAvailable('cuda'); const logs = [];",
        "const s = await m.loadOnDevice('/models/mnist/1', 'cuda', {}, (l) => logs.push(l));",
        'console.log(JSON.stringify({ avail, device: s.device, logs }));',
      ].join('\n'),
    ]);
    const r = JSON.parse(tried.split('\n').at(-1)!) as {
      avail: { ok: boolean };
      device: string;
      logs: string[];
    };
    expect(r.avail.ok).toBe(true);
    expect(r.device).toBe('cpu');
    expect(r.logs).toHaveLength(1);
    expect(r.logs[0]).toMatch(/device cuda failed .*falling back to cpu/);
  });

  it("Dockerfile.cuda's provider step runs in the CPU image up to the NuGet download (no network here)", () => {
    const step = /^RUN (ONNXRUNTIME_NODE_INSTALL=\S+ npm rebuild onnxruntime-node)/m.exec(
      readFileSync(join(REPO_ROOT, 'Dockerfile.cuda'), 'utf8'),
    )?.[1];
    expect(step).toBeDefined();
    // --network none: the script's first request (the NuGet feed index) fails at name resolution, on any machine.
    const r = docker([...offlineAsRoot, '--workdir', '/app', '--entrypoint', 'sh', IMAGE, '-c', step!]);
    expect(r.status).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/node \.\/script\/install[\s\S]*api\.nuget\.org/);
  });

  it('docker stop drains the queued requests (all 200) and the container exits 0', async () => {
    const img = readFileSync(SAMPLES[0]!);
    const send = () =>
      fetch(`${url}/classify?model=mnist-drain`, {
        method: 'POST',
        body: img,
        headers: { 'content-type': 'image/png' },
      });
    // Two: the converted graph has batch buckets 1,2,4,8 (config.json graph.buckets) and the count policy sends
    // a count between two buckets at once (src/batching/policy.ts); two fill bucket 2 and wait for the window.
    const inflight = [send(), send()];
    await waitFor(
      async () =>
        metricValue(await (await fetch(`${url}/metrics`)).text(), 'padserve_queue_depth', {
          model: 'mnist-drain',
        }) === 2,
      'two queued requests',
    );
    const stop = runAsync('docker', ['stop', container!], 120_000);
    const answers = await Promise.all(inflight);
    expect(answers.map((a) => a.status)).toEqual([200, 200]);
    expect((await stop).status).toBe(0);
    expect(dockerOk(['inspect', '-f', '{{.State.ExitCode}} {{.State.OOMKilled}}', container!])).toBe(
      '0 false',
    );
    const log = docker(['logs', container!]);
    expect(log.stdout + log.stderr).toMatch(/received SIGTERM: draining \(2 request\(s\) in flight/);
    say(`times ${JSON.stringify(times)}`);
  });
});
