/**
 * PyTorch zip checkpoints (torch.save): the fixture files against writeTorchZip, writer round trips, and what
 * torch.save can produce beyond the fixtures (views, dtypes, nesting, protocol 4). Malformed zips and pickles:
 * checkpoint-torch-malformed.test.ts.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readCheckpoint, readCheckpointBytes } from '../../src/convert/checkpoint/index.js';
import { pyFloatRepr } from '../../src/convert/checkpoint/torch.js';
import { Pickler, writeTorchZip, writeTorchZipEntries } from '../support/torch-writer.js';
import {
  FIXTURES,
  entryBytes,
  f32,
  handmade,
  load,
  ref,
  sameBytes,
  smallStateDict,
  useTmpDir,
  zipEntries,
} from '../support/checkpoint-cases.js';

const tmp = useTmpDir();

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

// -------------------------------------------------------------------------------------------------------------
describe('fixture checkpoints', () => {
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
});

// -------------------------------------------------------------------------------------------------------------
describe('torch zip reader: what torch.save can produce beyond the fixtures', () => {
  const u16 = (xs: number[]): Uint8Array => new Uint8Array(Uint16Array.from(xs).buffer);

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
