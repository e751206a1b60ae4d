/**
 * The inference worker pool on a real model: results come back through transfer lists, a crashed worker is
 * replaced (its in-flight run fails with a retryable 503 error, its models are loaded again) and the process
 * lives on.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InferencePool } from '../../src/runtime/inference-pool.js';
import { ModelSession, type ExecutionDevice } from '../../src/runtime/session.js';
import { fixtureRepository, IMAGE_MODEL, type FixtureRepo } from '../support/server.js';

let repo: FixtureRepo;
let pool: InferencePool;
const logs: string[] = [];
const log = {
  info: (m: string) => logs.push(m),
  warn: (m: string) => logs.push(m),
  error: (m: string) => logs.push(m),
};

const input = (seed: number) => {
  const data = new Float32Array(3 * 224 * 224);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.001 + seed);
  return data;
};

/** One instance of the fixture image model on `on`, one intra-op thread, weights loaded (not memory-mapped). */
const loadImageModel = (on: InferencePool, key: string, device: ExecutionDevice = 'cpu') =>
  on.load({
    key,
    dir: join(repo.dir, IMAGE_MODEL, '1'),
    device,
    intraOpThreads: 1,
    shareWeights: false,
    weightBytes: 1,
  });

beforeAll(async () => {
  repo = await fixtureRepository();
  pool = await InferencePool.start({ size: 2, runTimeoutMs: 60_000, log });
});

afterAll(async () => {
  await pool?.close();
  repo?.cleanup();
});

describe('InferencePool', () => {
  it('runs a model in a worker thread with the same answer as an in-process session, transferring the input', async () => {
    const dir = join(repo.dir, IMAGE_MODEL, '1');
    const h = await loadImageModel(pool, 'a');
    const local = await ModelSession.load(dir, { intraOpThreads: 1 });
    const x = input(1);
    const want = (
      await local.run({ pixel_values: { dtype: 'float32', shape: [1, 3, 224, 224], data: x.slice() } })
    ).logits!.data;
    const r = await h.run({ pixel_values: { dtype: 'float32', shape: [1, 3, 224, 224], data: x } }, [
      x.buffer,
    ]);
    expect(x.byteLength).toBe(0); // transferred, not copied
    expect(Array.from(r.outputs.logits!.data)).toEqual(Array.from(want));
    await local.release();
    await h.release();
  });

  it('falls back to the CPU with one log line when cuda is asked for and unavailable', async () => {
    const h = await loadImageModel(pool, 'cuda', 'cuda');
    expect(h.device).toBe('cpu');
    expect(logs.filter((l) => /device cuda .*falling back to cpu/.test(l))).toHaveLength(1);
    await h.release();
  });

  it('replaces a crashed worker: in-flight calls fail with worker_failed (503), its models load again', async () => {
    const h = await loadImageModel(pool, 'b');
    // A long batch (the graph runs per sample: 48 runs), so that the crash lands while it is computing.
    const x = new Float32Array(48 * 3 * 224 * 224).fill(0.5);
    const inflight = h.run({ pixel_values: { dtype: 'float32', shape: [48, 3, 224, 224], data: x } });
    await pool.crash(h.slot);
    await expect(inflight).rejects.toMatchObject({ reason: 'worker_failed', status: 503 });
    const again = await h.run({
      pixel_values: { dtype: 'float32', shape: [1, 3, 224, 224], data: input(2) },
    });
    expect(again.outputs.logits!.shape).toEqual([1, 10]);
    expect(logs.some((l) => /reloaded b after a restart/.test(l))).toBe(true);
  });

  it('treats a run past the run timeout as a hung worker: fails it with 503 and replaces the worker', async () => {
    const strict = await InferencePool.start({ size: 1, runTimeoutMs: 5, log });
    try {
      const h = await loadImageModel(strict, 'slow');
      const x = new Float32Array(48 * 3 * 224 * 224).fill(0.5); // 48 per-sample runs: far beyond 5 ms
      await expect(
        h.run({ pixel_values: { dtype: 'float32', shape: [48, 3, 224, 224], data: x } }),
      ).rejects.toMatchObject({ code: 'inference_timeout', status: 503 });
      expect(logs.some((l) => /exceeded 5 ms, terminating it/.test(l))).toBe(true);
    } finally {
      await strict.close();
    }
  });
});
