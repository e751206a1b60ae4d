/**
 * Writes PyTorch zip checkpoints the way torch.save (1.13, `_use_new_zipfile_serialization`) does, so tests can
 * make checkpoints the converters have never seen (`module.` prefixes, other widths, odd dtypes, strided views).
 *
 * - `Pickler`: a protocol-2 pickle writer that memoizes like CPython's (BINPUT after every string, tuple, dict,
 *   global and REDUCE result; BINGET for objects written before).
 * - `writeTorchZipEntries`: the zip container (stored entries, 64-byte aligned data, data descriptors, `version`).
 * - `writeTorchZip`: a state dict (optionally inside `{'state_dict': ..., **extra}`), as the fixtures are written.
 */
import { deflateRawSync } from 'node:zlib';
import type { DType, HostTensor } from '../../src/tensor.js';
import { numel, tensorBytes } from '../../src/tensor.js';
import { crc32 } from '../../src/convert/checkpoint/zip.js';

/** A Python float even when the value is integral (`{ float: 1 }` pickles as 1.0, a plain 1 as the int 1). */
export interface PyFloatValue {
  float: number;
}
export type ExtraValue = number | string | boolean | bigint | PyFloatValue;

export const STORAGE_CLASS: Record<DType, string> = {
  float32: 'FloatStorage',
  int64: 'LongStorage',
  int32: 'IntStorage',
  uint8: 'ByteStorage',
  bool: 'BoolStorage',
};

/** Protocol-2 pickle writer; methods write one Python object each, memoized like CPython's Pickler. */
export class Pickler {
  private readonly chunks: number[] = [];
  private nextMemo = 0;
  /** Shared objects by identity key (interned strings, globals) -> memo index. */
  private readonly shared = new Map<string, number>();

  constructor() {
    this.op(0x80, 2); // PROTO 2
  }

  op(...bytes: number[]): this {
    for (const b of bytes) this.chunks.push(b);
    return this;
  }

  private raw(b: Uint8Array): void {
    for (const x of b) this.chunks.push(x);
  }

  private u32(n: number): void {
    this.op(n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff);
  }

  /** BINPUT / LONG_BINPUT of the object just written; returns its memo index. */
  put(): number {
    const i = this.nextMemo++;
    if (i < 256) this.op(0x71, i);
    else {
      this.op(0x72);
      this.u32(i);
    }
    return i;
  }

  get(i: number): this {
    if (i < 256) this.op(0x68, i);
    else {
      this.op(0x6a);
      this.u32(i);
    }
    return this;
  }

  /** Writes an object once, and BINGET on later writes with the same key (CPython memoizes by identity). */
  sharedObject(key: string, write: () => void): this {
    const m = this.shared.get(key);
    if (m !== undefined) return this.get(m);
    write();
    this.shared.set(key, this.put());
    return this;
  }

  mark(): this {
    return this.op(0x28);
  }

  /** A str (a fresh object: memoized but never reused). */
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    this.op(0x58);
    this.u32(b.length);
    this.raw(b);
    this.put();
    return this;
  }

  /** A str that CPython would share (an interned literal such as 'storage', 'cpu', 'version'). */
  internedStr(s: string): this {
    return this.sharedObject(`str:${s}`, () => {
      const b = Buffer.from(s, 'utf8');
      this.op(0x58);
      this.u32(b.length);
      this.raw(b);
    });
  }

  global(module: string, name: string): this {
    return this.sharedObject(`global:${module}.${name}`, () => {
      this.op(0x63);
      this.raw(Buffer.from(`${module}\n${name}\n`, 'latin1'));
    });
  }

  int(v: number | bigint): this {
    const n = BigInt(v);
    if (n >= 0n && n <= 0xffn) return this.op(0x4b, Number(n));
    if (n >= 0n && n <= 0xffffn) return this.op(0x4d, Number(n) & 0xff, Number(n) >> 8);
    if (n >= -(2n ** 31n) && n < 2n ** 31n) {
      this.op(0x4a);
      this.u32(Number(BigInt.asUintN(32, n)));
      return this;
    }
    // LONG1: little-endian two's complement, shortest form
    const bytes: number[] = [];
    let x = n;
    for (;;) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
      const sign = (bytes[bytes.length - 1]! & 0x80) !== 0;
      if ((x === 0n && !sign) || (x === -1n && sign)) break;
    }
    return this.op(0x8a, bytes.length, ...bytes);
  }

  float(x: number): this {
    const b = new DataView(new ArrayBuffer(8));
    b.setFloat64(0, x, false);
    return this.op(0x47, ...new Uint8Array(b.buffer));
  }

  bool(v: boolean): this {
    return this.op(v ? 0x88 : 0x89);
  }

  none(): this {
    return this.op(0x4e);
  }

  /** A tuple of items written by `items`; n = number of items (CPython: TUPLE1..3 for short ones, () unmemoized). */
  tuple(n: number, items: () => void): this {
    if (n === 0) return this.op(0x29);
    if (n <= 3) {
      items();
      this.op(0x84 + n);
    } else {
      this.mark();
      items();
      this.op(0x74);
    }
    this.put();
    return this;
  }

  intTuple(values: readonly number[]): this {
    return this.tuple(values.length, () => values.forEach((v) => this.int(v)));
  }

  /** `collections.OrderedDict()` followed by its items (SETITEM / MARK..SETITEMS in batches of 1000). */
  orderedDict(items: [() => void, () => void][]): this {
    this.global('collections', 'OrderedDict');
    this.op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
    this.put();
    this.setItems(items);
    return this;
  }

  emptyDict(items: [() => void, () => void][]): this {
    this.op(0x7d);
    this.put();
    this.setItems(items);
    return this;
  }

  private setItems(items: [() => void, () => void][]): void {
    for (let i = 0; i < items.length; i += 1000) {
      const batch = items.slice(i, i + 1000);
      if (batch.length > 1) this.mark();
      for (const [k, v] of batch) {
        k();
        v();
      }
      this.op(batch.length > 1 ? 0x75 : 0x73);
    }
  }

  /** `_rebuild_tensor_v2(persistent_load(('storage', <cls>, key, 'cpu', numel)), offset, size, stride, False, OrderedDict())`. */
  tensor(ref: {
    storageClass: string;
    key: string;
    storageNumel: number;
    offset: number;
    size: readonly number[];
    stride: readonly number[];
  }): this {
    this.global('torch._utils', '_rebuild_tensor_v2');
    this.mark();
    this.tuple(5, () => {
      this.internedStr('storage');
      this.global('torch', ref.storageClass);
      this.str(ref.key);
      this.internedStr('cpu');
      this.int(ref.storageNumel);
    });
    this.op(0x51); // BINPERSID
    this.int(ref.offset);
    this.intTuple(ref.size);
    this.intTuple(ref.stride);
    this.bool(false);
    this.orderedDict([]);
    this.op(0x74); // TUPLE
    this.put();
    this.op(0x52); // REDUCE
    this.put();
    return this;
  }

  value(v: ExtraValue): this {
    if (typeof v === 'string') return this.str(v);
    if (typeof v === 'boolean') return this.bool(v);
    if (typeof v === 'bigint') return this.int(v);
    if (typeof v === 'number') return Number.isInteger(v) ? this.int(v) : this.float(v);
    return this.float(v.float);
  }

  stop(): Uint8Array {
    this.op(0x2e);
    return Uint8Array.from(this.chunks);
  }
}

/** C-order strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Module names of a state dict, pre-order, the way `state_dict()` records `_metadata` ('' is the root). */
function moduleNames(names: Iterable<string>): string[] {
  const seen = new Set<string>(['']);
  const out = [''];
  for (const name of names) {
    const parts = name.split('.').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const m = parts.slice(0, i).join('.');
      if (!seen.has(m)) {
        seen.add(m);
        out.push(m);
      }
    }
  }
  return out;
}

export interface ZipOptions {
  /** Deflate the entries (torch never does; users' re-zipped files may). */
  compress?: boolean;
  /** Contents of `<stem>/version` (torch 1.13 writes "3\n"). */
  version?: string;
  /** Extra entries (name relative to the stem -> bytes), e.g. `byteorder`. */
  extraEntries?: Record<string, Uint8Array>;
  /** Write zip64 structures (as for files over 4 GiB): offsets in zip64 extra fields, zip64 end records. */
  zip64?: boolean;
}

/**
 * The torch.save zip container: `<stem>/data.pkl`, `<stem>/data/<key>` (keys sorted as strings), extra entries,
 * `<stem>/version`; every entry's data 64-byte aligned with an "FB" padding extra field, data descriptors, local
 * headers with zero sizes (flags 0x0808) as PyTorch's miniz writer does.
 */
export function writeTorchZipEntries(
  stem: string,
  pickle: Uint8Array,
  storages: Map<string, Uint8Array>,
  opts: ZipOptions = {},
): Uint8Array {
  const files: [string, Uint8Array][] = [[`${stem}/data.pkl`, pickle]];
  for (const key of [...storages.keys()].sort()) files.push([`${stem}/data/${key}`, storages.get(key)!]);
  for (const [name, bytes] of Object.entries(opts.extraEntries ?? {})) files.push([`${stem}/${name}`, bytes]);
  files.push([`${stem}/version`, Buffer.from(opts.version ?? '3\n')]);

  const parts: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    offset += b.byteLength;
  };
  for (const [name, data] of files) {
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    const method = opts.compress ? 8 : 0;
    const body = opts.compress ? deflateRawSync(data) : data;
    const start = offset + 30 + nameBytes.length + 4;
    const pad = (64 - (start % 64)) % 64;
    const local = Buffer.alloc(30 + nameBytes.length + 4 + pad, 0x5a);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(0, 4); // version needed
    local.writeUInt16LE(0x0808, 6); // data descriptor + UTF-8 names
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(0, 10); // time, date
    local.writeUInt32LE(0, 14); // crc (in the descriptor)
    local.writeUInt32LE(0, 18);
    local.writeUInt32LE(0, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(4 + pad, 28);
    nameBytes.copy(local, 30);
    local.write('FB', 30 + nameBytes.length, 'latin1');
    local.writeUInt16LE(pad, 30 + nameBytes.length + 2);
    const headerOffset = offset;
    push(local);
    push(body);
    const desc = Buffer.alloc(16);
    desc.writeUInt32LE(0x08074b50, 0);
    desc.writeUInt32LE(crc, 4);
    desc.writeUInt32LE(body.byteLength, 8);
    desc.writeUInt32LE(data.byteLength, 12);
    push(desc);

    const extra = Buffer.alloc(opts.zip64 ? 12 : 0);
    if (opts.zip64) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(8, 2);
      extra.writeBigUInt64LE(BigInt(headerOffset), 4);
    }
    const c = Buffer.alloc(46 + nameBytes.length + extra.length);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(0, 4); // made by
    c.writeUInt16LE(0, 6); // needed
    c.writeUInt16LE(0x0808, 8);
    c.writeUInt16LE(method, 10);
    c.writeUInt32LE(0, 12); // time, date
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(body.byteLength, 20);
    c.writeUInt32LE(data.byteLength, 24);
    c.writeUInt16LE(nameBytes.length, 28);
    c.writeUInt16LE(extra.length, 30);
    c.writeUInt32LE(opts.zip64 ? 0xffffffff : headerOffset, 42);
    nameBytes.copy(c, 46);
    extra.copy(c, 46 + nameBytes.length);
    central.push(c);
  }
  const cdOffset = offset;
  for (const c of central) push(c);
  const cdSize = offset - cdOffset;
  if (opts.zip64) {
    const rec = Buffer.alloc(56);
    rec.writeUInt32LE(0x06064b50, 0);
    rec.writeBigUInt64LE(44n, 4); // size of the rest of the record
    rec.writeUInt16LE(45, 12); // made by
    rec.writeUInt16LE(45, 14); // needed
    rec.writeBigUInt64LE(BigInt(files.length), 24);
    rec.writeBigUInt64LE(BigInt(files.length), 32);
    rec.writeBigUInt64LE(BigInt(cdSize), 40);
    rec.writeBigUInt64LE(BigInt(cdOffset), 48);
    const recOffset = offset;
    push(rec);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(recOffset), 8);
    loc.writeUInt32LE(1, 16); // total disks
    push(loc);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cdSize, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : cdOffset, 16);
  push(eocd);
  return Buffer.concat(parts);
}

/**
 * A torch.save-compatible checkpoint: the bare state dict (an OrderedDict with `_metadata`, like
 * `torch.save(model.state_dict())`), or with `extra` the PAD-Net training script's
 * `{'state_dict': OrderedDict, **extra}` (e.g. temperature, arch, epoch, best_prec1). Every tensor owns a
 * contiguous storage; storage keys are '0', '1', ... in state-dict order, as torch.save numbers them.
 * Integral numbers in `extra` are pickled as ints; use `{ float: 1 }` for a float such as `temperature = 1.0`.
 */
export function writeTorchZip(
  obj: { stateDict: Map<string, HostTensor>; extra?: Record<string, ExtraValue> },
  stem: string,
  opts: ZipOptions = {},
): Uint8Array {
  const p = new Pickler();
  const storages = new Map<string, Uint8Array>();
  const writeStateDict = (): void => {
    const items: [() => void, () => void][] = [];
    for (const [name, t] of obj.stateDict) {
      const key = String(storages.size);
      storages.set(key, tensorBytes(t));
      const n = numel(t.shape);
      items.push([
        () => p.str(name),
        () =>
          p.tensor({
            storageClass: STORAGE_CLASS[t.dtype],
            key,
            storageNumel: n,
            offset: 0,
            size: t.shape,
            stride: contiguousStrides(t.shape),
          }),
      ]);
    }
    p.orderedDict(items);
    // state_dict()'s `_metadata` attribute, set with BUILD: {'_metadata': OrderedDict(module -> {'version': 1})}
    p.emptyDict([
      [
        () => p.str('_metadata'),
        () =>
          p.orderedDict(
            moduleNames(obj.stateDict.keys()).map((m) => [
              () => p.str(m),
              () => p.emptyDict([[() => p.internedStr('version'), () => p.int(1)]]),
            ]),
          ),
      ],
    ]);
    p.op(0x62); // BUILD
  };
  if (obj.extra === undefined) writeStateDict();
  else {
    const extra = obj.extra;
    p.emptyDict([
      [() => p.str('state_dict'), writeStateDict],
      ...Object.keys(extra).map((k): [() => void, () => void] => [() => p.str(k), () => p.value(extra[k]!)]),
    ]);
  }
  return writeTorchZipEntries(stem, p.stop(), storages, opts);
}
