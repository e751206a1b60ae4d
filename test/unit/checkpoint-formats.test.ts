/**
 * Both checkpoint formats together: the fixture checkpoints against their fixture.json and each other, format
 * detection by content, and malformed input of any format. Format-specific cases: checkpoint-safetensors.test.ts,
 * checkpoint-torch.test.ts, checkpoint-torch-malformed.test.ts.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/synth/random.js';
import { readCheckpoint, readCheckpointBytes, readSafetensors } from '../../src/convert/checkpoint/index.js';
import { writeTorchZipEntries } from '../support/torch-writer.js';
import {
  FILES,
  FIXTURES,
  entryBytes,
  expectCheckpointError,
  load,
  loadsOrCheckpointError,
  sameBytes,
  smallSafetensors,
  smallTorchZip,
  useTmpDir,
  zipStorages,
} from '../support/checkpoint-cases.js';

const tmp = useTmpDir();

// -------------------------------------------------------------------------------------------------------------
describe('fixture checkpoints', () => {
  it('finds every fixture checkpoint', () => {
    expect(FILES.length).toBe(9);
  });

  it.each(FILES.map((f) => [`${f.dir}/${f.file}`, f] as const))(
    '%s loads with the tensors of fixture.json',
    async (_n, f) => {
      const c = await load(f.dir, f.file);
      expect(c.format).toBe(f.format);
      expect(c.sha256).toBe(f.sha256);
      const got = [...c.tensors].map(([name, t]) => ({ name, dtype: t.dtype, shape: [...t.shape] }));
      const want = f.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape }));
      if (f.format === 'torch-zip') {
        expect(got).toEqual(want); // pickle order is state-dict order
      } else {
        const byName = (a: { name: string }, b: { name: string }): number =>
          a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
        expect([...got].sort(byName)).toEqual([...want].sort(byName));
      }
      for (const [name, t] of c.tensors) {
        expect(t.data.length, name).toBe(t.shape.reduce((a, b) => a * b, 1));
        expect(t.data.byteOffset % 8, name).toBe(0);
        if (t.dtype === 'int64') expect(name.endsWith('num_batches_tracked'), name).toBe(true);
      }
    },
  );

  const pairs: [string, string, string][] = [
    ['resnet-tiny', 'model.pth.tar', 'model.safetensors'],
    ['resnet-mnist', 'model.pth.tar', 'model.safetensors'],
    ['bert-tiny', 'pytorch_model.bin', 'model.safetensors'],
  ];
  it.each(pairs)('%s: both formats give bit-identical tensors', async (dir, a, b) => {
    const ca = await load(dir, a);
    const cb = await load(dir, b);
    expect(new Set(ca.tensors.keys())).toEqual(new Set(cb.tensors.keys()));
    for (const [name, t] of ca.tensors) {
      const u = cb.tensors.get(name)!;
      expect(u.dtype, name).toBe(t.dtype);
      expect(u.shape, name).toEqual(t.shape);
      expect(sameBytes(t, u), name).toBe(true);
    }
  });

  it('reads metadata from both formats', async () => {
    for (const f of FILES) {
      const c = await load(f.dir, f.file);
      if (f.format === 'safetensors') expect(c.metadata, f.dir).toEqual(f.metadata);
    }
    // The torch.save dicts' scalars, as Python's str() prints them.
    const torchMetadata: [string, string, string][] = [
      ['resnet-tiny', '0', '0.0'],
      ['resnet-mnist', '40', '98.15'],
    ];
    for (const [dir, epoch, best_prec1] of torchMetadata) {
      expect((await load(dir, 'model.pth.tar')).metadata, dir).toEqual({
        temperature: '1.0',
        arch: 'DyResNet50_PAD',
        epoch,
        best_prec1,
      });
    }
    expect((await load('resnet-mnist', 'model.safetensors')).metadata.temperature).toBe(
      (await load('resnet-mnist', 'model.pth.tar')).metadata.temperature,
    );
    expect((await load('bert-tiny', 'pytorch_model.bin')).metadata).toEqual({});
  });

  it('num_batches_tracked is a 0-d int64 tensor', async () => {
    for (const file of ['model.pth.tar', 'model.safetensors']) {
      const t = (await load('resnet-tiny', file)).tensors.get('bn1.num_batches_tracked')!;
      expect(t.dtype).toBe('int64');
      expect(t.shape).toEqual([]);
      expect(t.data).toBeInstanceOf(BigInt64Array);
      expect(t.data.length).toBe(1);
    }
  });

  it('tensors own their buffers (no aliasing between tensors or with the input)', async () => {
    const bytes = readFileSync(join(FIXTURES, 'padconv-layers/conv3x3_s2_i16_o32/model.safetensors'));
    const c = readSafetensors(bytes);
    const buffers = new Set([...c.tensors.values()].map((t) => t.data.buffer));
    expect(buffers.size).toBe(c.tensors.size);
    expect(buffers.has(bytes.buffer)).toBe(false);
    const disk = await load('resnet-tiny', 'model.pth.tar');
    expect(new Set([...disk.tensors.values()].map((t) => t.data.buffer)).size).toBe(disk.tensors.size);
  });

  it('truncated fixture files give CheckpointError, read from disk', async () => {
    for (const file of ['resnet-mnist/model.pth.tar', 'resnet-mnist/model.safetensors']) {
      const bytes = readFileSync(join(FIXTURES, file));
      for (const at of [0, 3, 8, 30, 2000, bytes.length >> 1, bytes.length - 23, bytes.length - 1]) {
        const p = join(tmp, `cut-${at}-${file.replace(/\//g, '_')}`);
        writeFileSync(p, bytes.subarray(0, at));
        await expectCheckpointError(() => readCheckpoint(p), p);
      }
    }
  });
});

// -------------------------------------------------------------------------------------------------------------
describe('malformed input gives one-line CheckpointError', () => {
  it('missing files and directories', async () => {
    await expectCheckpointError(
      () => readCheckpoint(join(tmp, 'nope.pth.tar')),
      join(tmp, 'nope.pth.tar'),
      /no such file/,
    );
    await expectCheckpointError(() => readCheckpoint(tmp), tmp, /directory/);
  });

  it('empty, garbage and legacy files', async () => {
    const rnd = seededRandom(1);
    const garbage = Uint8Array.from({ length: 4096 }, () => Math.floor(rnd() * 256));
    await expectCheckpointError(() => readCheckpointBytes(new Uint8Array(0), 'e.pt'), 'e.pt', /empty/);
    await expectCheckpointError(() => readCheckpointBytes(garbage, 'g.pt'), 'g.pt');
    await expectCheckpointError(
      () => readCheckpointBytes(Buffer.from('hello world, not a model\n'), 't.pt'),
      't.pt',
      /unrecognised/,
    );
    await expectCheckpointError(
      () => readCheckpointBytes(Uint8Array.from([0x80, 0x02, 0x8a, 0x0a]), 'old.pt'),
      'old.pt',
      /legacy/,
    );
    const p = join(tmp, 'garbage.safetensors');
    writeFileSync(p, garbage);
    await expectCheckpointError(() => readCheckpoint(p), p);
    await expectCheckpointError(() => readSafetensors(garbage, 'g.safetensors'), 'g.safetensors');
  });

  // One seeded sequence through pickles, safetensors headers and whole zips: the count of harmless corruptions
  // is over pickles and headers together.
  it('random corruption of pickles and headers: loads or CheckpointError, nothing else', async () => {
    const small = smallTorchZip();
    const smallSt = smallSafetensors();
    const rnd = seededRandom(42);
    const pkl = await entryBytes(small, 'model.pth/data.pkl');
    const storages = await zipStorages(small);
    let loadedOk = 0;
    for (let i = 0; i < 400; i++) {
      const bad = pkl.slice();
      const flips = 1 + Math.floor(rnd() * 3);
      for (let k = 0; k < flips; k++) bad[Math.floor(rnd() * bad.length)] = Math.floor(rnd() * 256);
      if (await loadsOrCheckpointError(writeTorchZipEntries('model.pth', bad, storages), 'fz.pt')) loadedOk++;
    }
    const n = Number(Buffer.from(smallSt).readBigUInt64LE(0));
    for (let i = 0; i < 300; i++) {
      const bad = smallSt.slice();
      bad[Math.floor(rnd() * (8 + n))] = Math.floor(rnd() * 256);
      if (await loadsOrCheckpointError(bad, 'fz.safetensors')) loadedOk++;
    }
    for (let i = 0; i < 300; i++) {
      const bad = small.slice();
      bad[Math.floor(rnd() * bad.length)] = Math.floor(rnd() * 256);
      await loadsOrCheckpointError(bad, 'fzz.pt');
    }
    expect(loadedOk).toBeGreaterThan(0); // some corruptions are harmless (e.g. in a tensor name)
  });
});
