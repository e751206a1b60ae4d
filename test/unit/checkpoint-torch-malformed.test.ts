/** PyTorch zip checkpoints that are damaged or hostile: truncated zips and pickles, forbidden globals, bad CRCs. */
import { describe, it } from 'vitest';
import { readCheckpointBytes } from '../../src/convert/checkpoint/index.js';
import { writeTorchZip, writeTorchZipEntries, type Pickler } from '../support/torch-writer.js';
import {
  entryBytes,
  expectCheckpointError,
  expectEveryPrefixFails,
  handmade,
  ref,
  smallStateDict,
  smallTorchZip,
  zipEntries,
  zipStorages,
} from '../support/checkpoint-cases.js';

// -------------------------------------------------------------------------------------------------------------
describe('malformed input gives one-line CheckpointError', () => {
  const small = smallTorchZip();

  it('a torch zip truncated at every byte', async () => {
    await expectEveryPrefixFails(small, 'cut.pth.tar', readCheckpointBytes);
  });

  it('a pickle truncated at every byte (with a valid zip around it)', async () => {
    const pkl = await entryBytes(small, 'model.pth/data.pkl');
    const storages = await zipStorages(small);
    for (let at = 0; at < pkl.length; at++) {
      const z = writeTorchZipEntries('model.pth', pkl.subarray(0, at), storages);
      await expectCheckpointError(() => readCheckpointBytes(z, 'p.pt'), 'p.pt', /pickle|data\.pkl/);
    }
  });

  it('forbidden globals are named and never run', async () => {
    // os.system(('touch ...',))
    const z = handmade((p) => p.global('os', 'system').str('touch /tmp/pwned').op(0x85, 0x52));
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
      const zz = handmade((q) => q.global(mod, name));
      await expectCheckpointError(() => readCheckpointBytes(zz, 'm.pt'), 'm.pt', hint);
    }
  });

  it('unknown opcodes, bad structure and bad tensors', async () => {
    /** A state dict of one tensor `w`, a view of storage '0'. */
    const t = (
      p: Pickler,
      numel: number,
      offset: number,
      size: number[],
      stride: number[],
      cls = 'FloatStorage',
    ): Pickler =>
      p.orderedDict([[() => p.str('w'), () => p.tensor(ref(cls, '0', numel, offset, size, stride))]]);
    const cases: [string, Uint8Array, RegExp][] = [
      ['opcode', handmade((p) => p.op(0xff)), /unknown pickle opcode 0xff/],
      ['ext', handmade((p) => p.op(0x82, 1)), /EXT1/],
      ['stack', handmade((p) => p.op(0x52)), /stack underflow/],
      ['memo', handmade((p) => p.get(7)), /memo key 7/],
      ['notdict', handmade((p) => p.int(3)), /expected a state dict/],
      [
        'nothing',
        handmade((p) => p.emptyDict([[() => p.str('epoch'), () => p.int(3)]])),
        /no tensors found.*epoch/,
      ],
      [
        'view',
        handmade((p) => t(p, 4, 2, [2, 2], [2, 1]), { '0': new Uint8Array(16) }),
        /exceeds its storage of 4/,
      ],
      [
        'short',
        handmade((p) => t(p, 4, 0, [4], [1]), { '0': new Uint8Array(12) }),
        /has 12 bytes, expected 16/,
      ],
      ['missing', handmade((p) => t(p, 4, 0, [4], [1])), /storage 0 is missing/],
      [
        'complex',
        handmade((p) => t(p, 1, 0, [1], [1], 'ComplexFloatStorage'), { '0': new Uint8Array(8) }),
        /forbidden pickle global torch\.ComplexFloatStorage/,
      ],
      ['persid', handmade((p) => p.str('x').op(0x51)), /unsupported persistent id/],
      ['call', handmade((p) => p.int(1).op(0x29, 0x52)), /not callable/],
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
});
