/**
 * A restricted pickle virtual machine (protocols 0 to 5) that never executes code: GLOBAL / STACK_GLOBAL / INST
 * ask the caller's `findGlobal`, which returns a stand-in from an allow-list or throws; REDUCE / NEWOBJ / OBJ only
 * call those stand-ins. Persistent ids (torch storages) go to `persistentLoad`.
 *
 * Python values map to: None -> null, bool -> boolean, int -> bigint (always, so ints and floats stay distinct),
 * float -> number, str -> string, bytes / bytearray -> Uint8Array, list and tuple -> Array, dict -> PyDict,
 * set / frozenset -> PySet.
 */
import { fail } from './errors.js';

/** A Python dict (or OrderedDict); `attrs` holds instance attributes set with BUILD (e.g. a state dict's `_metadata`). */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  attrs: Map<string, unknown> | null = null;
  constructor(readonly className = 'dict') {}
}

export class PySet {
  constructor(
    readonly items: unknown[],
    readonly frozen: boolean,
  ) {}
}

/** An allow-listed callable (class or function) the pickle may invoke with REDUCE / NEWOBJ / OBJ / INST. */
export class PyCallable {
  constructor(
    readonly qualname: string,
    readonly call: (args: unknown[], kwargs: PyDict | null) => unknown,
  ) {}
}

export interface UnpickleHooks {
  /** Returns the stand-in for `module.name`, or throws (FormatError) if it is not allowed. */
  findGlobal(module: string, name: string): unknown;
  persistentLoad(pid: unknown): unknown;
  /** BUILD on an object that is not a PyDict; return false to reject. */
  build?(obj: unknown, state: unknown): boolean;
}

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) return `tuple/list of ${v.length}`;
  if (v instanceof PyDict) return v.className;
  if (v instanceof PyCallable) return v.qualname;
  if (v instanceof Uint8Array) return 'bytes';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'number') return 'float';
  if (typeof v === 'string') return 'str';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

const utf8 = new TextDecoder('utf-8');

const OP_NAMES: Record<number, string> = { 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x97: 'NEXT_BUFFER' };

function decodeLatin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

/** Python's raw-unicode-escape (UNICODE opcode): latin-1 with \uXXXX and \UXXXXXXXX escapes. */
function decodeRawUnicodeEscape(s: string): string {
  return s.replace(
    /\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g,
    (_m, a: string | undefined, b: string | undefined) => String.fromCodePoint(parseInt((a ?? b)!, 16)),
  );
}

/** Body of a protocol-0 STRING opcode: a Python repr, quotes included. */
function decodeStringRepr(line: string): string {
  const q = line[0];
  if ((q !== "'" && q !== '"') || line.length < 2 || line[line.length - 1] !== q)
    fail('pickle STRING opcode argument is not quoted');
  const body = line.slice(1, -1);
  const esc: Record<string, string> = {
    n: '\n',
    r: '\r',
    t: '\t',
    '\\': '\\',
    "'": "'",
    '"': '"',
    a: '\x07',
    b: '\b',
    f: '\f',
    v: '\v',
    '0': '\0',
  };
  return body.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_m, e: string) =>
    e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16)) : (esc[e] ?? `\\${e}`),
  );
}

function parseIntLine(s: string): bigint | boolean {
  const t = s.trim();
  if (t === '00') return false;
  if (t === '01') return true;
  const body = t.endsWith('L') ? t.slice(0, -1) : t;
  if (!/^[+-]?\d+$/.test(body)) fail(`pickle INT/LONG argument ${JSON.stringify(t)} is not an integer`);
  if (body.length > 2500) fail(`pickle integer of ${body.length} digits is implausibly large`);
  return BigInt(body.replace(/^\+/, ''));
}

function parseFloatLine(s: string): number {
  const t = s.trim().toLowerCase();
  if (t === 'inf' || t === '+inf') return Infinity;
  if (t === '-inf') return -Infinity;
  if (t === 'nan') return NaN;
  const v = Number(t);
  if (t === '' || Number.isNaN(v)) fail(`pickle FLOAT argument ${JSON.stringify(s)} is not a number`);
  return v;
}

/** Little-endian two's-complement integer (LONG1 / LONG4). */
function decodeLong(b: Uint8Array): bigint {
  if (b.length === 0) return 0n;
  if (b.length > 1024) fail(`pickle integer of ${b.length} bytes is implausibly large`);
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
  if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
  return v;
}

function call(f: unknown, args: unknown, kwargs: PyDict | null, at: number): unknown {
  if (!(f instanceof PyCallable)) fail(`pickle calls ${describe(f)}, which is not callable (byte ${at})`);
  if (!Array.isArray(args))
    fail(`pickle calls ${f.qualname} with ${describe(args)} instead of an argument tuple (byte ${at})`);
  return f.call(args, kwargs);
}

/** Runs the pickle in `data` and returns the unpickled object. Throws FormatError on anything unexpected. */
export function unpickle(data: Uint8Array, hooks: UnpickleHooks): unknown {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const n = data.length;
  let pos = 0;
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();
  let opAt = 0;

  const need = (k: number): void => {
    if (k < 0 || pos + k > n)
      fail(`pickle truncated at byte ${pos} (needs ${k} more bytes, ${n - pos} left)`);
  };
  const u8 = (): number => {
    need(1);
    return data[pos++]!;
  };
  const u16 = (): number => {
    need(2);
    pos += 2;
    return dv.getUint16(pos - 2, true);
  };
  const u32 = (): number => {
    need(4);
    pos += 4;
    return dv.getUint32(pos - 4, true);
  };
  const i32 = (): number => {
    need(4);
    pos += 4;
    return dv.getInt32(pos - 4, true);
  };
  const u64 = (): number => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(n))
      fail(`pickle length ${v} at byte ${pos - 8} exceeds the pickle size (${n} bytes; truncated?)`);
    return Number(v);
  };
  const bytes = (k: number): Uint8Array => {
    need(k);
    pos += k;
    return data.subarray(pos - k, pos);
  };
  const line = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) fail(`pickle truncated at byte ${pos} (unterminated text argument)`);
    const s = decodeLatin1(data.subarray(pos, nl));
    pos = nl + 1;
    return s.endsWith('\r') ? s.slice(0, -1) : s;
  };
  const push = (v: unknown): void => {
    stack.push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail(`pickle stack underflow at byte ${opAt}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail(`pickle stack underflow at byte ${opAt}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail(`pickle MARK missing at byte ${opAt}`);
    stack = prev;
    return items;
  };
  const get = (i: number): unknown => {
    if (!memo.has(i)) fail(`pickle memo key ${i} missing at byte ${opAt}`);
    return memo.get(i);
  };
  const dictOf = (v: unknown, what: string): PyDict => {
    if (!(v instanceof PyDict)) fail(`pickle ${what} on ${describe(v)} at byte ${opAt}`);
    return v;
  };
  const listOf = (v: unknown, what: string): unknown[] => {
    if (!Array.isArray(v)) fail(`pickle ${what} on ${describe(v)} at byte ${opAt}`);
    return v;
  };
  const setItems = (d: PyDict, items: unknown[]): void => {
    if (items.length % 2 !== 0) fail(`pickle SETITEMS with an odd number of items at byte ${opAt}`);
    for (let i = 0; i < items.length; i += 2) d.map.set(items[i], items[i + 1]);
  };
  const global = (module: string, name: string): unknown => hooks.findGlobal(module, name);

  for (;;) {
    opAt = pos;
    if (pos >= n) fail(`pickle truncated at byte ${pos} (no STOP opcode)`);
    const op = data[pos++]!;
    switch (op) {
      case 0x80: {
        // PROTO
        const proto = u8();
        if (proto > 5) fail(`unsupported pickle protocol ${proto}`);
        break;
      }
      case 0x95: // FRAME: a framing hint, the opcodes follow inline
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;

      // --- constants and numbers
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x49: // INT (text; 00 / 01 are False / True)
        push(parseIntLine(line()));
        break;
      case 0x4c: // LONG (text)
        push(parseIntLine(line()));
        break;
      case 0x4a: // BININT
        push(BigInt(i32()));
        break;
      case 0x4b: // BININT1
        push(BigInt(u8()));
        break;
      case 0x4d: // BININT2
        push(BigInt(u16()));
        break;
      case 0x8a: // LONG1
        push(decodeLong(bytes(u8())));
        break;
      case 0x8b: {
        // LONG4
        const k = i32();
        if (k < 0) fail(`pickle LONG4 with negative length at byte ${opAt}`);
        push(decodeLong(bytes(k)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x46: // FLOAT (text)
        push(parseFloatLine(line()));
        break;

      // --- strings and bytes
      case 0x58: // BINUNICODE
        push(utf8.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(utf8.decode(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(utf8.decode(bytes(u64())));
        break;
      case 0x56: // UNICODE (raw-unicode-escape text)
        push(decodeRawUnicodeEscape(line()));
        break;
      case 0x53: // STRING (repr text)
        push(decodeStringRepr(line()));
        break;
      case 0x54: {
        // BINSTRING
        const k = i32();
        if (k < 0) fail(`pickle BINSTRING with negative length at byte ${opAt}`);
        push(utf8.decode(bytes(k)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(utf8.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        push(new Uint8Array(bytes(u32())));
        break;
      case 0x43: // SHORT_BINBYTES
        push(new Uint8Array(bytes(u8())));
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(new Uint8Array(bytes(u64())));
        break;

      // --- containers
      case 0x7d: // EMPTY_DICT
        push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const d = new PyDict();
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x29: // EMPTY_TUPLE
        push([]);
        break;
      case 0x74: // TUPLE
        push(popMark());
        break;
      case 0x85: // TUPLE1
        push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        push([a, b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push([a, b, c]);
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new PySet([], false));
        break;
      case 0x91: // FROZENSET
        push(new PySet(popMark(), true));
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof PySet)) fail(`pickle ADDITEMS on ${describe(s)} at byte ${opAt}`);
        for (const it of items) s.items.push(it);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        listOf(top(), 'APPEND').push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = listOf(top(), 'APPENDS');
        for (const it of items) list.push(it);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        dictOf(top(), 'SETITEM').map.set(k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(dictOf(top(), 'SETITEMS'), items);
        break;
      }

      // --- memo
      case 0x70: {
        // PUT (text)
        const i = Number(line());
        if (!Number.isSafeInteger(i) || i < 0) fail(`pickle PUT with a bad memo key at byte ${opAt}`);
        memo.set(i, top());
        break;
      }
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x67: // GET (text)
        push(get(Number(line())));
        break;
      case 0x68: // BINGET
        push(get(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(get(u32()));
        break;

      // --- globals, calls, objects
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        push(global(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string')
          fail(`pickle STACK_GLOBAL with non-string names at byte ${opAt}`);
        push(global(module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const f = pop();
        push(call(f, args, null, opAt));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        push(call(cls, args, null, opAt));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        push(call(cls, args, dictOf(kwargs, 'NEWOBJ_EX'), opAt));
        break;
      }
      case 0x6f: {
        // OBJ
        const items = popMark();
        if (items.length === 0) fail(`pickle OBJ without a class at byte ${opAt}`);
        push(call(items[0], items.slice(1), null, opAt));
        break;
      }
      case 0x69: {
        // INST
        const module = line();
        const name = line();
        const args = popMark();
        push(call(global(module, name), args, null, opAt));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyDict) {
          // obj.__dict__.update(state), or (state, slotstate)
          const parts = Array.isArray(state) && state.length === 2 ? state : [state];
          for (const part of parts) {
            if (part === null) continue;
            const d = dictOf(part, 'BUILD state');
            obj.attrs ??= new Map();
            for (const [k, v] of d.map) obj.attrs.set(String(k), v);
          }
        } else if (!hooks.build?.(obj, state)) {
          fail(`pickle BUILD on unsupported object ${describe(obj)} at byte ${opAt}`);
        }
        break;
      }
      case 0x51: // BINPERSID
        push(hooks.persistentLoad(pop()));
        break;
      case 0x50: // PERSID (text)
        push(hooks.persistentLoad(line()));
        break;
      case 0x98: // READONLY_BUFFER: no-op for in-band buffers
        top();
        break;
      default:
        if (OP_NAMES[op]) fail(`unsupported pickle opcode ${OP_NAMES[op]} at byte ${opAt}`);
        fail(`unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${opAt}`);
    }
  }
}
