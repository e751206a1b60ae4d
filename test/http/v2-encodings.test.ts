/**
 * The V2 REST protocol's encodings the way Triton and KServe clients use them, on the real fixture models over
 * loopback: metadata → config → infer with binary data, raw binary requests, the classification extension,
 * UINT8 / FP16 / INT32 tensors, gzip / deflate bodies. Each test quotes the protocol line it checks (KServe
 * open-inference-protocol `inference_rest.md`, Triton `docs/protocol/*.md`). Requests themselves (parameters,
 * priorities, text inputs, `padserve predict`'s answers) are in v2-requests.test.ts.
 */
import { deflateSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { floatToHalf, halfToFloat } from '../../src/inference/half.js';
import type { ResNetCard } from '../../src/model/card.js';
import { IMAGE_MODEL, TEXT_MODEL } from '../support/server.js';
import {
  binaryRequest,
  binaryResponse,
  bytesOf,
  expectClose,
  expectError,
  floats,
  fp32,
  outputsOf,
  parseBytes,
  PLANE,
  ROW,
  startV2Bed,
  type V2Bed,
} from '../support/v2-client.js';

let bed: V2Bed;

beforeAll(async () => {
  bed = await startV2Bed();
});

afterAll(async () => {
  await bed?.close();
});

/** The pixel tensor of shape `shape` as a binary-extension input. */
const pixelInput = (datatype: string, bytes: Buffer, shape = [1, ...ROW]) => ({
  name: 'pixel_values',
  shape,
  datatype,
  bytes,
});
const logitsOf = async (res: Response) => (await outputsOf(res))[0]!.data as number[];

describe('metadata → config → infer with binary data (what tritonclient and perf_analyzer do)', () => {
  it('serves the Triton model configuration of each model', async () => {
    // extension_model_configuration.md: "GET v2/models/${MODEL_NAME}[/versions/${MODEL_VERSION}]/config" and
    // "The contents of the response will be the JSON representation of the model's configuration described by
    // the ModelConfig message from model_config.proto."
    const get = (path: string) => fetch(`${bed.srv.url}${path}`);
    const server = (await (await get('/v2')).json()) as { extensions: string[] };
    expect(server.extensions).toEqual(
      expect.arrayContaining(['binary_tensor_data', 'classification', 'model_configuration', 'statistics']),
    );
    const meta = (await (await get(`/v2/models/${IMAGE_MODEL}`)).json()) as {
      platform: string;
      inputs: { name: string; datatype: string; shape: number[] }[];
    };
    expect(meta.inputs).toEqual([{ name: 'pixel_values', datatype: 'FP32', shape: [-1, ...ROW] }]);
    // inference_rest.md, Platforms: "Platform is returned as part of the response to a Model Metadata request
    // but is information only". KServe lists onnx_onnxv1, Triton says onnxruntime_onnx in metadata and config
    // (its tools read the config): padserve gives Triton's name in both, so the two answers agree.
    expect(meta.platform).toBe('onnxruntime_onnx');
    for (const path of [`/v2/models/${IMAGE_MODEL}/config`, `/v2/models/${IMAGE_MODEL}/versions/1/config`]) {
      const res = await get(path);
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
    await expectError(await get('/v2/models/nope/config'), 404, 'unknown_model');
    await expectError(await get(`/v2/models/${IMAGE_MODEL}/versions/3/config`), 404, 'unknown_version');
  });

  it('runs binary inputs with binary_data_output as tritonclient sends them, equal to the model folder', async () => {
    // extension_binary_data.md: "binary_data_output" : "bool parameter that is true if all outputs should be
    // returned as binary data"; inputs carry "binary_data_size" : "the size of the tensor binary data, in bytes".
    const { body, headers } = binaryRequest([pixelInput('FP32', bytesOf(bed.pixels))], {
      parameters: { binary_data_output: true },
    });
    const res = await bed.post(IMAGE_MODEL, body, { 'content-type': 'application/octet-stream', ...headers });
    const { head, tail } = await binaryResponse(res);
    expect(head.outputs[0]).toMatchObject({ name: 'logits', datatype: 'FP32', shape: [1, 10] });
    expectClose(floats(tail), bed.wantLogits);
  });

  it('takes a raw binary request (Inference-Header-Content-Length: 0) as batch 1 and answers in binary', async () => {
    // extension_binary_data.md: "To send a raw binary request, the Inference-Header-Content-Length header must
    // be provided with value 0 to indicate that the request body doesn't include the inference header." and
    // "the request will be treated as batch-1 request ... all the model output will be requested to be returned
    // in binary tensor form".
    const raw = (model: string, body: Buffer) =>
      bed.post(model, body, {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': '0',
      });
    const { head, tail } = await binaryResponse(await raw(IMAGE_MODEL, bytesOf(bed.pixels)));
    expect(head.outputs[0]).toMatchObject({
      name: 'logits',
      shape: [1, 10],
      parameters: { binary_data_size: 40 },
    });
    expectClose(floats(tail), bed.wantLogits);
    // "Only has 1 input": the text model has three token inputs.
    await expectError(await raw(TEXT_MODEL, Buffer.alloc(16)), 400, 'raw_binary_unsupported');
    await expectError(await raw(IMAGE_MODEL, Buffer.alloc(12)), 400, 'data_length_mismatch');
  });
});

describe('classification extension', () => {
  it('returns the top-k of an output as BYTES "value:index:label", in JSON and in binary', async () => {
    // extension_classification.md: "The format of the returned string will be “<value>:<index>[:<label>]”" and
    // the tensor is "type BYTES with shape [ batch-size, <count> ]".
    const plain = await logitsOf(await bed.infer(IMAGE_MODEL, fp32(bed.pixels)));
    const labels = (bed.resnet.card.labels ?? []) as string[];
    const order = plain.map((_, i) => i).sort((a, b) => plain[b]! - plain[a]!);
    const want = order
      .slice(0, 3)
      .map((i) => `${plain[i]!.toFixed(6)}:${i}${labels[i] !== undefined ? `:${labels[i]}` : ''}`);
    const classify = (parameters: Record<string, unknown>) =>
      bed.infer(IMAGE_MODEL, { ...fp32(bed.pixels), outputs: [{ name: 'logits', parameters }] });
    const [cls] = await outputsOf(await classify({ classification: 3 }));
    expect(cls).toMatchObject({ name: 'logits', datatype: 'BYTES', shape: [1, 3] });
    expect(cls!.data).toEqual(want);
    expect(labels.length).toBe(10);

    const { head, tail } = await binaryResponse(await classify({ classification: 3, binary_data: true }));
    expect(head.outputs[0]).toMatchObject({ datatype: 'BYTES', shape: [1, 3] });
    expect(parseBytes(tail)).toEqual(want);
    await expectError(await classify({ classification: 0 }), 400, 'invalid_parameter');
  });
});

describe('datatypes', () => {
  it('takes UINT8 images in NCHW and NHWC and normalises them as the card says', async () => {
    // inference_rest.md, tensor data types: "UINT8 | 8-bit unsigned integer". An image model's natural input.
    const { mean, std, scale } = (bed.resnet.card as ResNetCard).preprocess;
    const nchw = new Uint8Array(PLANE);
    for (let i = 0; i < PLANE; i++) nchw[i] = (i * 37 + (i >> 7)) % 256;
    const nhwc = new Uint8Array(PLANE);
    const hw = 224 * 224;
    for (let c = 0; c < 3; c++) for (let p = 0; p < hw; p++) nhwc[p * 3 + c] = nchw[c * hw + p]!;
    const normalised = Float32Array.from(nchw, (v, i) => {
      const c = Math.floor(i / hw);
      return (v * scale - mean[c]!) / std[c]!;
    });
    const uint8 = (shape: number[], data: number[]) =>
      bed.infer(IMAGE_MODEL, { inputs: [{ name: 'pixel_values', shape, datatype: 'UINT8', data }] });
    const want = await logitsOf(await bed.infer(IMAGE_MODEL, fp32(normalised)));
    expectClose(await logitsOf(await uint8([1, ...ROW], Array.from(nchw))), want, 1e-5);
    const { body, headers } = binaryRequest([pixelInput('UINT8', Buffer.from(nhwc), [1, 224, 224, 3])]);
    expectClose(await logitsOf(await bed.post(IMAGE_MODEL, body, headers)), want, 1e-5);
    await expectError(await uint8([1, 1], [256]), 400, 'invalid_data');
    await expectError(await uint8([1, 224, 3, 224], Array.from(nchw)), 400, 'invalid_shape');
  });

  it('takes FP16 (binary and JSON) as the same values in FP32', async () => {
    // extension_binary_data.md: "All tensor data types are representable as binary data in the native size of
    // the data type" (FP16: 2 bytes, little-endian).
    const half = Uint16Array.from(bed.pixels, (v) => floatToHalf(v));
    const widened = Float32Array.from(half, (h) => halfToFloat(h));
    const fp16 = (shape: number[], data: number[]) =>
      bed.infer(IMAGE_MODEL, { inputs: [{ name: 'pixel_values', shape, datatype: 'FP16', data }] });
    const want = (await outputsOf(await bed.infer(IMAGE_MODEL, fp32(widened))))[0]!.data;
    const { body, headers } = binaryRequest([pixelInput('FP16', bytesOf(half))]);
    expect((await outputsOf(await bed.post(IMAGE_MODEL, body, headers)))[0]!.data).toEqual(want);
    expect((await outputsOf(await fp16([1, ...ROW], Array.from(bed.pixels))))[0]!.data).toEqual(want);
    expect(halfToFloat(floatToHalf(65504))).toBe(65504);
    expect(halfToFloat(floatToHalf(1 / 3))).toBeCloseTo(0.333251953125, 12);
    await expectError(await fp16([1], [70000]), 400, 'non_finite_value');
  });

  it('checks INT32 against its own range: 2147483647 is an INT32, 2147483648 is not', async () => {
    // inference_rest.md, tensor data types: "INT32 | 32-bit signed integer".
    const ids = (v: number) =>
      bed.infer(TEXT_MODEL, {
        inputs: [{ name: 'input_ids', shape: [1, 3], datatype: 'INT32', data: [101, v, 102] }],
      });
    // In range for INT32: decoded, then refused by the model's vocabulary check.
    await expectError(await ids(2 ** 31 - 1), 400, 'value_out_of_range');
    await expectError(await ids(-(2 ** 31)), 400, 'value_out_of_range');
    await expectError(await ids(2 ** 31), 400, 'invalid_data');
    await expectError(await ids(-(2 ** 31) - 1), 400, 'invalid_data');
  });
});

describe('compressed request bodies', () => {
  it('takes gzip and deflate bodies, refuses a decompression bomb and unknown encodings', async () => {
    // Triton's client guide (HTTP compression): requests may be sent with "Content-Encoding" gzip or deflate.
    const json = Buffer.from(JSON.stringify(fp32(bed.pixels)));
    const encoded = (body: Buffer, encoding: string) =>
      bed.post(IMAGE_MODEL, body, { 'content-type': 'application/json', 'content-encoding': encoding });
    for (const [encoding, body] of [
      ['gzip', gzipSync(json)],
      ['deflate', deflateSync(json)],
    ] as const)
      expectClose(await logitsOf(await encoded(body, encoding)), bed.wantLogits);
    // The binary extension inside a compressed body: the header length counts the decompressed JSON.
    const binary = binaryRequest([pixelInput('FP32', bytesOf(bed.pixels))]);
    const zipped = await bed.post(IMAGE_MODEL, gzipSync(binary.body), {
      'content-encoding': 'gzip',
      ...binary.headers,
    });
    expectClose(await logitsOf(zipped), bed.wantLogits);
    // 64 MiB of zeros gzip to ~64 KiB: the decompressed size is held to the 16 MiB body limit.
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(1024 * 1024);
    await expectError(await encoded(bomb, 'gzip'), 413, 'body_too_large');
    await expectError(await encoded(json, 'br'), 415, 'unsupported_content_encoding');
    await expectError(await encoded(json, 'gzip'), 400, 'invalid_content_encoding');
  });
});
