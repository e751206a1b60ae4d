/**
 * V2 REST requests the way Triton and KServe clients send them, on the real fixture models over loopback: the
 * answers equal `padserve predict`'s on the model folder, request parameters (priority, timeout, refusal of the
 * rest) and the text model's two sets of inputs. Each test quotes the protocol line it checks (KServe
 * open-inference-protocol `inference_rest.md`, Triton `docs/protocol/*.md`). The encodings (binary data,
 * classification, datatypes, compression) are in v2-encodings.test.ts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkParameters } from '../../src/inference/v2-infer.js';
import { BertTokenizer } from '../../src/preprocess/text/index.js';
import { CLI } from '../support/paths.js';
import { IMAGE_MODEL, metrics, metricValue, TEXT_MODEL, waitFor } from '../support/server.js';
import {
  binaryRequest,
  bytesOf,
  expectClose,
  expectError,
  floats,
  fp32,
  outputsOf,
  PLANE,
  ROW,
  startV2Bed,
  type V2Bed,
} from '../support/v2-client.js';

// A copy of the image model that dispatches only full batches of 8 (or after 60 s): a queued row waits.
const SLOW_MODEL = 'resnet-slow';
const PREMISE = 'a man plays a guitar';
const HYPOTHESIS = 'a person makes music';
const TEXT_INPUTS = [
  { name: 'text', shape: [1], datatype: 'BYTES', data: [PREMISE] },
  { name: 'text_pair', shape: [1], datatype: 'BYTES', data: [HYPOTHESIS] },
];

let bed: V2Bed;

beforeAll(async () => {
  bed = await startV2Bed({ [SLOW_MODEL]: { max_batch_size: 8, max_queue_delay_ms: 60_000 } });
});

afterAll(async () => {
  await bed?.close();
});

const logitsOf = async (res: Response) => (await outputsOf(res))[0]!.data as number[];
const tokens = () => BertTokenizer.load().encode(PREMISE, HYPOTHESIS, { maxLength: 128 });

describe('the same answers as padserve predict', () => {
  it('V2 infer (image pixels, text as BYTES) equals `padserve predict --tensor` on the model folder', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'padserve-v2-predict-'));
    const predict = (model: string, tensors: [string, Buffer, string, number[]][]) => {
      const args = [
        CLI,
        'predict',
        join(bed.repo.dir, model, '1'),
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
      const image = predict(IMAGE_MODEL, [['pixel_values', bytesOf(bed.pixels), 'float32', [1, ...ROW]]]);
      expectClose(await logitsOf(await bed.infer(IMAGE_MODEL, fp32(bed.pixels))), image, 1e-5);

      const e = tokens();
      const n = e.inputIds.length;
      const i64 = (v: number[]) => Buffer.from(BigInt64Array.from(v, (x) => BigInt(x)).buffer);
      const text = predict(TEXT_MODEL, [
        ['input_ids', i64(e.inputIds), 'int64', [1, n]],
        ['attention_mask', i64(new Array<number>(n).fill(1)), 'int64', [1, n]],
        ['token_type_ids', i64(e.tokenTypeIds), 'int64', [1, n]],
      ]);
      expectClose(await logitsOf(await bed.infer(TEXT_MODEL, { inputs: TEXT_INPUTS })), text, 1e-5);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
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
      const bytes = bytesOf(new Float32Array(n * PLANE).fill(0.25));
      const { body, headers } = binaryRequest(
        [{ name: 'pixel_values', shape: [n, ...ROW], datatype: 'FP32', bytes }],
        { parameters },
      );
      return bed.post(SLOW_MODEL, body, headers);
    };
    const queued = async (n: number) =>
      metricValue(await metrics(bed.srv.url), 'padserve_queue_depth', { model: SLOW_MODEL }) === n;
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
    const withPixels = (model: string, rest: Record<string, unknown>) =>
      bed.infer(model, { ...fp32(bed.pixels), ...rest });
    const ok = await withPixels(IMAGE_MODEL, { parameters: { priority: 1, timeout: 30_000_000 } });
    expectClose(await logitsOf(ok), bed.wantLogits);
    // The slow model holds a lone row for 60 s: a 300 ms timeout ends it first.
    await expectError(
      await withPixels(SLOW_MODEL, { parameters: { timeout: 300_000 } }),
      504,
      'deadline_exceeded',
    );
    // extension_parameters.md reserves "sequence_id", "sequence_start", "sequence_end", "headers": padserve has
    // no sequence batcher, so they are refused rather than ignored; so is shared memory.
    for (const parameters of [{ sequence_id: 7 }, { headers: {} }, { my_custom_parameter: 42 }])
      await expectError(await withPixels(IMAGE_MODEL, { parameters }), 400, 'unsupported_parameter');
    const shm = fp32(bed.pixels) as { inputs: Record<string, unknown>[] };
    shm.inputs[0]!.parameters = { shared_memory_region: 'r0' };
    await expectError(await bed.infer(IMAGE_MODEL, shm), 400, 'unsupported_parameter');
    await expectError(
      await withPixels(IMAGE_MODEL, { outputs: [{ name: 'logits', parameters: { top_k: 2 } }] }),
      400,
      'unsupported_parameter',
    );
    await expectError(
      await withPixels(IMAGE_MODEL, { parameters: { priority: 'high' } }),
      400,
      'invalid_parameter',
    );
  });
});

describe('text model inputs', () => {
  it('lists the inputs a client must send, declares the optional ones in the config, and has one rule for mixing', async () => {
    // inference_rest.md, model metadata: "inputs" : "The inputs required by the model." Triton's ModelConfig
    // marks an input "optional" when the model runs without it.
    const meta = (await (await fetch(`${bed.srv.url}/v2/models/${TEXT_MODEL}`)).json()) as {
      inputs: { name: string; datatype: string }[];
    };
    expect(meta.inputs.map((i) => i.name)).toEqual(['input_ids', 'attention_mask', 'token_type_ids']);
    expect(meta.inputs.every((i) => i.datatype === 'INT64')).toBe(true);
    const config = (await (await fetch(`${bed.srv.url}/v2/models/${TEXT_MODEL}/config`)).json()) as {
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
    const e = tokens();
    const n = e.inputIds.length;
    const tensor = (name: string, data: number[]) => ({ name, shape: [1, n], datatype: 'INT64', data });
    const ids = [
      tensor('input_ids', e.inputIds),
      tensor('attention_mask', new Array<number>(n).fill(1)),
      tensor('token_type_ids', e.tokenTypeIds),
    ];
    const byTokens = await logitsOf(await bed.infer(TEXT_MODEL, { inputs: ids }));
    expectClose(await logitsOf(await bed.infer(TEXT_MODEL, { inputs: TEXT_INPUTS })), byTokens, 1e-5);
    // Both sets at once: one clear refusal.
    const mixed = await bed.infer(TEXT_MODEL, { inputs: [...TEXT_INPUTS, ...ids] });
    const body = (await mixed.json()) as { code: string; error: string };
    expect(mixed.status).toBe(400);
    expect(body.code).toBe('mixed_inputs');
    expect(body.error).toMatch(/either BYTES text\/text_pair or token tensors, not both/);
  });
});
