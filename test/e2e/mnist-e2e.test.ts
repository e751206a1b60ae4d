/**
 * A real trained PAD-Net (the `resnet-mnist` fixture: 98.15% on its MNIST test split) served end to end with its
 * own preprocessing: converted with `--preprocess examples/mnist-preprocess.json --labels
 * examples/mnist-labels.txt`, then its 30 sample PNGs must reproduce the expected logits through
 * `padserve predict --image` and through the server (`POST /classify`, whose softmax scores give the logits back
 * up to a constant, and V2 infer on the fixture's preprocessed tensor), and `padserve eval` must score 100% on them.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGENET_PREPROCESS, type ResNetCard } from '../../src/model/card.js';
import { readModelCard } from '../../src/model/folder.js';
import { validatePreprocess } from '../../src/convert/resnet/card.js';
import { checkLoopbackUrl, evaluate, formatResult } from '../../src/cli/eval.js';
import { CLI, REPO_ROOT } from '../support/paths.js';
import { convertMnistExample, MNIST_FIXTURE, MNIST_PREPROCESS } from '../support/mnist-model.js';
import { startTestServer, writeServing, type TestServer } from '../support/server.js';
import { scaledMs } from '../support/time-limits.js';

const FIX = MNIST_FIXTURE;
const SAMPLES = join(FIX, 'samples');
const fixture = JSON.parse(readFileSync(join(FIX, 'fixture.json'), 'utf8')) as {
  samples: { files: string[]; labels: number[] };
  tolerance: { atol: number; rtol: number };
  labels: string[];
};
const FILES = fixture.samples.files.map((f) => join(FIX, f));
const N = FILES.length;
const C = 10;
const bin = (f: string) => {
  const b = readFileSync(f);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const EXPECTED = bin(join(SAMPLES, 'expected_logits.bin'));
const INPUT = bin(join(SAMPLES, 'input.bin'));
const { atol, rtol } = fixture.tolerance;
const EXAMPLES = join(REPO_ROOT, 'examples');
const MODEL = 'mnist';

/** Largest |a − e| and whether every element is within atol + rtol·|e|. */
function compare(actual: ArrayLike<number>, expected: ArrayLike<number>): { maxAbs: number; ok: boolean } {
  let maxAbs = 0;
  let ok = actual.length === expected.length;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i]! - expected[i]!);
    maxAbs = Math.max(maxAbs, d);
    if (!(d <= atol + rtol * Math.abs(expected[i]!))) ok = false;
  }
  return { maxAbs, ok };
}

const argmax = (row: ArrayLike<number>) => {
  let b = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[b]!) b = i;
  return b;
};
const expectedRow = (i: number) => EXPECTED.subarray(i * C, (i + 1) * C);
function softmax(row: ArrayLike<number>): number[] {
  const m = Math.max(...Array.from(row));
  const e = Array.from(row, (x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

let repo: string;
let srv: TestServer;

beforeAll(async () => {
  repo = mkdtempSync(join(tmpdir(), 'padserve-mnist-'));
  await convertMnistExample('model.safetensors', join(repo, MODEL, '1'), MODEL);
  writeServing(repo, MODEL, { max_batch_size: 8, max_queue_delay_ms: 2 });
  srv = await startTestServer(repo, { defaultImageModel: MODEL });
}, scaledMs(12_000));

afterAll(async () => {
  await srv?.close();
  if (repo) rmSync(repo, { recursive: true, force: true });
});

describe('example preprocessing and label files', () => {
  it('are valid specs; the ImageNet one is the default', () => {
    const mnist = validatePreprocess(
      JSON.parse(readFileSync(join(EXAMPLES, 'mnist-preprocess.json'), 'utf8')),
      'mnist',
    );
    expect(mnist).toEqual(MNIST_PREPROCESS);
    const imagenet = validatePreprocess(
      JSON.parse(readFileSync(join(EXAMPLES, 'imagenet-preprocess.json'), 'utf8')),
      'imagenet',
    );
    expect(imagenet).toEqual(IMAGENET_PREPROCESS);
    expect(readFileSync(join(EXAMPLES, 'mnist-labels.txt'), 'utf8').split('\n').filter(Boolean)).toEqual(
      fixture.labels,
    );
  });

  it('are written into the converted card', () => {
    const card = readModelCard(join(repo, MODEL, '1')) as ResNetCard;
    expect(card.preprocess.size).toBe(32);
    expect(card.preprocess.resize).toBe('direct');
    expect(card.labels).toEqual(fixture.labels);
  });
});

describe('the 30 samples reproduce their expected logits', () => {
  it(
    'through padserve predict --image (CLI, the card preprocessing)',
    () => {
      const out = join(repo, 'cli-logits.bin');
      const r = spawnSync(
        process.execPath,
        [CLI, 'predict', join(repo, MODEL, '1'), ...FILES.flatMap((f) => ['--image', f]), '--out', out],
        {
          cwd: REPO_ROOT,
          encoding: 'utf8',
          timeout: scaledMs(6_000),
        },
      );
      expect(r.status, r.stderr).toBe(0);
      const got = bin(out);
      const c = compare(got, EXPECTED);
      console.log(`predict --image: max |logit diff| ${c.maxAbs.toExponential(2)} over ${N}×${C}`);
      expect(c.ok).toBe(true);
      for (let i = 0; i < N; i++)
        expect(argmax(got.subarray(i * C, (i + 1) * C))).toBe(fixture.samples.labels[i]);
    },
    scaledMs(8_000),
  );

  it('through POST /classify?model=mnist (labels, softmax scores, logits up to a constant)', async () => {
    let maxLogit = 0;
    let maxProb = 0;
    await Promise.all(
      FILES.map(async (file, i) => {
        const res = await fetch(`${srv.url}/classify?model=${MODEL}&top_k=10`, {
          method: 'POST',
          body: readFileSync(file),
          headers: { 'content-type': 'image/png' },
        });
        expect(res.status).toBe(200);
        const body = (await res.json()) as {
          model: string;
          source: string;
          predictions: { label: string; index: number; score: number }[];
        };
        expect(body.model).toBe(MODEL);
        expect(body.source).toBe('checkpoint');
        expect(body.predictions[0]!.label).toBe(String(fixture.samples.labels[i]));
        expect(basename(file)).toMatch(new RegExp(`_${body.predictions[0]!.label}\\.png$`));
        const e = expectedRow(i);
        const p = new Array<number>(C);
        for (const q of body.predictions) p[q.index] = q.score;
        const ep = softmax(e);
        for (let j = 0; j < C; j++) maxProb = Math.max(maxProb, Math.abs(p[j]! - ep[j]!));
        // logits from the scores: log p_j = l_j − logsumexp(l); put the constant back from the expected row
        const lp = p.map(Math.log);
        const shift = e.reduce((a, b) => a + b, 0) / C - lp.reduce((a, b) => a + b, 0) / C;
        const c = compare(
          lp.map((x) => x + shift),
          e,
        );
        maxLogit = Math.max(maxLogit, c.maxAbs);
      }),
    );
    console.log(
      `/classify: max |score diff| ${maxProb.toExponential(2)}, max |logit diff| (up to a constant) ${maxLogit.toExponential(2)}`,
    );
    expect(maxProb).toBeLessThan(2 * atol);
    expect(maxLogit).toBeLessThan(atol + rtol * 17.2);
  });

  it('through V2 infer on the fixture tensor (raw logits)', async () => {
    const res = await fetch(`${srv.url}/v2/models/${MODEL}/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [{ name: 'pixel_values', datatype: 'FP32', shape: [N, 3, 32, 32], data: Array.from(INPUT) }],
      }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const body = (await res.json()) as { outputs: { name: string; shape: number[]; data: number[] }[] };
    expect(body.outputs[0]!.shape).toEqual([N, C]);
    const c = compare(body.outputs[0]!.data, EXPECTED);
    console.log(`V2 infer: max |logit diff| ${c.maxAbs.toExponential(2)}`);
    expect(c.ok).toBe(true);
  });

  it('V2 metadata shows the card size (the server reads the model preprocessing)', async () => {
    const meta = (await (await fetch(`${srv.url}/v2/models/${MODEL}`)).json()) as {
      inputs: { shape: number[] }[];
    };
    expect(meta.inputs[0]!.shape).toEqual([-1, 3, 32, 32]);
  });
});

describe('padserve eval', () => {
  it('scores 100% of the samples through the running server', async () => {
    const r = await evaluate({ url: srv.url, model: MODEL, folder: SAMPLES, concurrency: 8 });
    console.log(formatResult(r));
    expect(r.images).toBe(N);
    expect(r.errors).toBe(0);
    expect(r.accuracy).toBe(1);
    expect(r.labels).toEqual(fixture.labels);
    for (let i = 0; i < C; i++) expect(r.confusion[i]![i]).toBe(3);
    expect(r.confusion.flat().reduce((a, b) => a + b, 0)).toBe(N);
    expect(r.images_per_second).toBeGreaterThan(0);
    expect(r.version).toBe('1');
  });

  it(
    'the CLI (--url, --json) reports the same, and refuses non-loopback URLs',
    async () => {
      // async: the server runs in this process
      const r = await promisify(execFile)(
        process.execPath,
        [
          CLI,
          'eval',
          MODEL,
          SAMPLES,
          '--url',
          srv.url,
          '--concurrency',
          '8',
          '--json',
          '--min-accuracy',
          '1',
        ],
        { cwd: REPO_ROOT, encoding: 'utf8', timeout: scaledMs(6_000) },
      );
      const j = JSON.parse(r.stdout) as {
        accuracy: number;
        images: number;
        confusion: number[][];
        images_per_second: number;
      };
      expect(j.accuracy).toBe(1);
      expect(j.images).toBe(N);
      expect(j.confusion).toHaveLength(C);
      expect(r.stderr).toBe('');
      expect(() => checkLoopbackUrl('http://10.0.0.1:8080')).toThrow(/loopback/);
      expect(() => checkLoopbackUrl('http://example.com')).toThrow(/loopback/);
      expect(checkLoopbackUrl('http://localhost:8080').hostname).toBe('localhost');
      expect(checkLoopbackUrl('http://[::1]:8080').port).toBe('8080');
    },
    scaledMs(8_000),
  );

  it(
    'the CLI without --url starts its own server over --model-repository',
    async () => {
      const r = await promisify(execFile)(
        process.execPath,
        [CLI, 'eval', MODEL, SAMPLES, '--model-repository', repo, '--concurrency', '4'],
        { cwd: REPO_ROOT, encoding: 'utf8', timeout: scaledMs(6_000) },
      );
      expect(r.stdout).toMatch(/accuracy 100\.00% \(30\/30\)/);
      expect(r.stdout).toMatch(/throughput [\d.]+ images\/s/);
      expect(r.stdout).toMatch(/true\\pred/);
    },
    scaledMs(8_000),
  );
});
