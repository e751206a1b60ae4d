/**
 * End to end: the real server on loopback over the fixture checkpoints converted by the real converters, real
 * photos, real onnxruntime. Answers must equal what `padserve predict`'s path (ModelSession on the model folder,
 * the same preprocessing) gives for the input alone, with or without batching.
 */
import { spawnSync } from 'node:child_process';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelSession } from '../../src/runtime/session.js';
import { imageToTensor } from '../../src/preprocess/image.js';
import { BertTokenizer } from '../../src/preprocess/text/index.js';
import { softmax } from '../../src/model/decode.js';
import { prepareInputs } from '../../src/cli/predict-inputs.js';
import { IMAGE_FIXTURES, CLI } from '../support/paths.js';
import type { ResNetCard } from '../../src/model/card.js';
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

let repo: FixtureRepo;
let srv: TestServer;
let resnet: ModelSession;
let bert: ModelSession;
const tok = BertTokenizer.load();

/** What `padserve predict DIR --image FILE` computes: its input preparation and the same ModelSession. */
async function expectedImage(name: string): Promise<number[]> {
  const feeds = await prepareInputs(resnet.card, { images: [join(IMAGE_FIXTURES, name)] });
  const out = await resnet.run(feeds);
  return softmax(out.logits!.data);
}

/** What `padserve predict DIR --text A --text-pair B` computes (logits). */
async function expectedPair(a: string, b: string | null): Promise<number[]> {
  const feeds = await prepareInputs(bert.card, {
    images: [],
    text: a,
    ...(b === null ? {} : { textPair: b }),
  });
  const out = await bert.run(feeds);
  return Array.from(out.logits!.data);
}

function expectClose(got: number[], want: number[], tol = 1e-5): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(Math.abs(g - want[i]!), `element ${i}: ${g} vs ${want[i]}`).toBeLessThan(tol));
}

// A copy of the image model that only dispatches full batches of 8 (or after 60 s): concurrency batches for sure.
const BATCHING_MODEL = 'resnet-batching';

beforeAll(async () => {
  repo = await fixtureRepository({
    [IMAGE_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 2 },
    [BATCHING_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 60_000 },
  });
  cpSync(join(repo.dir, IMAGE_MODEL, '1'), join(repo.dir, BATCHING_MODEL, '1'), { recursive: true });
  srv = await startTestServer(repo.dir, { preprocessWorkers: 2 });
  resnet = await ModelSession.load(join(repo.dir, IMAGE_MODEL, '1'), { intraOpThreads: 1 });
  bert = await ModelSession.load(join(repo.dir, TEXT_MODEL, '1'), { intraOpThreads: 1 });
});

afterAll(async () => {
  await srv?.close();
  await resnet?.release();
  await bert?.release();
  repo?.cleanup();
});

describe('POST /classify', () => {
  it('gives the answer of the padserve predict command', async () => {
    const dir = join(repo.dir, IMAGE_MODEL, '1');
    const run = spawnSync(
      process.execPath,
      [CLI, 'predict', dir, '--image', join(IMAGE_FIXTURES, 'coffee.jpg'), '--top-k', '10', '--threads', '1'],
      { encoding: 'utf8' },
    );
    expect(run.status, run.stderr).toBe(0);
    const cli = JSON.parse(run.stdout) as { results: { predictions: { index: number; score: number }[] }[] };
    const res = (await (await postImage(srv.url, photo('coffee.jpg'), '?top_k=10')).json()) as {
      predictions: { index: number; score: number }[];
    };
    expect(res.predictions.map((p) => p.index)).toEqual(cli.results[0]!.predictions.map((p) => p.index));
    expectClose(
      res.predictions.map((p) => p.score),
      cli.results[0]!.predictions.map((p) => p.score),
    );
  });

  it('answers as the model folder does for each photo (multipart and raw body), with timing headers', async () => {
    for (const name of ['chelsea.jpg', 'coffee_alpha.png', 'chelsea_gray.jpg']) {
      const want = await expectedImage(name);
      const res = await postImage(srv.url, photo(name), '?top_k=10', { 'x-request-id': `req-${name}` });
      expect(res.status).toBe(200);
      expect(res.headers.get('x-request-id')).toBe(`req-${name}`);
      for (const h of ['x-queue-time', 'x-inference-time', 'x-preprocess-time', 'x-batch-size'])
        expect(res.headers.get(h), h).not.toBeNull();
      const body = (await res.json()) as {
        model: string;
        version: string;
        source: string;
        predictions: { index: number; score: number }[];
      };
      expect(body).toMatchObject({ model: IMAGE_MODEL, version: '1', source: 'checkpoint' });
      expect(body.predictions).toHaveLength(10);
      const byIndex = new Array<number>(10);
      for (const p of body.predictions) byIndex[p.index] = p.score;
      expectClose(byIndex, want);

      const raw = await fetch(`${srv.url}/classify?top_k=3`, {
        method: 'POST',
        body: new Uint8Array(photo(name)),
        headers: { 'content-type': name.endsWith('.png') ? 'image/png' : 'image/jpeg' },
      });
      const rawBody = (await raw.json()) as { predictions: { index: number; score: number }[] };
      expect(rawBody.predictions.map((p) => p.index)).toEqual(
        body.predictions.slice(0, 3).map((p) => p.index),
      );
    }
  });

  it('batches concurrent requests (batch size > 1) without changing any answer', async () => {
    const names = ['chelsea.jpg', 'coffee.jpg', 'astronaut.jpg', 'chelsea_gray.jpg'];
    const want = Object.fromEntries(
      await Promise.all(names.map(async (n) => [n, await expectedImage(n)] as const)),
    );
    const before = await metrics(srv.url);
    const sent = Array.from({ length: 24 }, (_, i) => names[i % names.length]!);
    const answers = await Promise.all(
      sent.map((n) =>
        postImage(srv.url, photo(n), '?top_k=10').then(
          (r) => r.json() as Promise<{ predictions: { index: number; score: number }[] }>,
        ),
      ),
    );
    answers.forEach((a, i) => {
      const byIndex = new Array<number>(10);
      for (const p of a.predictions) byIndex[p.index] = p.score;
      expectClose(byIndex, want[sent[i]!]!);
    });
    const after = await metrics(srv.url);
    const rows =
      metricValue(after, 'padserve_batch_size_sum', { model: IMAGE_MODEL }) -
      metricValue(before, 'padserve_batch_size_sum', { model: IMAGE_MODEL });
    const batches =
      metricValue(after, 'padserve_batch_size_count', { model: IMAGE_MODEL }) -
      metricValue(before, 'padserve_batch_size_count', { model: IMAGE_MODEL });
    expect(rows).toBe(24);
    expect(batches).toBeLessThan(24); // some batch held more than one request
    expect(
      metricValue(after, 'padserve_requests_total', { route: '/classify', outcome: 'ok' }),
    ).toBeGreaterThanOrEqual(24);
  });
});

describe('POST /glue/:task', () => {
  it('answers one pair, GLUE aliases and a list of pairs as the model does for each pair alone', async () => {
    const pairs: [string, string][] = [
      ['A man plays a guitar.', 'A person makes music.'],
      [
        'The cat sat on the mat while the dog slept in the warm sun all afternoon long.',
        'Nobody is sleeping.',
      ],
      ['Short.', 'A considerably longer hypothesis sentence with many more words in it than the premise.'],
    ];
    const want = await Promise.all(pairs.map(([a, b]) => expectedPair(a, b)));
    const one = await postJson(srv.url, '/glue/mnli', { premise: pairs[0]![0], hypothesis: pairs[0]![1] });
    expect(one.status).toBe(200);
    const oneBody = (await one.json()) as { label: string; probabilities: Record<string, number> };
    expectClose(Object.values(oneBody.probabilities), softmax(want[0]!));
    expect(oneBody.label).toBe(
      ['entailment', 'neutral', 'contradiction'][softmax(want[0]!).indexOf(Math.max(...softmax(want[0]!)))],
    );

    const many = await postJson(srv.url, '/glue/MNLI', {
      pairs: [
        { sentence1: pairs[0]![0], sentence2: pairs[0]![1] },
        pairs[1],
        { premise: pairs[2]![0], hypothesis: pairs[2]![1] },
      ],
    });
    expect(many.status).toBe(200);
    const manyBody = (await many.json()) as {
      task: string;
      results: { probabilities: Record<string, number> }[];
    };
    expect(manyBody.task).toBe('mnli');
    manyBody.results.forEach((r, i) => expectClose(Object.values(r.probabilities), softmax(want[i]!)));
  });
});

describe('Open Inference Protocol V2', () => {
  it('serves server and model metadata and readiness', async () => {
    expect(await (await fetch(`${srv.url}/v2`)).json()).toMatchObject({
      name: 'padserve',
      extensions: expect.arrayContaining(['binary_tensor_data']),
    });
    expect((await fetch(`${srv.url}/v2/health/live`)).status).toBe(200);
    expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200);
    const meta = (await (await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}`)).json()) as {
      inputs: { name: string; shape: number[] }[];
    };
    expect(meta.inputs[0]).toEqual({ name: 'pixel_values', datatype: 'FP32', shape: [-1, 3, 224, 224] });
    expect((await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/versions/1/ready`)).status).toBe(200);
    expect((await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/versions/7/ready`)).status).toBe(404);
    expect((await fetch(`${srv.url}/v2/models/nope/ready`)).status).toBe(404);
  });

  it('runs FP32 pixels as JSON and through the binary tensor extension (binary output too)', async () => {
    const card = resnet.card as ResNetCard;
    const x = await imageToTensor(photo('coffee.jpg'), card.preprocess, { maxInputPixels: 40e6 });
    const want = Array.from((await resnet.run({ pixel_values: x })).logits!.data);

    const json = await postJson(srv.url, `/v2/models/${IMAGE_MODEL}/infer`, {
      id: 'r1',
      inputs: [{ name: 'pixel_values', shape: [1, 3, 224, 224], datatype: 'FP32', data: Array.from(x.data) }],
    });
    expect(json.status).toBe(200);
    const jb = (await json.json()) as {
      id: string;
      model_version: string;
      outputs: { name: string; shape: number[]; data: number[] }[];
    };
    expect(jb).toMatchObject({ id: 'r1', model_name: IMAGE_MODEL, model_version: '1' });
    expect(jb.outputs[0]!.shape).toEqual([1, 10]);
    expectClose(jb.outputs[0]!.data, want, 1e-4);

    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'pixel_values',
            shape: [1, 3, 224, 224],
            datatype: 'FP32',
            parameters: { binary_data_size: x.data.byteLength },
          },
        ],
        outputs: [{ name: 'logits', parameters: { binary_data: true } }],
      }),
    );
    const body = Buffer.concat([header, Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength)]);
    const bin = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/versions/1/infer`, {
      method: 'POST',
      body,
      headers: {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header.length),
      },
    });
    expect(bin.status).toBe(200);
    const n = Number(bin.headers.get('inference-header-content-length'));
    const buf = Buffer.from(await bin.arrayBuffer());
    const head = JSON.parse(buf.subarray(0, n).toString()) as {
      outputs: { parameters: { binary_data_size: number } }[];
    };
    expect(head.outputs[0]!.parameters.binary_data_size).toBe(40);
    const logits = new Float32Array(buf.buffer.slice(buf.byteOffset + n, buf.byteOffset + n + 40));
    expectClose(Array.from(logits), want, 1e-4);
  });

  it('tokenises BYTES text inputs server-side and takes INT64 token tensors', async () => {
    const want = await expectedPair('the quick brown fox', 'jumps over the dog');
    const bytes = await postJson(srv.url, `/v2/models/${TEXT_MODEL}/infer`, {
      inputs: [
        { name: 'text', shape: [1], datatype: 'BYTES', data: ['the quick brown fox'] },
        { name: 'text_pair', shape: [1], datatype: 'BYTES', data: ['jumps over the dog'] },
      ],
    });
    expect(bytes.status).toBe(200);
    expectClose(((await bytes.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, want);

    const e = tok.encode('the quick brown fox', 'jumps over the dog', { maxLength: 128 });
    const ints = await postJson(srv.url, `/v2/models/${TEXT_MODEL}/infer`, {
      inputs: [
        { name: 'input_ids', shape: [1, e.inputIds.length], datatype: 'INT64', data: e.inputIds },
        { name: 'token_type_ids', shape: [1, e.inputIds.length], datatype: 'INT64', data: e.tokenTypeIds },
      ],
    });
    expect(ints.status).toBe(200);
    expectClose(((await ints.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, want);
  });
});

describe('metrics', () => {
  it('exposes request, phase, batch, queue, load and memory metrics', async () => {
    const text = await metrics(srv.url);
    for (const name of [
      'padserve_requests_total',
      'padserve_queue_duration_seconds_bucket',
      'padserve_preprocess_duration_seconds_bucket',
      'padserve_inference_duration_seconds_bucket',
      'padserve_postprocess_duration_seconds_bucket',
      'padserve_batch_size_bucket',
      'padserve_queue_depth',
      'padserve_model_load_seconds',
      'process_resident_memory_bytes',
    ]) {
      expect(text, name).toContain(name);
    }
    expect(metricValue(text, 'padserve_model_ready', { model: TEXT_MODEL, version: '1' })).toBe(1);
  });
});
