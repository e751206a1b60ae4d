/**
 * SIGTERM on the real command (`node bin/padserve.js serve`, what `npm start` runs): readiness turns false,
 * requests already queued finish with 200, new ones are refused (503 on a kept-alive connection, or the
 * connection is refused once the listener is closed), and the process exits 0.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fixtureRepository,
  IMAGE_MODEL,
  metricValue,
  photo,
  spawnServe,
  waitFor,
  type FixtureRepo,
} from '../support/server.js';

let repo: FixtureRepo;

beforeAll(async () => {
  repo = await fixtureRepository({ [IMAGE_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 3000 } });
});

afterAll(() => repo?.cleanup());

describe('padserve serve: SIGTERM', () => {
  it('drains in-flight requests, refuses new ones and exits 0', async () => {
    const { child, url, output } = await spawnServe([
      '--model-repository',
      repo.dir,
      '--port',
      '0',
      '--no-build-default-models',
      '--default-image-model',
      IMAGE_MODEL,
      '--intra-op-threads',
      '1',
    ]);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const get = (path: string) => fetch(`${url}${path}`);
      await waitFor(
        async () => (await get('/v2/health/ready').catch(() => null))?.status === 200,
        'readiness',
        120_000,
      );
      const img = photo('chelsea.jpg');
      const send = () => {
        const form = new FormData();
        form.append('image', new Blob([new Uint8Array(img)], { type: 'image/jpeg' }), 'x.jpg');
        return fetch(`${url}/classify`, { method: 'POST', body: form });
      };
      const inflight = [send(), send(), send()];
      await waitFor(
        async () =>
          metricValue(await (await get('/metrics')).text(), 'padserve_queue_depth', {
            model: IMAGE_MODEL,
          }) === 3,
        'three queued requests',
      );
      child.kill('SIGTERM');
      // After the signal: new requests are refused one way or the other.
      await waitFor(async () => {
        const r = await send().catch(() => null);
        if (r === null) return true;
        return r.status === 503;
      }, 'new requests to be refused');
      const done = await Promise.all(inflight);
      expect(done.map((r) => r.status)).toEqual([200, 200, 200]);
      const bodies = (await Promise.all(done.map((r) => r.json()))) as { model: string }[];
      expect(bodies.every((b) => b.model === IMAGE_MODEL)).toBe(true);
      expect(await exited).toBe(0);
      expect(output()).toMatch(/draining/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
