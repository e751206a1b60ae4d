/**
 * Helpers for the server tests: a temporary model repository holding the fixture models converted with the real
 * converters (`padserve convert`'s code), and a real server on loopback started from it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { defaultConfig, type ServerConfig } from '../../server/config.js';
import { startServer, type RunningServer } from '../../server/main.js';
import { CLI, IMAGE_FIXTURES, PADNET_FIXTURES, REPO_ROOT } from './paths.js';

export const RESNET_FIXTURE = join(PADNET_FIXTURES, 'resnet-tiny', 'model.safetensors');
export const BERT_FIXTURE = join(PADNET_FIXTURES, 'bert-tiny');
export const PHOTOS = [
  'chelsea.jpg',
  'coffee.jpg',
  'astronaut.jpg',
  'chelsea_gray.jpg',
  'coffee_alpha.png',
].map((f) => join(IMAGE_FIXTURES, f));
export const photo = (name: string) => readFileSync(join(IMAGE_FIXTURES, name));

export const IMAGE_MODEL = 'resnet-tiny';
export const TEXT_MODEL = 'bert-tiny';

export interface FixtureRepo {
  dir: string;
  cleanup(): void;
}

/**
 * Converts the fixture checkpoints into `<tmp>/resnet-tiny/1` and `<tmp>/bert-tiny/1` (the BERT one serves
 * mnli) with the given serving.json overrides per model.
 */
export async function fixtureRepository(
  serving: { [model: string]: Record<string, unknown> } = {},
): Promise<FixtureRepo> {
  const dir = mkdtempSync(join(tmpdir(), 'padserve-repo-'));
  const { convertCommand: convertResNet } = await import('../../src/convert/resnet/command.js');
  const { convertCommand: convertBert } = await import('../../src/convert/bert/command.js');
  const quiet = silenceConsole();
  try {
    await convertResNet(RESNET_FIXTURE, join(dir, IMAGE_MODEL, '1'), { name: IMAGE_MODEL });
    await convertBert(BERT_FIXTURE, join(dir, TEXT_MODEL, '1'), { name: TEXT_MODEL });
  } finally {
    quiet();
  }
  writeServing(dir, IMAGE_MODEL, { max_batch_size: 8, max_queue_delay_ms: 2, ...serving[IMAGE_MODEL] });
  writeServing(dir, TEXT_MODEL, {
    tasks: ['mnli'],
    max_batch_size: 16,
    max_batch_tokens: 1024,
    length_buckets: [16, 32, 64],
    ...serving[TEXT_MODEL],
  });
  for (const [name, s] of Object.entries(serving))
    if (name !== IMAGE_MODEL && name !== TEXT_MODEL) writeServing(dir, name, s);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function writeServing(repo: string, model: string, serving: Record<string, unknown>): void {
  mkdirSync(join(repo, model), { recursive: true });
  writeFileSync(join(repo, model, 'serving.json'), `${JSON.stringify(serving, null, 2)}\n`);
}

function silenceConsole(): () => void {
  const { log, error } = console;
  console.log = () => undefined;
  console.error = () => undefined;
  return () => {
    console.log = log;
    console.error = error;
  };
}

export interface TestServer {
  server: RunningServer;
  url: string;
  close(): Promise<void>;
}

/** Starts a real server on 127.0.0.1 (random port) over `repoDir` and waits until its models are warm. */
export async function startTestServer(
  repoDir: string,
  overrides: Partial<ServerConfig> = {},
): Promise<TestServer> {
  const config = defaultConfig({
    host: '127.0.0.1',
    port: 0,
    modelRepository: repoDir,
    buildDefaultModels: false,
    defaultImageModel: IMAGE_MODEL,
    logLevel: 'warn',
    workers: 1,
    intraOpThreads: 1,
    ...overrides,
  });
  const server = await startServer(config);
  await server.loaded;
  return {
    server,
    url: server.address,
    close: async () => {
      await server.shutdown('test end');
    },
  };
}

/** Sum of a metric's samples whose labels include `labels` (parsed from the Prometheus text). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const m = /^([^{\s]+)(?:\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

export async function metrics(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

/** Polls `check` until it returns true (no timing assertions: only a generous give-up). */
export async function waitFor(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

export async function postImage(
  url: string,
  bytes: Buffer,
  query = '',
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  const form = new FormData();
  form.append('image', new Blob([new Uint8Array(bytes)], { type: 'image/jpeg' }), 'image.jpg');
  return fetch(`${url}/classify${query}`, {
    method: 'POST',
    body: form,
    headers,
    ...(signal ? { signal } : {}),
  });
}

export async function postJson(
  url: string,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
    ...(signal ? { signal } : {}),
  });
}

/** Spawns `node bin/padserve.js serve ...` (what `npm start` runs) and resolves with its URL once it listens. */
export function spawnServe(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ child: ChildProcess; url: string; output: () => string }> {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve({ child, url: m[1]!, output: () => out });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) =>
      reject(new Error(`padserve serve exited with ${code} before listening:\n${out}`)),
    );
  });
}
