/**
 * Security properties of a real server: request-named paths never reach the file system (model names are
 * validated identifiers), the admin API does not exist without a token, an optional bearer token guards the
 * inference routes, CORS is off, security headers are set, errors carry no stack traces or server paths, request
 * ids come back and appear in the logs.
 */
import { mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearerMatches } from '../../src/inference/bearer.js';
import {
  fixtureRepository,
  IMAGE_MODEL,
  photo,
  postImage,
  postJson,
  startTestServer,
  TEXT_MODEL,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

let repo: FixtureRepo;
let open: TestServer; // no tokens, lazy loading (request-named models reach the repository scan)
let locked: TestServer; // API and admin tokens
const API = 'api-token-0123';
const ADMIN = 'admin-token-4567';

/** Every path under `dir` with its size and mtime: "touched nothing" means this does not change. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      const s = statSync(p);
      out.push(`${p} ${s.size} ${s.mtimeMs}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

beforeAll(async () => {
  repo = await fixtureRepository();
  // A model folder outside the repository, next to it: reachable only by a traversal.
  mkdirSync(join(repo.dir, '..', 'padserve-outside'), { recursive: true });
  writeFileSync(join(repo.dir, '..', 'padserve-outside', 'serving.json'), '{}');
  open = await startTestServer(repo.dir, { loadPolicy: 'lazy', logLevel: 'info' });
  locked = await startTestServer(repo.dir, { apiToken: API, adminToken: ADMIN, maxConnections: 4 });
});

afterAll(async () => {
  await open?.close();
  await locked?.close();
  repo?.cleanup();
});

describe('request-named paths', () => {
  it('model names with traversal or absolute paths get 400/404 and touch nothing', async () => {
    const before = tree(repo.dir);
    const names = [
      '../padserve-outside',
      '..%2Fpadserve-outside',
      '%2E%2E%2Fpadserve-outside',
      '/etc/passwd',
      '%2Fetc%2Fpasswd',
      '..',
      '.',
      `${IMAGE_MODEL}/../${TEXT_MODEL}`,
      'C:\\Windows',
      `${IMAGE_MODEL}%00`,
      'x'.repeat(300),
    ];
    const seen: string[] = [];
    for (const n of names) {
      // Encoded so that the client does not resolve `..` itself: the server sees the name as sent.
      const q = n.includes('%') ? n : encodeURIComponent(n);
      const answers = [
        await postImage(open.url, photo('coffee.jpg'), `?model=${q}`),
        await postJson(open.url, `/v2/models/${q}/infer`, {
          inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['x'] }],
        }),
        await fetch(`${open.url}/v2/models/${q}`),
        await fetch(`${open.url}/v2/models/${q}/ready`),
        await fetch(`${locked.url}/admin/models/${q}/load`, {
          method: 'POST',
          headers: { authorization: `Bearer ${ADMIN}` },
        }),
      ];
      for (const r of answers) {
        const text = await r.text();
        seen.push(`${r.status}`);
        expect([400, 404, 414], `${n}: ${r.status} ${text}`).toContain(r.status);
        expect(JSON.parse(text)).toHaveProperty('code');
        expect(text).not.toContain(repo.dir); // no server paths in answers
        expect(text).not.toMatch(/\n\s+at /);
      }
    }
    expect(tree(repo.dir)).toEqual(before);
    expect(open.server.models.names().sort()).toEqual([IMAGE_MODEL, TEXT_MODEL].sort());
    expect(locked.server.models.names().sort()).toEqual([IMAGE_MODEL, TEXT_MODEL].sort());
    console.log(`traversal attempts: ${seen.length} answers, statuses ${[...new Set(seen)].join(', ')}`);
  });

  it('no route fetches a URL: an image "URL" is just bytes that are not an image', async () => {
    const r = await fetch(`${open.url}/classify`, {
      method: 'POST',
      body: 'http://127.0.0.1:1/secret.jpg',
      headers: { 'content-type': 'image/jpeg' },
    });
    expect(r.status).toBe(415);
    expect(await r.json()).toMatchObject({ code: 'unsupported_image_format' });
  });
});

describe('access control', () => {
  it('the admin API does not exist without an admin token', async () => {
    for (const p of ['/admin/models', `/admin/models/${IMAGE_MODEL}/unload`]) {
      const r = await fetch(`${open.url}${p}`, { method: p.endsWith('unload') ? 'POST' : 'GET' });
      expect(r.status).toBe(404);
      expect(await r.json()).toMatchObject({ code: 'route_not_found' });
    }
    expect(open.server.models.names()).toContain(IMAGE_MODEL);
  });

  it('with an API token, inference needs it; health, metadata and metrics stay open; admin needs its own', async () => {
    const glue = (auth?: string) =>
      postJson(
        locked.url,
        '/glue/mnli',
        { premise: 'a', hypothesis: 'b' },
        auth ? { authorization: auth } : {},
      );
    for (const auth of [
      undefined,
      'Bearer wrong',
      `Basic ${API}`,
      `Bearer ${API}x`,
      `Bearer ${ADMIN}`,
      'Bearer',
    ]) {
      const r = await glue(auth);
      expect(r.status, String(auth)).toBe(401);
      expect(await r.json()).toMatchObject({ code: 'unauthorized', error_type: 'unauthorized' });
    }
    expect((await glue(`Bearer ${API}`)).status).toBe(200);
    expect((await glue(`bearer   ${API}  `)).status).toBe(200);
    expect((await postImage(locked.url, photo('coffee.jpg'))).status).toBe(401);
    expect(
      (await postImage(locked.url, photo('coffee.jpg'), '', { authorization: `Bearer ${API}` })).status,
    ).toBe(200);
    const v2 = { inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['x'] }] };
    expect((await postJson(locked.url, `/v2/models/${TEXT_MODEL}/infer`, v2)).status).toBe(401);
    expect(
      (await postJson(locked.url, `/v2/models/${TEXT_MODEL}/infer`, v2, { authorization: `Bearer ${API}` }))
        .status,
    ).toBe(200);
    for (const p of ['/v2/health/live', '/v2/health/ready', '/metrics', '/v2', `/v2/models/${IMAGE_MODEL}`])
      expect((await fetch(`${locked.url}${p}`)).status, p).toBe(200);
    expect(
      (await fetch(`${locked.url}/admin/models`, { headers: { authorization: `Bearer ${API}` } })).status,
    ).toBe(401);
    expect(
      (await fetch(`${locked.url}/admin/models`, { headers: { authorization: `Bearer ${ADMIN}` } })).status,
    ).toBe(200);
  });

  it('compares tokens over fixed-length digests (any length, no throw)', () => {
    expect(bearerMatches(`Bearer ${API}`, API)).toBe(true);
    for (const h of [undefined, '', 'Bearer ', `Bearer ${'x'.repeat(10_000)}`, `Bearer ${API.slice(0, -1)}`])
      expect(bearerMatches(h, API)).toBe(false);
  });
});

describe('headers and error bodies', () => {
  it('no CORS, nosniff, no x-powered-by, a request id on every answer', async () => {
    const pre = await fetch(`${open.url}/glue/mnli`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    for (const r of [
      await postJson(
        open.url,
        '/glue/mnli',
        { premise: 'a', hypothesis: 'b' },
        { origin: 'https://evil.example' },
      ),
      await postJson(open.url, '/glue/mnli', { nope: 1 }),
      await fetch(`${open.url}/nowhere`),
      await fetch(`${open.url}/v2/health/ready`),
    ]) {
      expect(r.headers.get('access-control-allow-origin')).toBeNull();
      expect(r.headers.get('x-content-type-options')).toBe('nosniff');
      expect(r.headers.get('x-powered-by')).toBeNull();
      expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{8,}$/);
    }
  });

  it('request ids: a sane client id is kept (tracing), anything else is replaced (no log injection)', async () => {
    const sane = await postJson(
      open.url,
      '/glue/mnli',
      { premise: 'a', hypothesis: 'b' },
      { 'x-request-id': 'trace-42.a:b' },
    );
    expect(sane.headers.get('x-request-id')).toBe('trace-42.a:b');
    for (const bad of ['evil id', 'x"}{"level":60', 'a'.repeat(200)]) {
      const r = await postJson(
        open.url,
        '/glue/mnli',
        { premise: 'a', hypothesis: 'b' },
        { 'x-request-id': bad },
      );
      expect(r.headers.get('x-request-id')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-/);
    }
  });
});

describe('connection limit', () => {
  // Beyond the cap a connection is kept and answered (429 `too_many_connections` on inference, health as usual;
  // test/e2e/server-overload-answers.test.ts), never dropped unanswered; idle ones still meet the receive timeout.
  it('--max-connections: connections beyond the limit are not dropped; the server serves again after', async () => {
    const url = new URL(locked.url);
    const sockets: Socket[] = [];
    const closed = new Set<number>();
    for (let i = 0; i < 8; i++) {
      const s = connect(Number(url.port), url.hostname);
      s.on('close', () => closed.add(i));
      s.on('error', () => undefined);
      sockets.push(s);
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 500));
    const open = sockets.length - closed.size;
    sockets.forEach((s) => s.destroy());
    expect(open).toBe(8);
    expect(closed.size).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    expect((await fetch(`${locked.url}/v2/health/live`)).status).toBe(200);
  });
});
