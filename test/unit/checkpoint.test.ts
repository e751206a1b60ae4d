import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/synth/random.js';
import { PADNET_FIXTURES } from '../support/paths.js';
import {
  CheckpointError,
  readCheckpoint,
  readCheckpointBytes,
  readSafetensors,
  writeSafetensors,
  type Checkpoint,
} from '../../src/convert/checkpoint/index.js';
import { MemorySource } from '../../src/convert/checkpoint/errors.js';
import { pyFloatRepr } from '../../src/convert/checkpoint/torch.js';
import { entryDataOffset, readZipDirectory } from '../../src/convert/checkpoint/zip.js';
import { floatTensor, int64Tensor, tensorBytes, type HostTensor } from '../../src/tensor.js';
import { Pickler, contiguousStrides, writeTorchZip, writeTorchZipEntries } from '../support/torch-writer.js';

const FIXTURES = PADNET_FIXTURES;

interface FixtureTensor {
  name: string;
  dtype: string;
  shape: number[];
}
interface FixtureFile {
  dir: string;
  file: string;
  format: Checkpoint['format'];
  sha256: string;
  metadata?: Record<string, string>;
  tensors: FixtureTensor[];
  checkpoint: Record<string, unknown>;
}

/** Every checkpoint file of every fixture folder, from its fixture.json. */
function fixtureFiles(): FixtureFile[] {
  const dirs = ['resnet-tiny', 'resnet-mnist', 'bert-tiny'];
  const index = JSON.parse(readFileSync(join(FIXTURES, 'padconv-layers/index.json'), 'utf8')) as {
    layers: { dir: string }[];
  };
  for (const l of index.layers) dirs.push(`padconv-layers/${l.dir}`);
  const out: FixtureFile[] = [];
  for (const dir of dirs) {
    const fx = JSON.parse(readFileSync(join(FIXTURES, dir, 'fixture.json'), 'utf8')) as {
      checkpoint: Record<string, unknown>;
    };
    const ck = fx.checkpoint;
    const tensors = ck.tensors as FixtureTensor[];
    for (const [key, v] of Object.entries(ck)) {
      if (typeof v !== 'object' || v === null || !('sha256' in v)) continue;
      const info = v as { file?: string; sha256: string; metadata?: Record<string, string> };
      const file = info.file ?? key;
      out.push({
        dir,
        file,
        format: file.endsWith('.safetensors') ? 'safetensors' : 'torch-zip',
        sha256: info.sha256,
        metadata: info.metadata,
        tensors,
        checkpoint: ck,
      });
    }
  }
  return out;
}

const FILES = fixtureFiles();
const loaded = new Map<string, Checkpoint>();
async function load(dir: string, file: string): Promise<Checkpoint> {
  const p = join(FIXTURES, dir, file);
  let c = loaded.get(p);
  if (!c) {
    c = await readCheckpoint(p);
    loaded.set(p, c);
  }
  return c;
}

/** Asserts a one-line CheckpointError that names `label`, and returns its message. */
async function expectCheckpointError(run: () => unknown, label: string, pattern?: RegExp): Promise<string> {
  let err: unknown;
  try {
    await run();
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a CheckpointError').toBeInstanceOf(CheckpointError);
  const msg = (err as Error).message;
  expect(msg.startsWith(`${label}: `), msg).toBe(true);
  expect(msg).not.toContain('\n');
  if (pattern) expect(msg).toMatch(pattern);
  return msg;
}

/** Loads or fails with a CheckpointError; anything else (TypeError, RangeError ...) fails the test. */
async function loadsOrCheckpointError(bytes: Uint8Array, label: string): Promise<boolean> {
  try {
    await readCheckpointBytes(bytes, label);
    return true;
  } catch (e) {
    if (!(e instanceof CheckpointError))
      throw new Error(`non-CheckpointError thrown: ${String((e as Error).stack)}`);
    expect(e.message.startsWith(`${label}: `)).toBe(true);
    expect(e.message).not.toContain('\n');
    return false;
  }
}

function sameBytes(a: HostTensor, b: HostTensor): boolean {
  return Buffer.from(tensorBytes(a)).equals(Buffer.from(tensorBytes(b)));
}

/** A small state dict with every dtype the converters see. */
function smallStateDict(prefix = ''): Map<string, HostTensor> {
  return new Map<string, HostTensor>([
    [
      `${prefix}conv1.weight`,
      floatTensor(
        Float32Array.from({ length: 2 * 3 * 3 * 3 }, (_, i) => i / 7 - 1.5),
        [2, 3, 3, 3],
      ),
    ],
    [`${prefix}bn1.running_var`, floatTensor([1, 2], [2])],
    [`${prefix}bn1.num_batches_tracked`, int64Tensor([12345678901n], [])],
    [`${prefix}linear.bias`, floatTensor([0.25, -0.5, 3], [3])],
  ]);
}

/** Minimal opcode walker for the protocol-2 opcodes torch.save emits: names only (arguments skipped). */
function opcodes(p: Uint8Array): string[] {
  // prettier-ignore
  const names: Record<number, [string, number | 'u32' | 'lines2']> = {
    0x80: ['PROTO', 1], 0x7d: ['EMPTY_DICT', 0], 0x71: ['BINPUT', 1], 0x72: ['LONG_BINPUT', 4], 0x28: ['MARK', 0],
    0x58: ['BINUNICODE', 'u32'], 0x63: ['GLOBAL', 'lines2'], 0x29: ['EMPTY_TUPLE', 0], 0x52: ['REDUCE', 0],
    0x68: ['BINGET', 1], 0x6a: ['LONG_BINGET', 4], 0x4b: ['BININT1', 1], 0x4d: ['BININT2', 2], 0x4a: ['BININT', 4],
    0x74: ['TUPLE', 0], 0x85: ['TUPLE1', 0], 0x86: ['TUPLE2', 0], 0x87: ['TUPLE3', 0], 0x51: ['BINPERSID', 0],
    0x89: ['NEWFALSE', 0], 0x88: ['NEWTRUE', 0], 0x73: ['SETITEM', 0], 0x75: ['SETITEMS', 0], 0x62: ['BUILD', 0],
    0x47: ['BINFLOAT', 8], 0x2e: ['STOP', 0],
  };
  const out: string[] = [];
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  let i = 0;
  while (i < p.length) {
    const op = names[p[i]!];
    if (!op) throw new Error(`opcode 0x${p[i]!.toString(16)} at ${i}`);
    out.push(op[0]);
    i++;
    if (op[1] === 'u32') i += 4 + dv.getUint32(i, true);
    else if (op[1] === 'lines2') i = p.indexOf(0x0a, p.indexOf(0x0a, i) + 1) + 1;
    else i += op[1];
  }
  return out;
}

async function zipEntries(bytes: Uint8Array): Promise<{ name: string; dataOffset: number; size: number }[]> {
  const src = new MemorySource(bytes);
  const entries = await readZipDirectory(src);
  return Promise.all(
    entries.map(async (e) => ({ name: e.name, dataOffset: await entryDataOffset(src, e), size: e.size })),
  );
}

async function entryBytes(bytes: Uint8Array, name: string): Promise<Uint8Array> {
  const e = (await zipEntries(bytes)).find((x) => x.name === name)!;
  return bytes.subarray(e.dataOffset, e.dataOffset + e.size);
}

const tmp = mkdtempSync(join(tmpdir(), 'padserve-ckpt-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

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

  it('safetensors tensors are in data-offset (file) order', async () => {
    const p = join(FIXTURES, 'resnet-tiny/model.safetensors');
    const bytes = readFileSync(p);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<
      string,
      { data_offsets: number[] }
    >;
    const byOffset = Object.keys(header)
      .filter((k) => k !== '__metadata__')
      .sort((a, b) => header[a]!.data_offsets[0]! - header[b]!.data_offsets[0]!);
    expect([...(await load('resnet-tiny', 'model.safetensors')).tensors.keys()]).toEqual(byOffset);
  });

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
    const tiny = await load('resnet-tiny', 'model.pth.tar');
    expect(tiny.metadata).toEqual({
      temperature: '1.0',
      arch: 'DyResNet50_PAD',
      epoch: '0',
      best_prec1: '0.0',
    });
    const mnist = await load('resnet-mnist', 'model.pth.tar');
    expect(mnist.metadata).toEqual({
      temperature: '1.0',
      arch: 'DyResNet50_PAD',
      epoch: '40',
      best_prec1: '98.15',
    });
    expect((await load('resnet-mnist', 'model.safetensors')).metadata.temperature).toBe(
      mnist.metadata.temperature,
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

  it('readSafetensors (in memory) equals readCheckpoint, and writeSafetensors reproduces the fixture bytes', async () => {
    for (const f of FILES.filter((x) => x.format === 'safetensors')) {
      const bytes = readFileSync(join(FIXTURES, f.dir, f.file));
      const mem = readSafetensors(bytes, f.file);
      const disk = await load(f.dir, f.file);
      expect(mem.sha256).toBe(f.sha256);
      expect([...mem.tensors.keys()]).toEqual([...disk.tensors.keys()]);
      for (const [name, t] of mem.tensors) expect(sameBytes(t, disk.tensors.get(name)!), name).toBe(true);
      const again = writeSafetensors(mem.tensors, mem.metadata);
      expect(Buffer.from(again).equals(bytes), `${f.dir}/${f.file} rewritten`).toBe(true);
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

  it('writeTorchZip reproduces the structure of the fixture .pth.tar', async () => {
    const fixtureBytes = readFileSync(join(FIXTURES, 'resnet-tiny/model.pth.tar'));
    const c = await load('resnet-tiny', 'model.pth.tar');
    const ours = writeTorchZip(
      {
        stateDict: c.tensors,
        extra: { temperature: { float: 1 }, arch: 'DyResNet50_PAD', epoch: 0, best_prec1: { float: 0 } },
      },
      'model.pth',
    );
    const a = await zipEntries(fixtureBytes);
    const b = await zipEntries(ours);
    expect(b.map((e) => e.name)).toEqual(a.map((e) => e.name));
    for (const e of b) expect(e.dataOffset % 64, e.name).toBe(0);
    for (const e of a.filter((x) => x.name.includes('/data/') || x.name.endsWith('/version'))) {
      expect(
        Buffer.from(await entryBytes(ours, e.name)).equals(
          Buffer.from(await entryBytes(fixtureBytes, e.name)),
        ),
        e.name,
      ).toBe(true);
    }
    // The pickle: byte-identical through the state dict; `_metadata` lists only modules with tensors here (the
    // fixture also has parameterless ones such as maxpool), then the same tail.
    const pa = await entryBytes(fixtureBytes, 'model.pth/data.pkl');
    const pb = await entryBytes(ours, 'model.pth/data.pkl');
    const cut = Buffer.from(pa).indexOf('_metadata');
    expect(cut).toBeGreaterThan(1000);
    expect(Buffer.from(pb.subarray(0, cut)).equals(Buffer.from(pa.subarray(0, cut)))).toBe(true);
    const oa = opcodes(pa);
    const ob = opcodes(pb);
    expect(new Set(ob)).toEqual(new Set(oa));
    const tail = (ops: string[]): string[] => ops.slice(ops.lastIndexOf('BUILD'));
    expect(tail(ob)).toEqual(tail(oa));
    // and it reads back to the same checkpoint
    const back = await readCheckpointBytes(ours, 'ours.pth.tar');
    expect(back.metadata).toEqual(c.metadata);
    expect([...back.tensors.keys()]).toEqual([...c.tensors.keys()]);
    for (const [name, t] of c.tensors) expect(sameBytes(back.tensors.get(name)!, t), name).toBe(true);
  });

  it('bert pytorch_model.bin: the bare state dict structure matches too', async () => {
    const fixtureBytes = readFileSync(join(FIXTURES, 'bert-tiny/pytorch_model.bin'));
    const c = await load('bert-tiny', 'pytorch_model.bin');
    const ours = writeTorchZip({ stateDict: c.tensors }, 'pytorch_model');
    expect((await zipEntries(ours)).map((e) => e.name)).toEqual(
      (await zipEntries(fixtureBytes)).map((e) => e.name),
    );
    const pa = await entryBytes(fixtureBytes, 'pytorch_model/data.pkl');
    const pb = await entryBytes(ours, 'pytorch_model/data.pkl');
    const cut = Buffer.from(pa).indexOf('_metadata');
    expect(Buffer.from(pb.subarray(0, cut)).equals(Buffer.from(pa.subarray(0, cut)))).toBe(true);
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
describe('writers round-trip', () => {
  it('torch zip with extra entries and a module. prefix', async () => {
    const sd = smallStateDict('module.');
    const bytes = writeTorchZip(
      {
        stateDict: sd,
        extra: { temperature: { float: 31 }, arch: 'DyResNet50_PAD', epoch: 7, best_prec1: 76.25 },
      },
      'ckpt',
    );
    const c = await readCheckpointBytes(bytes, 'x.pth.tar');
    expect(c.format).toBe('torch-zip');
    expect([...c.tensors.keys()]).toEqual([...sd.keys()]);
    for (const [name, t] of sd) {
      const u = c.tensors.get(name)!;
      expect(u.dtype).toBe(t.dtype);
      expect(u.shape).toEqual(t.shape);
      expect(sameBytes(u, t)).toBe(true);
    }
    expect(c.metadata).toEqual({
      temperature: '31.0',
      arch: 'DyResNet50_PAD',
      epoch: '7',
      best_prec1: '76.25',
    });
    expect(c.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('torch zip: bare state dict, from a file, with a stem that is not "archive"', async () => {
    const sd = smallStateDict();
    const p = join(tmp, 'weights.bin');
    writeFileSync(p, writeTorchZip({ stateDict: sd }, 'something else'));
    const c = await readCheckpoint(p);
    expect(c.metadata).toEqual({});
    expect([...c.tensors.keys()]).toEqual([...sd.keys()]);
    expect(c.sha256).toBe(createHash('sha256').update(readFileSync(p)).digest('hex'));
  });

  it('torch zip: deflated entries and zip64 records', async () => {
    const sd = smallStateDict();
    for (const opts of [{ compress: true }, { zip64: true }, { compress: true, zip64: true }]) {
      const bytes = writeTorchZip({ stateDict: sd, extra: { arch: 'x' } }, 'archive', opts);
      const p = join(tmp, `opts-${JSON.stringify(opts).replace(/\W/g, '')}.pt`);
      writeFileSync(p, bytes);
      for (const c of [await readCheckpointBytes(bytes), await readCheckpoint(p)]) {
        expect([...c.tensors.keys()], JSON.stringify(opts)).toEqual([...sd.keys()]);
        for (const [name, t] of sd) expect(sameBytes(c.tensors.get(name)!, t), name).toBe(true);
      }
    }
  });

  it('safetensors: dtype order, padding, metadata, 0-d and empty tensors', () => {
    const tensors: [string, HostTensor][] = [
      ['z.weight', floatTensor([1, 2, 3], [3])],
      ['a.count', int64Tensor([-3n], [])],
      ['m.mask', { dtype: 'uint8', shape: [2], data: Uint8Array.from([0, 1]) }],
      ['k.ids', { dtype: 'int32', shape: [2], data: Int32Array.from([-1, 2]) }],
      ['e.empty', floatTensor([], [0, 4])],
    ];
    const bytes = writeSafetensors(tensors, { temperature: '1.0', 'a b': 'c"d' });
    const n = Number(Buffer.from(bytes).readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = Buffer.from(bytes.subarray(8, 8 + n)).toString('utf8');
    expect(header).toMatch(
      /^\{"__metadata__":\{"temperature":"1.0","a b":"c\\"d"\},"a.count":\{"dtype":"I64","shape":\[\],"data_offsets":\[0,8\]\},"e.empty":/,
    );
    const c = readSafetensors(bytes, 'w.safetensors');
    expect([...c.tensors.keys()]).toEqual(['a.count', 'e.empty', 'z.weight', 'k.ids', 'm.mask']);
    expect(c.metadata).toEqual({ temperature: '1.0', 'a b': 'c"d' });
    expect(c.tensors.get('a.count')!.data).toEqual(BigInt64Array.from([-3n]));
    expect(c.tensors.get('k.ids')).toEqual({
      dtype: 'int64',
      shape: [2],
      data: BigInt64Array.from([-1n, 2n]),
    });
    expect(c.tensors.get('m.mask')).toEqual({ dtype: 'uint8', shape: [2], data: Uint8Array.from([0, 1]) });
    expect(c.tensors.get('e.empty')!.shape).toEqual([0, 4]);
    expect(Array.from(c.tensors.get('z.weight')!.data as Float32Array)).toEqual([1, 2, 3]);
    expect(() =>
      writeSafetensors(
        [
          ['a', floatTensor([1], [1])],
          ['a', floatTensor([1], [1])],
        ],
        {},
      ),
    ).toThrow(CheckpointError);
    expect(Buffer.from(writeSafetensors(new Map(), {})).subarray(8).toString()).toBe('{}      ');
  });
});

// -------------------------------------------------------------------------------------------------------------
describe('torch zip reader: what torch.save can produce beyond the fixtures', () => {
  /** A checkpoint from a hand-written pickle; `body` writes the top-level object. */
  function handmade(
    body: (p: Pickler) => void,
    storages: Record<string, Uint8Array>,
    stem = 'archive',
  ): Uint8Array {
    const p = new Pickler();
    body(p);
    return writeTorchZipEntries(stem, p.stop(), new Map(Object.entries(storages)));
  }
  const f32 = (xs: number[]): Uint8Array => new Uint8Array(Float32Array.from(xs).buffer);
  const u16 = (xs: number[]): Uint8Array => new Uint8Array(Uint16Array.from(xs).buffer);
  const ref = (
    storageClass: string,
    key: string,
    storageNumel: number,
    offset: number,
    size: number[],
    stride = contiguousStrides(size),
  ) => ({
    storageClass,
    key,
    storageNumel,
    offset,
    size,
    stride,
  });

  it('storage offsets, non-contiguous strides and shared storages are copied to C order', async () => {
    const storage = f32(Array.from({ length: 12 }, (_, i) => i));
    const bytes = handmade(
      (p) =>
        p.orderedDict([
          [() => p.str('transposed'), () => p.tensor(ref('FloatStorage', '0', 12, 0, [4, 3], [1, 4]))],
          [() => p.str('strided'), () => p.tensor(ref('FloatStorage', '0', 12, 2, [5], [2]))],
          [() => p.str('window'), () => p.tensor(ref('FloatStorage', '0', 12, 4, [2, 2], [4, 1]))],
          [() => p.str('whole'), () => p.tensor(ref('FloatStorage', '0', 12, 0, [3, 4]))],
          [() => p.str('broadcast'), () => p.tensor(ref('FloatStorage', '0', 12, 1, [2, 3], [0, 1]))],
          [() => p.str('scalar'), () => p.tensor(ref('FloatStorage', '0', 12, 11, [], []))],
        ]),
      { '0': storage },
    );
    const c = await readCheckpointBytes(bytes, 'views.pt');
    const get = (n: string): number[] => Array.from(c.tensors.get(n)!.data as Float32Array);
    expect(get('transposed')).toEqual([0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    expect(get('strided')).toEqual([2, 4, 6, 8, 10]);
    expect(get('window')).toEqual([4, 5, 8, 9]);
    expect(get('whole')).toEqual(Array.from({ length: 12 }, (_, i) => i));
    expect(get('broadcast')).toEqual([1, 2, 3, 1, 2, 3]);
    expect(get('scalar')).toEqual([11]);
    expect(c.tensors.get('scalar')!.shape).toEqual([]);
    // shared storage: every tensor still owns its buffer
    (c.tensors.get('whole')!.data as Float32Array)[0] = 99;
    expect(get('transposed')[0]).toBe(0);
  });

  it('half, bfloat16 and double become float32; int/short/char become int64; bool and byte stay uint8', async () => {
    const half = [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00, 0xfc00, 0x7e00];
    const bf16 = [0x3f80, 0xc000, 0x4049];
    const bytes = handmade(
      (p) =>
        p.emptyDict([
          [
            () => p.str('state_dict'),
            () =>
              p.orderedDict([
                [() => p.str('h'), () => p.tensor(ref('HalfStorage', '0', 8, 0, [8]))],
                [() => p.str('b'), () => p.tensor(ref('BFloat16Storage', '1', 3, 0, [3]))],
                [() => p.str('d'), () => p.tensor(ref('DoubleStorage', '2', 2, 0, [2]))],
                [() => p.str('i'), () => p.tensor(ref('IntStorage', '3', 2, 0, [2]))],
                [() => p.str('s'), () => p.tensor(ref('ShortStorage', '4', 1, 0, [1]))],
                [() => p.str('c'), () => p.tensor(ref('CharStorage', '5', 1, 0, [1]))],
                [() => p.str('bool'), () => p.tensor(ref('BoolStorage', '6', 3, 0, [3]))],
                [() => p.str('byte'), () => p.tensor(ref('ByteStorage', '7', 2, 0, [2]))],
              ]),
          ],
        ]),
      {
        '0': u16(half),
        '1': u16(bf16),
        '2': new Uint8Array(Float64Array.from([1.5, 1e-3]).buffer),
        '3': new Uint8Array(Int32Array.from([-5, 7]).buffer),
        '4': new Uint8Array(Int16Array.from([-300]).buffer),
        '5': Uint8Array.from([0xfe]),
        '6': Uint8Array.from([0, 1, 1]),
        '7': Uint8Array.from([7, 255]),
      },
    );
    const c = await readCheckpointBytes(bytes, 'dtypes.pt');
    const arr = (n: string): unknown[] => Array.from(c.tensors.get(n)!.data as Float32Array);
    expect(c.tensors.get('h')!.dtype).toBe('float32');
    expect(arr('h')).toEqual([1, -2, 0.5, 65504, 2 ** -24, Infinity, -Infinity, NaN]);
    expect(arr('b')).toEqual([1, -2, 3.140625]);
    expect(arr('d')).toEqual([1.5, Math.fround(1e-3)]);
    expect(c.tensors.get('i')).toEqual({ dtype: 'int64', shape: [2], data: BigInt64Array.from([-5n, 7n]) });
    expect(c.tensors.get('s')!.data).toEqual(BigInt64Array.from([-300n]));
    expect(c.tensors.get('c')!.data).toEqual(BigInt64Array.from([-2n]));
    expect(c.tensors.get('bool')).toEqual({ dtype: 'uint8', shape: [3], data: Uint8Array.from([0, 1, 1]) });
    expect(c.tensors.get('byte')).toEqual({ dtype: 'uint8', shape: [2], data: Uint8Array.from([7, 255]) });
  });

  it("state dict under 'model' or 'state_dict_ema'; nested dicts flatten; tensor scalars become metadata", async () => {
    for (const key of ['model', 'state_dict_ema']) {
      const bytes = handmade(
        (p) =>
          p.emptyDict([
            [() => p.str('optimizer'), () => p.emptyDict([[() => p.str('lr'), () => p.float(0.1)]])],
            [() => p.str('best_prec1'), () => p.tensor(ref('FloatStorage', '1', 1, 0, []))],
            [() => p.str('flag'), () => p.bool(true)],
            [() => p.str('big'), () => p.int(2n ** 70n)],
            [() => p.str('tiny'), () => p.float(1e-5)],
            [
              () => p.str(key),
              () =>
                p.orderedDict([
                  [
                    () => p.str('backbone'),
                    () =>
                      p.orderedDict([
                        [() => p.str('w'), () => p.tensor(ref('FloatStorage', '0', 2, 0, [2]))],
                      ]),
                  ],
                ]),
            ],
          ]),
        { '0': f32([1, 2]), '1': f32([76.123]) },
      );
      const c = await readCheckpointBytes(bytes, 'nested.pt');
      expect([...c.tensors.keys()]).toEqual(['backbone.w']);
      expect(c.metadata).toEqual({
        best_prec1: '76.123',
        flag: 'True',
        big: String(2n ** 70n),
        tiny: '1e-05',
      });
    }
  });

  it('unreferenced storages are skipped but hashed (sha256 of the whole file)', async () => {
    const big = new Uint8Array(3 << 20).fill(7); // > the 1 MiB gap the hashing reader reads through
    const bytes = handmade(
      (p) =>
        p.emptyDict([
          [
            () => p.str('state_dict'),
            () => p.orderedDict([[() => p.str('w'), () => p.tensor(ref('FloatStorage', '1', 2, 0, [2]))]]),
          ],
          [
            () => p.str('optimizer_state'),
            () => p.tensor(ref('ByteStorage', '0', big.length, 0, [big.length])),
          ],
        ]),
      { '0': big, '1': f32([3, 4]) },
    );
    const p = join(tmp, 'skip.pth.tar');
    writeFileSync(p, bytes);
    const c = await readCheckpoint(p);
    expect([...c.tensors.keys()]).toEqual(['w']);
    expect(c.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('protocol 4/5 opcodes (FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE) work', async () => {
    const p = new Pickler();
    const enc = (s: string): number[] => [...Buffer.from(s)];
    const sbu = (s: string): number[] => [0x8c, Buffer.byteLength(s), ...enc(s)];
    // prettier-ignore
    const body = [
      0x95, 0, 0, 0, 0, 0, 0, 0, 0, // FRAME (length ignored)
      ...sbu('collections'), 0x94, ...sbu('OrderedDict'), 0x94, 0x93, 0x94, // STACK_GLOBAL
      0x29, 0x52, 0x94, // OrderedDict()
      ...sbu('w'), 0x94,
      ...sbu('torch._utils'), ...sbu('_rebuild_tensor_v2'), 0x93, 0x94,
      0x28, 0x28, ...sbu('storage'), ...sbu('torch'), ...sbu('FloatStorage'), 0x93, ...sbu('0'), ...sbu('cpu'), 0x4b, 2, 0x74, 0x51,
      0x4b, 0, 0x4b, 2, 0x85, 0x4b, 1, 0x85, 0x89, 0x68, 2, 0x29, 0x52, 0x74, 0x52, // rebuild args, BINGET 2 = OrderedDict
      0x73, // SETITEM
    ];
    p.op(...body);
    const pkl = p.stop();
    pkl[1] = 4; // PROTO 4
    const c = await readCheckpointBytes(
      writeTorchZipEntries('archive', pkl, new Map([['0', f32([5, 6])]])),
      'p4.pt',
    );
    expect(Array.from(c.tensors.get('w')!.data as Float32Array)).toEqual([5, 6]);
  });

  it('pyFloatRepr prints floats as Python does', () => {
    // prettier-ignore
    const cases: [number, string][] = [
      [1, '1.0'], [0, '0.0'], [-0, '-0.0'], [98.15, '98.15'], [1e-5, '1e-05'], [0.0001, '0.0001'], [1e16, '1e+16'],
      [123456789.5, '123456789.5'], [1.5e300, '1.5e+300'], [-2.5, '-2.5'], [Infinity, 'inf'], [NaN, 'nan'], [0.1 + 0.2, '0.30000000000000004'],
    ];
    for (const [x, s] of cases) expect(pyFloatRepr(x), String(x)).toBe(s);
  });
});

// -------------------------------------------------------------------------------------------------------------
describe('malformed input gives one-line CheckpointError', () => {
  const small = writeTorchZip(
    { stateDict: smallStateDict(), extra: { temperature: { float: 1 }, arch: 'a' } },
    'model.pth',
  );
  const smallSt = writeSafetensors(smallStateDict(), { temperature: '1.0' });

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

  it('a torch zip truncated at every byte', async () => {
    for (let at = 0; at < small.length; at++) {
      await expectCheckpointError(
        () => readCheckpointBytes(small.subarray(0, at), 'cut.pth.tar'),
        'cut.pth.tar',
      );
    }
  });

  it('a safetensors file truncated at every byte', async () => {
    for (let at = 0; at < smallSt.length; at++) {
      await expectCheckpointError(
        () => readSafetensors(smallSt.subarray(0, at), 'cut.safetensors'),
        'cut.safetensors',
      );
      await expectCheckpointError(
        () => readCheckpointBytes(smallSt.subarray(0, at), 'cut.safetensors'),
        'cut.safetensors',
      );
    }
  });

  it('a pickle truncated at every byte (with a valid zip around it)', async () => {
    const pkl = await entryBytes(small, 'model.pth/data.pkl');
    const storages = new Map<string, Uint8Array>();
    for (const e of await zipEntries(small)) {
      if (e.name.includes('/data/'))
        storages.set(e.name.split('/').pop()!, small.subarray(e.dataOffset, e.dataOffset + e.size));
    }
    for (let at = 0; at < pkl.length; at++) {
      const z = writeTorchZipEntries('model.pth', pkl.subarray(0, at), storages);
      await expectCheckpointError(() => readCheckpointBytes(z, 'p.pt'), 'p.pt', /pickle|data\.pkl/);
    }
  });

  it('forbidden globals are named and never run', async () => {
    const p = new Pickler();
    p.global('os', 'system').str('touch /tmp/pwned').op(0x85, 0x52); // os.system(('touch ...',))
    const z = writeTorchZipEntries('archive', p.stop(), new Map());
    await expectCheckpointError(
      () => readCheckpointBytes(z, 'evil.pth'),
      'evil.pth',
      /forbidden pickle global os\.system/,
    );
    for (const [mod, name, hint] of [
      ['torch.nn.modules.conv', 'Conv2d', /state_dict/],
      ['numpy.core.multiarray', 'scalar', /numpy/],
      ['builtins', 'eval', /builtins\.eval/],
      ['__builtin__', 'getattr', /__builtin__\.getattr/],
    ] as const) {
      const q = new Pickler();
      q.global(mod, name);
      const zz = writeTorchZipEntries('archive', q.stop(), new Map());
      await expectCheckpointError(() => readCheckpointBytes(zz, 'm.pt'), 'm.pt', hint);
    }
  });

  it('unknown opcodes, bad structure and bad tensors', async () => {
    const f = (body: (p: Pickler) => void, storages: Record<string, Uint8Array> = {}): Uint8Array => {
      const p = new Pickler();
      body(p);
      return writeTorchZipEntries('archive', p.stop(), new Map(Object.entries(storages)));
    };
    const t = (
      p: Pickler,
      numel: number,
      offset: number,
      size: number[],
      stride: number[],
      cls = 'FloatStorage',
    ): Pickler =>
      p.orderedDict([
        [
          () => p.str('w'),
          () => p.tensor({ storageClass: cls, key: '0', storageNumel: numel, offset, size, stride }),
        ],
      ]);
    const cases: [string, Uint8Array, RegExp][] = [
      ['opcode', f((p) => p.op(0xff)), /unknown pickle opcode 0xff/],
      ['ext', f((p) => p.op(0x82, 1)), /EXT1/],
      ['stack', f((p) => p.op(0x52)), /stack underflow/],
      ['memo', f((p) => p.get(7)), /memo key 7/],
      ['notdict', f((p) => p.int(3)), /expected a state dict/],
      ['nothing', f((p) => p.emptyDict([[() => p.str('epoch'), () => p.int(3)]])), /no tensors found.*epoch/],
      ['view', f((p) => t(p, 4, 2, [2, 2], [2, 1]), { '0': new Uint8Array(16) }), /exceeds its storage of 4/],
      ['short', f((p) => t(p, 4, 0, [4], [1]), { '0': new Uint8Array(12) }), /has 12 bytes, expected 16/],
      ['missing', f((p) => t(p, 4, 0, [4], [1])), /storage 0 is missing/],
      [
        'complex',
        f((p) => t(p, 1, 0, [1], [1], 'ComplexFloatStorage'), { '0': new Uint8Array(8) }),
        /forbidden pickle global torch\.ComplexFloatStorage/,
      ],
      ['persid', f((p) => p.str('x').op(0x51)), /unsupported persistent id/],
      ['call', f((p) => p.int(1).op(0x29, 0x52)), /not callable/],
      [
        'nopkl',
        writeTorchZipEntries('a', new Uint8Array(0), new Map()).subarray(0),
        /pickle truncated|no STOP/,
      ],
    ];
    for (const [name, bytes, re] of cases)
      await expectCheckpointError(() => readCheckpointBytes(bytes, `${name}.pt`), `${name}.pt`, re);

    const noPkl = Buffer.from(small);
    const at = noPkl.indexOf('data.pkl');
    noPkl.write('data.pkX', at); // local header name
    noPkl.write('data.pkX', noPkl.indexOf('data.pkl', at + 1)); // central directory name
    await expectCheckpointError(() => readCheckpointBytes(noPkl, 'n.pt'), 'n.pt', /no <name>\/data\.pkl/);

    const big = writeTorchZip({ stateDict: smallStateDict(), extra: { arch: 'x' } }, 'archive', {
      extraEntries: { byteorder: Buffer.from('big') },
    });
    await expectCheckpointError(() => readCheckpointBytes(big, 'be.pt'), 'be.pt', /byte order is 'big'/);
  });

  it('corrupted storage bytes fail the CRC check', async () => {
    const entries = await zipEntries(small);
    const e = entries.find((x) => x.name.endsWith('/data/0'))!;
    const bad = Buffer.from(small);
    bad[e.dataOffset + 3] = bad[e.dataOffset + 3]! ^ 0x40;
    await expectCheckpointError(() => readCheckpointBytes(bad, 'crc.pt'), 'crc.pt', /CRC-32 mismatch/);
  });

  it('safetensors header problems', async () => {
    const st = (header: string, data = 0): Uint8Array => {
      const h = Buffer.from(header);
      const out = Buffer.alloc(8 + h.length + data);
      out.writeBigUInt64LE(BigInt(h.length), 0);
      h.copy(out, 8);
      return out;
    };
    const lenOnly = Buffer.alloc(16, 0x20);
    lenOnly.writeBigUInt64LE(2n ** 40n, 0);
    lenOnly[8] = 0x7b;
    const cases: [string, Uint8Array, RegExp][] = [
      ['huge', lenOnly, /header length \d+ is implausible/],
      ['json', st('{"a": '), /invalid safetensors header JSON/],
      ['array', st('[1, 2]   '), /not a JSON object/],
      [
        'dtype',
        st('{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}', 1),
        /tensor a: unsupported dtype "F8_E4M3"/,
      ],
      ['shape', st('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', 4), /invalid shape/],
      [
        'range',
        st('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 8),
        /beyond the data section \(8 bytes; truncated\?\)/,
      ],
      [
        'size',
        st('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8),
        /hold 8 bytes, but F32 \[3\] needs 12/,
      ],
      [
        'overlap',
        st(
          '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
          12,
        ),
        /overlap/,
      ],
      ['meta', st('{"__metadata__":{"a":{"b":1}}}'), /__metadata__\.a is not a string/],
    ];
    for (const [name, bytes, re] of cases) {
      await expectCheckpointError(() => readSafetensors(bytes, `${name}.st`), `${name}.st`, re);
      // readCheckpoint detects safetensors by '{' after the length; a '[' header is not recognised as one
      await expectCheckpointError(
        () => readCheckpointBytes(bytes, `${name}.st`),
        `${name}.st`,
        name === 'array' ? /unrecognised/ : re,
      );
    }
    const p = join(tmp, 'range.safetensors');
    writeFileSync(p, cases[5]![1]);
    await expectCheckpointError(() => readCheckpoint(p), p, /beyond the data section/);
  });

  it('random corruption of pickles and headers: loads or CheckpointError, nothing else', async () => {
    const rnd = seededRandom(42);
    const pkl = await entryBytes(small, 'model.pth/data.pkl');
    const storages = new Map<string, Uint8Array>();
    for (const e of await zipEntries(small)) {
      if (e.name.includes('/data/'))
        storages.set(e.name.split('/').pop()!, small.subarray(e.dataOffset, e.dataOffset + e.size));
    }
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
