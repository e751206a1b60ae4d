/**
 * Seeded fuzzing of every inference route: random mutations of valid requests (bytes, JSON values, shapes,
 * headers). Asserted for every case: no 5xx, a JSON error body with a code for every 4xx, an answer within a
 * bound (no hang), the server alive and ready afterwards; for every case that succeeds, the answer equals the
 * answer to the same input sent alone (no answer to the wrong request; V2 ids echo back). The bulk goes through
 * inject() (same routes, hooks, parsers, batchers and workers), a smaller part through real loopback HTTP,
 * plus raw garbage on sockets. Case count and time are bounded (FUZZ_CASES / FUZZ_SEED to change them).
 */
import { connect } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/synth/random.js';
import type { FastifyInstance } from 'fastify';
import {
  fixtureRepository,
  IMAGE_MODEL,
  startTestServer,
  TEXT_MODEL,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20261127);
const INJECT_CASES = Number(process.env.FUZZ_CASES ?? 2000);
const LOOPBACK_CASES = Math.ceil(INJECT_CASES / 10);
const TIME_BUDGET_MS = 40_000;
const ANSWER_BOUND_MS = 15_000;

let repo: FixtureRepo;
let srv: TestServer;
let app: FastifyInstance;
let jpeg: Buffer;
let png: Buffer;

beforeAll(async () => {
  repo = await fixtureRepository();
  srv = await startTestServer(repo.dir, { maxBodyBytes: 2 * 1024 * 1024, maxPairsPerRequest: 16 });
  app = srv.server.app;
  const px = Buffer.alloc(48 * 40 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + (i >> 5) * 11) & 255;
  jpeg = await sharp(px, { raw: { width: 48, height: 40, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
  png = await sharp(px, { raw: { width: 48, height: 40, channels: 3 } })
    .png()
    .toBuffer();
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
});

/** Seeded choices for the fuzzer (the project's mulberry32 generator). */
function rng(seed: number) {
  const next = seededRandom(seed);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, pick };
}
type Rng = ReturnType<typeof rng>;

interface Case {
  id: string;
  method: 'POST';
  url: string;
  headers: Record<string, string>;
  body: Buffer;
}

const WORDS = 'the a cat dog sat on mat quick brown fox man plays guitar music loud never'.split(' ');
const sentence = (r: Rng) => Array.from({ length: 1 + r.int(8) }, () => r.pick(WORDS)).join(' ');

function weirdValue(r: Rng, depth = 0): unknown {
  switch (r.int(16)) {
    case 0:
      return null;
    case 1:
      return r.int(2) === 0;
    case 2:
      return -r.int(1000);
    case 3:
      return r.pick([1e308, -1e308, 2 ** 53 + 1, 0.5, -0, 1e-320]);
    case 4:
      return '';
    case 5:
      return 'x'.repeat(r.int(3) === 0 ? 20_000 : 50);
    case 6:
      return '\ud800 lone surrogate';
    case 7:
      return r.pick(['NaN', 'Infinity', '-1', '1e9', '../../etc/passwd', '%00', '\u0000']);
    case 8:
      return depth < 4 ? [weirdValue(r, depth + 1), weirdValue(r, depth + 1)] : [];
    case 9:
      return depth < 4
        ? { [r.pick(['a', 'name', 'shape', '__proto__', 'constructor'])]: weirdValue(r, depth + 1) }
        : {};
    case 10:
      return sentence(r);
    case 11:
      return Array.from({ length: r.int(40) }, () => r.int(3000));
    case 12:
      return [r.int(5) - 1, r.int(300), r.int(300)];
    case 13:
      return JSON.parse(`${'['.repeat(30)}1${']'.repeat(30)}`);
    default:
      return r.int(100);
  }
}

/** Replaces, deletes or adds one value somewhere in a JSON tree. */
function mutateJson(r: Rng, v: unknown, depth = 0): unknown {
  if (Array.isArray(v)) {
    if (!v.length || r.int(4) === 0) return r.int(2) ? weirdValue(r) : [...v, weirdValue(r)];
    const i = r.int(v.length);
    const copy = [...v];
    if (r.int(6) === 0) copy.splice(i, 1);
    else copy[i] = mutateJson(r, v[i], depth + 1);
    return copy;
  }
  if (v && typeof v === 'object') {
    const o = { ...(v as Record<string, unknown>) };
    const keys = Object.keys(o);
    const roll = r.int(8);
    if (!keys.length || roll === 0)
      o[r.pick(['extra', 'pairs', 'sentence', 'premise', 'id', 'outputs', 'parameters'])] = weirdValue(r);
    else if (roll === 1) delete o[r.pick(keys)];
    else {
      const k = r.pick(keys);
      o[k] = mutateJson(r, o[k], depth + 1);
    }
    return o;
  }
  return r.int(3) === 0 ? v : weirdValue(r);
}

function mutateBytes(r: Rng, b: Buffer): Buffer {
  const out = Buffer.from(b);
  switch (r.int(5)) {
    case 0:
      return out.subarray(0, r.int(out.length + 1)); // truncate
    case 1: {
      for (let n = 1 + r.int(8); n > 0; n--) out[r.int(out.length)] = r.int(256); // flip bytes
      return out;
    }
    case 2: {
      const at = r.int(out.length);
      return Buffer.concat([
        out.subarray(0, at),
        Buffer.from(Array.from({ length: 1 + r.int(64) }, () => r.int(256))),
        out.subarray(at),
      ]);
    }
    case 3: {
      const at = r.int(out.length);
      const len = r.int(Math.min(512, out.length - at) + 1);
      return Buffer.concat([out, out.subarray(at, at + len)]);
    }
    default:
      return Buffer.from(Array.from({ length: r.int(200) }, () => r.int(256)));
  }
}

function validCase(r: Rng, id: string): Case {
  const json = (url: string, body: unknown): Case => ({
    id,
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json' },
    body: Buffer.from(JSON.stringify(body)),
  });
  switch (r.int(6)) {
    case 0:
      return {
        id,
        method: 'POST',
        url: '/classify?top_k=3',
        headers: { 'content-type': 'image/jpeg' },
        body: jpeg,
      };
    case 1:
      return { id, method: 'POST', url: '/classify', headers: { 'content-type': 'image/png' }, body: png };
    case 2:
      return json('/glue/mnli', { premise: sentence(r), hypothesis: sentence(r) });
    case 3:
      return json('/glue/mnli', {
        pairs: Array.from({ length: 1 + r.int(3) }, () => [sentence(r), sentence(r)]),
      });
    case 4:
      return json(`/v2/models/${TEXT_MODEL}/infer`, {
        id,
        inputs: [
          { name: 'text', shape: [1], datatype: 'BYTES', data: [sentence(r)] },
          { name: 'text_pair', shape: [1], datatype: 'BYTES', data: [sentence(r)] },
        ],
      });
    default: {
      const px = new Float32Array(3 * 224 * 224);
      const k = r.next();
      for (let i = 0; i < px.length; i += 97) px[i] = Math.sin(i * k);
      const head = Buffer.from(
        JSON.stringify({
          id,
          inputs: [
            {
              name: 'pixel_values',
              shape: [1, 3, 224, 224],
              datatype: 'FP32',
              parameters: { binary_data_size: px.byteLength },
            },
          ],
        }),
      );
      return {
        id,
        method: 'POST',
        url: `/v2/models/${IMAGE_MODEL}/infer`,
        headers: {
          'content-type': 'application/octet-stream',
          'inference-header-content-length': String(head.length),
        },
        body: Buffer.concat([head, Buffer.from(px.buffer)]),
      };
    }
  }
}

/** A valid case, mutated (or, one time in eight, left valid). */
function fuzzCase(r: Rng, i: number): Case {
  const id = `case-${i}`;
  const c = validCase(r, id);
  const roll = r.int(8);
  if (roll === 0) return c;
  const isJson = c.headers['content-type'] === 'application/json';
  const binHeader = c.headers['inference-header-content-length'];
  if (roll <= 3 && isJson) {
    const tree = JSON.parse(c.body.toString('utf8')) as unknown;
    return { ...c, body: Buffer.from(JSON.stringify(mutateJson(r, tree))) };
  }
  if (roll <= 3 && binHeader) {
    const n = Number(binHeader);
    const tree = JSON.parse(c.body.subarray(0, n).toString('utf8')) as unknown;
    const head = Buffer.from(JSON.stringify(mutateJson(r, tree)));
    return {
      ...c,
      headers: { ...c.headers, 'inference-header-content-length': String(head.length) },
      body: Buffer.concat([head, c.body.subarray(n)]),
    };
  }
  if (roll === 4) {
    const headers = { ...c.headers };
    const what = r.int(4);
    if (what === 0)
      headers['content-type'] = r.pick([
        'text/plain',
        'image/svg+xml',
        'application/json',
        'image/gif',
        'multipart/form-data; boundary=x',
        'application/octet-stream',
      ]);
    else if (what === 1)
      headers['inference-header-content-length'] = r.pick([
        '-1',
        '0',
        '1e3',
        'abc',
        String(c.body.length + 5),
        String(r.int(c.body.length)),
      ]);
    else if (what === 2) headers['x-deadline-ms'] = r.pick(['0', '-5', 'soon', '1', '999999999']);
    else headers['content-type'] = 'application/json; charset=latin1';
    return { ...c, headers };
  }
  if (roll === 5) {
    const url = r.pick([
      '/glue/../../etc/passwd',
      '/glue/MNLI',
      '/glue/%00',
      `/v2/models/${IMAGE_MODEL}/versions/0/infer`,
      `/v2/models/${IMAGE_MODEL}/versions/99999999999/infer`,
      '/v2/models/..%2F..%2Fetc/infer',
      '/classify?top_k=-1',
      '/classify?model=%2Fetc%2Fpasswd',
      '/classify?top_k=2&top_k=3',
    ]);
    return { ...c, url };
  }
  return { ...c, body: mutateBytes(r, c.body) };
}

interface Outcome {
  status: number;
  body: string;
  ms: number;
}

const strip = (body: string): unknown => {
  const b = JSON.parse(body) as Record<string, unknown>;
  delete b.timing;
  return b;
};

/** Deep equality with a float tolerance (batched and single runs may differ in the last bits). */
function same(a: unknown, b: unknown): boolean {
  if (typeof a === 'number' && typeof b === 'number')
    return Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(a));
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return (
      same(ka, kb) &&
      ka.every((k) => same((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
    );
  }
  return a === b;
}

/** Parses a 200 body (JSON or V2 binary: JSON header + FP32 tail) into something comparable. */
function answerOf(o: Outcome): unknown {
  try {
    return strip(o.body);
  } catch {
    return o.body; // binary V2 output (asked for by a mutated parameters object)
  }
}

async function viaInject(c: Case): Promise<Outcome> {
  const t0 = performance.now();
  const res = await app.inject({ method: c.method, url: c.url, headers: c.headers, payload: c.body });
  return { status: res.statusCode, body: res.body, ms: performance.now() - t0 };
}

async function viaHttp(c: Case): Promise<Outcome> {
  const t0 = performance.now();
  const res = await fetch(`${srv.url}${c.url}`, {
    method: c.method,
    headers: c.headers,
    body: new Uint8Array(c.body),
  });
  return { status: res.status, body: await res.text(), ms: performance.now() - t0 };
}

function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer!: NodeJS.Timeout;
  const limit = new Promise<T>(
    (_, rej) =>
      (timer = setTimeout(
        () => rej(new Error(`no answer within ${ANSWER_BOUND_MS} ms: ${what}`)),
        ANSWER_BOUND_MS,
      )),
  );
  return Promise.race([p, limit]).finally(() => clearTimeout(timer));
}

interface Tally {
  cases: number;
  ok: number;
  status: Record<number, number>;
  codes: Record<string, number>;
  fiveXX: string[];
  wrong: string[];
  maxMs: number;
}

async function runFuzz(
  send: (c: Case) => Promise<Outcome>,
  seed: number,
  cases: number,
  concurrency: number,
  budgetMs: number,
): Promise<Tally> {
  const r = rng(seed);
  const t: Tally = { cases: 0, ok: 0, status: {}, codes: {}, fiveXX: [], wrong: [], maxMs: 0 };
  const successes: { c: Case; o: Outcome }[] = [];
  const start = Date.now();
  let next = 0;
  const lane = async () => {
    while (next < cases && Date.now() - start < budgetMs) {
      const c = fuzzCase(r, next++);
      const o = await bounded(send(c), `${c.url} ${c.id}`);
      t.cases++;
      t.maxMs = Math.max(t.maxMs, o.ms);
      t.status[o.status] = (t.status[o.status] ?? 0) + 1;
      // 504 is the documented answer to a client that asked for a deadline of a few ms (x-deadline-ms).
      const deadline = o.status === 504 && /deadline_exceeded/.test(o.body) && !!c.headers['x-deadline-ms'];
      if (o.status >= 500 && !deadline) t.fiveXX.push(`${o.status} ${c.url} ${o.body.slice(0, 200)}`);
      if (o.status >= 400) {
        const b = JSON.parse(o.body) as { code?: string; error?: string };
        expect(typeof b.code, o.body).toBe('string');
        expect(o.body).not.toMatch(/\n\s+at /);
        t.codes[b.code!] = (t.codes[b.code!] ?? 0) + 1;
      } else if (o.status === 200) {
        t.ok++;
        if (c.url.includes('/v2/') && !c.headers['inference-header-content-length']) {
          const b = JSON.parse(o.body) as { id?: string };
          const sent = (JSON.parse(c.body.toString('utf8')) as { id?: unknown }).id;
          if (typeof sent === 'string' && b.id !== sent) t.wrong.push(`${c.id}: id ${b.id} for ${sent}`);
        }
        if (successes.length < 150) successes.push({ c, o });
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  // Every success again, alone: the same answer (nothing crossed between concurrent requests).
  for (const { c, o } of successes) {
    const again = await send(c);
    // A request that asked for a deadline of a few ms may miss it the second time on a busy machine: 504 is its
    // documented answer, not a crossed one.
    if (again.status === 504 && c.headers['x-deadline-ms'] && /deadline_exceeded/.test(again.body)) continue;
    if (again.status !== 200 || !same(answerOf(o), answerOf(again)))
      t.wrong.push(`${c.id} ${c.url}: ${o.body.slice(0, 120)} vs ${again.body.slice(0, 120)}`);
  }
  return t;
}

const report = (name: string, t: Tally) =>
  console.log(
    `${name}: ${t.cases} cases, ${t.ok} answered 200 (re-checked alone: ${Math.min(t.ok, 150)}), 5xx: ${t.fiveXX.length}, wrong answers: ${t.wrong.length}, slowest ${t.maxMs.toFixed(0)} ms; statuses ${JSON.stringify(t.status)}; top codes ${JSON.stringify(
      Object.entries(t.codes)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 12),
    )}`,
  );

describe('fuzzing', () => {
  it(`inject(): ${INJECT_CASES} mutated requests, no 5xx, no hang, no crossed answers`, async () => {
    const t = await runFuzz(viaInject, SEED, INJECT_CASES, 16, TIME_BUDGET_MS);
    report('inject fuzz', t);
    expect(t.wrong).toEqual([]);
    expect(t.fiveXX).toEqual([]);
    expect(t.cases).toBeGreaterThan(Math.min(INJECT_CASES, 500));
    expect((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode).toBe(200);
  }, 120_000);

  it(`loopback HTTP: ${LOOPBACK_CASES} mutated requests and raw garbage on sockets`, async () => {
    const t = await runFuzz(viaHttp, SEED + 1, LOOPBACK_CASES, 8, 20_000);
    report('loopback fuzz', t);
    expect(t.fiveXX).toEqual([]);
    expect(t.wrong).toEqual([]);
    // Garbage that is not HTTP at all, or HTTP with lying framing: the server answers 4xx or closes; never dies.
    const r = rng(SEED + 2);
    const url = new URL(srv.url);
    const garbage = [
      Buffer.from(Array.from({ length: 300 }, () => r.int(256))),
      Buffer.from('POST /classify HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n'),
      Buffer.from('POST /classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'),
      Buffer.from(`GET /${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
      Buffer.from(`POST /glue/mnli HTTP/1.1\r\nHost: x\r\nX: ${'b'.repeat(20_000)}\r\n\r\n`),
      Buffer.from('POST /glue/mnli HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}'),
    ];
    for (const g of garbage) {
      const got = await new Promise<string>((resolve) => {
        const s = connect(Number(url.port), url.hostname, () => s.end(g));
        let out = '';
        s.on('data', (d) => (out += d.toString()));
        s.on('close', () => resolve(out));
        s.on('error', () => resolve(out));
        setTimeout(() => s.destroy(), 5000).unref();
      });
      expect(got === '' || /^HTTP\/1\.1 4\d\d/.test(got), got.slice(0, 80)).toBe(true);
    }
    expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200);
  }, 60_000);
});
