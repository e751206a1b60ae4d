/**
 * Back-pressure and failure paths on a real server: a full queue answers 429 at once, a deadline that passes
 * in the queue answers 504, a client that disconnects has its request dropped before the model runs it, and the
 * server is not ready until its (default) models are built, loaded and warmed. No timing assertions: the tests
 * hold requests in a queue with a long max_queue_delay_ms and poll the metrics.
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultConfig } from '../../server/config.js';
import { startServer } from '../../server/main.js';
import { glueModelName } from '../../src/repository/defaults.js';
import {
  fixtureRepository,
  IMAGE_MODEL,
  metrics,
  metricValue,
  photo,
  postImage,
  postJson,
  startTestServer,
  TEXT_MODEL,
  waitFor,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

let repo: FixtureRepo;
let srv: TestServer;

beforeAll(async () => {
  // Image requests wait up to 3 s for a batch of 8 to form; at most 2 may wait.
  repo = await fixtureRepository({
    [IMAGE_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 3000, max_queue_size: 2 },
  });
  srv = await startTestServer(repo.dir, { retryAfterS: 3 });
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
});

const depth = async () => metricValue(await metrics(srv.url), 'padserve_queue_depth', { model: IMAGE_MODEL });

describe('back-pressure', () => {
  it('answers 429 with Retry-After at once when the queue is full; queued requests still complete', async () => {
    const img = photo('chelsea.jpg');
    const queued = [postImage(srv.url, img), postImage(srv.url, img)];
    await waitFor(async () => (await depth()) === 2, 'two queued requests');
    const rejected = await postImage(srv.url, img);
    expect(rejected.status).toBe(429);
    expect(rejected.headers.get('retry-after')).toBe('3');
    expect(await rejected.json()).toMatchObject({ code: 'queue_full', error_type: 'rejected_queue_full' });
    const done = await Promise.all(queued);
    expect(done.map((r) => r.status)).toEqual([200, 200]);
    expect(
      metricValue(await metrics(srv.url), 'padserve_requests_total', {
        model: IMAGE_MODEL,
        outcome: 'rejected_queue_full',
      }),
    ).toBe(1);
  });

  it('answers 504 deadline_exceeded when the deadline passes in the queue', async () => {
    const res = await postImage(srv.url, photo('coffee.jpg'), '', { 'x-deadline-ms': '200' });
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ code: 'deadline_exceeded', error_type: 'deadline_exceeded' });
    const m = await metrics(srv.url);
    expect(
      metricValue(m, 'padserve_queue_dropped_total', { model: IMAGE_MODEL, reason: 'deadline_exceeded' }),
    ).toBe(1);
    const bad = await postImage(srv.url, photo('coffee.jpg'), '', { 'x-deadline-ms': 'soon' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'invalid_deadline' });
  });

  it('drops a request whose client disconnected before the model runs it', async () => {
    await waitFor(async () => (await depth()) === 0, 'an empty queue');
    const before = await metrics(srv.url);
    const rowsBefore = metricValue(before, 'padserve_inference_rows_total', { model: IMAGE_MODEL });
    const ac = new AbortController();
    const pending = postImage(srv.url, photo('astronaut.jpg'), '', {}, ac.signal).catch((e: Error) => e);
    await waitFor(async () => (await depth()) === 1, 'the request to be queued');
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(
      async () =>
        metricValue(await metrics(srv.url), 'padserve_queue_dropped_total', {
          model: IMAGE_MODEL,
          reason: 'client_cancelled',
        }) === 1,
      'the cancelled request to leave the queue',
    );
    const after = await metrics(srv.url);
    expect(
      metricValue(after, 'padserve_requests_total', { route: '/classify', outcome: 'client_cancelled' }),
    ).toBe(1);
    expect(metricValue(after, 'padserve_queue_depth', { model: IMAGE_MODEL })).toBe(0);
    // A later request goes through; the model never computed the cancelled one.
    const ok = await postImage(srv.url, photo('coffee.jpg'), '', { 'x-deadline-ms': '20000' });
    expect(ok.status).toBe(200);
    const rowsAfter = metricValue(await metrics(srv.url), 'padserve_inference_rows_total', {
      model: IMAGE_MODEL,
    });
    expect(rowsAfter - rowsBefore).toBe(1);
  });

  it('refuses oversized bodies, images and texts with 413', async () => {
    const text = 'word '.repeat(3000);
    const res = await postJson(srv.url, '/glue/mnli', { premise: text, hypothesis: 'x' });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'text_too_long' });
    const big = Buffer.alloc(17 * 1024 * 1024, 1);
    const body = await fetch(`${srv.url}/classify`, {
      method: 'POST',
      body: new Uint8Array(big),
      headers: { 'content-type': 'image/jpeg' },
    });
    expect(body.status).toBe(413);
  });
});

describe('readiness', () => {
  it('is false until the default models are built, loaded and warmed; then /classify uses the default model', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const builds: string[] = [];
    const server = await startServer(
      defaultConfig({
        host: '127.0.0.1',
        port: 0,
        modelRepository: join(repo.dir, 'defaults'),
        logLevel: 'warn',
        intraOpThreads: 1,
      }),
      {
        progress: () => undefined,
        builders: {
          resnet: async (outDir) => {
            await gate;
            cpSync(join(repo.dir, IMAGE_MODEL, '1'), outDir, { recursive: true });
            builds.push('resnet');
          },
          glue: async (dirs) => {
            for (const d of Object.values(dirs))
              cpSync(join(repo.dir, TEXT_MODEL, '1'), d, { recursive: true });
            builds.push(`glue:${Object.keys(dirs).length}`);
          },
        },
      },
    );
    try {
      expect((await fetch(`${server.address}/v2/health/live`)).status).toBe(200);
      const early = await fetch(`${server.address}/v2/health/ready`);
      expect(early.status).toBe(400);
      expect(await early.json()).toMatchObject({ ready: false });
      release();
      await server.loaded;
      expect(builds).toEqual(['resnet', 'glue:9']);
      expect((await fetch(`${server.address}/v2/health/ready`)).status).toBe(200);
      const res = await postImage(server.address, photo('chelsea.jpg'));
      expect(((await res.json()) as { model: string }).model).toBe('resnet50-pad');
      const glue = await postJson(server.address, '/glue/sst2', { sentence: 'a fine film' });
      expect(((await glue.json()) as { model: string }).model).toBe(glueModelName('sst2'));
    } finally {
      await server.shutdown('test end');
    }
  });
});
