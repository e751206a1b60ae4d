/**
 * What the V2 REST tests share (test/http/v2-*.test.ts, and the gRPC tests that compare their answers with HTTP's):
 * a real server over the fixture repository with copies of the image model under their own serving.json, the
 * coffee photo as the image model's FP32 input with the model folder's logits for it, and the client side of the
 * protocol (JSON requests, binary-extension requests and answers, error bodies). The encoders here are written
 * from the protocol text, not taken from src/, so that the server's own codec is checked against them.
 */
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { ResNetCard } from '../../src/model/card.js';
import { readModelCard } from '../../src/model/folder.js';
import { imageToTensor } from '../../src/preprocess/image.js';
import { ModelSession } from '../../src/runtime/session.js';
import type { FloatTensor } from '../../src/tensor.js';
import {
  fixtureRepository,
  IMAGE_MODEL,
  photo,
  postJson,
  startTestServer,
  writeServing,
  type FixtureRepo,
  type TestServer,
} from './server.js';

/** The image model's per-row input shape (NCHW without the batch) and its element count. */
export const ROW = [3, 224, 224];
export const PLANE = 3 * 224 * 224;

export type Out = {
  name: string;
  datatype: string;
  shape: number[];
  data: (number | string)[];
  parameters?: { binary_data_size?: number };
};

/** Copies the image model's version 1 to model `name`, with its own serving.json. */
export function copyImageModel(repoDir: string, name: string, serving: Record<string, unknown>): void {
  cpSync(join(repoDir, IMAGE_MODEL, '1'), join(repoDir, name, '1'), { recursive: true });
  writeServing(repoDir, name, serving);
}

/** The coffee photo preprocessed as the model folder's card says ([1, 3, 224, 224] FP32). */
export async function coffeeTensor(modelDir: string): Promise<FloatTensor> {
  const card = readModelCard(modelDir) as ResNetCard;
  return imageToTensor(photo('coffee.jpg'), card.preprocess, { maxInputPixels: 40e6 });
}

/** A typed array's own bytes (little-endian, as the binary extension and gRPC raw contents carry them). */
export const bytesOf = (x: ArrayBufferView) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

/** FP32 values from raw little-endian bytes. */
export const floats = (b: Buffer) =>
  new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));

/** BYTES elements in their binary form: each a 4-byte little-endian length, then its UTF-8 bytes. */
export function parseBytes(b: Buffer): string[] {
  const out: string[] = [];
  for (let o = 0; o < b.length;) {
    const n = b.readUInt32LE(o);
    out.push(b.subarray(o + 4, o + 4 + n).toString('utf8'));
    o += 4 + n;
  }
  return out;
}

export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol = 1e-4): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++)
    expect(Math.abs(got[i]! - want[i]!), `element ${i}: ${got[i]} vs ${want[i]}`).toBeLessThan(tol);
}

/** The JSON request of one FP32 pixel tensor. */
export const fp32 = (data: Float32Array | number[], shape = [1, ...ROW]) => ({
  inputs: [{ name: 'pixel_values', shape, datatype: 'FP32', data: Array.from(data) }],
});

export async function outputsOf(res: Response): Promise<Out[]> {
  const text = await res.text();
  expect(res.status, text).toBe(200);
  return (JSON.parse(text) as { outputs: Out[] }).outputs;
}

/** An error answer: its status and the `code` of its JSON body. */
export async function expectError(res: Response, status: number, code: string): Promise<void> {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect((JSON.parse(text) as { code: string }).code, text).toBe(code);
}

export interface BinaryInput {
  name: string;
  shape: number[];
  datatype: string;
  bytes: Buffer;
}

/**
 * A binary-extension request (extension_binary_data.md): the JSON header, each input with its
 * `binary_data_size`, then the inputs' bytes in order; `rest` joins the header (parameters, outputs). The
 * header length goes in `Inference-Header-Content-Length`.
 */
export function binaryRequest(
  inputs: BinaryInput[],
  rest: Record<string, unknown> = {},
): { body: Buffer; headers: Record<string, string> } {
  const header = Buffer.from(
    JSON.stringify({
      inputs: inputs.map(({ bytes, ...t }) => ({ ...t, parameters: { binary_data_size: bytes.length } })),
      ...rest,
    }),
  );
  return {
    body: Buffer.concat([header, ...inputs.map((t) => t.bytes)]),
    headers: { 'inference-header-content-length': String(header.length) },
  };
}

/** Splits a binary-extension answer into its JSON header, the binary tail, and each binary output's bytes. */
export async function binaryResponse(
  res: Response,
): Promise<{ head: { outputs: Out[] }; tail: Buffer; raw: Buffer[] }> {
  const buf = Buffer.from(await res.arrayBuffer());
  expect(res.status, buf.toString()).toBe(200);
  const n = Number(res.headers.get('inference-header-content-length'));
  const head = JSON.parse(buf.subarray(0, n).toString()) as { outputs: Out[] };
  const raw: Buffer[] = [];
  let o = n;
  for (const size of head.outputs.map((out) => out.parameters?.binary_data_size ?? 0)) {
    raw.push(buf.subarray(o, o + size));
    o += size;
  }
  return { head, tail: buf.subarray(n), raw };
}

export interface V2Bed {
  repo: FixtureRepo;
  srv: TestServer;
  /** The image model's folder, run in this process (what `padserve predict` runs). */
  resnet: ModelSession;
  pixels: Float32Array;
  /** The folder's logits for `pixels`. */
  wantLogits: number[];
  /** POST /v2/models/{model}/infer with a JSON body. */
  infer(model: string, body: unknown, headers?: Record<string, string>): Promise<Response>;
  /** POST /v2/models/{model}/infer with a body as it is (binary, compressed). */
  post(model: string, body: Buffer, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

/** The fixture repository (with `copies` of the image model), a server on it, and the coffee photo's logits. */
export async function startV2Bed(copies: Record<string, Record<string, unknown>> = {}): Promise<V2Bed> {
  const repo = await fixtureRepository();
  for (const [name, serving] of Object.entries(copies)) copyImageModel(repo.dir, name, serving);
  const srv = await startTestServer(repo.dir);
  const resnet = await ModelSession.load(join(repo.dir, IMAGE_MODEL, '1'), { intraOpThreads: 1 });
  const x = await coffeeTensor(join(repo.dir, IMAGE_MODEL, '1'));
  const wantLogits = Array.from((await resnet.run({ pixel_values: x })).logits!.data);
  return {
    repo,
    srv,
    resnet,
    pixels: x.data,
    wantLogits,
    infer: (model, body, headers = {}) => postJson(srv.url, `/v2/models/${model}/infer`, body, headers),
    post: (model, body, headers = {}) =>
      fetch(`${srv.url}/v2/models/${model}/infer`, { method: 'POST', body, headers }),
    close: async () => {
      await srv.close();
      await resnet.release();
      repo.cleanup();
    },
  };
}
