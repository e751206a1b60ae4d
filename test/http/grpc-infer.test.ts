/**
 * The KServe / Triton V2 gRPC protocol (`inference.GRPCInferenceService`) on a real server over the fixture
 * models, driven the way a Triton or KServe client does: metadata → config → ModelInfer with
 * `raw_input_contents` → `raw_output_contents`. Answers must equal the HTTP V2 route's (bit for bit, sequential
 * batch-1 requests on both) and what `padserve predict`'s path (ModelSession on the model folder) computes; a
 * hand-encoded request must get the same answer as the generated client's. Failures, drain, the built command
 * and the load generator's gRPC loop are in grpc-lifecycle.test.ts.
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareInputs } from '../../src/cli/predict-inputs.js';
import { bytesElements } from '../../src/inference/v2-codec.js';
import { BertTokenizer } from '../../src/preprocess/text/index.js';
import { ModelSession } from '../../src/runtime/session.js';
import { API_TOKEN, failure, ROUTE, startGrpcBed, type GrpcBed } from '../support/grpc-client.js';
import { IMAGE_FIXTURES } from '../support/paths.js';
import { IMAGE_MODEL, metrics, metricValue, TEXT_MODEL } from '../support/server.js';
import {
  binaryRequest,
  binaryResponse,
  bytesOf,
  expectClose,
  floats,
  parseBytes,
  type BinaryInput,
} from '../support/v2-client.js';

let bed: GrpcBed;
let resnet: ModelSession;
let bert: ModelSession;
const tok = BertTokenizer.load();

beforeAll(async () => {
  bed = await startGrpcBed();
  resnet = await ModelSession.load(join(bed.repo.dir, IMAGE_MODEL, '1'), { intraOpThreads: 1 });
  bert = await ModelSession.load(join(bed.repo.dir, TEXT_MODEL, '1'), { intraOpThreads: 1 });
});

afterAll(async () => {
  await bed?.close();
  await resnet?.release();
  await bert?.release();
});

const getJson = async <T>(path: string) => (await (await fetch(`${bed.srv.url}${path}`)).json()) as T;

/** The HTTP V2 binary-extension answer for the same tensors (binary outputs), as raw output bytes. */
async function httpBinary(
  model: string,
  inputs: BinaryInput[],
  outputs?: { name: string; parameters?: Record<string, unknown> }[],
): Promise<Buffer[]> {
  const { body, headers } = binaryRequest(inputs, {
    parameters: { binary_data_output: true },
    ...(outputs ? { outputs } : {}),
  });
  const res = await fetch(`${bed.srv.url}/v2/models/${model}/infer`, {
    method: 'POST',
    body,
    headers: {
      'content-type': 'application/octet-stream',
      ...headers,
      authorization: `Bearer ${API_TOKEN}`,
    },
  });
  return (await binaryResponse(res)).raw;
}
const pixelInput = () => ({
  name: 'pixel_values',
  datatype: 'FP32',
  shape: [1, 3, 224, 224],
  bytes: bytesOf(bed.pixels),
});

describe('gRPC health and metadata', () => {
  it('answers ServerLive, ServerReady and ServerMetadata as the HTTP routes do', async () => {
    expect(await bed.call('ServerLive', {})).toEqual({ live: true });
    expect(await bed.call('ServerReady', {})).toEqual({ ready: true });
    expect(await bed.call('ServerMetadata', {})).toEqual(await getJson('/v2'));
  });

  it('answers ModelMetadata and ModelReady like GET /v2/models/{m}[/ready]', async () => {
    for (const model of [IMAGE_MODEL, TEXT_MODEL]) {
      const http = await getJson<{
        inputs: { shape: number[] }[];
        outputs: { shape: number[] }[];
        parameters: Record<string, unknown>;
      }>(`/v2/models/${model}`);
      const got = await bed.call<{
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
      expect(await bed.call('ModelReady', { name: model, version: '1' })).toEqual({ ready: true });
    }
    expect((await failure(bed.call('ModelMetadata', { name: 'nope' }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(bed.call('ModelReady', { name: IMAGE_MODEL, version: '7' }))).code).toBe(
      grpc.status.NOT_FOUND,
    );
    expect((await failure(bed.call('ModelReady', { name: IMAGE_MODEL, version: 'x' }))).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
  });

  it('answers ModelConfig with the Triton configuration of GET /v2/models/{m}/config', async () => {
    const http = await getJson<{
      max_batch_size: number;
      input: { name: string; data_type: string; dims: number[] }[];
    }>(`/v2/models/${IMAGE_MODEL}/config`);
    const { config } = await bed.call<{
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
    const res = await bed.infer(bed.image({ id: 'req-1' }), { onMetadata: (md) => (timing = md) });
    // HTTP's timing headers, as initial metadata.
    expect(timing!.get('x-batch-size')).toEqual(['1']);
    expect(Number(timing!.get('x-queue-time')[0])).toBeGreaterThanOrEqual(0);
    expect(res).toMatchObject({ model_name: IMAGE_MODEL, model_version: '1', id: 'req-1' });
    expect(res.outputs).toHaveLength(1);
    expect(res.outputs[0]).toMatchObject({ name: 'logits', datatype: 'FP32', shape: ['1', '10'] });
    expectClose(floats(res.raw_output_contents[0]!), want, 1e-4);
    const http = await httpBinary(IMAGE_MODEL, [pixelInput()]);
    expect(res.raw_output_contents[0]!.equals(http[0]!)).toBe(true);

    // The typed contents field gives the same answer.
    const typed = await bed.infer({
      model_name: IMAGE_MODEL,
      model_version: '1',
      inputs: [
        {
          name: 'pixel_values',
          datatype: 'FP32',
          shape: [1, 3, 224, 224],
          contents: { fp32_contents: Array.from(bed.pixels) },
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
    const raw = await bed.infer({
      model_name: TEXT_MODEL,
      inputs: text,
      raw_input_contents: [bytesElements([a]), bytesElements([b])],
    });
    expectClose(floats(raw.raw_output_contents[0]!), want, 1e-5);
    const http = await httpBinary(
      TEXT_MODEL,
      text.map((t, i) => ({ ...t, bytes: bytesElements([[a, b][i]!]) })),
    );
    expect(raw.raw_output_contents[0]!.equals(http[0]!)).toBe(true);

    const typed = await bed.infer({
      model_name: TEXT_MODEL,
      inputs: text.map((t, i) => ({ ...t, contents: { bytes_contents: [Buffer.from([a, b][i]!)] } })),
    });
    expect(typed.raw_output_contents[0]!.equals(raw.raw_output_contents[0]!)).toBe(true);

    const int64 = (name: string, values: number[]) => ({
      name,
      datatype: 'INT64',
      shape: [1, e.inputIds.length],
      contents: { int64_contents: values },
    });
    const ids = await bed.infer({
      model_name: TEXT_MODEL,
      inputs: [int64('input_ids', e.inputIds), int64('token_type_ids', e.tokenTypeIds)],
    });
    expectClose(floats(ids.raw_output_contents[0]!), want, 1e-5);
  });

  it('answers the classification extension as BYTES "value:index:label", as HTTP does', async () => {
    const outputs = [{ name: 'logits', parameters: { classification: 3 } }];
    const res = await bed.infer(
      bed.image({
        outputs: outputs.map((o) => ({ name: o.name, parameters: { classification: { int64_param: 3 } } })),
      }),
    );
    expect(res.outputs[0]).toMatchObject({ name: 'logits', datatype: 'BYTES', shape: ['1', '3'] });
    const http = await httpBinary(IMAGE_MODEL, [pixelInput()], outputs);
    const got = parseBytes(res.raw_output_contents[0]!);
    expect(got).toHaveLength(3);
    expect(got).toEqual(parseBytes(http[0]!));
    expect(got[0]).toMatch(/^-?\d+\.\d{6}:\d+(:.+)?$/);
  });

  it('counts gRPC requests in the request metrics under the gRPC method path', async () => {
    const m = await metrics(bed.srv.url);
    for (const model of [IMAGE_MODEL, TEXT_MODEL])
      expect(metricValue(m, 'padserve_requests_total', { route: ROUTE, model, outcome: 'ok' }), model).toBe(
        3,
      );
  });

  it('ModelStatistics counts the gRPC inferences like GET /v2/models/{m}/stats', async () => {
    const grpcStats = await bed.call<{ model_stats: { name: string; inference_count: string }[] }>(
      'ModelStatistics',
      { name: TEXT_MODEL },
    );
    const http = await getJson<{ model_stats: { inference_count: number }[] }>(
      `/v2/models/${TEXT_MODEL}/stats`,
    );
    expect(grpcStats.model_stats).toHaveLength(1);
    expect(Number(grpcStats.model_stats[0]!.inference_count)).toBe(http.model_stats[0]!.inference_count);
    expect(Number(grpcStats.model_stats[0]!.inference_count)).toBeGreaterThanOrEqual(4);
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
      field(7, bytesOf(bed.pixels)),
    ]);
    const raw = new grpc.Client(bed.srv.server.grpcAddress!, grpc.credentials.createInsecure());
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
      const viaProto = await bed.infer(bed.image());
      expect(fields.get(6)![0]!.equals(viaProto.raw_output_contents[0]!)).toBe(true);
    } finally {
      raw.close();
    }
  });
});
