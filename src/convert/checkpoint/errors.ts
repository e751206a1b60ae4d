/**
 * Errors and byte access shared by the checkpoint readers.
 *
 * The format parsers throw `FormatError` (a message about the bytes, without the file name); the public entry points
 * in `index.ts` turn every failure into one `CheckpointError` line prefixed with the file name, so malformed input
 * never surfaces as a stack trace from the reader.
 */

/** User-facing, one-line error about a checkpoint file, e.g. `model.pth.tar: not a zip archive`. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** Something wrong in the bytes; converted to `CheckpointError` (with the file name) by the entry points. */
export class FormatError extends Error {
  override name = 'FormatError';
}

export function fail(message: string): never {
  throw new FormatError(message);
}

/** Turns any error thrown while reading `label` into a one-line CheckpointError naming the file. */
export function toCheckpointError(e: unknown, label: string): CheckpointError {
  if (e instanceof CheckpointError) return e;
  if (e instanceof FormatError) return new CheckpointError(`${label}: ${e.message}`);
  const err = e as NodeJS.ErrnoException | undefined;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string') {
    const why: Record<string, string> = {
      ENOENT: 'no such file',
      EACCES: 'permission denied',
      EISDIR: 'is a directory, not a checkpoint file',
      EMFILE: 'too many open files',
    };
    return new CheckpointError(`${label}: cannot read file (${why[err.code] ?? err.code})`);
  }
  if (
    e instanceof RangeError &&
    /Array buffer allocation failed|Invalid typed array length/.test(e.message)
  ) {
    return new CheckpointError(`${label}: out of memory while reading tensors (${e.message})`);
  }
  const msg = e instanceof Error ? e.message : String(e);
  return new CheckpointError(`${label}: malformed checkpoint (${msg.split('\n')[0]})`);
}

/**
 * Random access to the bytes of a checkpoint: a file (read on demand, so files larger than memory's comfort or
 * Node's 2 GiB readFile limit work) or an in-memory buffer.
 */
export interface ByteSource {
  readonly size: number;
  /**
   * Bytes [offset, offset + length). With `ownsReads`, every result has an ArrayBuffer of its own at byteOffset 0
   * that callers may adopt as tensor storage; otherwise it may be a view into shared memory and must be copied.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
  readonly ownsReads: boolean;
}

/** Range check shared by the sources: a read past the end means the file is truncated. */
export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    fail(`invalid read of ${length} bytes at offset ${offset}`);
  }
  if (offset + length > size) {
    fail(
      `unexpected end of file: needs bytes ${offset}..${offset + length} but the file has ${size} (truncated?)`,
    );
  }
}

/** An in-memory ByteSource: reads are views (no copy). */
export class MemorySource implements ByteSource {
  readonly ownsReads = false;
  constructor(private readonly bytes: Uint8Array) {}
  get size(): number {
    return this.bytes.byteLength;
  }
  read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this.size, offset, length);
    return Promise.resolve(this.bytes.subarray(offset, offset + length));
  }
}
