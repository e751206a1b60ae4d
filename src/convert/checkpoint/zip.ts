/**
 * Minimal zip reader for PyTorch checkpoints: central directory (with zip64), stored and deflated entries, CRC-32
 * checked. Only what torch.save writes and what a user's re-zipped file may contain; no encryption, no multi-disk.
 */
import * as zlib from 'node:zlib';
import { fail, type ByteSource } from './errors.js';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

const utf8 = new TextDecoder('utf-8');

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function u64(dv: DataView, at: number, what: string): number {
  const v = dv.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`zip ${what} ${v} is too large`);
  return Number(v);
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (zip / zlib polynomial). Uses zlib's native implementation where Node has it (>= 20.15). */
export function crc32(bytes: Uint8Array, initial = 0): number {
  const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
  if (typeof native === 'function') return native(bytes, initial) >>> 0;
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = ~initial >>> 0;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** Reads the central directory. Errors name what is wrong (truncated file, bad signature ...). */
export async function readZipDirectory(src: ByteSource): Promise<ZipEntry[]> {
  const size = src.size;
  if (size < EOCD_SIZE) fail(`not a zip archive (file is only ${size} bytes)`);
  const tailLen = Math.min(size, EOCD_SIZE + MAX_COMMENT + 20);
  const tailStart = size - tailLen;
  const tail = await src.read(tailStart, tailLen);
  const tv = view(tail);
  let eocd = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tv.getUint32(i, true) === SIG_EOCD && i + EOCD_SIZE + tv.getUint16(i + 20, true) <= tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail('not a zip archive, or truncated: no end-of-central-directory record');
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0)
    fail('multi-disk zip archives are not supported');

  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // zip64: the locator sits right before the end-of-central-directory record.
    const locAt = tailStart + eocd - 20;
    if (locAt < 0) fail('zip64 end-of-central-directory locator missing');
    const loc = view(await src.read(locAt, 20));
    if (loc.getUint32(0, true) !== SIG_ZIP64_LOCATOR) fail('zip64 end-of-central-directory locator missing');
    const recAt = u64(loc, 8, 'zip64 record offset');
    if (recAt + 56 > size) fail('zip64 end-of-central-directory record out of range (truncated?)');
    const rec = view(await src.read(recAt, 56));
    if (rec.getUint32(0, true) !== SIG_ZIP64_EOCD)
      fail('bad zip64 end-of-central-directory record signature');
    count = u64(rec, 32, 'entry count');
    cdSize = u64(rec, 40, 'central directory size');
    cdOffset = u64(rec, 48, 'central directory offset');
  }
  if (cdOffset + cdSize > size) {
    fail(
      `central directory (bytes ${cdOffset}..${cdOffset + cdSize}) lies beyond the end of the file (${size} bytes)`,
    );
  }
  if (count * 46 > cdSize) fail(`central directory of ${cdSize} bytes cannot hold ${count} entries`);

  const cd = await src.read(cdOffset, cdSize);
  const dv = view(cd);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL)
      fail(`corrupt central directory at entry ${i}`);
    const flags = dv.getUint16(p + 8, true);
    const method = dv.getUint16(p + 10, true);
    const crc = dv.getUint32(p + 16, true);
    let compressedSize = dv.getUint32(p + 20, true);
    let usize = dv.getUint32(p + 24, true);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let localHeaderOffset = dv.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdSize) fail(`corrupt central directory at entry ${i}`);
    const name = utf8.decode(cd.subarray(p + 46, p + 46 + nameLen));
    // zip64 extended information: the 64-bit values of the fields saturated above, in this order.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = dv.getUint16(e, true);
      const len = dv.getUint16(e + 2, true);
      if (id === 0x0001) {
        let q = e + 4;
        const take = (): number => {
          if (q + 8 > e + 4 + len) fail(`entry ${name}: truncated zip64 extra field`);
          const v = u64(dv, q, 'zip64 field');
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = take();
        if (compressedSize === 0xffffffff) compressedSize = take();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
      }
      e += 4 + len;
    }
    entries.push({ name, method, flags, crc32: crc, compressedSize, size: usize, localHeaderOffset });
    p = end;
  }
  return entries;
}

/** Where an entry's data starts (after its local header). */
export async function entryDataOffset(src: ByteSource, entry: ZipEntry): Promise<number> {
  if (entry.localHeaderOffset + 30 > src.size)
    fail(`entry ${entry.name}: local header beyond the end of the file (truncated?)`);
  const h = view(await src.read(entry.localHeaderOffset, 30));
  if (h.getUint32(0, true) !== SIG_LOCAL) fail(`entry ${entry.name}: bad local header signature`);
  return entry.localHeaderOffset + 30 + h.getUint16(26, true) + h.getUint16(28, true);
}

/**
 * The uncompressed bytes of an entry, CRC-checked. Stored entries come straight from the source (so they are owned,
 * adoptable buffers when the source owns its reads); deflated ones are inflated into a fresh buffer.
 * `owned` says whether the result has an ArrayBuffer of its own at offset 0.
 */
export async function readZipEntry(
  src: ByteSource,
  entry: ZipEntry,
): Promise<{ bytes: Uint8Array; owned: boolean }> {
  if (entry.flags & 1) fail(`entry ${entry.name} is encrypted`);
  const start = await entryDataOffset(src, entry);
  if (start + entry.compressedSize > src.size) {
    fail(
      `entry ${entry.name}: data (bytes ${start}..${start + entry.compressedSize}) beyond the end of the file (${src.size} bytes; truncated?)`,
    );
  }
  let bytes: Uint8Array;
  let owned: boolean;
  if (entry.method === 0) {
    if (entry.compressedSize !== entry.size)
      fail(`entry ${entry.name}: stored entry with different compressed and uncompressed sizes`);
    bytes = await src.read(start, entry.size);
    owned = src.ownsReads;
  } else if (entry.method === 8) {
    const packed = await src.read(start, entry.compressedSize);
    let out: Buffer;
    try {
      out = zlib.inflateRawSync(packed, { maxOutputLength: Math.max(1, entry.size) });
    } catch (e) {
      fail(`entry ${entry.name}: corrupt deflate data (${(e as Error).message})`);
    }
    if (out.byteLength !== entry.size)
      fail(`entry ${entry.name}: inflates to ${out.byteLength} bytes, expected ${entry.size}`);
    bytes = out;
    owned = out.byteOffset === 0 && out.buffer.byteLength === out.byteLength;
  } else {
    fail(
      `entry ${entry.name} uses zip compression method ${entry.method} (only stored and deflate are supported)`,
    );
  }
  const crc = crc32(bytes);
  if (crc !== entry.crc32) {
    fail(
      `entry ${entry.name}: CRC-32 mismatch (stored ${hex8(entry.crc32)}, computed ${hex8(crc)}): the file is corrupt`,
    );
  }
  return { bytes, owned };
}

function hex8(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
