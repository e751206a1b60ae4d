/**
 * Overload on a real server (loopback): three times the concurrency that saturates the image model (its batch
 * plus its whole queue) for a bounded time, mixed with text requests. Asserted: every request gets exactly one
 * answer (client count = server count, per outcome), the excess is refused with 429 + Retry-After, every
 * accepted request completes with 200 and the right answer, nothing else (no 5xx, no hang), the queue empties
 * and memory stays bounded. Rejection and acceptance latencies are measured and printed, never asserted.
 */
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fixtureRepository,
  IMAGE_MODEL,
  metrics,
  metricValue,
  startTestServer,
  TEXT_MODEL,
  waitFor,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

const BATCH = 8;
const QUEUE = 8;
const PREPROCESS_QUEUE = 4;
/** Requests the image path can hold: one batch running, a full batcher queue, a full preprocessing queue. */
const SATURATING = BATCH + QUEUE + PREPROCESS_QUEUE;
const CLIENTS = 3 * SATURATING;
const DURATION_MS = Number(process.env.OVERLOAD_MS ?? 5000);

let repo: FixtureRepo;
let srv: TestServer;
let jpeg: Buffer;

beforeAll(async () => {
  repo = await fixtureRepository({
    [IMAGE_MODEL]: { max_batch_size: BATCH, max_queue_delay_ms: 2, max_queue_size: QUEUE },
    [TEXT_MODEL]: {
      tasks: ['mnli'],
      max_batch_size: 8,
      max_queue_size: QUEUE,
      max_batch_tokens: 1024,
      length_buckets: [16, 32],
    },
  });
  srv = await startTestServer(repo.dir, { retryAfterS: 2, maxPreprocessQueue: PREPROCESS_QUEUE });
  const px = Buffer.alloc(64 * 48 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 13 + (i >> 6) * 7) & 255;
  jpeg = await sharp(px, { raw: { width: 64, height: 48, channels: 3 } })
    .jpeg()
    .toBuffer();
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
});

const postJpeg = (query = '') =>
  fetch(`${srv.url}/classify${query}`, {
    method: 'POST',
    body: new Uint8Array(jpeg),
    headers: { 'content-type': 'image/jpeg' },
  });
const text = () =>
  fetch(`${srv.url}/glue/mnli`, {
    method: 'POST',
    body: JSON.stringify({ premise: 'a man plays a guitar', hypothesis: 'music' }),
    headers: { 'content-type': 'application/json' },
  });

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

describe('overload', () => {
  it(`${CLIENTS} closed-loop clients (3× saturation) for ${DURATION_MS} ms: 429s fast, accepted complete, one answer each`, async () => {
    const image = () => postJpeg('?top_k=3');
    const want = {
      image: JSON.stringify(((await (await image()).json()) as { predictions: unknown }).predictions),
      text: JSON.stringify(((await (await text()).json()) as { probabilities: unknown }).probabilities),
    };
    const before = await metrics(srv.url);
    const served0 = metricValue(before, 'padserve_requests_total');
    global.gc?.();
    const rss0 = process.memoryUsage().rss;

    const lat: Record<string, number[]> = {};
    const wrong: string[] = [];
    let sent = 0;
    let answered = 0;
    let rssPeak = rss0;
    const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 100);
    const end = Date.now() + DURATION_MS;
    const client = async (i: number) => {
      const kind = i % 4 === 3 ? 'text' : 'image';
      while (Date.now() < end) {
        sent++;
        const t0 = performance.now();
        const res = await (kind === 'image' ? image() : text());
        const body = await res.text();
        const ms = performance.now() - t0;
        answered++;
        const key = `${kind} ${res.status}`;
        (lat[key] ??= []).push(ms);
        if (res.status === 200) {
          const b = JSON.parse(body) as { predictions?: unknown; probabilities?: unknown };
          const got = JSON.stringify(kind === 'image' ? b.predictions : b.probabilities);
          if (got !== want[kind]) wrong.push(`${kind}: ${got}`);
        } else if (res.status === 429) {
          expect(res.headers.get('retry-after')).toBe('2');
          expect(JSON.parse(body)).toMatchObject({ code: 'queue_full' });
        } else wrong.push(`${kind} ${res.status} ${body.slice(0, 200)}`);
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));
    clearInterval(sampler);

    const line = Object.entries(lat)
      .map(
        ([k, xs]) =>
          `${k}: n=${xs.length} p50=${pct(xs, 50).toFixed(1)} p99=${pct(xs, 99).toFixed(1)} max=${pct(xs, 100).toFixed(1)} ms`,
      )
      .join('; ');
    console.log(
      `overload ${CLIENTS} clients × ${DURATION_MS} ms: sent ${sent}, answered ${answered}, ${line}; RSS ${(rss0 / 2 ** 20).toFixed(0)} → peak ${(rssPeak / 2 ** 20).toFixed(0)} MiB`,
    );
    expect(wrong).toEqual([]);
    expect(answered).toBe(sent);
    const rejected = (lat['image 429'] ?? []).length + (lat['text 429'] ?? []).length;
    expect(rejected, 'some requests were refused').toBeGreaterThan(0);
    expect((lat['image 200'] ?? []).length, 'some image requests were served').toBeGreaterThan(0);
    expect((lat['image 429'] ?? []).length, 'image requests beyond the queues were refused').toBeGreaterThan(
      0,
    );
    // The server counted exactly the requests the clients sent (one answer each), by outcome.
    await waitFor(
      async () => metricValue(await metrics(srv.url), 'padserve_requests_total') - served0 === sent,
      'the server to count every request',
      10_000,
    );
    const after = await metrics(srv.url);
    const rejectedServer =
      metricValue(after, 'padserve_requests_total', { outcome: 'rejected_queue_full' }) -
      metricValue(before, 'padserve_requests_total', { outcome: 'rejected_queue_full' });
    expect(rejectedServer).toBe(rejected);
    expect(metricValue(after, 'padserve_queue_depth')).toBe(0);
    expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200);
    const grown = (rssPeak - rss0) / 2 ** 20;
    expect(grown, 'RSS growth under overload (MiB)').toBeLessThan(400);
  }, 60_000);

  it('SIGTERM-style shutdown under load: readiness flips, in-flight requests complete, new ones get 503, clean within the grace', async () => {
    const image = () => postJpeg();
    // Closed-loop clients keep requests in flight until the signal: a fixed burst can finish between two polls
    // on a fast machine (the fixture models answer in milliseconds), which made this test wait for nothing.
    type Outcome = { status: number | 'refused'; after: boolean };
    const outcomes: Outcome[] = [];
    let signalled = false;
    let t0 = 0;
    const client = async (i: number) => {
      // Each client stops after its first request sent after the signal (that one is a late request).
      for (;;) {
        const last = signalled;
        const res = await (i % 3 ? image() : text()).catch(() => null);
        if (res) await res.arrayBuffer();
        outcomes.push({ status: res?.status ?? 'refused', after: signalled });
        if (last) return;
      }
    };
    const clients = Array.from({ length: 24 }, (_, i) => client(i));
    await waitFor(async () => srv.server.app.padserve.lifecycle.inflight >= 2, 'requests in flight', 30_000);
    const accepted = srv.server.app.padserve.lifecycle.inflight;
    t0 = Date.now();
    signalled = true;
    const stopped = srv.server.shutdown('test SIGTERM');
    // Readiness flips at once (the probe answers 400 `ready: false` while the listener is still open, then the
    // listener closes), and new requests are refused: 503 shutting_down on a kept-alive connection, or refused.
    expect(srv.server.app.padserve.lifecycle.draining).toBe(true);
    expect(srv.server.models.ready() && !srv.server.app.padserve.lifecycle.draining).toBe(false);
    const late = await text().catch((e: Error) => e);
    if (!(late instanceof Error)) {
      expect(late.status).toBe(503);
      expect(await late.json()).toMatchObject({ code: 'shutting_down' });
    }
    await Promise.all(clients);
    const statuses = outcomes.map((o) => o.status);
    // Every request the server held at the signal completes with 200 after it; the others were refused (503,
    // 429 or a closed connection); nothing fails with a 5xx other than 503.
    const servedAfter = outcomes.filter((o) => o.after && o.status === 200).length;
    expect(servedAfter, 'requests in flight at the signal answered 200').toBeGreaterThanOrEqual(accepted);
    expect(
      statuses.every((x) => x === 200 || x === 503 || x === 429 || x === 'refused'),
      String(statuses),
    ).toBe(true);
    expect(await stopped).toBe(true); // everything finished within the grace
    const others = outcomes.filter((o) => o.after && o.status !== 200).map((o) => o.status);
    console.log(
      `shutdown under load: ${accepted} in flight at the signal; ${outcomes.length} answers in all; after the signal ${servedAfter} answered 200, others ${JSON.stringify(others)}; drained in ${Date.now() - t0} ms (grace 30000 ms); late request: ${late instanceof Error ? 'connection refused' : late.status}`,
    );
  }, 60_000);
});
