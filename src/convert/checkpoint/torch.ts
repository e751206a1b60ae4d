/**
 * PyTorch zip checkpoints (torch.save since 1.6: `.pth`, `.pth.tar`, `pytorch_model.bin`).
 *
 * `<stem>/data.pkl` is unpickled by the restricted VM in `pickle.ts` with an allow-list of globals; tensors come
 * back as references (storage key, offset, size, stride) and only those of the state dict (and scalar tensors of
 * the top-level dict) are read, one storage at a time from `<stem>/data/<key>`, in file order.
 */
import type { HostTensor } from '../../tensor.js';
import { numel } from '../../tensor.js';
import { FormatError, fail, type ByteSource } from './errors.js';
import { PyCallable, PyDict, PySet, describe, unpickle } from './pickle.js';
import {
  decodeElements,
  hostTensor,
  type ParsedCheckpoint,
  type StoredDType,
  STORED_SIZE,
} from './safetensors.js';
import { readZipDirectory, readZipEntry, type ZipEntry } from './zip.js';

/** Stand-in for a torch storage class (`torch.FloatStorage` ...). */
export class StorageType {
  constructor(
    readonly name: string,
    readonly stored: StoredDType,
  ) {}
}

/** A storage referenced by the pickle: `<stem>/data/<key>` holds `numel` elements of `type`. */
export class StorageRef {
  constructor(
    readonly key: string,
    readonly type: StorageType,
    readonly numel: number,
  ) {}
}

/** A tensor view of a storage, as `_rebuild_tensor_v2` describes it. Data is read later, only if needed. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

const STORAGE_TYPES: Record<string, StoredDType> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64', // converted to float32
  HalfStorage: 'F16', // converted to float32
  BFloat16Storage: 'BF16', // converted to float32
  LongStorage: 'I64',
  IntStorage: 'I32', // widened to int64
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

function toIndex(v: unknown, what: string): number {
  if (typeof v !== 'bigint' || v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER))
    fail(`${what} must be a non-negative int, got ${describe(v)} ${String(v)}`);
  return Number(v);
}

function toIndexList(v: unknown, what: string): number[] {
  if (!Array.isArray(v)) fail(`${what} must be a tuple of ints, got ${describe(v)}`);
  return v.map((x, i) => toIndex(x, `${what}[${i}]`));
}

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef))
    fail(`_rebuild_tensor_v2 expects a storage, got ${describe(storage)}`);
  const sz = toIndexList(size, 'tensor size');
  const st = toIndexList(stride, 'tensor stride');
  if (sz.length !== st.length) fail(`tensor size [${sz}] and stride [${st}] differ in length`);
  return new TensorRef(storage, toIndex(offset, 'storage offset'), sz, st);
}

function makeDict(className: string, args: unknown[]): PyDict {
  const d = new PyDict(className);
  const init = args[0];
  if (init instanceof PyDict) for (const [k, v] of init.map) d.map.set(k, v);
  else if (Array.isArray(init)) {
    for (const pair of init) {
      if (!Array.isArray(pair) || pair.length !== 2)
        fail(`${className}() argument is not a sequence of pairs`);
      d.map.set(pair[0], pair[1]);
    }
  } else if (init !== undefined && init !== null)
    fail(`${className}() argument ${describe(init)} is not supported`);
  return d;
}

function encodeString(args: unknown[]): Uint8Array {
  const [s, enc] = args;
  if (typeof s !== 'string') fail(`_codecs.encode expects a str, got ${describe(s)}`);
  const e = typeof enc === 'string' ? enc.toLowerCase().replace(/[-_]/g, '') : 'utf8';
  if (e === 'latin1' || e === 'iso88591') {
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) fail('_codecs.encode: character outside latin-1');
      out[i] = c;
    }
    return out;
  }
  if (e === 'utf8') return new Uint8Array(Buffer.from(s, 'utf8'));
  fail(`_codecs.encode with unsupported encoding ${String(enc)}`);
}

function buildGlobals(): Map<string, unknown> {
  const g = new Map<string, unknown>();
  const fn = (qualname: string, f: (args: unknown[]) => unknown): void => {
    g.set(qualname, new PyCallable(qualname, f));
  };
  fn('collections.OrderedDict', (args) => makeDict('OrderedDict', args));
  fn('builtins.dict', (args) => makeDict('dict', args));
  fn('builtins.set', (args) => new PySet(Array.isArray(args[0]) ? [...args[0]] : [], false));
  fn('builtins.frozenset', (args) => new PySet(Array.isArray(args[0]) ? [...args[0]] : [], true));
  fn('torch._utils._rebuild_tensor_v2', rebuildTensor);
  fn('torch._utils._rebuild_tensor', rebuildTensor);
  fn('torch._utils._rebuild_parameter', (args) => args[0]);
  fn('torch._utils._rebuild_parameter_with_state', (args) => args[0]);
  fn('torch.device', (args) => {
    const [type, index] = args;
    if (typeof type !== 'string') fail(`torch.device expects a str, got ${describe(type)}`);
    return index === undefined || index === null ? type : `${type}:${String(index)}`;
  });
  fn('_codecs.encode', encodeString);
  for (const [name, stored] of Object.entries(STORAGE_TYPES))
    g.set(`torch.${name}`, new StorageType(name, stored));
  return g;
}

const GLOBALS = buildGlobals();

function findGlobal(module: string, name: string): unknown {
  const mod = module === '__builtin__' ? 'builtins' : module;
  const qual = `${mod}.${name}`;
  const v = GLOBALS.get(qual);
  if (v !== undefined) return v;
  let hint = '';
  if (/^torch\.nn\./.test(mod) || mod === '__main__' || /^(models?|resnet|.*pad)/i.test(mod)) {
    hint =
      ' (the file pickles a model object; only state-dict checkpoints are supported: torch.save(model.state_dict()))';
  } else if (mod.startsWith('__torch__')) {
    hint =
      ' (a TorchScript archive from torch.jit.save; save the state dict with torch.save(model.state_dict()) instead)';
  } else if (/^numpy/.test(mod)) {
    hint = ' (numpy objects are not supported: save Python numbers or tensors instead)';
  } else if (mod.startsWith('torch')) {
    hint = ' (not on the allow-list of this reader)';
  }
  fail(`forbidden pickle global ${module}.${name}${hint}`);
}

/** Returns the reader's hooks plus the storages it saw (by key). */
function torchHooks(): { hooks: Parameters<typeof unpickle>[1]; storages: Map<string, StorageRef> } {
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): StorageRef => {
    if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5) {
      fail(`unsupported persistent id ${Array.isArray(pid) ? `('${String(pid[0])}', ...)` : describe(pid)}`);
    }
    const [, type, key, , count] = pid;
    if (!(type instanceof StorageType))
      fail(`persistent id names ${describe(type)} instead of a storage type`);
    if (typeof key !== 'string') fail(`persistent id has a ${describe(key)} key instead of a str`);
    const n = toIndex(count, `storage ${key} size`);
    const prev = storages.get(key);
    if (prev) {
      if (prev.type !== type || prev.numel !== n)
        fail(`storage ${key} is referenced with different types or sizes`);
      return prev;
    }
    const ref = new StorageRef(key, type, n);
    storages.set(key, ref);
    return ref;
  };
  return { hooks: { findGlobal, persistentLoad }, storages };
}

// ---------------------------------------------------------------------------------------------------------------
// Metadata values

/** Python's repr() of a float ("1.0", "98.15", "1e-05"), so metadata reads like the safetensors strings. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expStr] = x.toExponential().split('e') as [string, string];
  const exp = Number(expStr);
  if (exp < -4 || exp >= 16) return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  let s: string;
  if (exp >= 0) {
    const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
    s = `${intPart}.${digits.slice(exp + 1) || '0'}`;
  } else {
    s = `0.${'0'.repeat(-exp - 1)}${digits}`;
  }
  return neg ? `-${s}` : s;
}

/** Shortest decimal that reads back as the same float32 value, in Python repr style. */
function float32Repr(v: number): string {
  for (let p = 1; p <= 9; p++) {
    const r = Number(v.toPrecision(p));
    if (Math.fround(r) === v) return pyFloatRepr(r);
  }
  return pyFloatRepr(v);
}

/** str() of a Python scalar, or null when the value is not a scalar. */
function scalarString(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return pyFloatRepr(v);
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  return null;
}

function tensorScalarString(t: HostTensor): string {
  const v = t.data[0]!;
  if (typeof v === 'bigint') return v.toString();
  if (t.dtype === 'float32') return float32Repr(v);
  return String(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/** The dict that holds the tensors: `state_dict` (or `model`, `state_dict_ema`) of the top-level dict, or the top. */
function selectStateDict(root: unknown): PyDict {
  if (!(root instanceof PyDict)) {
    const what = root instanceof TensorRef ? 'single tensor' : describe(root);
    fail(`data.pkl holds a ${what}; expected a state dict or a dict with 'state_dict'`);
  }
  for (const key of ['state_dict', 'model', 'state_dict_ema']) {
    const v = root.map.get(key);
    if (v instanceof PyDict) return v;
  }
  return root;
}

function flatten(d: PyDict, prefix: string, out: Map<string, TensorRef>): void {
  for (const [k, v] of d.map) {
    const name = prefix + (typeof k === 'string' ? k : String(k));
    if (v instanceof TensorRef) out.set(name, v);
    else if (v instanceof PyDict) flatten(v, `${name}.`, out);
  }
}

function isContiguous(t: TensorRef): boolean {
  let expect = 1;
  for (let i = t.size.length - 1; i >= 0; i--) {
    const s = t.size[i]!;
    if (s !== 1 && t.stride[i] !== expect) return false;
    expect *= s;
  }
  return true;
}

type Elements = Float32Array | BigInt64Array | Uint8Array;

/** Copies a strided view of `src` into a new contiguous array of the same type (C order). */
function gather(src: Elements, t: TensorRef): Elements {
  const count = numel(t.size);
  const Ctor = src.constructor as new (n: number) => Elements;
  const dst = new Ctor(count);
  if (count === 0) return dst;
  if (isContiguous(t)) {
    (dst as Uint8Array).set((src as Uint8Array).subarray(t.offset, t.offset + count));
    return dst;
  }
  const nd = t.size.length;
  const inner = t.size[nd - 1]!;
  const innerStride = t.stride[nd - 1]!;
  const idx = new Array<number>(Math.max(0, nd - 1)).fill(0);
  const s = src as unknown as { [i: number]: number | bigint };
  const d = dst as unknown as { [i: number]: number | bigint };
  let base = t.offset;
  for (let o = 0; o < count; o += inner) {
    if (innerStride === 1) (dst as Uint8Array).set((src as Uint8Array).subarray(base, base + inner), o);
    else for (let j = 0; j < inner; j++) d[o + j] = s[base + j * innerStride]!;
    // advance the outer index (odometer over dims 0 .. nd-2)
    for (let k = nd - 2; k >= 0; k--) {
      base += t.stride[k]!;
      if (++idx[k]! < t.size[k]!) break;
      base -= t.stride[k]! * t.size[k]!;
      idx[k] = 0;
    }
  }
  return dst;
}

function checkView(name: string, t: TensorRef): void {
  const count = numel(t.size);
  if (!Number.isSafeInteger(count)) fail(`tensor ${name}: size [${t.size.join(', ')}] is too large`);
  if (count === 0) return;
  let last = t.offset;
  for (let i = 0; i < t.size.length; i++) last += (t.size[i]! - 1) * t.stride[i]!;
  if (last >= t.storage.numel) {
    fail(
      `tensor ${name}: view (offset ${t.offset}, size [${t.size.join(', ')}], stride [${t.stride.join(', ')}]) ` +
        `exceeds its storage of ${t.storage.numel} elements`,
    );
  }
}

/** Reads a torch zip checkpoint. */
export async function readTorchZip(src: ByteSource): Promise<ParsedCheckpoint> {
  const entries = await readZipDirectory(src);
  const pkl = entries.find((e) => e.name === 'data.pkl' || e.name.endsWith('/data.pkl'));
  if (!pkl) fail('zip archive has no <name>/data.pkl entry: not a PyTorch checkpoint');
  const stem = pkl.name.slice(0, -'data.pkl'.length);
  const byName = new Map(entries.map((e) => [e.name, e]));

  const byteorder = byName.get(`${stem}byteorder`);
  if (byteorder) {
    const { bytes } = await readZipEntry(src, byteorder);
    const order = new TextDecoder().decode(bytes).trim();
    if (order !== 'little') fail(`checkpoint byte order is '${order}' (only little-endian is supported)`);
  }

  const { bytes: pickleBytes } = await readZipEntry(src, pkl);
  const { hooks } = torchHooks();
  let root: unknown;
  try {
    root = unpickle(pickleBytes, hooks);
  } catch (e) {
    if (e instanceof FormatError) fail(`${pkl.name}: ${e.message}`);
    throw e;
  }

  const stateDict = selectStateDict(root);
  const refs = new Map<string, TensorRef>();
  flatten(stateDict, '', refs);
  if (refs.size === 0 && stateDict === root) {
    const keys = [...stateDict.map.keys()].map((k) => String(k));
    fail(`no tensors found in the checkpoint (top-level keys: ${keys.slice(0, 10).join(', ') || 'none'})`);
  }
  for (const [name, t] of refs) checkView(name, t);

  // Top-level scalars (and one-element tensors such as a best_prec1 saved as a tensor) become metadata.
  const metadata: Record<string, string> = {};
  const metaTensors = new Map<string, TensorRef>();
  if (root instanceof PyDict) {
    for (const [k, v] of root.map) {
      if (typeof k !== 'string' || v === stateDict) continue;
      const s = scalarString(v);
      if (s !== null) metadata[k] = s;
      else if (v instanceof TensorRef && numel(v.size) === 1 && !refs.has(k)) {
        checkView(k, v);
        metaTensors.set(k, v);
        metadata[k] = ''; // filled below, keeps the key order
      }
    }
  }

  // Read each needed storage once, in file order; build its tensors, then let it go.
  const users = new Map<StorageRef, [string, TensorRef, boolean][]>();
  const use = (name: string, t: TensorRef, isMeta: boolean): void => {
    const list = users.get(t.storage);
    if (list) list.push([name, t, isMeta]);
    else users.set(t.storage, [[name, t, isMeta]]);
  };
  for (const [name, t] of refs) use(name, t, false);
  for (const [name, t] of metaTensors) use(name, t, true);
  const located: [StorageRef, ZipEntry, number][] = [];
  for (const storage of users.keys()) {
    const entry = byName.get(`${stem}data/${storage.key}`);
    if (!entry) fail(`storage ${storage.key} is missing (no entry ${stem}data/${storage.key})`);
    located.push([storage, entry, entry.localHeaderOffset]);
  }
  located.sort((a, b) => a[2] - b[2]);

  const built = new Map<string, HostTensor>();
  for (const [storage, entry] of located) {
    const elsize = STORED_SIZE[storage.type.stored];
    const need = storage.numel * elsize;
    if (entry.size < need) {
      fail(
        `storage ${storage.key} (${entry.name}) has ${entry.size} bytes, expected ${need} (${storage.numel} × ${storage.type.name})`,
      );
    }
    const { bytes, owned } = await readZipEntry(src, entry);
    const elements = decodeElements(bytes, storage.type.stored, storage.numel, owned);
    const list = users.get(storage)!;
    for (const [name, t, isMeta] of list) {
      const whole = list.length === 1 && t.offset === 0 && numel(t.size) === storage.numel && isContiguous(t);
      const data = whole ? elements : gather(elements, t);
      const tensor = hostTensor(data, [...t.size]);
      if (isMeta) metadata[name] = tensorScalarString(tensor);
      else built.set(name, tensor);
    }
  }

  const tensors = new Map<string, HostTensor>();
  for (const name of refs.keys()) tensors.set(name, built.get(name)!);
  return { tensors, metadata };
}
