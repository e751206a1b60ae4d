/**
 * The V2 server-side extensions on the real fixture models over loopback: health answers (200 / 400), the model
 * list, Triton's statistics and model repository extensions (index, load / unload behind the admin token), the
 * per-version metric series, and readiness under `--load-policy lazy`. Each test quotes the protocol line it
 * checks (KServe open-inference-protocol `inference_rest.md`, Triton `docs/protocol/*.md`).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fixtureRepository,
  IMAGE_MODEL,
  metrics,
  metricValue,
  postJson,
  startTestServer,
  TEXT_MODEL,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

const TOKEN = 'v2-repository-test-token';
let repo: FixtureRepo;
let srv: TestServer;

beforeAll(async () => {
  repo = await fixtureRepository();
  srv = await startTestServer(repo.dir, { adminToken: TOKEN });
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
});

const auth = { authorization: `Bearer ${TOKEN}` };
const post = (path: string, body?: unknown, headers: Record<string, string> = {}) =>
  fetch(`${srv.url}${path}`, {
    method: 'POST',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    headers: { 'content-type': 'application/json', ...headers },
  });
const pixels = (n: number) => ({
  inputs: [
    {
      name: 'pixel_values',
      shape: [n, 3, 224, 224],
      datatype: 'FP32',
      data: new Array<number>(n * 3 * 224 * 224).fill(0.5),
    },
  ],
});
async function expectError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect((JSON.parse(text) as { code: string }).code, text).toBe(code);
}

interface DurationStat {
  count: number;
  ns: number;
}
interface ModelStat {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<string, DurationStat>;
  batch_stats: { batch_size: number; compute_infer: DurationStat }[];
}

describe('statistics extension', () => {
  it('counts inferences, executions and phase durations per model version', async () => {
    // extension_statistics.md: "GET v2/models[/${MODEL_NAME}[/versions/${MODEL_VERSION}]]/stats", and
    // "inference_count" : "Each inference in a batched request is counted as an individual inference."
    const stats = async (path: string) => {
      const res = await fetch(`${srv.url}${path}`);
      expect(res.status).toBe(200);
      return ((await res.json()) as { model_stats: ModelStat[] }).model_stats;
    };
    const before = (await stats(`/v2/models/${IMAGE_MODEL}/stats`))[0]!;
    expect((await postJson(srv.url, `/v2/models/${IMAGE_MODEL}/infer`, pixels(3))).status).toBe(200);
    expect((await postJson(srv.url, `/v2/models/${IMAGE_MODEL}/infer`, pixels(1))).status).toBe(200);
    const failed = await postJson(srv.url, `/v2/models/${IMAGE_MODEL}/infer`, {
      inputs: [{ name: 'pixel_values', shape: [1, 3, 2, 2], datatype: 'FP32', data: new Array(12).fill(0) }],
    });
    expect(failed.status).toBe(400);

    const after = (await stats(`/v2/models/${IMAGE_MODEL}/versions/1/stats`))[0]!;
    expect(after).toMatchObject({ name: IMAGE_MODEL, version: '1' });
    expect(after.inference_count - before.inference_count).toBe(4);
    expect(after.inference_stats.success!.count - before.inference_stats.success!.count).toBe(2);
    expect(after.inference_stats.fail!.count - before.inference_stats.fail!.count).toBe(1);
    expect(after.execution_count).toBeGreaterThan(before.execution_count);
    expect(after.last_inference).toBeGreaterThan(0);
    for (const k of ['success', 'queue', 'compute_input', 'compute_infer', 'compute_output'])
      expect(after.inference_stats[k]!.ns, k).toBeGreaterThan(0);
    const executions = after.batch_stats.reduce((n, b) => n + b.compute_infer.count, 0);
    expect(executions).toBe(after.execution_count);

    const all = await stats('/v2/models/stats');
    expect(all.map((s) => `${s.name}/${s.version}`).sort()).toEqual(
      [`${IMAGE_MODEL}/1`, `${TEXT_MODEL}/1`].sort(),
    );
    await expectError(await fetch(`${srv.url}/v2/models/nope/stats`), 404, 'unknown_model');
    await expectError(
      await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/versions/2/stats`),
      404,
      'unknown_version',
    );
  });

  it('labels every queue, inference and batch series by version', async () => {
    const text = await metrics(srv.url);
    const labels = { model: IMAGE_MODEL, version: '1' };
    expect(metricValue(text, 'padserve_batch_size_count', labels)).toBeGreaterThan(0);
    expect(metricValue(text, 'padserve_batches_total', { ...labels, outcome: 'ok' })).toBeGreaterThan(0);
    expect(metricValue(text, 'padserve_inference_rows_total', labels)).toBeGreaterThanOrEqual(4);
    expect(metricValue(text, 'padserve_inference_duration_seconds_count', labels)).toBeGreaterThan(0);
    expect(metricValue(text, 'padserve_queue_duration_seconds_count', labels)).toBeGreaterThanOrEqual(4);
    expect(text).toMatch(new RegExp(`padserve_queue_depth\\{model="${IMAGE_MODEL}",version="1"\\} 0`));
    // No series of these families lacks the version label.
    for (const line of text.split('\n'))
      if (
        /^padserve_(batch_size|batches_total|inference_rows|queue_depth|queue_duration|inference_duration)/.test(
          line,
        )
      )
        expect(line).toMatch(/version="\d+"/);
  });
});

describe('model list and repository extension', () => {
  it('lists the models (KServe) and indexes the repository (Triton)', async () => {
    expect(await (await fetch(`${srv.url}/v2/models`)).json()).toEqual({ models: [TEXT_MODEL, IMAGE_MODEL] });
    // extension_model_repository.md: "The index API returns information about every model available in a
    // model repository, even if it is not currently loaded".
    const index = await post('/v2/repository/index', {});
    expect(index.status).toBe(200);
    expect(await index.json()).toEqual([
      { name: TEXT_MODEL, version: '1', state: 'READY', reason: '' },
      { name: IMAGE_MODEL, version: '1', state: 'READY', reason: '' },
    ]);
    expect((await post('/v2/repository/index')).status).toBe(200);
    await expectError(await post('/v2/repository/index', { readdy: true }), 400, 'unsupported_parameter');
  });

  it('unloads and loads a model behind the admin token; readiness follows', async () => {
    // extension_model_repository.md: "The load API requests that a model be loaded into Triton, or reloaded if
    // the model is already loaded." and "A successful load request is indicated by a 200 HTTP status."
    await expectError(await post(`/v2/repository/models/${IMAGE_MODEL}/unload`), 401, 'unauthorized');
    await expectError(
      await post(`/v2/repository/models/${IMAGE_MODEL}/unload`, undefined, { authorization: 'Bearer nope' }),
      401,
      'unauthorized',
    );
    const unload = await post(`/v2/repository/models/${IMAGE_MODEL}/unload`, {}, auth);
    expect(unload.status).toBe(200);
    expect(await unload.text()).toBe('');

    // inference_rest.md (KServe v2 health): "A 200 status code indicates true and a 4xx status code indicates
    // false." The model is unloaded: not ready; the server stays ready (unloaded on purpose).
    const modelReady = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/ready`);
    expect(modelReady.status).toBe(400);
    expect(await modelReady.json()).toEqual({ name: IMAGE_MODEL, ready: false });
    expect((await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/versions/1/ready`)).status).toBe(400);
    expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200);
    const index = (await (await post('/v2/repository/index', {})).json()) as {
      name: string;
      state: string;
    }[];
    expect(index.find((m) => m.name === IMAGE_MODEL)).toEqual({
      name: IMAGE_MODEL,
      state: 'UNAVAILABLE',
      reason: 'unloaded',
    });
    expect(
      ((await (await post('/v2/repository/index', { ready: true })).json()) as { name: string }[]).map(
        (m) => m.name,
      ),
    ).toEqual([TEXT_MODEL]);
    await expectError(
      await postJson(srv.url, `/v2/models/${IMAGE_MODEL}/infer`, pixels(1)),
      503,
      'model_not_ready',
    );

    await expectError(
      await post(`/v2/repository/models/${IMAGE_MODEL}/load`, { parameters: { config: '{}' } }, auth),
      400,
      'unsupported_parameter',
    );
    const load = await post(`/v2/repository/models/${IMAGE_MODEL}/load`, undefined, auth);
    expect(load.status).toBe(200);
    expect((await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/ready`)).status).toBe(200);
    expect((await postJson(srv.url, `/v2/models/${IMAGE_MODEL}/infer`, pixels(1))).status).toBe(200);
    await expectError(await post('/v2/repository/models/nope/load', {}, auth), 404, 'unknown_model');
  });
});

describe('readiness under --load-policy lazy', () => {
  let lazyRepo: FixtureRepo;
  let lazy: TestServer;
  beforeAll(async () => {
    lazyRepo = await fixtureRepository();
    lazy = await startTestServer(lazyRepo.dir, { loadPolicy: 'lazy' });
  });
  afterAll(async () => {
    await lazy?.close();
    lazyRepo?.cleanup();
  });

  it('is ready while every model can load on its first request, not once a load failed', async () => {
    // inference_rest.md: 'The “server ready” health API indicates if all the models are ready for inferencing.'
    // Lazy models are loaded by their first inference request, so "ready for inferencing" means none failed.
    const ready = await fetch(`${lazy.url}/v2/health/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, models: { [IMAGE_MODEL]: { loaded: [] } } });
    // Model readiness stays strict: not loaded yet is not ready.
    expect((await fetch(`${lazy.url}/v2/models/${IMAGE_MODEL}/ready`)).status).toBe(400);
    expect((await postJson(lazy.url, `/v2/models/${IMAGE_MODEL}/infer`, pixels(1))).status).toBe(200);
    expect((await fetch(`${lazy.url}/v2/models/${IMAGE_MODEL}/ready`)).status).toBe(200);

    // Break the text model's graph before its first load: its lazy load fails, and the server is not ready.
    writeFileSync(join(lazyRepo.dir, TEXT_MODEL, '1', 'model.onnx'), 'not an onnx graph');
    const res = await postJson(lazy.url, `/v2/models/${TEXT_MODEL}/infer`, {
      inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['hello'] }],
    });
    expect(res.status).toBeGreaterThanOrEqual(500);
    const after = await fetch(`${lazy.url}/v2/health/ready`);
    expect(after.status).toBe(400);
    const body = (await after.json()) as { ready: boolean; models: Record<string, { error: string | null }> };
    expect(body.ready).toBe(false);
    expect(body.models[TEXT_MODEL]!.error).toBeTruthy();
    expect((await fetch(`${lazy.url}/v2/health/live`)).status).toBe(200);
  });

  it('refuses model control when no admin token is configured', async () => {
    await expectError(
      await post2(lazy.url, `/v2/repository/models/${IMAGE_MODEL}/unload`),
      403,
      'admin_api_off',
    );
  });
});

function post2(url: string, path: string): Promise<Response> {
  return fetch(`${url}${path}`, { method: 'POST', headers: { authorization: 'Bearer x' } });
}
