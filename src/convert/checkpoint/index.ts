/**
 * Checkpoint readers: PyTorch zip (`torch.save` since 1.6) and safetensors, detected by content, never by the
 * file extension. Every failure on malformed input is a one-line `CheckpointError` naming the file.
 *
 * Files are read on demand (one read per tensor / storage, straight into the tensor's own buffer, no whole-file
 * copy), and hashed (sha256) along the way in the same pass when reads are sequential, as they are for files that
 * torch.save and safetensors write.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import type { HostTensor } from '../../tensor.js';
import {
  CheckpointError,
  FormatError,
  MemorySource,
  checkRange,
  toCheckpointError,
  type ByteSource,
} from './errors.js';
import {
  parseSafetensorsBytes,
  readSafetensorsSource,
  writeSafetensors,
  type ParsedCheckpoint,
} from './safetensors.js';
import { readTorchZip } from './torch.js';

export { CheckpointError, writeSafetensors };

export interface Checkpoint {
  /** Tensor name → tensor, in file order; float32 or int64 (0-d tensors have shape []); bool / uint8 as uint8. */
  tensors: Map<string, HostTensor>;
  /**
   * Non-tensor scalars: safetensors __metadata__ (strings as-is), or the torch.save dict's top-level scalar entries
   * (temperature, arch, epoch, best_prec1 ...) converted to strings the way Python's str() prints them ("1.0").
   */
  metadata: Record<string, string>;
  format: 'torch-zip' | 'safetensors';
  path: string;
  /** sha256 of the checkpoint file. */
  sha256: string;
}

export type CheckpointFormat = Checkpoint['format'];

/** Largest gap between two reads that is read (and hashed) rather than skipped and hashed at the end. */
const GAP_FILL = 1 << 20;
const CHUNK = 16 << 20;
/** Reads up to this size are served from a read-ahead window of WINDOW bytes. */
const SMALL_READ = 64 << 10;
const WINDOW = 1 << 20;
/** Node's per-call read limit is 2 GiB; stay well below. */
const MAX_READ = 1 << 30;

async function readFully(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const len = Math.min(buf.byteLength - done, MAX_READ);
    const { bytesRead } = await fh.read(buf, done, len, position + done);
    if (bytesRead === 0)
      throw new FormatError(
        `unexpected end of file at byte ${position + done} (file changed while reading?)`,
      );
    done += bytesRead;
  }
}

/**
 * A file read on demand. Every read lands in a buffer of its own (adoptable as tensor data). Small reads (zip
 * headers, small tensors) are served from a read-ahead window, so a checkpoint of many small tensors costs few
 * system calls. The sha256 of the whole file is built from the reads that continue where the hash stands (small
 * gaps are read to keep it going); `digest()` hashes whatever was not read that way.
 */
class FileSource implements ByteSource {
  readonly ownsReads = true;
  private readonly hash: Hash = createHash('sha256');
  private hashed = 0;
  private window: Uint8Array | null = null;
  private windowStart = 0;

  constructor(
    private readonly fh: FileHandle,
    readonly size: number,
  ) {}

  async read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this.size, offset, length);
    if (length > SMALL_READ) return this.readDirect(offset, length);
    let w = this.window;
    if (!w || offset < this.windowStart || offset + length > this.windowStart + w.byteLength) {
      w = this.window = await this.readDirect(offset, Math.min(WINDOW, this.size - offset));
      this.windowStart = offset;
    }
    return w.slice(offset - this.windowStart, offset - this.windowStart + length);
  }

  private async readDirect(offset: number, length: number): Promise<Uint8Array> {
    if (offset > this.hashed && offset - this.hashed <= GAP_FILL) await this.hashUpTo(offset);
    // A plain Uint8Array over an ArrayBuffer of its own (not a Buffer: tensors must be plain typed arrays).
    const raw = Buffer.allocUnsafeSlow(length);
    const buf = new Uint8Array(raw.buffer, raw.byteOffset, length);
    await readFully(this.fh, buf, offset);
    if (offset <= this.hashed && offset + length > this.hashed) {
      this.hash.update(buf.subarray(this.hashed - offset));
      this.hashed = offset + length;
    }
    return buf;
  }

  private async hashUpTo(end: number): Promise<void> {
    const buf = Buffer.allocUnsafeSlow(Math.min(CHUNK, end - this.hashed));
    while (this.hashed < end) {
      const part = buf.subarray(0, Math.min(buf.byteLength, end - this.hashed));
      await readFully(this.fh, part, this.hashed);
      this.hash.update(part);
      this.hashed += part.byteLength;
    }
  }

  async digest(): Promise<string> {
    await this.hashUpTo(this.size);
    return this.hash.digest('hex');
  }
}

const PK_LOCAL = [0x50, 0x4b, 0x03, 0x04];
const PK_EMPTY = [0x50, 0x4b, 0x05, 0x06];

/** Format from the first bytes (at least 9 when available). */
function detectFormat(head: Uint8Array, size: number): CheckpointFormat {
  const starts = (sig: number[]): boolean => sig.every((b, i) => head[i] === b);
  if (size === 0) throw new FormatError('empty file');
  if (starts(PK_LOCAL) || starts(PK_EMPTY)) return 'torch-zip';
  if (head.length >= 9 && head[8] === 0x7b /* '{' */) return 'safetensors';
  if (head[0] === 0x80 && head[1] !== undefined && head[1] <= 5) {
    throw new FormatError(
      'legacy (pre-1.6, non-zip) torch.save file: not supported; re-save it with a recent PyTorch (torch.save writes zip since 1.6)',
    );
  }
  if (head[0] === 0x50 && head[1] === 0x4b)
    throw new FormatError('not a zip archive (damaged zip signature)');
  if (size < 9) throw new FormatError(`file too short to be a checkpoint (${size} bytes)`);
  throw new FormatError('not a PyTorch zip checkpoint or a safetensors file (unrecognised leading bytes)');
}

async function parse(src: ByteSource, format: CheckpointFormat): Promise<ParsedCheckpoint> {
  return format === 'torch-zip' ? readTorchZip(src) : readSafetensorsSource(src);
}

/** Reads a checkpoint file, detecting its format by content. */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(path, 'r');
    const stat = await fh.stat();
    if (stat.isDirectory()) throw new FormatError('is a directory, not a checkpoint file');
    const src = new FileSource(fh, stat.size);
    const format = detectFormat(
      stat.size ? await src.read(0, Math.min(16, stat.size)) : new Uint8Array(0),
      stat.size,
    );
    const parsed = await parse(src, format);
    const sha256 = await src.digest();
    return { ...parsed, format, path, sha256 };
  } catch (e) {
    throw toCheckpointError(e, path);
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

/** Reads a checkpoint held in memory (either format); tensors are copies, `bytes` is not retained. */
export async function readCheckpointBytes(bytes: Uint8Array, path = '<memory>'): Promise<Checkpoint> {
  try {
    const format = detectFormat(bytes.subarray(0, 16), bytes.byteLength);
    const parsed = await parse(new MemorySource(bytes), format);
    return { ...parsed, format, path, sha256: createHash('sha256').update(bytes).digest('hex') };
  } catch (e) {
    throw toCheckpointError(e, path);
  }
}

/** Reads an in-memory safetensors file; tensors are copies, `bytes` is not retained. */
export function readSafetensors(bytes: Uint8Array, path = '<memory>'): Checkpoint {
  try {
    const parsed = parseSafetensorsBytes(bytes);
    return {
      ...parsed,
      format: 'safetensors',
      path,
      sha256: createHash('sha256').update(bytes).digest('hex'),
    };
  } catch (e) {
    throw toCheckpointError(e, path);
  }
}
