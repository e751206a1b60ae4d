/**
 * Faults on a real server (real worker threads, real process): a model whose worker crashes mid-run, a model
 * whose worker hangs (test-only fault hook `PADSERVE_TEST_FAULTS`, see src/runtime/inference-worker.ts), and a new model
 * version whose file is corrupt. Asserted: the failing requests get a retryable 503 with a code, the worker is
 * replaced, the process and the other models keep serving, and a failed load leaves the previous version serving.
 * (Pool-level crash/hang unit tests: test/e2e/server-runtime.test.ts.)
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fixtureRepository,
  IMAGE_MODEL,
  photo,
  postImage,
  postJson,
  startTestServer,
  waitFor,
  writeServing,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

const CRASH = 'faulty-crash';
const HANG = 'faulty-hang';
const TOKEN = 'reliability-admin-token';
let repo: FixtureRepo;
let srv: TestServer;

beforeAll(async () => {
  // Read by the inference workers when they start (after this line).
  process.env.PADSERVE_TEST_FAULTS = `crash:${CRASH},hang:${HANG}`;
  process.env.PADSERVE_TEST_HANG_MS = '30000';
  repo = await fixtureRepository();
  for (const name of [CRASH, HANG]) {
    cpSync(join(repo.dir, IMAGE_MODEL, '1'), join(repo.dir, name, '1'), { recursive: true });
    writeServing(repo.dir, name, { max_batch_size: 2, warmup: 'none' }); // warming would trip the fault
  }
  srv = await startTestServer(repo.dir, { workers: 2, workerRunTimeoutMs: 2500, adminToken: TOKEN });
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
  delete process.env.PADSERVE_TEST_FAULTS;
  delete process.env.PADSERVE_TEST_HANG_MS;
});

const glue = () => postJson(srv.url, '/glue/mnli', { premise: 'a man plays a guitar', hypothesis: 'music' });
const classify = (model = IMAGE_MODEL) => postImage(srv.url, photo('coffee.jpg'), `?model=${model}`);

/** Sends `send` until it answers 200, counting the retryable 503s on the way (other status: fails). */
async function untilOk(send: () => Promise<Response>): Promise<{ body: unknown; retries: number }> {
  let retries = 0;
  for (;;) {
    const r = await send();
    if (r.status === 200) return { body: await r.json(), retries };
    expect(r.status, await r.text()).toBe(503);
    expect(r.headers.get('retry-after')).toBeTruthy();
    retries++;
    if (retries > 200) throw new Error('never recovered');
    await new Promise((res) => setTimeout(res, 50));
  }
}

describe('worker faults', () => {
  let before: { image: string; glue: string };

  it('serves normally first', async () => {
    before = {
      image: JSON.stringify(((await (await classify()).json()) as { predictions: unknown }).predictions),
      glue: JSON.stringify(((await (await glue()).json()) as { probabilities: unknown }).probabilities),
    };
  });

  it('a worker that crashes: its request gets 503 worker_crashed, the worker is replaced, everything keeps serving', async () => {
    const t0 = Date.now();
    // Other models' requests in flight around the crash: each answers 200 or a retryable 503, never hangs.
    const around = Array.from({ length: 6 }, (_, i) => (i % 2 ? glue() : classify()));
    const res = await classify(CRASH);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ code: 'worker_crashed', error_type: 'worker_failed' });
    const aroundStatus = (await Promise.all(around)).map((r) => r.status);
    expect(
      aroundStatus.every((s) => s === 200 || s === 503),
      String(aroundStatus),
    ).toBe(true);
    // The process lives; the other models answer (after the replacement reloads them, if they shared the worker).
    const img = await untilOk(() => classify());
    const txt = await untilOk(glue);
    expect(JSON.stringify((img.body as { predictions: unknown }).predictions)).toBe(before.image);
    expect(JSON.stringify((txt.body as { probabilities: unknown }).probabilities)).toBe(before.glue);
    console.log(
      `crash: 503 in ${Date.now() - t0} ms; around it ${JSON.stringify(aroundStatus)}; recovery retries image ${img.retries}, text ${txt.retries}`,
    );
    // It happens again the same way (no crash loop of the pool, no stuck state).
    expect((await classify(CRASH)).status).toBe(503);
    await untilOk(glue);
    expect((await fetch(`${srv.url}/v2/health/live`)).status).toBe(200);
  });

  it('a worker that hangs: its request gets 503 inference_timeout after the run timeout, the worker is replaced', async () => {
    const t0 = Date.now();
    const res = await classify(HANG);
    const ms = Date.now() - t0;
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ code: 'inference_timeout', error_type: 'worker_failed' });
    expect(ms).toBeLessThan(25_000); // far below the 30 s spin: the pool cut it off
    const txt = await untilOk(glue);
    expect(JSON.stringify((txt.body as { probabilities: unknown }).probabilities)).toBe(before.glue);
    const img = await untilOk(() => classify());
    expect(JSON.stringify((img.body as { predictions: unknown }).predictions)).toBe(before.image);
    console.log(
      `hang: 503 after ${ms} ms (run timeout 2500 ms); recovery retries text ${txt.retries}, image ${img.retries}`,
    );
  }, 60_000);
});

describe('model load faults', () => {
  it('a corrupt new version fails to load and leaves the previous version serving', async () => {
    const v2 = join(repo.dir, IMAGE_MODEL, '2');
    cpSync(join(repo.dir, IMAGE_MODEL, '1'), v2, { recursive: true });
    // Corrupt the graph the card points to (a bucketed model's first bucket graph, else model.onnx).
    const card = JSON.parse(readFileSync(join(v2, 'config.json'), 'utf8')) as { graph: { file: string } };
    writeFileSync(join(v2, card.graph.file), Buffer.from('this is not an onnx graph'));
    const reload = await fetch(`${srv.url}/admin/models/${IMAGE_MODEL}/reload`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const text = await reload.text();
    expect(reload.status, text).toBeGreaterThanOrEqual(400);
    expect(JSON.parse(text)).toMatchObject({ code: 'model_load_failed' });
    expect(text).not.toMatch(/\n\s+at /);
    console.log(`corrupt version reload: ${reload.status} ${text.slice(0, 200)}`);
    const res = await classify();
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ model: IMAGE_MODEL, version: '1' });
    const ready = (await (await fetch(`${srv.url}/v2/health/ready`)).json()) as {
      models: Record<string, { loaded: number[]; error: string | null }>;
    };
    expect(ready.models[IMAGE_MODEL]!.loaded).toEqual([1]);
    expect(ready.models[IMAGE_MODEL]!.error).toBeTruthy();
    await waitFor(async () => (await classify()).status === 200, 'version 1 still serving');
  });
});
