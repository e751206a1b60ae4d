/**
 * Shared by the checkpoint reader tests (test/unit/checkpoint-*.test.ts): the fixture checkpoints listed by their
 * fixture.json files, small checkpoints of either format, zip entry access, and the CheckpointError assertions.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect } from 'vitest';
import {
  CheckpointError,
  readCheckpoint,
  readCheckpointBytes,
  writeSafetensors,
  type Checkpoint,
} from '../../src/convert/checkpoint/index.js';
import { MemorySource } from '../../src/convert/checkpoint/errors.js';
import { entryDataOffset, readZipDirectory } from '../../src/convert/checkpoint/zip.js';
import { floatTensor, int64Tensor, tensorBytes, type HostTensor } from '../../src/tensor.js';
import { PADNET_FIXTURES } from './paths.js';
import { Pickler, contiguousStrides, writeTorchZip, writeTorchZipEntries } from './torch-writer.js';

export const FIXTURES = PADNET_FIXTURES;

export interface FixtureTensor {
  name: string;
  dtype: string;
  shape: number[];
}
export interface FixtureFile {
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

export const FILES = fixtureFiles();

const loaded = new Map<string, Checkpoint>();
/** A fixture checkpoint read from disk, once per test file. */
export async function load(dir: string, file: string): Promise<Checkpoint> {
  const p = join(FIXTURES, dir, file);
  let c = loaded.get(p);
  if (!c) {
    c = await readCheckpoint(p);
    loaded.set(p, c);
  }
  return c;
}

/** A fresh temporary folder, removed after the calling test file. */
export function useTmpDir(): string {
  const tmp = mkdtempSync(join(tmpdir(), 'padserve-ckpt-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  return tmp;
}

/** Asserts a one-line CheckpointError that names `label`, and returns its message. */
export async function expectCheckpointError(
  run: () => unknown,
  label: string,
  pattern?: RegExp,
): Promise<string> {
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

/** Every proper prefix of `bytes` (0 .. length-1 bytes) fails with a CheckpointError from each reader in turn. */
export async function expectEveryPrefixFails(
  bytes: Uint8Array,
  label: string,
  ...readers: ((b: Uint8Array, label: string) => unknown)[]
): Promise<void> {
  for (let at = 0; at < bytes.length; at++) {
    for (const read of readers) await expectCheckpointError(() => read(bytes.subarray(0, at), label), label);
  }
}

/** Loads or fails with a CheckpointError; anything else (TypeError, RangeError ...) fails the test. */
export async function loadsOrCheckpointError(bytes: Uint8Array, label: string): Promise<boolean> {
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

export function sameBytes(a: HostTensor, b: HostTensor): boolean {
  return Buffer.from(tensorBytes(a)).equals(Buffer.from(tensorBytes(b)));
}

/** A small state dict with every dtype the converters see. */
export function smallStateDict(prefix = ''): Map<string, HostTensor> {
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

/** smallStateDict() as torch.save writes it (stem `model.pth`), inside a dict with two scalars. */
export function smallTorchZip(): Uint8Array {
  return writeTorchZip(
    { stateDict: smallStateDict(), extra: { temperature: { float: 1 }, arch: 'a' } },
    'model.pth',
  );
}

/** smallStateDict() as a safetensors file with one metadata entry. */
export function smallSafetensors(): Uint8Array {
  return writeSafetensors(smallStateDict(), { temperature: '1.0' });
}

export async function zipEntries(
  bytes: Uint8Array,
): Promise<{ name: string; dataOffset: number; size: number }[]> {
  const src = new MemorySource(bytes);
  const entries = await readZipDirectory(src);
  return Promise.all(
    entries.map(async (e) => ({ name: e.name, dataOffset: await entryDataOffset(src, e), size: e.size })),
  );
}

export async function entryBytes(bytes: Uint8Array, name: string): Promise<Uint8Array> {
  const e = (await zipEntries(bytes)).find((x) => x.name === name)!;
  return bytes.subarray(e.dataOffset, e.dataOffset + e.size);
}

/** The storages (`<stem>/data/<key>`) of a torch zip, by key, as views into `bytes`. */
export async function zipStorages(bytes: Uint8Array): Promise<Map<string, Uint8Array>> {
  const storages = new Map<string, Uint8Array>();
  for (const e of await zipEntries(bytes)) {
    if (e.name.includes('/data/'))
      storages.set(e.name.split('/').pop()!, bytes.subarray(e.dataOffset, e.dataOffset + e.size));
  }
  return storages;
}

/** A torch zip around a hand-written pickle; `body` writes the top-level object. */
export function handmade(
  body: (p: Pickler) => void,
  storages: Record<string, Uint8Array> = {},
  stem = 'archive',
): Uint8Array {
  const p = new Pickler();
  body(p);
  return writeTorchZipEntries(stem, p.stop(), new Map(Object.entries(storages)));
}

/** What `Pickler.tensor` takes: a view of storage `key` (C-order strides unless given). */
export const ref = (
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

export const f32 = (xs: number[]): Uint8Array => new Uint8Array(Float32Array.from(xs).buffer);
