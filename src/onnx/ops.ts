/**
 * Typed helpers over GraphBuilder for the operators the converters use. Each helper names its attributes
 * explicitly so call sites read like the math; anything not here is still reachable through `g.op()`.
 */
import type { GraphBuilder, Value } from './builder.js';
import { floatTensor, int64Tensor } from '../tensor.js';

export interface ConvAttrs {
  strides?: readonly [number, number];
  pads?: readonly [number, number, number, number];
  group?: number;
  dilations?: readonly [number, number];
}

export class Ops {
  private constCount = 0;
  private readonly i64Cache = new Map<string, Value>();

  constructor(readonly g: GraphBuilder) {}

  /** An int64 constant (shapes, axes), shared between uses. */
  i64(values: readonly number[], name = 'const_i64'): Value {
    const key = values.join(',');
    let v = this.i64Cache.get(key);
    if (!v) {
      v = this.g.initializer(`${name}_${this.constCount++}`, int64Tensor(values, [values.length]));
      this.i64Cache.set(key, v);
    }
    return v;
  }

  /** A float32 constant of the given shape (scalar when shape is []). */
  f32(values: Float32Array | readonly number[], shape: readonly number[], name = 'const_f32'): Value {
    const data = values instanceof Float32Array ? values : Float32Array.from(values);
    return this.g.initializer(`${name}_${this.constCount++}`, floatTensor(data, shape));
  }

  conv(x: Value, w: Value, b: Value | null, a: ConvAttrs = {}, name = 'conv'): Value {
    const attrs: Record<string, number | number[]> = {};
    if (a.strides) attrs.strides = [...a.strides];
    if (a.pads) attrs.pads = [...a.pads];
    if (a.dilations) attrs.dilations = [...a.dilations];
    if (a.group && a.group !== 1) attrs.group = a.group;
    return this.g.op('Conv', b ? [x, w, b] : [x, w], attrs, { name });
  }

  maxPool(x: Value, kernel: number, stride: number, pad: number): Value {
    return this.g.op('MaxPool', [x], {
      kernel_shape: [kernel, kernel],
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
    });
  }

  globalAvgPool(x: Value): Value {
    return this.g.op('GlobalAveragePool', [x]);
  }

  relu(x: Value): Value {
    return this.g.op('Relu', [x]);
  }

  sigmoid(x: Value): Value {
    return this.g.op('Sigmoid', [x]);
  }

  tanh(x: Value): Value {
    return this.g.op('Tanh', [x]);
  }

  erf(x: Value): Value {
    return this.g.op('Erf', [x]);
  }

  add(a: Value, b: Value, name = 'add'): Value {
    return this.g.op('Add', [a, b], {}, { name });
  }

  sub(a: Value, b: Value): Value {
    return this.g.op('Sub', [a, b]);
  }

  mul(a: Value, b: Value, name = 'mul'): Value {
    return this.g.op('Mul', [a, b], {}, { name });
  }

  div(a: Value, b: Value): Value {
    return this.g.op('Div', [a, b]);
  }

  matmul(a: Value, b: Value, name = 'matmul'): Value {
    return this.g.op('MatMul', [a, b], {}, { name });
  }

  /** Y = alpha·A'·B' + beta·C with optional transposes. */
  gemm(
    a: Value,
    b: Value,
    c: Value | null,
    opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {},
    name = 'gemm',
  ): Value {
    const attrs: Record<string, number | { float: number }> = {};
    if (opts.transA) attrs.transA = 1;
    if (opts.transB) attrs.transB = 1;
    if (opts.alpha !== undefined) attrs.alpha = { float: opts.alpha };
    if (opts.beta !== undefined) attrs.beta = { float: opts.beta };
    return this.g.op('Gemm', c ? [a, b, c] : [a, b], attrs, { name });
  }

  softmax(x: Value, axis = -1): Value {
    return this.g.op('Softmax', [x], { axis });
  }

  reshape(x: Value, shape: readonly number[]): Value {
    return this.g.op('Reshape', [x, this.i64(shape, 'shape')]);
  }

  /** Reshape to a runtime-computed shape. */
  reshapeTo(x: Value, shape: Value): Value {
    return this.g.op('Reshape', [x, shape]);
  }

  flatten(x: Value, axis = 1): Value {
    return this.g.op('Flatten', [x], { axis });
  }

  transpose(x: Value, perm: readonly number[]): Value {
    return this.g.op('Transpose', [x], { perm: [...perm] });
  }

  unsqueeze(x: Value, axes: readonly number[]): Value {
    return this.g.op('Unsqueeze', [x, this.i64(axes, 'axes')]);
  }

  squeeze(x: Value, axes: readonly number[]): Value {
    return this.g.op('Squeeze', [x, this.i64(axes, 'axes')]);
  }

  concat(xs: readonly Value[], axis: number): Value {
    return this.g.op('Concat', xs, { axis });
  }

  gather(data: Value, indices: Value, axis = 0): Value {
    return this.g.op('Gather', [data, indices], { axis });
  }

  shape(x: Value, start?: number, end?: number): Value {
    const attrs: Record<string, number> = {};
    if (start !== undefined) attrs.start = start;
    if (end !== undefined) attrs.end = end;
    return this.g.op('Shape', [x], attrs);
  }

  cast(x: Value, to: number): Value {
    return this.g.op('Cast', [x], { to });
  }

  reduceMean(x: Value, axes: readonly number[], keepdims = true): Value {
    // opset 17: ReduceMean takes axes as an attribute (it moved to an input in opset 18).
    return this.g.op('ReduceMean', [x], { axes: [...axes], keepdims: keepdims ? 1 : 0 });
  }

  reduceSum(x: Value, axes: readonly number[], keepdims = true): Value {
    return this.g.op('ReduceSum', [x, this.i64(axes, 'axes')], { keepdims: keepdims ? 1 : 0 });
  }

  topK(x: Value, k: number, axis = -1): [values: Value, indices: Value] {
    const [values, indices] = this.g.node(
      'TopK',
      [x, this.i64([k], 'k')],
      { axis, largest: 1, sorted: 1 },
      { outputs: 2 },
    );
    return [values!, indices!];
  }

  layerNorm(x: Value, scale: Value, bias: Value, epsilon: number, axis = -1): Value {
    return this.g.op('LayerNormalization', [x, scale, bias], { axis, epsilon: { float: epsilon } });
  }

  // --- routing / gather-scatter helpers (PAD-MoE BERT) ---

  where(condition: Value, a: Value, b: Value): Value {
    return this.g.op('Where', [condition, a, b]);
  }

  greater(a: Value, b: Value): Value {
    return this.g.op('Greater', [a, b]);
  }

  /** Indices of the non-zero elements, shape (rank, n). */
  nonZero(x: Value): Value {
    return this.g.op('NonZero', [x]);
  }

  /** A tensor of the runtime shape `shape` (int64 1-D) filled with a float32 constant. */
  constantOfShape(shape: Value, value = 0): Value {
    return this.g.op('ConstantOfShape', [shape], { value: floatTensor([value], [1]) });
  }

  gatherND(data: Value, indices: Value, batchDims = 0): Value {
    return this.g.op('GatherND', [data, indices], batchDims ? { batch_dims: batchDims } : {});
  }

  /** ScatterND (opset 16+): reduction 'add' accumulates updates into the copy of `data`. */
  scatterND(data: Value, indices: Value, updates: Value, reduction: 'none' | 'add' = 'none'): Value {
    return this.g.op('ScatterND', [data, indices, updates], reduction === 'none' ? {} : { reduction });
  }

  scatterElements(data: Value, indices: Value, updates: Value, axis: number): Value {
    return this.g.op('ScatterElements', [data, indices, updates], { axis });
  }

  /** Slice with runtime (or constant) starts/ends along `axes`. */
  slice(x: Value, starts: Value, ends: Value, axes: Value): Value {
    return this.g.op('Slice', [x, starts, ends, axes]);
  }

  cumSum(x: Value, axis: Value): Value {
    return this.g.op('CumSum', [x, axis]);
  }

  /** Exact GELU: 0.5·x·(1 + erf(x/√2)), written so onnxruntime fuses it into its Gelu kernel. */
  gelu(x: Value): Value {
    const scaled = this.div(x, this.f32([Math.SQRT2], [], 'sqrt2'));
    const onePlus = this.add(this.erf(scaled), this.f32([1], [], 'one'));
    return this.mul(this.mul(x, onePlus), this.f32([0.5], [], 'half'));
  }
}
