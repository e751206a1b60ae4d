/**
 * Synthetic ResNets (`padserve synth resnet50`, here at a small width): the state dict has checkpoint names and
 * goes through the converter; calibrated BatchNorm keeps the logits of order 1–10; the card says the weights are
 * synthetic; the three variants differ only in the mask; the CLI writes a folder and reports its timings.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ModelSession } from '../../src/runtime/session.js';
import { calibrateStateDict, synthPlan, synthStateDict, synthesizeResNet } from '../../src/synth/resnet.js';
import { calibrationImages } from '../../src/synth/calibrate.js';
import { Rng } from '../../src/synth/random.js';
import { compare } from '../support/resnet-fixtures.js';
import { referenceForward } from '../support/resnet-reference.js';

const tmp = mkdtempSync(join(tmpdir(), 'padserve-resnet-synth-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const small = { scale: 0.125, blocks: [1, 1, 1, 1], classes: 10, calibration: { images: 3, size: 64 } };

describe('synthetic ResNet', () => {
  it.each(['pad', 'static', 'dyconv'] as const)(
    '%s: converted model matches the reference forward of its own state dict',
    async (variant) => {
      const plan = synthPlan({ outDir: '', seed: 4, variant, ...small });
      const sd = synthStateDict(plan);
      expect(sd.has('layer1.layers.0.conv2.kernels_weights')).toBe(true);
      calibrateStateDict(sd, plan, small.calibration);
      const dir = join(tmp, variant);
      const card = await synthesizeResNet({ outDir: dir, seed: 4, variant, ...small });
      expect(card.variant).toBe(variant);
      expect(card.source).toEqual({
        kind: 'synthetic',
        generator: 'padserve synth resnet50',
        seed: 4,
        note: 'seeded synthetic weights, not trained: predictions are meaningless',
      });
      expect(card.dynamic.ratio).toBeCloseTo(variant === 'pad' ? 0.3 : variant === 'static' ? 0 : 1, 2);
      const images = calibrationImages(new Rng(77), 2, 64);
      const x = new Float32Array(2 * 3 * 64 * 64);
      images.forEach((im, i) => x.set(im.data, i * im.data.length));
      const session = await ModelSession.load(dir, { intraOpThreads: 2 });
      const logits = (
        await session.run({ pixel_values: { dtype: 'float32', shape: [2, 3, 64, 64], data: x } })
      ).logits!.data;
      await session.release();
      const reference = referenceForward(sd, x, [2, 3, 64, 64], 1).flatMap((r) => [...r]);
      expect(compare(logits, reference, { atol: 1e-4, rtol: 1e-3 }).worstRatio).toBeLessThanOrEqual(1);
      const maxAbs = Math.max(...reference.map(Math.abs));
      expect(maxAbs).toBeGreaterThan(0.5);
      expect(maxAbs).toBeLessThan(30);
    },
  );

  it('same seed → same Θ̄ for every variant; the mask has the requested ratio', () => {
    const a = synthStateDict(
      synthPlan({ outDir: '', seed: 9, variant: 'pad', dynamicRatio: 0.25, ...small }),
    );
    const b = synthStateDict(synthPlan({ outDir: '', seed: 9, variant: 'static', ...small }));
    const name = 'layer2.layers.0.conv2';
    expect(a.get(`${name}.weight`)!.data).toEqual(b.get(`${name}.weight`)!.data);
    const mask = a.get(`${name}.kernels_weights_mask`)!.data as Float32Array;
    expect(mask.reduce((s, v) => s + v, 0)).toBe(Math.round(0.25 * mask.length));
    expect((b.get(`${name}.kernels_weights_mask`)!.data as Float32Array).every((v) => v === 0)).toBe(true);
  });

  it('padserve synth resnet50 writes a model folder and reports its timings', () => {
    const out = join(tmp, 'cli');
    const r = spawnSync(
      process.execPath,
      [
        'bin/padserve.js',
        'synth',
        'resnet50',
        '--out',
        out,
        '--scale',
        '0.125',
        '--blocks',
        '1,1',
        '--classes',
        '5',
        '--seed',
        '3',
      ],
      { encoding: 'utf8', timeout: 120_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /pad ResNet, 30\.0% dynamic, .* in [\d.]+ s \(weights [\d.]+ s, calibration [\d.]+ s, convert [\d.]+ s, write [\d.]+ s\)/,
    );
    const bad = spawnSync(
      process.execPath,
      ['bin/padserve.js', 'synth', 'resnet50', '--out', out, '--variant', 'moe'],
      { encoding: 'utf8' },
    );
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')[0]).toMatch(/--variant must be one of pad, static, dyconv/);
  });
});
