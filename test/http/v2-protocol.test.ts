/**
 * The V2 REST protocol the way Triton and KServe clients drive it, on the real fixture models over loopback:
 * metadata → config → infer with binary data, raw binary requests, the classification extension, request
 * parameters (priority, timeout, refusal of the rest), UINT8 / FP16 / INT32 tensors, gzip / deflate bodies.
 * Each test quotes the protocol line it checks (KServe open-inference-protocol `inference_rest.md`, Triton
 * `docs/protocol/*.md`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { floatToHalf, halfToFloat } from '../../src/inference/half.js';
import { checkParameters } from '../../src/inference/v2-infer.js';
import type { ResNetCard } from '../../src/model/card.js';
import { imageToTensor } from '../../src/preprocess/image.js';
import { BertTokenizer } from '../../src/preprocess/text/index.js';
import { ModelSession } from '../../src/runtime/session.js';
import { CLI } from '../support/paths.js';
import {
  fixtureRepository,
  IMAGE_MODEL,
  metrics,
  metricValue,
  photo,
  postJson,
  startTestServer,
  TEXT_MODEL,
  waitFor,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

let repo: FixtureRepo;
let srv: TestServer;
let resnet: ModelSession;
let pixels: Float32Array;
let wantLogits: number[];

// A copy of the image model that dispatches only full batches of 8 (or after 60 s): a queued row waits.
const SLOW_MODEL = 'resnet-slow';
const ROW = [3, 224, 224];
const PLANE = 3 * 224 * 224;

beforeAll(async () => {
  repo = await fixtureRepository({ [SLOW_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 60_000 } });
  const { cpSync } = await import('node:fs');
  cpSync(join(repo.dir, IMAGE_MODEL, '1'), join(repo.dir, SLOW_MODEL, '1'), { recursive: true });
  srv = await startTestServer(repo.dir);
  resnet = await ModelSession.load(join(repo.dir, IMAGE_MODEL, '1'), { intraOpThreads: 1 });
  const x = await imageToTensor(photo('coffee.jpg'), (resnet.card as ResNetCard).preprocess, {
    maxInputPixels: 40e6,
  });
  pixels = x.data;
  wantLogits = Array.from((await resnet.run({ pixel_values: x })).logits!.data);
});

afterAll(async () => {
  await srv?.close();
  await resnet?.release();
  repo?.cleanup();
});

type Out = { name: string; datatype: string; shape: number[]; data: (number | string)[] };
const infer = (model: string, body: unknown, headers: Record<string, string> = {}) =>
  postJson(srv.url, `/v2/models/${model}/infer`, body, headers);
const outputsOf = async (res: Response) => {
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return (JSON.parse(text) as { outputs: Out[] }).outputs;
};
const fp32 = (data: Float32Array | number[], shape = [1, ...ROW]) => ({
  inputs: [{ name: 'pixel_values', shape, datatype: 'FP32', data: Array.from(data) }],
});
async function expectError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect((JSON.parse(text) as { code: string }).code, text).toBe(code);
}
function expectClose(got: number[], want: number[], tol = 1e-4): void {
  expect(got.length).toBe(want.length);
  got.forEach((g, i) => expect(Math.abs(g - want[i]!), `element ${i}: ${g} vs ${want[i]}`).toBeLessThan(tol));
}
/** Splits a binary-extension response into its JSON header and the binary tail. */
async function binaryResponse(res: Response): Promise<{ head: { outputs: Out[] }; tail: Buffer }> {
  expect(res.status).toBe(200);
  const n = Number(res.headers.get('inference-header-content-length'));
  const buf = Buffer.from(await res.arrayBuffer());
  return { head: JSON.parse(buf.subarray(0, n).toString()) as { outputs: Out[] }, tail: buf.subarray(n) };
}
const floats = (b: Buffer) =>
  Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)));

describe('metadata → config → infer with binary data (what tritonclient and perf_analyzer do)', () => {
  it('serves the Triton model configuration of each model', async () => {
    // extension_model_configuration.md: "GET v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}]/config" and
    // "The contents of the response will be the JSON representation of the model's configuration described by
    // the ModelConfig message from model_config.proto."
    const server = (await (await fetch(`${srv.url}/v2`)).json()) as { extensions: string[] };
    expect(server.extensions).toEqual(
      expect.arrayContaining(['binary_tensor_data', 'classification', 'model_configuration', 'statistics']),
    );
    const meta = (await (await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}`)).json()) as {
      platform: string;
      inputs: { name: string; datatype: string; shape: number[] }[];
    };
    expect(meta.inputs).toEqual([{ name: 'pixel_values', datatype: 'FP32', shape: [-1, ...ROW] }]);
    // inference_rest.md, Platforms: "Platform is returned as part of the response to a Model Metadata request
    // but is information only". KServe lists onnx_onnxv1, Triton says onnxruntime_onnx in metadata and config
    // (its tools read the config): padserve gives Triton's name in both, so the two answers agree.
    expect(meta.platform).toBe('onnxruntime_onnx');
    for (const path of [`/v2/models/${IMAGE_MODEL}/config`, `/v2/models/${IMAGE_MODEL}/versions/1/config`]) {
      const res = await fetch(`${srv.url}${path}`);
      expect(res.status).toBe(200);
      const config = (await res.json()) as Record<string, unknown>;
      expect(config).toMatchObject({
        name: IMAGE_MODEL,
        platform: 'onnxruntime_onnx',
        backend: 'onnxruntime',
        max_batch_size: 8,
        input: [{ name: 'pixel_values', data_type: 'TYPE_FP32', format: 'FORMAT_NCHW', dims: ROW }],
        output: [{ name: 'logits', data_type: 'TYPE_FP32', dims: [10] }],
        dynamic_batching: {
          max_queue_delay_microseconds: 2000,
          priority_levels: 19,
          default_priority_level: 10,
        },
        instance_group: [{ kind: 'KIND_CPU', count: 1 }],
      });
    }
    await expectError(await fetch(`${srv.url}/v2/models/nope/config`), 404, 'unknown_model');
    await expectError(
      await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/versions/3/config`),
      404,
      'unknown_version',
    );
  });

  it('runs binary inputs with binary_data_output as tritonclient sends them, equal to the model folder', async () => {
    // extension_binary_data.md: "binary_data_output" : "bool parameter that is true if all outputs should be
    // returned as binary data"; inputs carry "binary_data_size" : "the size of the tensor binary data, in bytes".
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'pixel_values',
            shape: [1, ...ROW],
            datatype: 'FP32',
            parameters: { binary_data_size: pixels.byteLength },
          },
        ],
        parameters: { binary_data_output: true },
      }),
    );
    const res = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
      method: 'POST',
      body: Buffer.concat([header, Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)]),
      headers: {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header.length),
      },
    });
    const { head, tail } = await binaryResponse(res);
    expect(head.outputs[0]).toMatchObject({ name: 'logits', datatype: 'FP32', shape: [1, 10] });
    expectClose(floats(tail), wantLogits);
  });

  it('takes a raw binary request (Inference-Header-Content-Length: 0) as batch 1 and answers in binary', async () => {
    // extension_binary_data.md: "To send a raw binary request, the Inference-Header-Content-Length header must
    // be provided with value 0 to indicate that the request body doesn't include the inference header." and
    // "the request will be treated as batch-1 request ... all the model output will be requested to be returned
    // in binary tensor form".
    const raw = (model: string, body: Buffer) =>
      fetch(`${srv.url}/v2/models/${model}/infer`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': '0' },
      });
    const { head, tail } = await binaryResponse(
      await raw(IMAGE_MODEL, Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)),
    );
    expect(head.outputs[0]).toMatchObject({
      name: 'logits',
      shape: [1, 10],
      parameters: { binary_data_size: 40 },
    });
    expectClose(floats(tail), wantLogits);
    // "Only has 1 input": the text model has three token inputs.
    await expectError(await raw(TEXT_MODEL, Buffer.alloc(16)), 400, 'raw_binary_unsupported');
    await expectError(await raw(IMAGE_MODEL, Buffer.alloc(12)), 400, 'data_length_mismatch');
  });
});

describe('the same answers as padserve predict', () => {
  it('V2 infer (image pixels, text as BYTES) equals `padserve predict --tensor` on the model folder', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'padserve-v2-predict-'));
    const predict = (model: string, tensors: [string, Buffer, string, number[]][]) => {
      const args = [
        CLI,
        'predict',
        join(repo.dir, model, '1'),
        '--threads',
        '1',
        '--out',
        join(tmp, 'out.bin'),
      ];
      for (const [name, bytes, dtype, shape] of tensors) {
        writeFileSync(join(tmp, `${name}.bin`), bytes);
        args.push('--tensor', `${name}=${join(tmp, `${name}.bin`)}:${dtype}:${shape.join('x')}`);
      }
      const run = spawnSync(process.execPath, args, { encoding: 'utf8' });
      expect(run.status, run.stderr).toBe(0);
      return floats(readFileSync(join(tmp, 'out.bin')));
    };
    try {
      const image = predict(IMAGE_MODEL, [
        [
          'pixel_values',
          Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength),
          'float32',
          [1, ...ROW],
        ],
      ]);
      expectClose(
        (await outputsOf(await infer(IMAGE_MODEL, fp32(pixels))))[0]!.data as number[],
        image,
        1e-5,
      );

      const e = BertTokenizer.load().encode('a man plays a guitar', 'a person makes music', {
        maxLength: 128,
      });
      const n = e.inputIds.length;
      const i64 = (v: number[]) => Buffer.from(BigInt64Array.from(v, (x) => BigInt(x)).buffer);
      const text = predict(TEXT_MODEL, [
        ['input_ids', i64(e.inputIds), 'int64', [1, n]],
        ['attention_mask', i64(new Array<number>(n).fill(1)), 'int64', [1, n]],
        ['token_type_ids', i64(e.tokenTypeIds), 'int64', [1, n]],
      ]);
      const res = await infer(TEXT_MODEL, {
        inputs: [
          { name: 'text', shape: [1], datatype: 'BYTES', data: ['a man plays a guitar'] },
          { name: 'text_pair', shape: [1], datatype: 'BYTES', data: ['a person makes music'] },
        ],
      });
      expectClose((await outputsOf(res))[0]!.data as number[], text, 1e-5);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });
});

describe('classification extension', () => {
  it('returns the top-k of an output as BYTES "value:index:label", in JSON and in binary', async () => {
    // extension_classification.md: "The format of the returned string will be “<value>:<index>[:<label>]”" and
    // the tensor is "type BYTES with shape [ batch-size, <count> ]".
    const plain = (await outputsOf(await infer(IMAGE_MODEL, fp32(pixels))))[0]!.data as number[];
    const labels = (resnet.card.labels ?? []) as string[];
    const order = plain.map((_, i) => i).sort((a, b) => plain[b]! - plain[a]!);
    const want = order
      .slice(0, 3)
      .map((i) => `${plain[i]!.toFixed(6)}:${i}${labels[i] !== undefined ? `:${labels[i]}` : ''}`);
    const body = { ...fp32(pixels), outputs: [{ name: 'logits', parameters: { classification: 3 } }] };
    const [cls] = await outputsOf(await infer(IMAGE_MODEL, body));
    expect(cls).toMatchObject({ name: 'logits', datatype: 'BYTES', shape: [1, 3] });
    expect(cls!.data).toEqual(want);
    expect(labels.length).toBe(10);

    const bin = await infer(IMAGE_MODEL, {
      ...fp32(pixels),
      outputs: [{ name: 'logits', parameters: { classification: 3, binary_data: true } }],
    });
    const { head, tail } = await binaryResponse(bin);
    expect(head.outputs[0]).toMatchObject({ datatype: 'BYTES', shape: [1, 3] });
    const strings: string[] = [];
    for (let o = 0; o < tail.length;) {
      const len = tail.readUInt32LE(o);
      strings.push(tail.subarray(o + 4, o + 4 + len).toString('utf8'));
      o += 4 + len;
    }
    expect(strings).toEqual(want);
    await expectError(
      await infer(IMAGE_MODEL, {
        ...fp32(pixels),
        outputs: [{ name: 'logits', parameters: { classification: 0 } }],
      }),
      400,
      'invalid_parameter',
    );
  });
});

describe('request parameters', () => {
  it('maps priority levels to queue priorities and timeout to the deadline (unit)', () => {
    // extension_schedule_policy.md: "Priority value zero indicates that the default priority level should be
    // used", "the highest priority level is indicated by setting the parameter to 1", and "timeout" is "in
    // microseconds".
    const track = { deadline: 10_000, priority: 3 };
    const p = (parameters: Record<string, unknown>) =>
      checkParameters({ parameters, inputs: [] }, track, 1000);
    expect(p({ priority: 0 }).priority).toBe(3);
    expect(p({ priority: 1 }).priority).toBe(-9);
    expect(p({ priority: 10 }).priority).toBe(0);
    expect(p({ priority: 19 }).priority).toBe(9);
    expect(p({ timeout: 500_000 }).deadline).toBe(1500);
    expect(p({ timeout: 0 }).deadline).toBe(10_000);
    expect(p({ timeout: 60_000_000 }).deadline).toBe(10_000);
    expect(() => p({ priority: 20 })).toThrow(/priority/);
    expect(() => p({ timeout: -1 })).toThrow(/timeout/);
  });

  it('serves a higher priority level first: it takes the batch that a FIFO queue would give the earlier rows', async () => {
    // extension_schedule_policy.md: "Lower value priorities indicate higher priority levels." The slow model runs
    // only full batches of 8 (a count that fills a smaller graph bucket exactly waits too): 4 low-priority rows
    // wait; 8 high-priority rows arrive and form the batch. FIFO would run the 4 low rows + 4 high rows instead
    // and leave the high request waiting.
    const binary = (n: number, parameters: Record<string, unknown>) => {
      const data = new Float32Array(n * PLANE).fill(0.25);
      const header = Buffer.from(
        JSON.stringify({
          inputs: [
            {
              name: 'pixel_values',
              shape: [n, ...ROW],
              datatype: 'FP32',
              parameters: { binary_data_size: data.byteLength },
            },
          ],
          parameters,
        }),
      );
      return fetch(`${srv.url}/v2/models/${SLOW_MODEL}/infer`, {
        method: 'POST',
        body: Buffer.concat([header, Buffer.from(data.buffer)]),
        headers: { 'inference-header-content-length': String(header.length) },
      });
    };
    const queued = async (n: number) =>
      metricValue(await metrics(srv.url), 'padserve_queue_depth', { model: SLOW_MODEL }) === n;
    await waitFor(() => queued(0), 'an empty slow queue');
    // Low rows give up after 3 s (timeout in µs), so that the test does not wait for the 60 s delay.
    const low = binary(4, { priority: 19, timeout: 3_000_000 });
    await waitFor(() => queued(4), 'four low-priority rows queued');
    const high = await binary(8, { priority: 1, timeout: 30_000_000 });
    expect(high.status, await high.clone().text()).toBe(200);
    await expectError(await low, 504, 'deadline_exceeded');
  });

  it('honours priority and timeout end to end, refuses parameters it does not implement', async () => {
    // extension_schedule_policy.md: "If the request cannot be completed within the time Triton will take a
    // model-specific action such as terminating the request." padserve's action: 504 deadline_exceeded.
    const ok = await infer(IMAGE_MODEL, {
      ...fp32(pixels),
      parameters: { priority: 1, timeout: 30_000_000 },
    });
    expectClose((await outputsOf(ok))[0]!.data as number[], wantLogits);
    // The slow model holds a lone row for 60 s: a 300 ms timeout ends it first.
    await expectError(
      await infer(SLOW_MODEL, { ...fp32(pixels), parameters: { timeout: 300_000 } }),
      504,
      'deadline_exceeded',
    );
    // extension_parameters.md reserves "sequence_id", "sequence_start", "sequence_end", "headers": padserve has
    // no sequence batcher, so they are refused rather than ignored; so is shared memory.
    for (const parameters of [{ sequence_id: 7 }, { headers: {} }, { my_custom_parameter: 42 }])
      await expectError(
        await infer(IMAGE_MODEL, { ...fp32(pixels), parameters }),
        400,
        'unsupported_parameter',
      );
    const shm = fp32(pixels) as { inputs: Record<string, unknown>[] };
    shm.inputs[0]!.parameters = { shared_memory_region: 'r0' };
    await expectError(await infer(IMAGE_MODEL, shm), 400, 'unsupported_parameter');
    await expectError(
      await infer(IMAGE_MODEL, { ...fp32(pixels), outputs: [{ name: 'logits', parameters: { top_k: 2 } }] }),
      400,
      'unsupported_parameter',
    );
    await expectError(
      await infer(IMAGE_MODEL, { ...fp32(pixels), parameters: { priority: 'high' } }),
      400,
      'invalid_parameter',
    );
  });
});

describe('datatypes', () => {
  it('takes UINT8 images in NCHW and NHWC and normalises them as the card says', async () => {
    // inference_rest.md, tensor data types: "UINT8 | 8-bit unsigned integer". An image model's natural input.
    const { mean, std, scale } = (resnet.card as ResNetCard).preprocess;
    const nchw = new Uint8Array(PLANE);
    for (let i = 0; i < PLANE; i++) nchw[i] = (i * 37 + (i >> 7)) % 256;
    const nhwc = new Uint8Array(PLANE);
    const hw = 224 * 224;
    for (let c = 0; c < 3; c++) for (let p = 0; p < hw; p++) nhwc[p * 3 + c] = nchw[c * hw + p]!;
    const normalised = Float32Array.from(nchw, (v, i) => {
      const c = Math.floor(i / hw);
      return (v * scale - mean[c]!) / std[c]!;
    });
    const want = (await outputsOf(await infer(IMAGE_MODEL, fp32(normalised))))[0]!.data as number[];
    const asNchw = await infer(IMAGE_MODEL, {
      inputs: [{ name: 'pixel_values', shape: [1, ...ROW], datatype: 'UINT8', data: Array.from(nchw) }],
    });
    expectClose((await outputsOf(asNchw))[0]!.data as number[], want, 1e-5);
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'pixel_values',
            shape: [1, 224, 224, 3],
            datatype: 'UINT8',
            parameters: { binary_data_size: PLANE },
          },
        ],
      }),
    );
    const asNhwc = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
      method: 'POST',
      body: Buffer.concat([header, Buffer.from(nhwc)]),
      headers: { 'inference-header-content-length': String(header.length) },
    });
    expectClose((await outputsOf(asNhwc))[0]!.data as number[], want, 1e-5);
    await expectError(
      await infer(IMAGE_MODEL, {
        inputs: [{ name: 'pixel_values', shape: [1, 1], datatype: 'UINT8', data: [256] }],
      }),
      400,
      'invalid_data',
    );
    await expectError(
      await infer(IMAGE_MODEL, {
        inputs: [
          { name: 'pixel_values', shape: [1, 224, 3, 224], datatype: 'UINT8', data: Array.from(nchw) },
        ],
      }),
      400,
      'invalid_shape',
    );
  });

  it('takes FP16 (binary and JSON) as the same values in FP32', async () => {
    // extension_binary_data.md: "All tensor data types are representable as binary data in the native size of
    // the data type" (FP16: 2 bytes, little-endian).
    const half = Uint16Array.from(pixels, (v) => floatToHalf(v));
    const widened = Float32Array.from(half, (h) => halfToFloat(h));
    const want = (await outputsOf(await infer(IMAGE_MODEL, fp32(widened))))[0]!.data as number[];
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'pixel_values',
            shape: [1, ...ROW],
            datatype: 'FP16',
            parameters: { binary_data_size: half.byteLength },
          },
        ],
      }),
    );
    const bin = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
      method: 'POST',
      body: Buffer.concat([header, Buffer.from(half.buffer)]),
      headers: { 'inference-header-content-length': String(header.length) },
    });
    expect((await outputsOf(bin))[0]!.data).toEqual(want);
    const json = await infer(IMAGE_MODEL, {
      inputs: [{ name: 'pixel_values', shape: [1, ...ROW], datatype: 'FP16', data: Array.from(pixels) }],
    });
    expect((await outputsOf(json))[0]!.data).toEqual(want);
    expect(halfToFloat(floatToHalf(65504))).toBe(65504);
    expect(halfToFloat(floatToHalf(1 / 3))).toBeCloseTo(0.333251953125, 12);
    await expectError(
      await infer(IMAGE_MODEL, {
        inputs: [{ name: 'pixel_values', shape: [1], datatype: 'FP16', data: [70000] }],
      }),
      400,
      'non_finite_value',
    );
  });

  it('checks INT32 against its own range: 2147483647 is an INT32, 2147483648 is not', async () => {
    // inference_rest.md, tensor data types: "INT32 | 32-bit signed integer".
    const ids = (v: number) => ({
      inputs: [{ name: 'input_ids', shape: [1, 3], datatype: 'INT32', data: [101, v, 102] }],
    });
    // In range for INT32: decoded, then refused by the model's vocabulary check.
    await expectError(await infer(TEXT_MODEL, ids(2 ** 31 - 1)), 400, 'value_out_of_range');
    await expectError(await infer(TEXT_MODEL, ids(-(2 ** 31))), 400, 'value_out_of_range');
    await expectError(await infer(TEXT_MODEL, ids(2 ** 31)), 400, 'invalid_data');
    await expectError(await infer(TEXT_MODEL, ids(-(2 ** 31) - 1)), 400, 'invalid_data');
  });
});

describe('text model inputs', () => {
  it('lists the inputs a client must send, declares the optional ones in the config, and has one rule for mixing', async () => {
    // inference_rest.md, model metadata: "inputs" : "The inputs required by the model." Triton's ModelConfig
    // marks an input "optional" when the model runs without it.
    const meta = (await (await fetch(`${srv.url}/v2/models/${TEXT_MODEL}`)).json()) as {
      inputs: { name: string; datatype: string }[];
    };
    expect(meta.inputs.map((i) => i.name)).toEqual(['input_ids', 'attention_mask', 'token_type_ids']);
    expect(meta.inputs.every((i) => i.datatype === 'INT64')).toBe(true);
    const config = (await (await fetch(`${srv.url}/v2/models/${TEXT_MODEL}/config`)).json()) as {
      input: { name: string; data_type: string; optional: boolean; dims: number[] }[];
    };
    expect(Object.fromEntries(config.input.map((i) => [i.name, [i.data_type, i.optional]]))).toEqual({
      input_ids: ['TYPE_INT64', false],
      attention_mask: ['TYPE_INT64', true],
      token_type_ids: ['TYPE_INT64', true],
      text: ['TYPE_STRING', true],
      text_pair: ['TYPE_STRING', true],
    });
    // A client that sends every input the metadata lists gets an answer; text instead of tokens too.
    const e = BertTokenizer.load().encode('a man plays a guitar', 'a person makes music', { maxLength: 128 });
    const n = e.inputIds.length;
    const tensor = (name: string, data: number[]) => ({ name, shape: [1, n], datatype: 'INT64', data });
    const tokens = [
      tensor('input_ids', e.inputIds),
      tensor('attention_mask', new Array<number>(n).fill(1)),
      tensor('token_type_ids', e.tokenTypeIds),
    ];
    const byTokens = (await outputsOf(await infer(TEXT_MODEL, { inputs: tokens })))[0]!.data as number[];
    const text = [
      { name: 'text', shape: [1], datatype: 'BYTES', data: ['a man plays a guitar'] },
      { name: 'text_pair', shape: [1], datatype: 'BYTES', data: ['a person makes music'] },
    ];
    expectClose(
      (await outputsOf(await infer(TEXT_MODEL, { inputs: text })))[0]!.data as number[],
      byTokens,
      1e-5,
    );
    // Both sets at once: one clear refusal.
    const mixed = await infer(TEXT_MODEL, { inputs: [...text, ...tokens] });
    const body = (await mixed.json()) as { code: string; error: string };
    expect(mixed.status).toBe(400);
    expect(body.code).toBe('mixed_inputs');
    expect(body.error).toMatch(/either BYTES text\/text_pair or token tensors, not both/);
  });
});

describe('compressed request bodies', () => {
  it('takes gzip and deflate bodies, refuses a decompression bomb and unknown encodings', async () => {
    // Triton's client guide (HTTP compression): requests may be sent with "Content-Encoding" gzip or deflate.
    const json = Buffer.from(JSON.stringify(fp32(pixels)));
    for (const [encoding, body] of [
      ['gzip', gzipSync(json)],
      ['deflate', deflateSync(json)],
    ] as const) {
      const res = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'content-encoding': encoding },
      });
      expectClose((await outputsOf(res))[0]!.data as number[], wantLogits);
    }
    // The binary extension inside a compressed body: the header length counts the decompressed JSON.
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'pixel_values',
            shape: [1, ...ROW],
            datatype: 'FP32',
            parameters: { binary_data_size: pixels.byteLength },
          },
        ],
      }),
    );
    const binary = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
      method: 'POST',
      body: gzipSync(
        Buffer.concat([header, Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength)]),
      ),
      headers: { 'content-encoding': 'gzip', 'inference-header-content-length': String(header.length) },
    });
    expectClose((await outputsOf(binary))[0]!.data as number[], wantLogits);
    // 64 MiB of zeros gzip to ~64 KiB: the decompressed size is held to the 16 MiB body limit.
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(1024 * 1024);
    const res = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
      method: 'POST',
      body: bomb,
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    });
    await expectError(res, 413, 'body_too_large');
    const br = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
      method: 'POST',
      body: json,
      headers: { 'content-type': 'application/json', 'content-encoding': 'br' },
    });
    await expectError(br, 415, 'unsupported_content_encoding');
    const broken = await fetch(`${srv.url}/v2/models/${IMAGE_MODEL}/infer`, {
      method: 'POST',
      body: json,
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    });
    await expectError(broken, 400, 'invalid_content_encoding');
  });
});
