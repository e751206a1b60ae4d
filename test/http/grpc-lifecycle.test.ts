/**
 * The KServe / Triton V2 gRPC protocol (`inference.GRPCInferenceService`) when things go wrong or end, on a real
 * server over the fixture models: failures arrive as the gRPC status of their reason (with padserve's code in
 * the trailers), a shutdown drains in-flight calls, the built command serves gRPC, and the load generator's gRPC
 * closed loop runs against it. No timing assertions: requests are held in a queue with a long
 * max_queue_delay_ms and the metrics are polled. The answers themselves are in grpc-infer.test.ts.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runGrpcClosedWindow } from '../../loadtest/grpc-closed.js';
import { connectInference } from '../../src/grpc/client.js';
import { bytesElements } from '../../src/inference/v2-codec.js';
import {
  API_TOKEN,
  failure,
  pixelRequest,
  ROUTE,
  startGrpcBed,
  type GrpcBed,
  type InferResponse,
} from '../support/grpc-client.js';
import {
  IMAGE_MODEL,
  metrics,
  metricValue,
  spawnServe,
  startTestServer,
  TEXT_MODEL,
  waitFor,
} from '../support/server.js';
import { copyImageModel } from '../support/v2-client.js';

const ADMIN_TOKEN = 'grpc-admin-token';
/** A copy of the image model whose rows wait 60 s for a batch of 8; at most one may wait. */
const HELD_MODEL = 'resnet-held';
const MAX_BODY = 2 * 1024 * 1024;

let bed: GrpcBed;

beforeAll(async () => {
  bed = await startGrpcBed(
    { [HELD_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 60_000, max_queue_size: 1 } },
    { adminToken: ADMIN_TOKEN, maxBodyBytes: MAX_BODY, retryAfterS: 3 },
  );
});

afterAll(async () => {
  await bed?.close();
});

describe('gRPC failures as status codes', () => {
  /** padserve_requests_total of the held model's gRPC calls with this outcome. */
  const heldOutcomes = async (outcome: string) =>
    metricValue(await metrics(bed.srv.url), 'padserve_requests_total', {
      route: ROUTE,
      model: HELD_MODEL,
      outcome,
    });
  const heldDepth = async () =>
    metricValue(await metrics(bed.srv.url), 'padserve_queue_depth', { model: HELD_MODEL });

  it('INVALID_ARGUMENT for bad tensors and parameters, with the HTTP error code in the trailers', async () => {
    const invalid = async (over: Record<string, unknown>) => {
      const f = await failure(bed.infer(bed.image(over)));
      expect(f.code, JSON.stringify(over)).toBe(grpc.status.INVALID_ARGUMENT);
      return f.padserveCode;
    };
    expect(
      await invalid({ inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 10, 10] }] }),
    ).toBe('data_length_mismatch');
    expect(await invalid({ raw_input_contents: [] })).toBe('missing_data');
    const typed = { name: 'pixel_values', datatype: 'FP32', shape: [1, 3, 224, 224] };
    await invalid({ inputs: [{ ...typed, contents: { fp32_contents: [1] } }] });
    expect(await invalid({ parameters: { sequence_id: { int64_param: 1 } } })).toBe('unsupported_parameter');
  });

  it('NOT_FOUND for an unknown model or version', async () => {
    expect((await failure(bed.infer(bed.image({ model_name: 'nope' })))).code).toBe(grpc.status.NOT_FOUND);
    expect((await failure(bed.infer(bed.image({ model_version: '7' })))).code).toBe(grpc.status.NOT_FOUND);
  });

  it('UNAUTHENTICATED without the API token; repository calls need the admin token', async () => {
    const none = await failure(bed.client.call('ModelInfer', bed.image()));
    expect(none).toMatchObject({ code: grpc.status.UNAUTHENTICATED, padserveCode: 'unauthorized' });
    expect((await failure(bed.call('ModelInfer', bed.image(), { token: 'wrong' }))).code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    expect((await failure(bed.call('RepositoryIndex', {}))).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('RESOURCE_EXHAUSTED for a message over the body limit and for a full queue (with retry-after)', async () => {
    const big = await failure(bed.infer(bed.image({ raw_input_contents: [Buffer.alloc(MAX_BODY + 1)] })));
    expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);

    const held = new AbortController();
    const queued = bed
      .infer(bed.image({ model_name: HELD_MODEL }), { signal: held.signal })
      .catch((e: unknown) => e);
    await waitFor(async () => (await heldDepth()) === 1, 'one held request');
    const err = (await bed
      .infer(bed.image({ model_name: HELD_MODEL }))
      .catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(err.metadata.get('padserve-code')).toEqual(['queue_full']);
    expect(err.metadata.get('retry-after')).toEqual(['3']);

    // Cancellation: the held call is cancelled by its client; the server drops its row and counts it.
    held.abort();
    expect(((await queued) as grpc.ServiceError).code).toBe(grpc.status.CANCELLED);
    await waitFor(async () => (await heldDepth()) === 0, 'the cancelled row to leave the queue');
    await waitFor(
      async () => (await heldOutcomes('client_cancelled')) === 1,
      'the cancelled request in the metrics',
    );
  });

  it('DEADLINE_EXCEEDED when the gRPC deadline passes in the queue (the deadline is the request deadline)', async () => {
    const err = await failure(bed.infer(bed.image({ model_name: HELD_MODEL }), { timeoutMs: 500 }));
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    await waitFor(
      async () => (await heldOutcomes('deadline_exceeded')) === 1,
      'the expired request in the metrics',
    );
    expect(await heldDepth()).toBe(0);
  });

  it('UNAVAILABLE for an unloaded model; the repository calls load it back', async () => {
    const admin = { token: ADMIN_TOKEN };
    const index = await bed.call<{ models: { name: string; version: string; state: string }[] }>(
      'RepositoryIndex',
      {},
      admin,
    );
    expect(index.models).toContainEqual({ name: IMAGE_MODEL, version: '1', state: 'READY', reason: '' });
    await bed.call('RepositoryModelUnload', { model_name: IMAGE_MODEL }, admin);
    expect(await bed.call('ModelReady', { name: IMAGE_MODEL })).toEqual({ ready: false });
    const down = await failure(bed.infer(bed.image()));
    expect(down).toMatchObject({ code: grpc.status.UNAVAILABLE, padserveCode: 'model_not_ready' });
    await bed.call('RepositoryModelLoad', { model_name: IMAGE_MODEL }, admin);
    expect(await bed.call('ModelReady', { name: IMAGE_MODEL })).toEqual({ ready: true });
    expect((await bed.infer(bed.image())).raw_output_contents).toHaveLength(1);
    expect((await failure(bed.call('RepositoryModelLoad', { model_name: 'nope' }, admin))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });
});

describe('gRPC drain', () => {
  it('finishes in-flight calls on shutdown and refuses new ones with UNAVAILABLE', async () => {
    const DRAIN_MODEL = 'resnet-drain';
    copyImageModel(bed.repo.dir, DRAIN_MODEL, { max_batch_size: 8, max_queue_delay_ms: 3000 });
    const second = await startTestServer(bed.repo.dir, { grpc: true, grpcPort: 0, loadPolicy: 'lazy' });
    const c = connectInference(second.server.grpcAddress!);
    try {
      const req = pixelRequest(bed.pixels, { model_name: DRAIN_MODEL });
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

describe('padserve serve --grpc (the built command)', () => {
  it('serves gRPC from dist/ (the .proto ships with the build) and drains on SIGTERM', async () => {
    const { child, output } = await spawnServe([
      '--model-repository',
      bed.repo.dir,
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
      address: bed.srv.server.grpcAddress!,
      requests: [
        {
          method: 'ModelInfer',
          request: {
            model_name: TEXT_MODEL,
            inputs: [{ name: 'text', datatype: 'BYTES', shape: [1] }],
            raw_input_contents: [bytesElements(['a short sentence'])],
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
