/**
 * Route validation through fastify's inject(): every malformed request gets the right status and a JSON body
 * `{error, code, error_type}` (never a stack trace), and the OpenAPI document covers the routes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance, InjectOptions } from 'fastify';
import {
  fixtureRepository,
  IMAGE_MODEL,
  photo,
  startTestServer,
  TEXT_MODEL,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

let repo: FixtureRepo;
let srv: TestServer;
let app: FastifyInstance;

beforeAll(async () => {
  repo = await fixtureRepository();
  srv = await startTestServer(repo.dir, {
    maxImagePixels: 200_000,
    maxPairsPerRequest: 4,
    maxTextChars: 500,
  });
  app = srv.server.app;
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
});

function multipart(parts: { name: string; value: Buffer | string; filename?: string; type?: string }[]): {
  payload: Buffer;
  headers: Record<string, string>;
} {
  const boundary = '----padserve-test';
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = `form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}`;
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: ${disp}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`,
      ),
    );
    chunks.push(Buffer.isBuffer(p.value) ? p.value : Buffer.from(p.value));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return {
    payload: Buffer.concat(chunks),
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
  };
}

async function expectError(
  res: { statusCode: number; json(): unknown; body: string },
  status: number,
  code: string,
): Promise<void> {
  expect(res.statusCode, res.body).toBe(status);
  const body = res.json() as Record<string, unknown>;
  expect(body.code, res.body).toBe(code);
  expect(typeof body.error).toBe('string');
  expect(typeof body.error_type).toBe('string');
  expect(res.body).not.toMatch(/\n\s+at /); // no stack traces
}

const v2 = (model: string, body: unknown, headers: Record<string, string> = {}) =>
  app.inject({
    method: 'POST',
    url: `/v2/models/${model}/infer`,
    payload: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body),
    headers: { 'content-type': 'application/json', ...headers },
  });
/** A POST of `payload` as it is, with its content type. */
const raw = (url: string, payload: Buffer | string, type: string): InjectOptions => ({
  method: 'POST',
  url,
  payload,
  headers: { 'content-type': type },
});
const form = (parts: Parameters<typeof multipart>[0]): InjectOptions => ({
  method: 'POST',
  url: '/classify',
  ...multipart(parts),
});

describe('/classify validation', () => {
  it('accepts a multipart image under "image" or as the first file, fields included', async () => {
    const res = await app.inject(
      form([
        { name: 'top_k', value: '2' },
        { name: 'photo', value: photo('chelsea.jpg'), filename: 'a.jpg', type: 'image/jpeg' },
      ]),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json() as { predictions: unknown[] }).predictions).toHaveLength(2);
  });

  it('refuses what is not an acceptable image request', async () => {
    const jpeg = photo('chelsea.jpg');
    const image = (url: string, payload: Buffer) => raw(url, payload, 'image/jpeg');
    for (const [req, status, code] of [
      [raw('/classify', 'hello', 'text/plain'), 415, 'unsupported_media_type'],
      [raw('/classify', 'not an image', 'image/png'), 415, 'unsupported_image_format'],
      [image('/classify', jpeg.subarray(0, 2000)), 400, 'image_decode_failed'],
      [image('/classify', Buffer.alloc(0)), 400, 'empty_image'],
      [image('/classify', photo('astronaut.jpg')), 413, 'image_too_large'],
      [form([{ name: 'top_k', value: '3' }]), 400, 'missing_image'],
      [image('/classify?top_k=0', jpeg), 400, 'invalid_request'],
      [
        form([
          { name: 'top_k', value: 'x' },
          { name: 'image', value: jpeg, filename: 'a.jpg' },
        ]),
        400,
        'invalid_top_k',
      ],
      [image('/classify?model=nope', jpeg), 404, 'unknown_model'],
      [image(`/classify?model=${TEXT_MODEL}`, jpeg), 400, 'not_an_image_model'],
    ] as const)
      await expectError(await app.inject(req), status, code);
  });
});

describe('/glue validation', () => {
  /** A JSON body, or a string sent as it is (malformed JSON). */
  const glue = (task: string, body: unknown) =>
    app.inject(
      typeof body === 'string'
        ? raw(`/glue/${task}`, body, 'application/json')
        : { method: 'POST', url: `/glue/${task}`, payload: body as object },
    );
  it('404s unknown and unserved tasks', async () => {
    await expectError(await glue('nope', { sentence: 'x' }), 404, 'unknown_task');
    await expectError(await glue('qqp', { question1: 'a', question2: 'b' }), 404, 'task_not_served');
  });
  it('refuses missing, conflicting, oversized and malformed texts', async () => {
    for (const [body, status, code] of [
      [{ premise: 'a' }, 400, 'glue_missing'],
      [{ premise: 'a', hypothesis: 'b', sentence1: 'c', sentence2: 'd' }, 400, 'glue_ambiguous'],
      [{ premise: 'a', hypothesis: { text: 'b' } }, 400, 'invalid_request'],
      [{ premise: 'a'.repeat(501), hypothesis: 'b' }, 413, 'text_too_long'],
      ['{"premise":"\\ud800","hypothesis":"b"}', 400, 'invalid_text'],
      [{ pairs: new Array<string[]>(5).fill(['a', 'b']) }, 400, 'invalid_request'],
      [{ pairs: [['a']] }, 400, 'invalid_pair'],
      [{ pairs: [['a', 'b']], premise: 'x', hypothesis: 'y' }, 400, 'ambiguous_body'],
      ['{"premise":', 400, 'invalid_json'],
    ] as const)
      await expectError(await glue('mnli', body), status, code);
  });
});

describe('V2 validation', () => {
  const pixels = (shape: number[], data: unknown) => ({
    inputs: [{ name: 'pixel_values', shape, datatype: 'FP32', data }],
  });
  const tensor = (name: string, datatype: string) => ({
    inputs: [{ name, shape: [1], datatype, data: [1] }],
  });
  it('refuses malformed tensors with 400 and a code', async () => {
    for (const [body, status, code] of [
      [pixels([1, 3, -224, 224], [1]), 400, 'invalid_shape'],
      [pixels([1, 3, 2, 2], [1, 2, 3]), 400, 'data_length_mismatch'],
      [pixels([1, 3, 2, 2], new Array(12).fill(0)), 400, 'invalid_shape'],
      [pixels([0, 3, 224, 224], []), 400, 'empty_batch'],
      [pixels([1, 1], ['x']), 400, 'non_finite_value'],
      [tensor('pixel_values', 'FP64'), 400, 'unsupported_datatype'],
      [tensor('pixel_values', 'FLOAT'), 400, 'invalid_request'],
      [tensor('image', 'FP32'), 400, 'unknown_input'],
      [{ inputs: [] }, 400, 'invalid_request'],
      ['{"inputs": [', 400, 'invalid_json'],
      [{ ...pixels([1, 1], [1]), outputs: [{ name: 'probs' }] }, 400, 'unknown_output'],
      [pixels([100, 3, 224, 224], [1]), 413, 'tensor_too_large'],
    ] as const)
      await expectError(await v2(IMAGE_MODEL, body), status, code);
  });

  it('checks binary tensors: sizes, NaN, UTF-8', async () => {
    const bin = (model: string, header: object, tail: Buffer) => {
      const h = Buffer.from(JSON.stringify(header));
      return v2(model, Buffer.concat([h, tail]), {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(h.length),
      });
    };
    const nan = new Float32Array(3 * 224 * 224);
    nan[5] = NaN;
    // binary_data_size as declared, the bytes sent: the size must match both the tail and the shape.
    for (const [size, tail, code] of [
      [nan.byteLength, Buffer.from(nan.buffer), 'non_finite_value'],
      [16, Buffer.alloc(16), 'data_length_mismatch'],
      [99, Buffer.alloc(16), 'invalid_binary_data'],
    ] as const) {
      const input = { name: 'pixel_values', shape: [1, 3, 224, 224], datatype: 'FP32' };
      const header = { inputs: [{ ...input, parameters: { binary_data_size: size } }] };
      await expectError(await bin(IMAGE_MODEL, header, tail), 400, code);
    }
    const h = Buffer.from('{"inputs":[]}');
    await expectError(
      await v2(IMAGE_MODEL, h, { 'inference-header-content-length': '999' }),
      400,
      'invalid_binary_header',
    );
    const bad = Buffer.concat([Buffer.from([2, 0, 0, 0]), Buffer.from([0xc3, 0x28])]);
    const text = {
      name: 'text',
      shape: [1],
      datatype: 'BYTES',
      parameters: { binary_data_size: bad.length },
    };
    await expectError(await bin(TEXT_MODEL, { inputs: [text] }, bad), 400, 'invalid_utf8');
  });

  it('checks token tensors against the model', async () => {
    const ids = (data: number[], shape = [1, data.length]) => ({
      inputs: [{ name: 'input_ids', shape, datatype: 'INT64', data }],
    });
    const mask = { name: 'attention_mask', shape: [1, 3], datatype: 'INT64', data: [1, 1, 1] };
    const text = { name: 'text', shape: [1], datatype: 'BYTES', data: ['x'] };
    for (const [body, code] of [
      [ids([101, 99999, 102]), 'value_out_of_range'],
      [ids([101, 1.5, 102]), 'invalid_data'],
      [ids(new Array<number>(200).fill(101)), 'invalid_shape'],
      [{ inputs: [...ids([101, 102]).inputs, mask] }, 'shape_mismatch'],
      [{ inputs: [...ids([101, 102]).inputs, text] }, 'mixed_inputs'],
    ] as const)
      await expectError(await v2(TEXT_MODEL, body), 400, code);
  });

  it('404s unknown models and versions, JSON everywhere', async () => {
    await expectError(await v2('nope', pixels([1], [1])), 404, 'unknown_model');
    await expectError(
      await app.inject({
        method: 'POST',
        url: `/v2/models/${IMAGE_MODEL}/versions/9/infer`,
        payload: pixels([1], [1]),
      }),
      404,
      'unknown_version',
    );
    await expectError(await app.inject({ method: 'GET', url: '/v2/models/nope' }), 404, 'unknown_model');
    await expectError(await app.inject({ method: 'GET', url: '/nowhere' }), 404, 'route_not_found');
  });
});

describe('OpenAPI', () => {
  it('documents every route with its schemas', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<
        string,
        Record<
          string,
          { requestBody?: { content: Record<string, unknown> }; responses: Record<string, unknown> }
        >
      >;
    };
    for (const p of [
      '/classify',
      '/glue/{task}',
      '/v2',
      '/v2/health/ready',
      '/v2/models/{model}',
      '/v2/models/{model}/versions/{version}/infer',
      '/metrics',
    ])
      expect(Object.keys(doc.paths)).toContain(p);
    expect(Object.keys(doc.paths['/classify']!.post!.requestBody!.content)).toEqual(
      expect.arrayContaining(['multipart/form-data', 'image/jpeg']),
    );
    expect(Object.keys(doc.paths['/classify']!.post!.responses)).toEqual(
      expect.arrayContaining(['200', '400', '413', '415', '429', '503', '504']),
    );
    expect(doc.paths['/v2/models/{model}/infer']!.post!.requestBody).toBeDefined();
  });
});
