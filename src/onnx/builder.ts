/**
 * A small typed ONNX graph builder: values are named edges, nodes are added in topological order, initializers
 * are host tensors checked against their declared shape. Pure: it builds a ModelProto and touches no files
 * (see serialize.ts for writing, with external data).
 */
import { AttributeType, DEFAULT_OPSET, IR_VERSION, ONNX_DTYPE, onnx } from './proto.js';
import type { IAttributeProto, INodeProto, ITensorProto, IValueInfoProto, ModelProto } from './proto.js';
import { checked, tensorBytes, type DType, type HostTensor } from '../tensor.js';

/** A value (edge) in the graph. Only its name matters to ONNX; the brand keeps raw strings out by accident. */
export interface Value {
  readonly name: string;
  readonly __value: true;
}

/** A dimension: a fixed size, or a symbolic name ("batch", "sequence"). */
export type Dim = number | string;

export type AttrValue =
  number | string | readonly number[] | readonly string[] | HostTensor | { float: number };

export interface NodeOptions {
  /** Number of outputs (default 1). */
  outputs?: number;
  /** Node name prefix for readability in profiles. */
  name?: string;
  /** Operator domain ('' = ai.onnx, 'com.microsoft' = onnxruntime contrib ops). */
  domain?: string;
}

interface ModelOptions {
  producer?: string;
  docString?: string;
  metadata?: Record<string, string>;
  opset?: number;
}

export class GraphBuilder {
  private readonly nodes: INodeProto[] = [];
  private readonly inputs: IValueInfoProto[] = [];
  private readonly outputs: IValueInfoProto[] = [];
  private readonly initializers = new Map<string, HostTensor>();
  private readonly usedNames = new Set<string>();
  private readonly domains = new Set<string>();
  private counter = 0;

  constructor(readonly graphName: string) {}

  /** A fresh, unique value name derived from a hint. */
  fresh(hint: string): string {
    let name = hint.replace(/[^A-Za-z0-9_.:/-]/g, '_') || 'v';
    if (this.usedNames.has(name)) {
      do name = `${hint}_${this.counter++}`;
      while (this.usedNames.has(name));
    }
    this.usedNames.add(name);
    return name;
  }

  private value(name: string): Value {
    return { name, __value: true };
  }

  input(name: string, dtype: DType, shape: readonly Dim[]): Value {
    if (this.usedNames.has(name)) throw new Error(`graph input name "${name}" already used`);
    this.usedNames.add(name);
    this.inputs.push(valueInfo(name, dtype, shape));
    return this.value(name);
  }

  /** Marks a value as a graph output under the given name (adds an Identity if the name differs). */
  output(v: Value, name: string, dtype: DType, shape: readonly Dim[]): void {
    let out = v;
    if (v.name !== name) {
      if (this.usedNames.has(name)) throw new Error(`graph output name "${name}" already used`);
      this.usedNames.add(name);
      this.nodes.push({ opType: 'Identity', input: [v.name], output: [name], name: `${name}_identity` });
      out = this.value(name);
    }
    this.outputs.push(valueInfo(out.name, dtype, shape));
  }

  /** Adds a constant tensor stored as an initializer (deduplicated by name: same name must be same tensor). */
  initializer(name: string, t: HostTensor): Value {
    checked(t, `initializer ${name}`);
    const existing = this.initializers.get(name);
    if (existing) {
      if (existing !== t) throw new Error(`initializer "${name}" defined twice`);
      return this.value(name);
    }
    const unique = this.fresh(name);
    this.initializers.set(unique, t);
    return this.value(unique);
  }

  /** Adds a node and returns its outputs. Empty-string inputs mark omitted optional inputs. */
  node(
    opType: string,
    inputs: readonly (Value | null)[],
    attrs: Record<string, AttrValue> = {},
    opts: NodeOptions = {},
  ): Value[] {
    const n = opts.outputs ?? 1;
    const base = opts.name ?? opType;
    const outNames = Array.from({ length: n }, (_, i) => this.fresh(n === 1 ? base : `${base}_out${i}`));
    const node: INodeProto = {
      opType,
      name: this.fresh(`${base}_node`),
      input: inputs.map((v) => (v ? v.name : '')),
      output: outNames,
      attribute: Object.entries(attrs).map(([k, val]) => attribute(k, val)),
    };
    if (opts.domain) {
      node.domain = opts.domain;
      this.domains.add(opts.domain);
    }
    this.nodes.push(node);
    return outNames.map((o) => this.value(o));
  }

  /** Single-output convenience form of node(). */
  op(
    opType: string,
    inputs: readonly (Value | null)[],
    attrs: Record<string, AttrValue> = {},
    opts: NodeOptions = {},
  ): Value {
    const [out] = this.node(opType, inputs, attrs, { ...opts, outputs: 1 });
    return out!;
  }

  get initializerCount(): number {
    return this.initializers.size;
  }

  /** Total bytes of all initializers (the stored weights). */
  get initializerBytes(): number {
    let n = 0;
    for (const t of this.initializers.values()) n += t.data.byteLength;
    return n;
  }

  initializerEntries(): IterableIterator<[string, HostTensor]> {
    return this.initializers.entries();
  }

  /**
   * The ModelProto. Initializers are returned separately from the graph's tensors so that the serializer can
   * choose inline or external storage without copying: `tensorProto(name, t)` builds one.
   */
  toModel(
    opts: ModelOptions = {},
    initializerProto: (name: string, t: HostTensor) => ITensorProto = inlineTensor,
  ): ModelProto {
    const opset = opts.opset ?? DEFAULT_OPSET;
    const opsetImport = [{ domain: '', version: opset }];
    for (const d of this.domains) opsetImport.push({ domain: d, version: 1 });
    return onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: opts.producer ?? 'padserve',
      docString: opts.docString ?? '',
      opsetImport,
      metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.graphName,
        node: this.nodes,
        input: this.inputs,
        output: this.outputs,
        initializer: [...this.initializers].map(([name, t]) => initializerProto(name, t)),
      },
    });
  }
}

export function inlineTensor(name: string, t: HostTensor): ITensorProto {
  return { name, dims: [...t.shape], dataType: ONNX_DTYPE[t.dtype], rawData: tensorBytes(t) };
}

function valueInfo(name: string, dtype: DType, shape: readonly Dim[]): IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[dtype],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function isTensor(v: AttrValue): v is HostTensor {
  return typeof v === 'object' && v !== null && 'dtype' in v && 'data' in v;
}

function attribute(name: string, v: AttrValue): IAttributeProto {
  if (typeof v === 'number') {
    return Number.isInteger(v)
      ? { name, type: AttributeType.INT, i: v }
      : { name, type: AttributeType.FLOAT, f: v };
  }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (isTensor(v)) return { name, type: AttributeType.TENSOR, t: inlineTensor(name, v) };
  if (!Array.isArray(v) && typeof v === 'object')
    return { name, type: AttributeType.FLOAT, f: (v as { float: number }).float };
  const arr = v as readonly (number | string)[];
  if (arr.every((x) => typeof x === 'string')) {
    return {
      name,
      type: AttributeType.STRINGS,
      strings: (arr as string[]).map((s) => new TextEncoder().encode(s)),
    };
  }
  return { name, type: AttributeType.INTS, ints: [...(arr as number[])] };
}
