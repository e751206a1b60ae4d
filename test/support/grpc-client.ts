/**
 * What the gRPC tests share (test/http/grpc-*.test.ts): a real server with gRPC on over the fixture repository
 * (with copies of the image model under their own serving.json), a client whose calls carry the API token, the
 * coffee photo as a ModelInfer request, and a failed call read back as its gRPC status and padserve's trailers.
 */
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { ServerConfig } from '../../server/config.js';
import { connectInference, type CallOptions, type InferenceClient } from '../../src/grpc/client.js';
import {
  fixtureRepository,
  IMAGE_MODEL,
  startTestServer,
  type FixtureRepo,
  type TestServer,
} from './server.js';
import { bytesOf, coffeeTensor, copyImageModel } from './v2-client.js';

export const API_TOKEN = 'grpc-test-token';
export const ROUTE = '/inference.GRPCInferenceService/ModelInfer';

export interface InferResponse {
  model_name: string;
  model_version: string;
  id: string;
  outputs: { name: string; datatype: string; shape: string[] }[];
  raw_output_contents: Buffer[];
}

/** The rejection of a call: its gRPC code and the padserve trailers. */
export async function failure(
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

/** ModelInfer of FP32 pixels on the image model as raw contents; `over` replaces top-level fields. */
export const pixelRequest = (pixels: Float32Array, over: Record<string, unknown> = {}) => ({
  model_name: IMAGE_MODEL,
  inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224] }],
  raw_input_contents: [bytesOf(pixels)],
  ...over,
});

export interface GrpcBed {
  repo: FixtureRepo;
  srv: TestServer;
  client: InferenceClient;
  /** The coffee photo as the image model's FP32 input. */
  pixels: Float32Array;
  /** A call with the API token (unless `opts` gives another). */
  call<T = unknown>(method: string, req: object, opts?: CallOptions): Promise<T>;
  infer(req: object, opts?: CallOptions): Promise<InferResponse>;
  /** ModelInfer of the coffee photo on the image model; `over` replaces top-level fields. */
  image(over?: Record<string, unknown>): ReturnType<typeof pixelRequest>;
  close(): Promise<void>;
}

/** The fixture repository (with `copies` of the image model) and a server on it with gRPC and the API token. */
export async function startGrpcBed(
  copies: Record<string, Record<string, unknown>> = {},
  overrides: Partial<ServerConfig> = {},
): Promise<GrpcBed> {
  const repo = await fixtureRepository();
  for (const [name, serving] of Object.entries(copies)) copyImageModel(repo.dir, name, serving);
  const srv = await startTestServer(repo.dir, { grpc: true, grpcPort: 0, apiToken: API_TOKEN, ...overrides });
  const client = connectInference(srv.server.grpcAddress!);
  const pixels = (await coffeeTensor(join(repo.dir, IMAGE_MODEL, '1'))).data;
  const call = <T>(method: string, req: object, opts: CallOptions = {}) =>
    client.call<T>(method, req, { token: API_TOKEN, ...opts });
  return {
    repo,
    srv,
    client,
    pixels,
    call,
    infer: (req, opts) => call<InferResponse>('ModelInfer', req, opts),
    image: (over) => pixelRequest(pixels, over),
    close: async () => {
      client.close();
      await srv.close();
      repo.cleanup();
    },
  };
}
