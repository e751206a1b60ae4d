/** safetensors: the fixture files, writeSafetensors round trips, and malformed headers and data sections. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CheckpointError,
  readCheckpoint,
  readCheckpointBytes,
  readSafetensors,
  writeSafetensors,
} from '../../src/convert/checkpoint/index.js';
import { floatTensor, int64Tensor, type HostTensor } from '../../src/tensor.js';
import {
  FILES,
  FIXTURES,
  expectCheckpointError,
  expectEveryPrefixFails,
  load,
  sameBytes,
  smallSafetensors,
  useTmpDir,
} from '../support/checkpoint-cases.js';

const tmp = useTmpDir();

// -------------------------------------------------------------------------------------------------------------
describe('fixture checkpoints', () => {
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
});

// -------------------------------------------------------------------------------------------------------------
describe('writers round-trip', () => {
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
describe('malformed input gives one-line CheckpointError', () => {
  it('a safetensors file truncated at every byte', async () => {
    await expectEveryPrefixFails(smallSafetensors(), 'cut.safetensors', readSafetensors, readCheckpointBytes);
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
});
