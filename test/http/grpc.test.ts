/**
 * The KServe / Triton V2 gRPC protocol (`inference.GRPCInferenceService`) on a real server over the fixture
 * models, driven the way a Triton or KServe client does: metadata → config → ModelInfer with
 * `raw_input_contents` → `raw_output_contents`. Answers must equal the HTTP V2 route's (bit for bit, sequential
 * batch-1 requests on both) and what `padserve predict`'s path (ModelSession on the model folder) computes.
 * Failures must arrive as the gRPC status of their reason. No timing assertions: requests are held in a queue
 * with a long max_queue_delay_ms and the metrics are polled.
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectInference, type InferenceClient } from '../../src/grpc/client.js';
import { runGrpcClosedWindow } from '../../loadtest/grpc-closed.js';
import { prepareInputs } from '../../src/cli/predict-inputs.js';
import { imageToTensor } from '../../src/preprocess/image.js';
import { BertTokenizer } from '../../src/preprocess/text/index.js';
import { ModelSession } from '../../src/runtime/session.js';
import type { ResNetCard } from '../../src/model/card.js';
import {
  fixtureRepository,
  IMAGE_MODEL,
  metrics,
  metricValue,
  photo,
  spawnServe,
  startTestServer,
  TEXT_MODEL,
  waitFor,
  type FixtureRepo,
  type TestServer,
  writeServing,
} from '../support/server.js';
import { IMAGE_FIXTURES } from '../support/paths.js';

const API_TOKEN = 'grpc-test-token';
const ADMIN_TOKEN = 'grpc-admin-token';
/** A copy of the image model whose rows wait 60 s for a batch of 8; at most one may wait. */
const HELD_MODEL = 'resnet-held';
const ROUTE = '/inference.GRPCInferenceService/ModelInfer';
const MAX_BODY = 2 * 1024 * 1024;

let repo: FixtureRepo;
let srv: TestServer;
let client: InferenceClient;
let resnet: ModelSession;
let bert: ModelSession;
let pixels: Float32Array;
const tok = BertTokenizer.load();

interface InferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: { name: string; datatype: string; shape: string[] }[];
  raw_output_contents: Buffer[];
}

const call = <T = unknown>(method: string, req: object, opts: Parameters<InferenceClient['call']>[2] = {}) =>
  client.call<T>(method, req, { token: API_TOKEN, ...opts });

const infer = (req: object, opts: Parameters<InferenceClient['call']>[2] = {}) =>
  call<InferResponse>('ModelInfer', req, opts);

/** The rejection of a call: its gRPC code and the padserve trailers. */
async function failure(
  p: Promise<unknown>,
): Promise<{ code: number; padserveCode: string; details: string }> {
  const err = (await p.then(
    () => {
      throw new Error('the call succeeded');
    },
    (e: unknown) => e,
  )) as grpc.ServiceError;
  return {
    code: err.code,
    padserveCode: String(err.metadata?.get('padserve-code')[0] ?? ''),
    details: err.details,
  };
}

const f32 = (b: Buffer) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
const fp32Bytes = (x: Float32Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

/** BYTES elements as raw contents: each a 4-byte little-endian length and its UTF-8 bytes. */
function bytesContents(items: string[]): Buffer {
  return Buffer.concat(
    items.flatMap((s) => {
      const b = Buffer.from(s, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      return [len, b];
    }),
  );
}

function parseBytes(b: Buffer): string[] {
  const out: string[] = [];
  for (let o = 0; o < b.length;) {
    const n = b.readUInt32LE(o);
    out.push(b.subarray(o + 4, o + 4 + n).toString('utf8'));
    o += 4 + n;
  }
  return out;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++)
    expect(Math.abs(got[i]! - want[i]!), `element ${i}: ${got[i]} vs ${want[i]}`).toBeLessThan(tol);
}

/** The HTTP V2 binary-extension answer for the same tensors (binary outputs), as raw output bytes. */
async function httpBinary(
  model: string,
  inputs: { name: string; datatype: string; shape: number[]; bytes: Buffer }[],
  outputs?: { name: string; parameters?: Record<string, unknown> }[],
): Promise<{ head: { outputs: { name: string; shape: number[]; datatype: string }[] }; raw: Buffer[] }> {
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map((t) => ({
        name: t.name,
        datatype: t.datatype,
        shape: t.shape,
        parameters: { binary_data_size: t.bytes.length },
      })),
      parameters: { binary_data_output: true },
      ...(outputs ? { outputs } : {}),
    }),
  );
  const res = await fetch(`${srv.url}/v2/models/${model}/infer`, {
    method: 'POST',
    body: Buffer.concat([header, ...inputs.map((t) => t.bytes)]),
    headers: {
      'content-type': 'application/octet-stream',
      'inference-header-content-length': String(header.length),
      authorization: `Bearer ${API_TOKEN}`,
    },
  });
  expect(res.status, await res.clone().text()).toBe(200);
  const buf = Buffer.from(await res.arrayBuffer());
  const n = Number(res.headers.get('inference-header-content-length'));
  const head = JSON.parse(buf.subarray(0, n).toString()) as {
    outputs: { name: string; shape: number[]; datatype: string; parameters: { binary_data_size: number } }[];
  };
  const raw: Buffer[] = [];
  let o = n;
  for (const out of head.outputs) {
    raw.push(buf.subarray(o, o + out.parameters.binary_data_size));
    o += out.parameters.binary_data_size;
  }
  return { head, raw };
}

beforeAll(async () => {
  repo = await fixtureRepository({
    [HELD_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 60_000, max_queue_size: 1 },
  });
  cpSync(join(repo.dir, IMAGE_MODEL, '1'), join(repo.dir, HELD_MODEL, '1'), { recursive: true });
  srv = await startTestServer(repo.dir, {
    grpc: true,
    grpcPort: 0,
    apiToken: API_TOKEN,
    adminToken: ADMIN_TOKEN,
    maxBodyBytes: MAX_BODY,
    retryAfterS: 3,
  });
  client = connectInference(srv.server.grpcAddress!);
  resnet = await ModelSession.load(join(repo.dir, IMAGE_MODEL, '1'), { intraOpThreads: 1 });
  bert = await ModelSession.load(join(repo.dir, TEXT_MODEL, '1'), { intraOpThreads: 1 });
  const card = resnet.card as ResNetCard;
  pixels = (await imageToTensor(photo('coffee.jpg'), card.preprocess, { maxInputPixels: 40e6 })).data;
});

afterAll(async () => {
  client?.close();
  await srv?.close();
  await resnet?.release();
  await bert?.release();
  repo?.cleanup();
});

describe('gRPC health and metadata', () => {
  it('answers ServerLive, ServerReady and ServerMetadata as the HTTP routes do', async () => {
    expect(await call('ServerLive', {})).toEqual({ live: true });
    expect(await call('ServerReady', {})).toEqual({ ready: true });
    const http = (await (await fetch(`${srv.url}/v2`)).json()) as Record<string, unknown>;
    expect(await call('ServerMetadata', {})).toEqual(http);
  });

  it('answers ModelMetadata and ModelReady like GET /v2/models/{m}[/ready]', async () => {
    for (const model of [IMAGE_MODEL, TEXT_MODEL]) {
      const http = (await (await fetch(`${srv.url}/v2/models/${model}`)).json()) as {
        inputs: { shape: number[] }[];
        outputs: { shape: number[] }[];
        parameters: Record<string, unknown>;
      };
      const got = await call<{
        inputs: { shape: string[] }[];
        outputs: { shape: string[] }[];
        properties: Record<string, string>;
      }>('ModelMetadata', { name: model });
      const numeric = (ts: { shape: string[] }[]) => ts.map((t) => ({ ...t, shape: t.shape.map(Number) }));
      const { parameters, ...rest } = http;
      expect({ ...got, inputs: numeric(got.inputs), outputs: numeric(got.outputs) }).toEqual({
        ...rest,
        properties: Object.fromEntries(Object.entries(parameters).map(([k, v]) => [k, String(v)])),
      });
      expect(await call('ModelReady', { name: model, version: '1' })).toEqual({ ready: true });
    }
    expect((await failure(call('ModelMetadata', { name: 'nope' }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(call('ModelReady', { name: IMAGE_MODEL, version: '7' }))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect((await failure(call('ModelReady', { name: IMAGE_MODEL, version: 'x' }))).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
  });

  it('answers ModelConfig with the Triton configuration of GET /v2/models/{m}/config', async () => {
    const http = (await (await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/config`)).json()) as {
      max_batch_size: number;
      input: { name: string; data_type: string; dims: number[] }[];
    };
    const { config } = await call<{
      config: {
        name: string;
        max_batch_size: number;
        input: { name: string; data_type: string; dims: string[] }[];
      };
    }>('ModelConfig', { name: IMAGE_MODEL });
    expect(config.name).toBe(IMAGE_MODEL);
    expect(config.max_batch_size).toBe(http.max_batch_size);
    expect(config.input.map((i) => ({ ...i, dims: i.dims.map(Number) }))).toMatchObject(http.input);
  });
});

describe('gRPC ModelInfer', () => {
  it('runs FP32 pixels from raw_input_contents: the HTTP binary answer bit for bit, the predict path’s logits', async () => {
    const feeds = await prepareInputs(resnet.card, { images: [join(IMAGE_FIXTURES, 'coffee.jpg')] });
    const want = (await resnet.run(feeds)).logits!.data;
    let timing: grpc.Metadata | null = null;
    const res = await infer(
      {
        model_name: IMAGE_MODEL,
        id: 'req-1',
        inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224] }],
        raw_input_contents: [fp32Bytes(pixels)],
      },
      { onMetadata: (md) => (timing = md) },
    );
    // HTTP's timing headers, as initial metadata.
    expect(timing!.get('x-batch-size')).toEqual(['1']);
    expect(Number(timing!.get('x-queue-time')[0])).toBeGreaterThanOrEqual(0);
    expect(res).toMatchObject({ model_name: IMAGE_MODEL, model_version: '1', id: 'req-1' });
    expect(res.outputs).toHaveLength(1);
    expect(res.outputs[0]).toMatchObject({ name: 'logits', datatype: 'FP32', shape: ['1', '10'] });
    const logits = f32(res.raw_output_contents[0]!);
    expectClose(logits, want, 1e-4);
    const http = await httpBinary(IMAGE_MODEL, [
      { name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224], bytes: fp32Bytes(pixels) },
    ]);
    expect(res.raw_output_contents[0]!.equals(http.raw[0]!)).toBe(true);

    // The typed contents field gives the same answer.
    const typed = await infer({
      model_name: IMAGE_MODEL,
      model_version: '1',
      inputs: [
        {
          name: 'pixel_values',
          datatype: 'FP32',
          shape: [1, 3, 224, 224],
          contents: { fp32_contents: Array.from(pixels) },
        },
      ],
    });
    expect(typed.raw_output_contents[0]!.equals(res.raw_output_contents[0]!)).toBe(true);
  });

  it('tokenises BYTES text (raw and bytes_contents) and takes INT64 token tensors, as HTTP does', async () => {
    const [a, b] = ['the quick brown fox', 'jumps over the dog'];
    const e = tok.encode(a, b, { maxLength: 128 });
    const want = (await bert.run(await prepareInputs(bert.card, { images: [], text: a, textPair: b })))
      .logits!.data;
    const text = [
      { name: 'text', datatype: 'BYTES', shape: [1] },
      { name: 'text_pair', datatype: 'BYTES', shape: [1] },
    ];
    const raw = await infer({
      model_name: TEXT_MODEL,
      inputs: text,
      raw_input_contents: [bytesContents([a]), bytesContents([b])],
    });
    expectClose(f32(raw.raw_output_contents[0]!), want, 1e-5);
    const http = await httpBinary(
      TEXT_MODEL,
      text.map((t, i) => ({ ...t, bytes: bytesContents([[a, b][i]!]) })),
    );
    expect(raw.raw_output_contents[0]!.equals(http.raw[0]!)).toBe(true);

    const typed = await infer({
      model_name: TEXT_MODEL,
      inputs: text.map((t, i) => ({ ...t, contents: { bytes_contents: [Buffer.from([a, b][i]!)] } })),
    });
    expect(typed.raw_output_contents[0]!.equals(raw.raw_output_contents[0]!)).toBe(true);

    const ids = await infer({
      model_name: TEXT_MODEL,
      inputs: [
        {
          name: 'input_ids',
          datatype: 'INT64',
          shape: [1, e.inputIds.length],
          contents: { int64_contents: e.inputIds },
        },
        {
          name: 'token_type_ids',
          datatype: 'INT64',
          shape: [1, e.inputIds.length],
          contents: { int64_contents: e.tokenTypeIds },
        },
      ],
    });
    expectClose(f32(ids.raw_output_contents[0]!), want, 1e-5);
  });

  it('answers the classification extension as BYTES "value:index:label", as HTTP does', async () => {
    const outputs = [{ name: 'logits', parameters: { classification: 3 } }];
    const res = await infer({
      model_name: IMAGE_MODEL,
      inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224] }],
      outputs: outputs.map((o) => ({ name: o.name, parameters: { classification: { int64_param: 3 } } })),
      raw_input_contents: [fp32Bytes(pixels)],
    });
    expect(res.outputs[0]).toMatchObject({ name: 'logits', datatype: 'BYTES', shape: ['1', '3'] });
    const http = await httpBinary(
      IMAGE_MODEL,
      [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224], bytes: fp32Bytes(pixels) }],
      outputs,
    );
    const got = parseBytes(res.raw_output_contents[0]!);
    expect(got).toHaveLength(3);
    expect(got).toEqual(parseBytes(http.raw[0]!));
    expect(got[0]).toMatch(/^-?\d+\.\d{6}:\d+(:.+)?$/);
  });

  it('counts gRPC requests in the request metrics under the gRPC method path', async () => {
    const m = await metrics(srv.url);
    expect(
      metricValue(m, 'padserve_requests_total', { route: ROUTE, model: IMAGE_MODEL, outcome: 'ok' }),
    ).toBe(3);
    expect(
      metricValue(m, 'padserve_requests_total', { route: ROUTE, model: TEXT_MODEL, outcome: 'ok' }),
    ).toBe(3);
  });
});

describe('gRPC failures as status codes', () => {
  const image = (over: Record<string, unknown> = {}) => ({
    model_name: IMAGE_MODEL,
    inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224] }],
    raw_input_contents: [fp32Bytes(pixels)],
    ...over,
  });

  it('INVALID_ARGUMENT for bad tensors and parameters, with the HTTP error code in the trailers', async () => {
    const shape = await failure(
      infer(image({ inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 10, 10] }] })),
    );
    expect(shape).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, padserveCode: 'data_length_mismatch' });
    const count = await failure(infer(image({ raw_input_contents: [] })));
    expect(count).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, padserveCode: 'missing_data' });
    const both = await failure(
      infer(
        image({
          inputs: [
            {
              name: 'pixel_values',
              datatype: 'FP32',
              shape: [1, 3, 224, 224],
              contents: { fp32_contents: [1] },
            },
          ],
        }),
      ),
    );
    expect(both.code).toBe(grpc.status.INVALID_ARGUMENT);
    const param = await failure(infer(image({ parameters: { sequence_id: { int64_param: 1 } } })));
    expect(param).toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      padserveCode: 'unsupported_parameter',
    });
  });

  it('NOT_FOUND for an unknown model or version', async () => {
    expect((await failure(infer(image({ model_name: 'nope' })))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(infer(image({ model_version: '7' })))).code).toBe(grpc.status.NOT_FOUND);
  });

  it('UNAUTHENTICATED without the API token; repository calls need the admin token', async () => {
    const none = await failure(client.call('ModelInfer', image()));
    expect(none).toMatchObject({ code: grpc.status.UNAUTHENTICATED, padserveCode: 'unauthorized' });
    expect((await failure(call('ModelInfer', image(), { token: 'wrong' }))).code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    expect((await failure(call('RepositoryIndex', {}))).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('RESOURCE_EXHAUSTED for a message over the body limit and for a full queue (with retry-after)', async () => {
    const big = await failure(infer(image({ raw_input_contents: [Buffer.alloc(MAX_BODY + 1)] })));
    expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);

    const held = new AbortController();
    const queued = infer(image({ model_name: HELD_MODEL }), { signal: held.signal }).catch((e: unknown) => e);
    const depth = async () =>
      metricValue(await metrics(srv.url), 'padserve_queue_depth', { model: HELD_MODEL });
    await waitFor(async () => (await depth()) === 1, 'one held request');
    const err = (await infer(image({ model_name: HELD_MODEL })).catch(
      (e: unknown) => e,
    )) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.metadata.get('padserve-code')).toEqual(['queue_full']);
    expect(err.metadata.get('retry-after')).toEqual(['3']);

    // Cancellation: the held call is cancelled by its client; the server drops its row and counts it.
    held.abort();
    expect(((await queued) as grpc.ServiceError).code).toBe(grpc.status.CANCELLED);
    await waitFor(async () => (await depth()) === 0, 'the cancelled row to leave the queue');
    await waitFor(
      async () =>
        metricValue(await metrics(srv.url), 'padserve_requests_total', {
          route: ROUTE,
          model: HELD_MODEL,
          outcome: 'client_cancelled',
        }) === 1,
      'the cancelled request in the metrics',
    );
  });

  it('DEADLINE_EXCEEDED when the gRPC deadline passes in the queue (the deadline is the request deadline)', async () => {
    const err = await failure(infer(image({ model_name: HELD_MODEL }), { timeoutMs: 500 }));
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor(
      async () =>
        metricValue(await metrics(srv.url), 'padserve_requests_total', {
          route: ROUTE,
          model: HELD_MODEL,
          outcome: 'deadline_exceeded',
        }) === 1,
      'the expired request in the metrics',
    );
    expect(metricValue(await metrics(srv.url), 'padserve_queue_depth', { model: HELD_MODEL })).toBe(0);
  });

  it('UNAVAILABLE for an unloaded model; the repository calls load it back', async () => {
    const admin = { token: ADMIN_TOKEN };
    const index = await call<{ models: { name: string; version: string; state: string }[] }>(
      'RepositoryIndex',
      {},
      admin,
    );
    expect(index.models).toContainEqual({ name: IMAGE_MODEL, version: '1', state: 'READY', reason: '' });
    await call('RepositoryModelUnload', { model_name: IMAGE_MODEL }, admin);
    expect(await call('ModelReady', { name: IMAGE_MODEL })).toEqual({ ready: false });
    const down = await failure(infer(image()));
    expect(down).toMatchObject({ code: grpc.status.UNAVAILABLE, padserveCode: 'model_not_ready' });
    await call('RepositoryModelLoad', { model_name: IMAGE_MODEL }, admin);
    expect(await call('ModelReady', { name: IMAGE_MODEL })).toEqual({ ready: true });
    expect((await infer(image())).raw_output_contents).toHaveLength(1);
    expect((await failure(call('RepositoryModelLoad', { model_name: 'nope' }, admin))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it('ModelStatistics counts the gRPC inferences like GET /v2/models/{m}/stats', async () => {
    const grpcStats = await call<{ model_stats: { name: string; inference_count: string }[] }>(
      'ModelStatistics',
      { name: TEXT_MODEL },
    );
    const http = (await (await fetch(`${srv.url}/v2/models/${TEXT_MODEL}/stats`)).json()) as {
      model_stats: { inference_count: number }[];
    };
    expect(grpcStats.model_stats).toHaveLength(1);
    expect(Number(grpcStats.model_stats[0]!.inference_count)).toBe(http.model_stats[0]!.inference_count);
    expect(Number(grpcStats.model_stats[0]!.inference_count)).toBeGreaterThanOrEqual(4);
  });
});

describe('gRPC drain', () => {
  it('finishes in-flight calls on shutdown and refuses new ones with UNAVAILABLE', async () => {
    const DRAIN_MODEL = 'resnet-drain';
    cpSync(join(repo.dir, IMAGE_MODEL, '1'), join(repo.dir, DRAIN_MODEL, '1'), { recursive: true });
    writeServing(repo.dir, DRAIN_MODEL, { max_batch_size: 8, max_queue_delay_ms: 3000 });
    const second = await startTestServer(repo.dir, { grpc: true, grpcPort: 0, loadPolicy: 'lazy' });
    const c = connectInference(second.server.grpcAddress!);
    try {
      const req = {
        model_name: DRAIN_MODEL,
        inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224] }],
        raw_input_contents: [fp32Bytes(pixels)],
      };
      // One call: a lone row waits the full 3 s for a batch (a full bucket of rows may be dispatched at once).
      const inflight = [c.call<InferResponse>('ModelInfer', req)];
      await waitFor(
        async () =>
          metricValue(await metrics(second.url), 'padserve_queue_depth', { model: DRAIN_MODEL }) === 1,
        'a queued call',
      );
      const stopped = second.server.shutdown('test drain');
      const refused = await failure(c.call('ModelInfer', req));
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);
      const done = await Promise.all(inflight);
      expect(done.map((r) => r.raw_output_contents.length)).toEqual([1]);
      expect(await stopped).toBe(true);
    } finally {
      c.close();
      await second.close();
    }
  });
});

/**
 * Protobuf wire format by hand (https://protobuf.dev/programming-guides/encoding/): what any generated client
 * sends, independent of padserve's .proto. The field numbers are the protocol's (inference_grpc.md):
 * ModelInferRequest model_name = 1, inputs = 5, raw_input_contents = 7; InferInputTensor name = 1,
 * datatype = 2, shape = 3; ModelInferResponse model_name = 1, outputs = 5, raw_output_contents = 6.
 */
function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    out.push((n & 0x7f) | (n >= 0x80 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.from(out);
}
const field = (no: number, bytes: Buffer) =>
  Buffer.concat([varint((no << 3) | 2), varint(bytes.length), bytes]);
const packed = (xs: number[]) => Buffer.concat(xs.map(varint));

function readFields(buf: Buffer): Map<number, Buffer[]> {
  const out = new Map<number, Buffer[]>();
  let o = 0;
  const read = () => {
    let n = 0;
    let mul = 1;
    for (;;) {
      const b = buf[o++]!;
      n += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return n;
    }
  };
  while (o < buf.length) {
    const tag = read();
    if ((tag & 7) !== 2) throw new Error(`unexpected wire type ${tag & 7} in field ${tag >> 3}`);
    const len = read();
    out.set(tag >> 3, [...(out.get(tag >> 3) ?? []), buf.subarray(o, o + len)]);
    o += len;
  }
  return out;
}

describe('gRPC wire compatibility', () => {
  it('answers a hand-encoded ModelInferRequest with the protocol’s field numbers', async () => {
    const tensor = Buffer.concat([
      field(1, Buffer.from('pixel_values')),
      field(2, Buffer.from('FP32')),
      field(3, packed([1, 3, 224, 224])),
    ]);
    const request = Buffer.concat([
      field(1, Buffer.from(IMAGE_MODEL)),
      field(5, tensor),
      field(7, fp32Bytes(pixels)),
    ]);
    const raw = new grpc.Client(srv.server.grpcAddress!, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${API_TOKEN}`);
    try {
      const answer = await new Promise<Buffer>((resolve, reject) =>
        raw.makeUnaryRequest(
          ROUTE,
          (b: Buffer) => b,
          (b: Buffer) => b,
          request,
          md,
          (err, res) => (err ? reject(err) : resolve(res!)),
        ),
      );
      const fields = readFields(answer);
      expect(fields.get(1)![0]!.toString()).toBe(IMAGE_MODEL);
      const output = readFields(fields.get(5)![0]!);
      expect(output.get(1)![0]!.toString()).toBe('logits');
      expect(output.get(2)![0]!.toString()).toBe('FP32');
      expect([...output.get(3)![0]!]).toEqual([1, 10]);
      const viaProto = await infer({
        model_name: IMAGE_MODEL,
        inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224] }],
        raw_input_contents: [fp32Bytes(pixels)],
      });
      expect(fields.get(6)![0]!.equals(viaProto.raw_output_contents[0]!)).toBe(true);
    } finally {
      raw.close();
    }
  });
});

describe('padserve serve --grpc (the built command)', () => {
  it('serves gRPC from dist/ (the .proto ships with the build) and drains on SIGTERM', async () => {
    const { child, output } = await spawnServe([
      '--model-repository',
      repo.dir,
      '--port',
      '0',
      '--grpc',
      '--grpc-port',
      '0',
      '--no-build-default-models',
      '--load-policy',
      'lazy',
      '--intra-op-threads',
      '1',
    ]);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      let address = '';
      await waitFor(() => {
        address = /gRPC listening at (127\.0\.0\.1:\d+)/.exec(output())?.[1] ?? '';
        return address !== '';
      }, 'the gRPC listener');
      const c = connectInference(address);
      try {
        expect(await c.call('ServerLive', {})).toEqual({ live: true });
        expect(await c.call('ServerMetadata', {})).toMatchObject({ name: 'padserve' });
      } finally {
        c.close();
      }
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('npm run loadtest: the gRPC closed loop', () => {
  it('keeps c calls in flight, counts only the window and stops within its bounds', async () => {
    const run = await runGrpcClosedWindow({
      address: srv.server.grpcAddress!,
      requests: [
        {
          method: 'ModelInfer',
          request: {
            model_name: TEXT_MODEL,
            inputs: [{ name: 'text', datatype: 'BYTES', shape: [1] }],
            raw_input_contents: [bytesContents(['a short sentence'])],
          },
        },
      ],
      connections: 2,
      warmupS: 0.2,
      durationS: 0.5,
      maxCalls: 200,
      token: API_TOKEN,
    });
    expect(run.errors).toBe(0);
    expect(Object.keys(run.status)).toEqual(['200']);
    expect(run.latenciesMs.length).toBe(run.status['200']);
    expect(run.sent).toBeLessThanOrEqual(200);
    expect(run.latenciesMs.length).toBeGreaterThan(0);
  });
});
