/**
 * Host-side tensors: the one currency between checkpoint readers, graph builders, preprocessing and the runtime.
 * Plain data (like onnxruntime-common's Tensor), no methods, so they cross worker boundaries as-is.
 */
export type DType = 'float32' | 'int64' | 'int32' | 'uint8' | 'bool';

export interface TensorDataMap {
  float32: Float32Array;
  int64: BigInt64Array;
  int32: Int32Array;
  uint8: Uint8Array;
  bool: Uint8Array;
}

export interface HostTensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: TensorDataMap[D];
}

export type FloatTensor = HostTensor<'float32'>;

export const BYTES_PER_ELEMENT: Record<DType, number> = { float32: 4, int64: 8, int32: 4, uint8: 1, bool: 1 };

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export class ShapeError extends Error {
  override name = 'ShapeError';
}

/** Checks that a tensor's data length matches its shape; returns the tensor for chaining. */
export function checked<D extends DType>(t: HostTensor<D>, what = 'tensor'): HostTensor<D> {
  for (const d of t.shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new ShapeError(`${what}: invalid dimension ${d} in [${t.shape}]`);
  }
  const n = numel(t.shape);
  if (t.data.length !== n) {
    throw new ShapeError(
      `${what}: ${t.data.length} elements for shape [${t.shape.join(', ')}] (expected ${n})`,
    );
  }
  return t;
}

export function floatTensor(data: Float32Array | number[], shape: readonly number[]): FloatTensor {
  const arr = data instanceof Float32Array ? data : Float32Array.from(data);
  return checked({ dtype: 'float32', shape: [...shape], data: arr });
}

export function int64Tensor(
  data: BigInt64Array | readonly (number | bigint)[],
  shape: readonly number[],
): HostTensor<'int64'> {
  const arr = data instanceof BigInt64Array ? data : BigInt64Array.from(data, (v) => BigInt(v));
  return checked({ dtype: 'int64', shape: [...shape], data: arr });
}

export function int32Tensor(
  data: Int32Array | readonly number[],
  shape: readonly number[],
): HostTensor<'int32'> {
  const arr = data instanceof Int32Array ? data : Int32Array.from(data);
  return checked({ dtype: 'int32', shape: [...shape], data: arr });
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function formatShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Raw little-endian bytes of a tensor's data (a view, no copy). */
export function tensorBytes(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}
