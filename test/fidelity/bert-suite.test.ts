/**
 * The GLUE task suite: task folders share one encoder weights file (one inode), differ only in their heads, and
 * each is exactly the model a direct `synthesizeBert` of that task gives (same initializer digest, same logits).
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readModelCard } from '../../src/model/folder.js';
import { ModelSession } from '../../src/runtime/session.js';
import { synthesizeBert, synthesizeGlueSuite } from '../../src/synth/bert.js';
import { int64Tensor } from '../../src/tensor.js';
import { tokenBatch } from '../support/bert-reference.js';

const SIZE = { layers: 2, hidden: 64 };
const SEED = 5;
let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'bert-suite-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function logitsOf(dir: string): Promise<Float32Array> {
  const inputs = tokenBatch([12, 7], 30522, 12);
  const t = (d: ArrayLike<number | bigint>) => int64Tensor(d as BigInt64Array, inputs.shape);
  const session = await ModelSession.load(dir, { intraOpThreads: 1 });
  const { logits } = await session.run({
    input_ids: t(inputs.inputIds),
    attention_mask: t(inputs.attentionMask),
    token_type_ids: t(inputs.tokenTypeIds),
  });
  await session.release();
  return logits!.data;
}

describe('synthesizeGlueSuite', () => {
  it('shares one weights file and matches direct synthesis task by task', async () => {
    const root = join(tmp, 'suite');
    const dirs = await synthesizeGlueSuite({
      rootDir: root,
      tasks: ['mnli', 'stsb', 'CoLA'],
      seed: SEED,
      ...SIZE,
    });
    expect(Object.keys(dirs)).toEqual(['mnli', 'stsb', 'cola']);
    const inodes = Object.values(dirs).map((d) => statSync(join(d, 'model.onnx.data')));
    expect(new Set(inodes.map((s) => s.ino)).size).toBe(1);
    expect(inodes[0]!.nlink).toBeGreaterThanOrEqual(3);

    const stsb = readModelCard(dirs.stsb!);
    expect(stsb).toMatchObject({
      family: 'bert',
      task: 'stsb',
      problemType: 'regression',
      labels: ['score'],
      name: 'stsb',
    });
    expect(stsb.outputs[0]!.shape).toEqual(['batch', 1]);
    expect(stsb.source).toMatchObject({ kind: 'synthetic', seed: SEED, generator: 'padserve synth bert' });

    for (const task of ['stsb', 'cola'] as const) {
      const direct = join(tmp, `direct-${task}`);
      const card = await synthesizeBert({ outDir: direct, task, seed: SEED, ...SIZE });
      const shared = readModelCard(dirs[task]!);
      expect(shared.graph.weightsSha256).toBe(card.graph.weightsSha256);
      expect(shared.graph.parameters).toBe(card.graph.parameters);
      expect(shared.labels).toEqual(card.labels);
      expect(Array.from(await logitsOf(dirs[task]!))).toEqual(Array.from(await logitsOf(direct)));
    }
  });

  it('keeps existing task folders and derives new tasks from them', async () => {
    const root = join(tmp, 'suite');
    const before = statSync(join(root, 'mnli', 'config.json')).mtimeMs;
    const dirs = await synthesizeGlueSuite({ rootDir: root, tasks: ['mnli', 'rte'], seed: SEED, ...SIZE });
    expect(statSync(join(root, 'mnli', 'config.json')).mtimeMs).toBe(before);
    expect(statSync(join(dirs.rte!, 'model.onnx.data')).ino).toBe(
      statSync(join(dirs.mnli!, 'model.onnx.data')).ino,
    );
    const direct = await synthesizeBert({
      outDir: join(tmp, 'direct-rte'),
      task: 'rte',
      seed: SEED,
      ...SIZE,
    });
    expect(readModelCard(dirs.rte!).graph.weightsSha256).toBe(direct.graph.weightsSha256);
  });
});
