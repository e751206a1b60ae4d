/**
 * UNIT test of the HTTP routes, not an end-to-end test: `buildApp(fakes)` + `inject()`, no socket, no
 * onnxruntime, no worker threads. The model service and the preprocessing service are fakes behind the narrow
 * interfaces of src/inference/v2-context.ts (`ModelService`, `PreprocessService`) that return fixed rows; the
 * metrics and the settings are the real ones. What it checks is the routes' own work (parsing, error paths,
 * answer shaping, headers) and the real pipeline (src/inference/task.ts) between them and the fakes. The
 * end-to-end tests (test/server-*.test.ts, test/v2-*.test.ts) run the same routes on real models.
 */
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../server/app.js';
import { defaultConfig } from '../../server/config.js';
import type { Row } from '../../src/batching/collate.js';
import type { Lifecycle } from '../../src/inference/server-context.js';
import type { ModelService, PreprocessService } from '../../src/inference/v2-context.js';
import type { BertCard, ModelCard, ResNetCard } from '../../src/model/card.js';
import { ServeError, unknownModel } from '../../src/observability/errors.js';
import { Metrics } from '../../src/observability/metrics.js';
import { ImageError } from '../../src/preprocess/image-errors.js';
import type { ServedModel } from '../../src/repository/model.js';

// Only the card fields the pipeline and the routes read.
const imageCard = {
  family: 'resnet',
  source: { kind: 'synthetic' },
  inputs: [{ name: 'pixel_values', dtype: 'float32', shape: ['batch', 3, 'height', 'width'] }],
  outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', 3] }],
  labels: ['cat', 'dog', 'owl'],
  preprocess: { size: 4 },
} as unknown as ResNetCard;

const textCard = {
  family: 'bert',
  source: { kind: 'checkpoint' },
  inputs: [{ name: 'input_ids', dtype: 'int64', shape: ['batch', 'sequence'] }],
  outputs: [{ name: 'logits', dtype: 'float32', shape: ['batch', 2] }],
  labels: ['negative', 'positive'],
  problemType: 'single_label_classification',
  task: 'SST2',
} as unknown as BertCard;

interface Fakes {
  /** Rows each infer() call received. */
  inferred: Row[][];
  /** Texts the fake tokenizer received. */
  tokenized: string[];
  /** When set, admit() refuses as a full queue does. */
  queueFull: boolean;
  ready: boolean;
  lifecycle: Lifecycle;
}

/** A served model that answers every row with `logits` (the fixed row) after 1.5 ms queued, 2.5 ms inferring. */
function fakeModel(name: string, card: ModelCard, logits: number[], fakes: Fakes): ServedModel {
  const model = {
    name,
    version: 3,
    card,
    maxLength: 16,
    current: () => model,
    admit(rows: number) {
      if (fakes.queueFull)
        throw new ServeError('rejected_queue_full', 'queue_full', `queue of ${name} is full (${rows} rows)`, {
          retryAfterS: 7,
        });
    },
    async infer(rows: Row[]) {
      fakes.inferred.push(rows);
      return rows.map(() => ({
        value: { logits: { shape: [logits.length], data: Float32Array.from(logits) } },
        queueMs: 1.5,
        inferenceMs: 2.5,
        batchSize: rows.length,
      }));
    },
  };
  // The fake has the members the pipeline calls on a model; the rest of ServedModel is never touched here.
  return model as unknown as ServedModel;
}

function fakeServices(fakes: Fakes): { models: ModelService; preprocess: PreprocessService } {
  const served = new Map([
    ['img', fakeModel('img', imageCard, [0, 2, 1], fakes)],
    ['sst2-model', fakeModel('sst2-model', textCard, [0, 2], fakes)],
  ]);
  const models: ModelService = {
    get: async (name) => served.get(name) ?? Promise.reject(unknownModel(name)),
    peek: (name) => served.get(name),
    entry: () => undefined,
    names: () => [...served.keys()],
    status: (name) =>
      served.has(name) ? { loaded: [3], loading: false, error: null, held: false } : undefined,
    policy: 'all',
    ready: () => fakes.ready,
    load: async () => undefined,
    unload: async () => undefined,
    modelsOf: (family) => [...served].filter(([, m]) => m.card.family === family).map(([n]) => n),
    modelForTask: (task) => (task === 'sst2' ? 'sst2-model' : undefined),
    tasks: () => ['sst2'],
  };
  const preprocess: PreprocessService = {
    async image(bytes) {
      if (bytes[0] !== 0x89) throw new ImageError('image_decode_failed', 'not a PNG (fake decoder)');
      return { data: new Float32Array(3 * 4 * 4), ms: 0 };
    },
    async text(pairs) {
      fakes.tokenized.push(...pairs.map((p) => p.a));
      return { encodings: pairs.map(() => ({ ids: [101, 7, 102], types: [0, 0, 0] })), ms: 0 };
    },
  };
  return { models, preprocess };
}

let app: FastifyInstance | null = null;
afterEach(async () => {
  await app?.close();
  app = null;
});

async function start(over: Partial<Fakes> = {}): Promise<{ app: FastifyInstance; fakes: Fakes }> {
  const fakes: Fakes = {
    inferred: [],
    tokenized: [],
    queueFull: false,
    ready: true,
    lifecycle: { draining: false, inflight: 0 },
    ...over,
  };
  app = await buildApp({
    config: defaultConfig({ logLevel: 'silent', maxTextChars: 20, maxPairsPerRequest: 3 }),
    ...fakeServices(fakes),
    metrics: new Metrics({ defaultMetrics: false }),
    version: '9.9.9-test',
    lifecycle: fakes.lifecycle,
  });
  return { app, fakes };
}

const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47]);
const png = (url = '/classify') => ({
  method: 'POST' as const,
  url,
  headers: { 'content-type': 'image/png' },
  payload: PNG,
});

describe('routes on fake services (unit)', () => {
  it('classify: top-k labels of the fixed row, the version and source of the model, timing headers', async () => {
    const { app, fakes } = await start();
    const res = await app.inject(png('/classify?top_k=2'));
    expect(res.statusCode).toBe(200);
    const body = res.json();
    // softmax([0, 2, 1]) = [0.0900, 0.6652, 0.2447]
    expect(body).toMatchObject({ model: 'img', version: '3', source: 'synthetic' });
    expect(body.predictions.map((p: { label: string; index: number }) => [p.label, p.index])).toEqual([
      ['dog', 1],
      ['owl', 2],
    ]);
    expect(body.predictions[0].score).toBeCloseTo(0.6652, 4);
    expect(body.timing).toMatchObject({ queue_ms: 1.5, inference_ms: 2.5, batch_size: 1 });
    expect([res.headers['x-queue-time'], res.headers['x-batch-size']]).toEqual(['1.500', '1']);
    expect(fakes.inferred).toHaveLength(1);
    expect(fakes.inferred[0]![0]!.kind).toBe('image');
  });

  it('classify: unknown model 404, text model 400, corrupt image 400, full queue 429 with Retry-After', async () => {
    const { app, fakes } = await start();
    const codeOf = async (url: string, payload = PNG) => {
      const res = await app.inject({ ...png(url), payload });
      return [res.statusCode, res.json().code];
    };
    expect(await codeOf('/classify?model=nope')).toEqual([404, 'unknown_model']);
    expect(await codeOf('/classify?model=sst2-model')).toEqual([400, 'not_an_image_model']);
    expect(await codeOf('/classify', Buffer.from('GIF8'))).toEqual([400, 'image_decode_failed']);
    fakes.queueFull = true;
    const full = await app.inject(png());
    expect([full.statusCode, full.json().code, full.headers['retry-after']]).toEqual([
      429,
      'queue_full',
      '7',
    ]);
    expect(fakes.inferred).toEqual([]);
    // The hooks counted the refusal under its reason.
    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/padserve_requests_total\{[^}]*outcome="rejected_queue_full"[^}]*\} 1/);
  });

  it('glue: one sentence answers at the top level, pairs answer in order under "results"', async () => {
    const { app, fakes } = await start();
    const one = await app.inject({ method: 'POST', url: '/glue/sst2', payload: { sentence: 'fine film' } });
    expect(one.statusCode).toBe(200);
    expect(one.json()).toMatchObject({
      model: 'sst2-model',
      version: '3',
      source: 'checkpoint',
      task: 'sst2',
      label: 'positive',
    });
    expect(one.json().probabilities.positive).toBeCloseTo(0.8808, 4);
    expect(one.json().results).toBeUndefined();
    const many = await app.inject({ method: 'POST', url: '/glue/sst2', payload: { pairs: ['a', 'b'] } });
    expect(many.statusCode).toBe(200);
    expect(many.json().results.map((r: { label: string }) => r.label)).toEqual(['positive', 'positive']);
    expect(many.json().label).toBeUndefined();
    expect(fakes.tokenized).toEqual(['fine film', 'a', 'b']);
  });

  it('glue: unknown task, task not served, text over the limit, too many pairs, both forms at once', async () => {
    const { app, fakes } = await start();
    const codeOf = async (url: string, payload: object) => {
      const res = await app.inject({ method: 'POST', url, payload });
      return [res.statusCode, res.json().code];
    };
    expect(await codeOf('/glue/nope', { sentence: 'x' })).toEqual([404, 'unknown_task']);
    expect(await codeOf('/glue/mrpc', { sentence1: 'x', sentence2: 'y' })).toEqual([404, 'task_not_served']);
    expect(await codeOf('/glue/sst2', { sentence: 'x'.repeat(21) })).toEqual([413, 'text_too_long']);
    expect(await codeOf('/glue/sst2', { pairs: ['a', 'b', 'c', 'd'] })).toEqual([400, 'invalid_request']);
    expect(await codeOf('/glue/sst2', { pairs: ['a'], sentence: 'b' })).toEqual([400, 'ambiguous_body']);
    expect(fakes.tokenized).toEqual([]);
  });

  it('v2 infer: BYTES text through the fake tokenizer, FP32 outputs shaped [rows, ...]; unknown model 404', async () => {
    const { app, fakes } = await start();
    const res = await app.inject({
      method: 'POST',
      url: '/v2/models/sst2-model/infer',
      payload: { id: 'r1', inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], data: ['up', 'down'] }] },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      model_name: 'sst2-model',
      model_version: '3',
      id: 'r1',
      outputs: [{ name: 'logits', datatype: 'FP32', shape: [2, 2], data: [0, 2, 0, 2] }],
    });
    expect(fakes.tokenized).toEqual(['up', 'down']);
    const missing = await app.inject({
      method: 'POST',
      url: '/v2/models/nope/infer',
      payload: { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1], data: ['x'] }] },
    });
    expect([missing.statusCode, missing.json().code]).toEqual([404, 'unknown_model']);
  });

  it('health: ready 200, a model not ready 400, draining 400 and inference refused with 503', async () => {
    const { app, fakes } = await start();
    expect((await app.inject({ method: 'GET', url: '/v2/health/live' })).json()).toEqual({ live: true });
    const ready = await app.inject({ method: 'GET', url: '/v2/health/ready' });
    expect([ready.statusCode, ready.json().ready]).toEqual([200, true]);
    fakes.ready = false;
    const notReady = await app.inject({ method: 'GET', url: '/v2/health/ready' });
    expect([notReady.statusCode, notReady.json().ready, notReady.json().draining]).toEqual([
      400,
      false,
      false,
    ]);
    fakes.ready = true;
    fakes.lifecycle.draining = true;
    const draining = await app.inject({ method: 'GET', url: '/v2/health/ready' });
    expect([draining.statusCode, draining.json().draining]).toEqual([400, true]);
    const refused = await app.inject(png());
    expect([refused.statusCode, refused.json().code]).toEqual([503, 'shutting_down']);
    expect(fakes.inferred).toEqual([]);
  });
});
