/**
 * Readiness gated on accuracy (serving.json `golden`): a version that scores below `min_accuracy` on its model's
 * labelled golden set is never swapped in. A deliberately broken model (the trained MNIST checkpoint converted
 * with ImageNet preprocessing: it runs, but below 16% accurate) stays unready with a named reason in the status,
 * the logs' message and the metrics; a reload to such a version leaves the previous one serving.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkGolden,
  goldenFolder,
  GoldenError,
  listLabelledImages,
  score,
  type GoldenTarget,
} from '../../src/repository/golden.js';
import { readModelCard } from '../../src/model/folder.js';
import {
  parseServingConfig,
  ServingConfigError,
  type ServingDefaults,
} from '../../src/repository/serving.js';
import { PADNET_FIXTURES, REPO_ROOT } from '../support/paths.js';
import { SERVING_DEFAULTS } from '../support/serving-defaults.js';
import { metrics, metricValue, startTestServer, writeServing, type TestServer } from '../support/server.js';

const FIX = join(PADNET_FIXTURES, 'resnet-mnist');
const SAMPLES = join(FIX, 'samples');
const EXAMPLES = join(REPO_ROOT, 'examples');
const GOOD = 'mnist';
const BAD = 'mnist-imagenet';
const GOLDEN = { folder: 'golden/', min_accuracy: 0.95 };
const TOKEN = 'golden-test-token';

const DEFAULTS: ServingDefaults = { ...SERVING_DEFAULTS, warmup: 'buckets' };

describe('serving.json golden field', () => {
  const parse = (golden: unknown) => parseServingConfig({ golden }, DEFAULTS, 'serving.json');

  it('accepts plain relative folders and a fraction', () => {
    expect(parse({ folder: 'golden/', min_accuracy: 0.95 }).golden).toEqual({
      folder: 'golden',
      min_accuracy: 0.95,
    });
    expect(parse({ folder: 'sets/golden-1', min_accuracy: 1 }).golden).toEqual({
      folder: 'sets/golden-1',
      min_accuracy: 1,
    });
    expect(parseServingConfig({}, DEFAULTS).golden).toBeNull();
  });

  it('refuses absolute paths, "..", odd names, bad minima and unknown fields', () => {
    for (const folder of [
      '/etc',
      '../other/golden',
      'a/../b',
      '..',
      '.',
      '',
      'a//b',
      'C:/x',
      'a\\b',
      '.hidden',
      'gold en',
    ])
      expect(() => parse({ folder, min_accuracy: 0.9 }), folder).toThrow(ServingConfigError);
    for (const min of [-0.1, 1.5, '0.9', null])
      expect(() => parse({ folder: 'g', min_accuracy: min })).toThrow(/min_accuracy/);
    expect(() => parse({ folder: 'g' })).toThrow(/min_accuracy/);
    expect(() => parse({ folder: 'g', min_accuracy: 0.9, extra: 1 })).toThrow(/unknown/);
    expect(() => parse('golden/')).toThrow(/object/);
  });

  it('does not follow a link out of the model folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'padserve-golden-'));
    try {
      mkdirSync(join(dir, 'model'));
      symlinkSync(SAMPLES, join(dir, 'model', 'golden'));
      expect(() => goldenFolder(join(dir, 'model'), { folder: 'golden', min_accuracy: 0.9 })).toThrow(
        GoldenError,
      );
      expect(() => goldenFolder(join(dir, 'model'), { folder: 'missing', min_accuracy: 0.9 })).toThrow(
        /golden_set_unreadable/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads labels from <index>_<label> names and scores a confusion matrix', () => {
    const { images } = listLabelledImages(SAMPLES);
    expect(images).toHaveLength(30);
    expect(images[0]).toMatchObject({ index: 29, label: '0' });
    const r = score(
      [
        { file: 'a', label: '1', predicted: '1' },
        { file: 'b', label: '1', predicted: '7' },
        { file: 'c', label: '7', predicted: '7' },
        { file: 'd', label: '10', predicted: null, error: 'x' },
      ],
      [],
    );
    expect(r.labels).toEqual(['1', '7', '10']);
    expect(r.confusion).toEqual([
      [1, 1, 0],
      [0, 1, 0],
      [0, 0, 0],
    ]);
    expect(r).toMatchObject({ images: 4, correct: 2, errors: 1, accuracy: 0.5 });
  });
});

describe('readiness gated on the golden set', () => {
  let repo: string;
  let srv: TestServer;
  const admin = (path: string) =>
    fetch(`${srv.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  const classify = async (model: string, file: string) =>
    fetch(`${srv.url}/classify?model=${model}&top_k=1`, {
      method: 'POST',
      body: new Uint8Array(await import('node:fs').then((fs) => fs.readFileSync(join(SAMPLES, file)))),
      headers: { 'content-type': 'image/png' },
    });
  const golden = (model: string) => {
    mkdirSync(join(repo, model, 'golden'), { recursive: true });
    for (const f of readdirSync(SAMPLES))
      if (f.endsWith('.png')) cpSync(join(SAMPLES, f), join(repo, model, 'golden', f));
  };

  beforeAll(async () => {
    repo = mkdtempSync(join(tmpdir(), 'padserve-golden-repo-'));
    const { convertCommand } = await import('../../src/convert/resnet/command.js');
    const log = console.log;
    console.log = () => undefined;
    try {
      const ckpt = join(FIX, 'model.safetensors');
      const labelsFile = join(EXAMPLES, 'mnist-labels.txt');
      await convertCommand(ckpt, join(repo, GOOD, '1'), {
        name: GOOD,
        labelsFile,
        preprocessFile: join(EXAMPLES, 'mnist-preprocess.json'),
      });
      // the broken one: the right weights with the wrong (ImageNet) preprocessing
      await convertCommand(ckpt, join(repo, BAD, '1'), {
        name: BAD,
        labelsFile,
        preprocessFile: join(EXAMPLES, 'imagenet-preprocess.json'),
      });
    } finally {
      console.log = log;
    }
    for (const m of [GOOD, BAD]) {
      golden(m);
      // a queue smaller than the golden set: the gate must not overrun it
      writeServing(repo, m, { max_batch_size: 4, max_queue_size: 8, warmup: 'buckets', golden: GOLDEN });
    }
    srv = await startTestServer(repo, { defaultImageModel: GOOD, adminToken: TOKEN });
  }, 120_000);

  afterAll(async () => {
    await srv?.close();
    if (repo) rmSync(repo, { recursive: true, force: true });
  });

  it('a model below its minimum accuracy is not ready, with a named reason; the good one serves', async () => {
    const ready = await fetch(`${srv.url}/v2/health/ready`);
    expect(ready.status).toBe(400);
    const body = (await ready.json()) as {
      models: Record<string, { loaded: number[]; error: string | null }>;
    };
    expect(body.models[GOOD]).toMatchObject({ loaded: [1], error: null });
    expect(body.models[BAD]!.loaded).toEqual([]);
    expect(body.models[BAD]!.error).toMatch(/golden_accuracy_below_minimum/);
    expect(body.models[BAD]!.error).toMatch(/below the minimum 95\.0%/);

    const refused = await classify(BAD, '0029_0.png');
    expect(refused.status).toBe(503);
    expect((await fetch(`${srv.url}/v2/models/${BAD}/ready`)).status).not.toBe(200);
    const ok = await classify(GOOD, '0029_0.png');
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ version: '1', predictions: [{ label: '0' }] });
    const text = await metrics(srv.url);
    expect(
      metricValue(text, 'padserve_model_load_failures_total', {
        model: BAD,
        reason: 'golden_accuracy_below_minimum',
      }),
    ).toBe(1);
    expect(metricValue(text, 'padserve_model_ready', { model: GOOD, version: '1' })).toBe(1);
  });

  it('a reload to a version below the minimum keeps the previous version serving', async () => {
    cpSync(join(repo, BAD, '1'), join(repo, GOOD, '2'), { recursive: true });
    const reload = await admin(`/admin/models/${GOOD}/reload`);
    expect(reload.status).toBe(503);
    expect(await reload.json()).toMatchObject({ code: 'golden_accuracy_below_minimum' });
    const status = (await (
      await fetch(`${srv.url}/admin/models`, { headers: { authorization: `Bearer ${TOKEN}` } })
    ).json()) as {
      name: string;
      loaded: number[];
      error: string | null;
    }[];
    expect(status.find((s) => s.name === GOOD)).toMatchObject({ loaded: [1] });
    expect(status.find((s) => s.name === GOOD)!.error).toMatch(/version 2: golden set golden: accuracy/);
    const still = await classify(GOOD, '1485_7.png');
    expect(still.status).toBe(200);
    expect(await still.json()).toMatchObject({ version: '1', predictions: [{ label: '7' }] });
    expect(
      metricValue(await metrics(srv.url), 'padserve_model_load_failures_total', {
        model: GOOD,
        reason: 'golden_accuracy_below_minimum',
      }),
    ).toBe(1);

    // a passing version replaces it
    rmSync(join(repo, GOOD, '2'), { recursive: true, force: true });
    cpSync(join(repo, GOOD, '1'), join(repo, GOOD, '3'), { recursive: true });
    const good = await admin(`/admin/models/${GOOD}/reload`);
    expect(good.status, await good.clone().text()).toBe(200);
    expect(await good.json()).toMatchObject({ loaded: [3], error: null });
    expect(await (await classify(GOOD, '1485_7.png')).json()).toMatchObject({
      version: '3',
      predictions: [{ label: '7' }],
    });
  });

  it('names why a set cannot score: empty, unknown labels, unreadable images', async () => {
    const card = readModelCard(join(repo, GOOD, '1'));
    let calls = 0;
    const target: GoldenTarget = {
      name: 'fake',
      version: 1,
      card,
      serving: { max_queue_size: 2, max_batch_size: 1 },
      infer: async () => {
        calls++;
        const data = new Float32Array(10);
        data[3] = 1;
        return [{ value: { logits: { data } } }];
      },
    };
    const dir = join(repo, 'fake');
    mkdirSync(join(dir, 'g'), { recursive: true });
    const spec = { folder: 'g', min_accuracy: 0.5 };
    await expect(checkGolden(target, dir, spec)).rejects.toThrow(/golden_set_empty/);
    cpSync(join(SAMPLES, '0650_3.png'), join(dir, 'g', '1_3.png'));
    cpSync(join(SAMPLES, '0650_3.png'), join(dir, 'g', '2_3.png'));
    cpSync(join(SAMPLES, '0029_0.png'), join(dir, 'g', '3_0.png'));
    const r = await checkGolden(target, dir, spec);
    expect(r).toMatchObject({ images: 3, correct: 2 });
    expect(calls).toBe(3);
    await expect(checkGolden(target, dir, { folder: 'g', min_accuracy: 0.9 })).rejects.toThrow(
      /golden_accuracy_below_minimum/,
    );
    writeFileSync(join(dir, 'g', '4_3.png'), 'not a png');
    await expect(checkGolden(target, dir, spec)).rejects.toThrow(/golden_set_unreadable/);
    rmSync(join(dir, 'g', '4_3.png'));
    cpSync(join(SAMPLES, '0029_0.png'), join(dir, 'g', '5_cat.png'));
    await expect(checkGolden(target, dir, spec)).rejects.toThrow(/golden_unlabelled/);
  });
});
