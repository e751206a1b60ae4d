/**
 * The model repository at run time: the admin API (token, load / unload / reload without dropping in-flight
 * requests, new versions warm before they swap in) and the lazy policy with a memory cap (LRU unload).
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerMatches } from '../../src/inference/bearer.js';
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
  writeServing,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

let repo: FixtureRepo;

beforeAll(async () => {
  repo = await fixtureRepository({ [IMAGE_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 2000 } });
});

afterAll(() => repo?.cleanup());

describe('admin API', () => {
  let srv: TestServer;
  const TOKEN = 'test-token-0123';
  const admin = (path: string, token = TOKEN) =>
    fetch(`${srv.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    srv = await startTestServer(repo.dir, { adminToken: TOKEN });
  });
  afterAll(async () => srv?.close());

  it('compares bearer tokens exactly', () => {
    expect(bearerMatches(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(`bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(bearerMatches(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(bearerMatches(TOKEN, TOKEN)).toBe(false);
    expect(bearerMatches(undefined, TOKEN)).toBe(false);
  });

  it('refuses a missing or wrong token with 401', async () => {
    expect((await fetch(`${srv.url}/admin/models`)).status).toBe(401);
    const wrong = await admin(`/admin/models/${IMAGE_MODEL}/unload`, 'nope');
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ code: 'unauthorized' });
  });

  it('unloads after queued requests finish, answers 503 until loaded again', async () => {
    const queued = postImage(srv.url, photo('chelsea.jpg'));
    await waitFor(
      async () => metricValue(await metrics(srv.url), 'padserve_queue_depth', { model: IMAGE_MODEL }) === 1,
      'a queued request',
    );
    const unload = await admin(`/admin/models/${IMAGE_MODEL}/unload`);
    expect(unload.status).toBe(200);
    expect(await unload.json()).toMatchObject({ name: IMAGE_MODEL, loaded: [], held: true });
    expect((await queued).status).toBe(200);
    const refused = await postImage(srv.url, photo('chelsea.jpg'));
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ code: 'model_not_ready' });
    expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200); // unloaded on purpose: still ready
    const load = await admin(`/admin/models/${IMAGE_MODEL}/load`);
    expect(await load.json()).toMatchObject({ loaded: [1] });
    expect((await postImage(srv.url, photo('chelsea.jpg'))).status).toBe(200);
  });

  it('reloads a new version without dropping in-flight requests (warm, then swap, old drains)', async () => {
    cpSync(join(repo.dir, IMAGE_MODEL, '1'), join(repo.dir, IMAGE_MODEL, '2'), { recursive: true });
    const inflight = [postImage(srv.url, photo('coffee.jpg')), postImage(srv.url, photo('astronaut.jpg'))];
    await waitFor(
      async () => metricValue(await metrics(srv.url), 'padserve_queue_depth', { model: IMAGE_MODEL }) === 2,
      'queued requests',
    );
    const reload = await admin(`/admin/models/${IMAGE_MODEL}/reload`);
    expect(reload.status).toBe(200);
    expect(await reload.json()).toMatchObject({ loaded: [2], served: [2] });
    const old = await Promise.all(inflight);
    expect(old.map((r) => r.status)).toEqual([200, 200]);
    expect(((await old[0]!.json()) as { version: string }).version).toBe('1');
    const fresh = await postImage(srv.url, photo('coffee.jpg'));
    expect(((await fresh.json()) as { version: string }).version).toBe('2');
    expect((await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/versions/1/ready`)).status).toBe(404);
  });

  it('404s unknown models', async () => {
    const res = await admin('/admin/models/nope/load');
    expect(res.status).toBe(404);
  });
});

describe('lazy loading with a memory cap', () => {
  it('loads on first use and unloads the least recently used idle model to fit the cap', async () => {
    // A second image model (a copy): with a cap that fits one image model, loading one unloads the other.
    cpSync(join(repo.dir, IMAGE_MODEL, '1'), join(repo.dir, 'resnet-copy', '1'), { recursive: true });
    writeServing(repo.dir, 'resnet-copy', { max_batch_size: 4 });
    writeServing(repo.dir, IMAGE_MODEL, { max_batch_size: 4 });
    const srv = await startTestServer(repo.dir, {
      loadPolicy: 'lazy',
      modelMemoryCapMb: 40,
      adminToken: 't',
    });
    try {
      const list = async () =>
        (await (
          await fetch(`${srv.url}/admin/models`, { headers: { authorization: 'Bearer t' } })
        ).json()) as { name: string; loaded: number[] }[];
      expect((await list()).every((m) => m.loaded.length === 0)).toBe(true);
      expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200);
      expect((await postImage(srv.url, photo('chelsea.jpg'), `?model=${IMAGE_MODEL}`)).status).toBe(200);
      expect((await list()).find((m) => m.name === IMAGE_MODEL)!.loaded).toEqual([2]);
      expect((await postImage(srv.url, photo('chelsea.jpg'), '?model=resnet-copy')).status).toBe(200);
      const after = await list();
      expect(after.find((m) => m.name === 'resnet-copy')!.loaded).toEqual([1]);
      expect(after.find((m) => m.name === IMAGE_MODEL)!.loaded).toEqual([]);
      const glue = await postJson(srv.url, '/glue/mnli', { premise: 'a', hypothesis: 'b' });
      expect(glue.status).toBe(200);
      expect((await list()).find((m) => m.name === TEXT_MODEL)!.loaded).toEqual([1]);
    } finally {
      await srv.close();
    }
  });
});
