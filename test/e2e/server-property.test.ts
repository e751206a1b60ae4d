/**
 * Property: a request's answer does not depend on its batch-mates. ~1000 concurrent mixed requests (photos and
 * sentence pairs of very different lengths, single pairs and lists) against the real server; every answer must
 * equal the answer to the same input sent alone (which runs as a batch of one).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';
import { scaledMs } from '../support/time-limits.js';

let repo: FixtureRepo;
let srv: TestServer;

const PHOTOS = ['chelsea.jpg', 'coffee.jpg', 'astronaut.jpg', 'chelsea_gray.jpg', 'coffee_alpha.png'];
const WORDS =
  'the a cat dog sat on mat quick brown fox jumps over lazy river music guitar person plays loud quiet morning evening stage crowd cheers happily never always'.split(
    ' ',
  );

function rng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 16807) % 2147483647) / 2147483647;
}

function sentence(r: () => number, words: number): string {
  return Array.from({ length: words }, () => WORDS[Math.floor(r() * WORDS.length)]).join(' ');
}

beforeAll(async () => {
  repo = await fixtureRepository({
    [IMAGE_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 5, max_queue_size: 4096 },
    [TEXT_MODEL]: {
      tasks: ['mnli'],
      max_batch_size: 32,
      max_batch_tokens: 1024,
      length_buckets: [16, 32, 64],
      max_queue_delay_ms: 5,
      max_queue_size: 4096,
    },
  });
  // Every request must be accepted here: the preprocessing queue holds all ~250 concurrent images.
  srv = await startTestServer(repo.dir, {
    preprocessWorkers: 2,
    requestTimeoutMs: 300_000,
    maxPreprocessQueue: 4096,
  });
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
});

type Probs = number[];

async function classifyAlone(name: string): Promise<Probs> {
  const res = await postImage(srv.url, photo(name), '?top_k=10');
  expect(res.status).toBe(200);
  const r = (await res.json()) as {
    predictions: { index: number; score: number }[];
  };
  const out = new Array<number>(10);
  for (const p of r.predictions) out[p.index] = p.score;
  return out;
}

function close(a: Probs, b: Probs, tol: number): boolean {
  return a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) < tol);
}

describe('batch invariance under load', () => {
  it(
    'answers ~1000 concurrent mixed requests exactly as each input alone',
    async () => {
      const r = rng(20240607);
      const pairs = Array.from(
        { length: 40 },
        (_, i) =>
          [
            sentence(r, 1 + Math.floor(r() * (i % 4 === 0 ? 60 : 12))),
            sentence(r, 1 + Math.floor(r() * 20)),
          ] as [string, string],
      );

      // Alone: one at a time (each runs as a batch of one).
      const aloneImage = new Map<string, Probs>();
      for (const n of PHOTOS) aloneImage.set(n, await classifyAlone(n));
      const alonePair: Probs[] = [];
      for (const [a, b] of pairs) {
        const res = (await (await postJson(srv.url, '/glue/mnli', { premise: a, hypothesis: b })).json()) as {
          probabilities: Record<string, number>;
          timing: { batch_size: number };
        };
        expect(res.timing.batch_size).toBe(1);
        alonePair.push(Object.values(res.probabilities));
      }

      // Together: 1000 requests at once.
      type Job = { kind: 'image'; name: string } | { kind: 'pairs'; idx: number[] };
      const jobs: Job[] = Array.from({ length: 1000 }, () => {
        if (r() < 0.25) return { kind: 'image', name: PHOTOS[Math.floor(r() * PHOTOS.length)]! };
        const k = r() < 0.7 ? 1 : 2 + Math.floor(r() * 3);
        return { kind: 'pairs', idx: Array.from({ length: k }, () => Math.floor(r() * pairs.length)) };
      });
      const before = await metrics(srv.url);
      const results = await Promise.all(
        jobs.map(async (job) => {
          if (job.kind === 'image') return { job, got: [await classifyAlone(job.name)] };
          const body =
            job.idx.length === 1
              ? { premise: pairs[job.idx[0]!]![0], hypothesis: pairs[job.idx[0]!]![1] }
              : { pairs: job.idx.map((i) => pairs[i]) };
          const res = await postJson(srv.url, '/glue/mnli', body);
          expect(res.status).toBe(200);
          const j = (await res.json()) as {
            probabilities?: Record<string, number>;
            results?: { probabilities: Record<string, number> }[];
          };
          return { job, got: (j.results ?? [j]).map((x) => Object.values(x.probabilities!)) };
        }),
      );
      let mismatches = 0;
      for (const { job, got } of results) {
        const want = job.kind === 'image' ? [aloneImage.get(job.name)!] : job.idx.map((i) => alonePair[i]!);
        got.forEach((g, i) => {
          if (!close(g, want[i]!, 1e-5)) mismatches++;
        });
      }
      expect(mismatches).toBe(0);
      const after = await metrics(srv.url);
      for (const model of [IMAGE_MODEL, TEXT_MODEL]) {
        const rows =
          metricValue(after, 'padserve_batch_size_sum', { model }) -
          metricValue(before, 'padserve_batch_size_sum', { model });
        const batches =
          metricValue(after, 'padserve_batch_size_count', { model }) -
          metricValue(before, 'padserve_batch_size_count', { model });
        expect(rows / batches, `${model}: mean batch size`).toBeGreaterThan(1);
      }
    },
    scaledMs(12_000),
  );
});
