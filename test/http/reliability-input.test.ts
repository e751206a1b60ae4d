/**
 * Bad input on a real server (loopback): every malformed image, text and V2 request gets a 4xx JSON error with a
 * code, while a valid request sent at the same moment still gets exactly the answer it gets alone, and the server
 * stays ready. Also: a client that trickles its upload is cut off by `--receive-timeout-ms`.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { animatedGif, cmykJpeg, encodePng, pngWithClaimedSize } from '../support/images.js';
import {
  fixtureRepository,
  IMAGE_MODEL,
  photo,
  postImage,
  postJson,
  startTestServer,
  TEXT_MODEL,
  type FixtureRepo,
  type TestServer,
} from '../support/server.js';

let repo: FixtureRepo;
let srv: TestServer;
const MAX_BODY = 1024 * 1024;

beforeAll(async () => {
  repo = await fixtureRepository();
  srv = await startTestServer(repo.dir, { maxBodyBytes: MAX_BODY, receiveTimeoutMs: 1500 });
});

afterAll(async () => {
  await srv?.close();
  repo?.cleanup();
});

interface Raw {
  path: string;
  body: Buffer | string;
  type?: string;
  headers?: Record<string, string>;
}

const send = (r: Raw) =>
  fetch(`${srv.url}${r.path}`, {
    method: 'POST',
    body: typeof r.body === 'string' ? r.body : new Uint8Array(r.body),
    headers: { ...(r.type ? { 'content-type': r.type } : {}), ...r.headers },
  });

function multipart(parts: { name: string; value: Buffer | string; filename?: string; type?: string }[]): {
  body: Buffer;
  type: string;
} {
  const boundary = '----padserve-reliability';
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const disp = `form-data; name="${p.name}"${p.filename ? `; filename="${p.filename}"` : ''}`;
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: ${disp}\r\n${p.type ? `Content-Type: ${p.type}\r\n` : ''}\r\n`,
      ),
      Buffer.isBuffer(p.value) ? p.value : Buffer.from(p.value),
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), type: `multipart/form-data; boundary=${boundary}` };
}

const mp = (path: string, parts: Parameters<typeof multipart>[0]): Raw => ({ path, ...multipart(parts) });
const json = (path: string, body: unknown): Raw => ({
  path,
  body: typeof body === 'string' ? body : JSON.stringify(body),
  type: 'application/json',
});
const v2 = (model: string, body: unknown, headers: Record<string, string> = {}): Raw => ({
  ...json(`/v2/models/${model}/infer`, body),
  headers,
});
const pixels = (shape: unknown[], data: unknown, datatype = 'FP32') => ({
  inputs: [{ name: 'pixel_values', shape, datatype, data }],
});
const binary = (header: object, tail: Buffer, claimed?: number): Raw => {
  const h = Buffer.from(JSON.stringify(header));
  return {
    path: `/v2/models/${IMAGE_MODEL}/infer`,
    body: Buffer.concat([h, tail]),
    type: 'application/octet-stream',
    headers: { 'inference-header-content-length': String(claimed ?? h.length) },
  };
};

/** A valid request and its answer alone (predictions / probabilities / outputs, no timing). */
const VALID = {
  image: () => postImage(srv.url, photo('coffee.jpg')),
  glue: () => postJson(srv.url, '/glue/mnli', { premise: 'a man plays a guitar', hypothesis: 'music' }),
};
const answerOf = async (r: Response) => {
  const b = (await r.json()) as Record<string, unknown>;
  return JSON.stringify(b.predictions ?? b.probabilities ?? b);
};
const alone: Record<keyof typeof VALID, string> = { image: '', glue: '' };

async function expectRefused(
  name: string,
  req: Raw | (() => Promise<Response>),
  status: number,
  code: string | RegExp,
): Promise<void> {
  // The bad request and a valid one (alternating image / text) at the same moment.
  const kind = name.length % 2 ? 'image' : 'glue';
  const [bad, good] = await Promise.all([typeof req === 'function' ? req() : send(req), VALID[kind]()]);
  const text = await bad.text();
  expect(bad.status, `${name}: ${text}`).toBe(status);
  expect(bad.headers.get('content-type'), name).toMatch(/application\/json/);
  const body = JSON.parse(text) as { code: string; error: string; error_type: string };
  expect(body.code, `${name}: ${text}`).toMatch(code);
  expect(typeof body.error).toBe('string');
  expect(text, name).not.toMatch(/\n\s+at |node_modules|\/work\//); // no stack traces or paths
  expect(good.status, name).toBe(200);
  expect(await answerOf(good), name).toBe(alone[kind]);
}

describe('bad input: 4xx with a code, the server undisturbed', () => {
  it('takes the valid reference requests alone', async () => {
    alone.image = await answerOf(await VALID.image());
    alone.glue = await answerOf(await VALID.glue());
    expect(alone.image).toMatch(/label/);
  });

  it('images', async () => {
    const jpeg = photo('chelsea.jpg');
    const png = photo('coffee_alpha.png');
    const raw = (body: Buffer | string, type = 'image/jpeg'): Raw => ({ path: '/classify', body, type });
    await expectRefused('empty body', raw(Buffer.alloc(0)), 400, 'empty_image');
    await expectRefused('truncated jpeg', raw(jpeg.subarray(0, 1500)), 400, 'image_decode_failed');
    const corrupt = Buffer.from(jpeg);
    corrupt.fill(0x00, 600, 4000);
    await expectRefused('corrupt jpeg', raw(corrupt), 400, 'image_decode_failed');
    await expectRefused('truncated png', raw(png.subarray(0, 900), 'image/png'), 400, 'image_decode_failed');
    await expectRefused('text as png', raw('hello, I am text', 'image/png'), 415, 'unsupported_image_format');
    await expectRefused(
      '50000x50000 bomb',
      raw(pngWithClaimedSize(50_000, 50_000), 'image/png'),
      413,
      'image_too_large',
    );
    const svg =
      '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9" height="9"/></svg>';
    await expectRefused('svg raw', raw(svg, 'image/svg+xml'), 415, 'unsupported_media_type');
    await expectRefused('svg as jpeg', raw(svg), 415, 'unsupported_image_format');
    await expectRefused(
      'svg in multipart',
      mp('/classify', [{ name: 'image', value: svg, filename: 'x.svg', type: 'image/svg+xml' }]),
      415,
      'unsupported_image_format',
    );
    await expectRefused(
      'multipart, no file',
      mp('/classify', [{ name: 'top_k', value: '2' }]),
      400,
      'missing_image',
    );
    const five = [1, 2, 3, 4, 5].map((i) => ({
      name: `f${i}`,
      value: jpeg,
      filename: `${i}.jpg`,
      type: 'image/jpeg',
    }));
    await expectRefused('five files', mp('/classify', five), 413, 'too_many_files');
    await expectRefused('body over the limit', raw(Buffer.alloc(MAX_BODY + 1, 7)), 413, 'body_too_large');
    await expectRefused(
      'multipart file over the limit',
      mp('/classify', [{ name: 'image', value: Buffer.alloc(MAX_BODY + 1, 7), filename: 'a.jpg' }]),
      413,
      /too_large/,
    );
    await expectRefused('no content type', { path: '/classify', body: jpeg }, 415, /media_type|content_type/);
  });

  it('accepts the image edge cases it documents: first GIF frame, 16-bit PNG, CMYK JPEG, any field name', async () => {
    const cases: [string, Raw][] = [
      [
        'animated gif',
        {
          path: '/classify',
          body: await animatedGif(32, 24, [
            [250, 0, 0],
            [0, 0, 250],
          ]),
          type: 'image/gif',
        },
      ],
      [
        '16-bit png',
        {
          path: '/classify',
          type: 'image/png',
          body: encodePng({
            width: 16,
            height: 16,
            bitDepth: 16,
            colorType: 2,
            samples: Array.from({ length: 16 * 16 * 3 }, (_, i) => (i * 2111) % 65536),
          }),
        },
      ],
      ['cmyk jpeg', { path: '/classify', body: await cmykJpeg(24, 24, [200, 40, 60]), type: 'image/jpeg' }],
      [
        'wrong field name',
        mp('/classify', [{ name: 'photo', value: photo('coffee.jpg'), filename: 'a.jpg' }]),
      ],
      [
        'several files: "image" wins',
        mp('/classify', [
          { name: 'other', value: photo('chelsea.jpg'), filename: 'b.jpg' },
          { name: 'image', value: photo('coffee.jpg'), filename: 'a.jpg' },
        ]),
      ],
    ];
    for (const [name, req] of cases) {
      const res = await send(req);
      expect(res.status, `${name}: ${await res.clone().text()}`).toBe(200);
      if (name !== 'wrong field name' && !name.startsWith('several')) continue;
      expect(await answerOf(res), name).toBe(alone.image); // the coffee photo either way
    }
    // An animated GIF is its first frame: same answer as a still of that frame.
    const first = await send({
      path: '/classify',
      body: await animatedGif(32, 24, [[250, 0, 0]]),
      type: 'image/gif',
    });
    const anim = await send(cases[0]![1]);
    expect(await answerOf(anim)).toBe(await answerOf(first));
  });

  it('text', async () => {
    const g = (body: unknown) => json('/glue/mnli', body);
    await expectRefused('missing fields', g({ premise: 'only one' }), 400, /^glue_/);
    await expectRefused('no fields', g({}), 400, /^glue_/);
    await expectRefused('number', g({ premise: 5, hypothesis: 'x' }), 400, 'invalid_request');
    await expectRefused('array', g({ premise: ['a'], hypothesis: 'x' }), 400, 'invalid_request');
    await expectRefused('null', g({ premise: null, hypothesis: 'x' }), 400, 'invalid_request');
    await expectRefused(
      'unknown field',
      g({ premise: 'a', hypothesis: 'b', extra: 1 }),
      400,
      'invalid_request',
    );
    const badUtf8 = Buffer.concat([
      Buffer.from('{"premise":"a '),
      Buffer.from([0xc3, 0x28, 0xff]),
      Buffer.from('","hypothesis":"b"}'),
    ]);
    await expectRefused(
      'invalid utf-8',
      { path: '/glue/mnli', body: badUtf8, type: 'application/json' },
      400,
      'invalid_utf8',
    );
    await expectRefused(
      'lone surrogate',
      g('{"premise":"a \\ud800 b","hypothesis":"c"}'),
      400,
      'invalid_text',
    );
    await expectRefused('empty strings', g({ premise: '', hypothesis: '' }), 400, 'empty_text');
    await expectRefused(
      '1 MB string',
      g({ premise: 'a'.repeat(1_000_000), hypothesis: 'b' }),
      413,
      'text_too_long',
    );
    const tenK = Array.from({ length: 10_000 }, () => ['a', 'b']);
    await expectRefused('10k pairs', g({ pairs: tenK }), 400, 'invalid_request');
    await expectRefused('unknown task', json('/glue/nope', { sentence: 'x' }), 404, 'unknown_task');
    await expectRefused('unserved task', json('/glue/sst2', { sentence: 'x' }), 404, 'task_not_served');
    await expectRefused(
      'unknown model',
      v2('nope', { inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['x'] }] }),
      404,
      'unknown_model',
    );
    await expectRefused(
      'unknown version',
      json(`/v2/models/${TEXT_MODEL}/versions/7/infer`, {
        inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['x'] }],
      }),
      404,
      'unknown_version',
    );
    await expectRefused('json array', g('[1,2,3]'), 400, 'invalid_request');
    await expectRefused('json string', g('"premise"'), 400, 'invalid_request');
    await expectRefused('json null', g('null'), 400, /invalid_request|empty_body|glue_/);
    await expectRefused('broken json', g('{"premise": "a'), 400, 'invalid_json');
    await expectRefused('empty json body', g(''), 400, /empty_body|invalid_json/);
    const deep = `{"pairs":[${'['.repeat(100_000)}${']'.repeat(100_000)}]}`;
    await expectRefused('deeply nested json', g(deep), 400, /invalid_request|invalid_json|invalid_pair/);
    const deepObj = `{"premise":"a","hypothesis":"b","x":${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}}`;
    await expectRefused('deeply nested object', g(deepObj), 400, /invalid_request|invalid_json/);
  });

  it('V2 tensors', async () => {
    const M = IMAGE_MODEL;
    await expectRefused('negative dim', v2(M, pixels([1, 3, -224, 224], [1])), 400, 'invalid_shape');
    await expectRefused('fractional dim', v2(M, pixels([1, 3, 2.5, 224], [1])), 400, 'invalid_shape');
    await expectRefused(
      'string dim',
      v2(M, pixels([1, '3', 224, 224], [1])),
      400,
      /invalid_shape|invalid_request/,
    );
    await expectRefused(
      'mismatched dims',
      v2(M, pixels([1, 3, 2, 2], new Array(12).fill(0))),
      400,
      'invalid_shape',
    );
    await expectRefused('data length', v2(M, pixels([1, 3, 2, 2], [1, 2, 3])), 400, 'data_length_mismatch');
    await expectRefused('wrong datatype', v2(M, pixels([1, 1], [1], 'INT8')), 400, 'unsupported_datatype');
    await expectRefused('unknown datatype', v2(M, pixels([1, 1], [1], 'FLOAT')), 400, 'invalid_request');
    await expectRefused('NaN as string', v2(M, pixels([1, 1], ['NaN'])), 400, 'non_finite_value');
    await expectRefused(
      'Infinity literal',
      v2(M, '{"inputs":[{"name":"pixel_values","shape":[1],"datatype":"FP32","data":[Infinity]}]}'),
      400,
      'invalid_json',
    );
    await expectRefused(
      '1e999',
      v2(M, '{"inputs":[{"name":"pixel_values","shape":[1],"datatype":"FP32","data":[1e999]}]}'),
      400,
      'non_finite_value',
    );
    await expectRefused(
      'huge declared shape',
      v2(M, pixels([100000, 100000, 100000, 3], [1])),
      413,
      'tensor_too_large',
    );
    await expectRefused('2^53 shape', v2(M, pixels([2 ** 53, 1], [1])), 413, 'tensor_too_large');
    const nan = new Float32Array(3 * 224 * 224);
    nan[7] = NaN;
    const head = (size: number) => ({
      inputs: [
        {
          name: 'pixel_values',
          shape: [1, 3, 224, 224],
          datatype: 'FP32',
          parameters: { binary_data_size: size },
        },
      ],
    });
    await expectRefused(
      'binary NaN',
      binary(head(nan.byteLength), Buffer.from(nan.buffer)),
      400,
      'non_finite_value',
    );
    const inf = new Float32Array(3 * 224 * 224);
    inf[9] = -Infinity;
    await expectRefused(
      'binary -Inf',
      binary(head(inf.byteLength), Buffer.from(inf.buffer)),
      400,
      'non_finite_value',
    );
    const ok = Buffer.alloc(3 * 224 * 224 * 4);
    await expectRefused(
      'header length too long',
      binary(head(ok.length), ok, 10 ** 9),
      400,
      'invalid_binary_header',
    );
    await expectRefused(
      'header length negative',
      binary(head(ok.length), ok, -5),
      400,
      'invalid_binary_header',
    );
    await expectRefused('header length short', binary(head(ok.length), ok, 10), 400, 'invalid_json');
    await expectRefused(
      'header length long',
      binary(head(ok.length), Buffer.concat([Buffer.from('  '), ok]), undefined),
      400,
      /invalid_binary_data|data_length_mismatch/,
    );
    await expectRefused('binary size lies', binary(head(ok.length + 100), ok), 400, 'invalid_binary_data');
    await expectRefused(
      'binary size short',
      binary(head(16), ok),
      400,
      /data_length_mismatch|invalid_binary_data/,
    );
    await expectRefused(
      'bad utf-8 BYTES',
      {
        ...binary(
          { inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: 7 } }] },
          Buffer.from([3, 0, 0, 0, 0xff, 0xfe, 0xfd]),
        ),
        path: `/v2/models/${TEXT_MODEL}/infer`,
      },
      400,
      'invalid_utf8',
    );
    await expectRefused(
      'BYTES length lies',
      {
        ...binary(
          { inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: 6 } }] },
          Buffer.from([0xff, 0xff, 0xff, 0x7f, 0x61, 0x62]),
        ),
        path: `/v2/models/${TEXT_MODEL}/infer`,
      },
      400,
      'invalid_binary_data',
    );
    await expectRefused(
      'deep data',
      v2(M, pixels([1], JSON.parse(`${'['.repeat(20)}1${']'.repeat(20)}`))),
      400,
      'invalid_data',
    );
    await expectRefused('not an object', v2(M, '[{"inputs":1}]'), 400, 'invalid_request');
  });

  it('stays ready and consistent after all of it', async () => {
    expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200);
    expect(await answerOf(await VALID.image())).toBe(alone.image);
    expect(await answerOf(await VALID.glue())).toBe(alone.glue);
  });
});

describe('slow uploads', () => {
  it('cuts off a client that trickles its body (receive timeout), while others are served', async () => {
    const url = new URL(srv.url);
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((r) => socket.once('connect', () => r()));
    let got = '';
    socket.on('data', (d) => (got += d.toString()));
    const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
    const t0 = Date.now();
    socket.write(
      `POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n`,
    );
    // One byte every 100 ms: would take ~3 hours to finish.
    const trickle = setInterval(() => !socket.destroyed && socket.write('x'), 100);
    const during = await VALID.glue();
    expect(during.status).toBe(200);
    const end = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 15_000))]);
    clearInterval(trickle);
    socket.destroy();
    expect(end, 'the trickling connection was closed by the server').toBeGreaterThan(0);
    expect(got).toMatch(/^HTTP\/1\.1 408/);
    console.log(`trickling upload cut off after ${end - t0} ms (receive timeout 1500 ms)`);
    expect((await fetch(`${srv.url}/v2/health/ready`)).status).toBe(200);
  });
});
