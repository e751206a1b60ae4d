/**
 * Where onnxruntime placed a session's nodes, from its profiler output (`enableProfiling`; the JSON file a
 * session writes when profiling ends). The file is a list of trace events; each executed node gives one event with
 * `cat: "Node"`, `name: "<node name>_kernel_time"` and `args.op_name` / `args.provider` (e.g.
 * "CUDAExecutionProvider", "CPUExecutionProvider"), as onnxruntime 1.30 writes it (checked on a CPU profile:
 * test/unit/placement.test.ts). Pure: parsing and the summary the server logs and shows in V2 model metadata.
 */
import type { ModelCard } from '../model/card.js';
import { numel, type HostTensor } from '../tensor.js';

/** When a load runs the placement check: on CUDA sessions (default), on every session, or never. */
export type PlacementCheck = 'cuda' | 'always' | 'off';

export function wantsPlacementCheck(mode: PlacementCheck | undefined, device: 'cpu' | 'cuda'): boolean {
  return mode === 'always' || ((mode ?? 'cuda') === 'cuda' && device === 'cuda');
}

export const CPU_PROVIDER = 'CPUExecutionProvider';
export const CUDA_PROVIDER = 'CUDAExecutionProvider';

export interface NodePlacement {
  name: string;
  op: string;
  provider: string;
}

export interface PlacementSummary {
  /** Distinct nodes that ran in the profiled run. */
  nodes: number;
  /** Nodes per execution provider. */
  providers: Record<string, number>;
  /** Copies between devices onnxruntime inserted (MemcpyToHost / MemcpyFromHost nodes, counted in `nodes`). */
  copies: number;
  /** The nodes that ran on the CPU provider, by op type (count), e.g. { Shape: 12, Gather: 4 }. */
  cpuOps: Record<string, number>;
}

const KERNEL_SUFFIX = '_kernel_time';
/** Op types named in the fallback warning (most frequent first); the rest are counted. */
const WARNING_OP_TYPES = 10;

/** The executed nodes of a profile (one entry per node, the first event of each). */
export function parseProfile(profile: unknown): NodePlacement[] {
  if (!Array.isArray(profile)) throw new Error('onnxruntime profile: expected a JSON array of events');
  const seen = new Map<string, NodePlacement>();
  for (const e of profile as {
    cat?: unknown;
    name?: unknown;
    args?: { op_name?: unknown; provider?: unknown };
  }[]) {
    if (e?.cat !== 'Node' || typeof e.name !== 'string' || !e.name.endsWith(KERNEL_SUFFIX)) continue;
    const provider = e.args?.provider;
    const op = e.args?.op_name;
    if (typeof provider !== 'string' || typeof op !== 'string') continue;
    const name = e.name.slice(0, -KERNEL_SUFFIX.length);
    if (!seen.has(name)) seen.set(name, { name, op, provider });
  }
  return [...seen.values()];
}

export function summarizePlacement(nodes: readonly NodePlacement[]): PlacementSummary {
  const providers: Record<string, number> = {};
  const cpuOps: Record<string, number> = {};
  let copies = 0;
  for (const n of nodes) {
    providers[n.provider] = (providers[n.provider] ?? 0) + 1;
    if (n.provider === CPU_PROVIDER) cpuOps[n.op] = (cpuOps[n.op] ?? 0) + 1;
    if (n.op === 'MemcpyToHost' || n.op === 'MemcpyFromHost') copies++;
  }
  return { nodes: nodes.length, providers, copies, cpuOps };
}

/** One log line: "412 nodes: CUDAExecutionProvider 380, CPUExecutionProvider 32 (12 device copies)". */
export function placementLine(s: PlacementSummary): string {
  const parts = Object.entries(s.providers)
    .sort((a, b) => b[1] - a[1])
    .map(([p, n]) => `${p} ${n}`);
  return `${s.nodes} nodes: ${parts.join(', ') || 'none ran'}${s.copies ? ` (${s.copies} device copies)` : ''}`;
}

/**
 * A warning when a model meant for a GPU ran most of its nodes on the CPU (more than half), naming the CPU
 * nodes' op types; null otherwise. onnxruntime keeps small shape computations (Shape, shape Gathers and Concats)
 * on the CPU on purpose, so a few CPU nodes are normal.
 */
export function placementWarning(s: PlacementSummary, device: 'cpu' | 'cuda'): string | null {
  if (device !== 'cuda' || !s.nodes) return null;
  const cpu = s.providers[CPU_PROVIDER] ?? 0;
  if (cpu * 2 <= s.nodes) return null;
  const ops = Object.entries(s.cpuOps)
    .sort((a, b) => b[1] - a[1])
    .map(([op, n]) => `${op} ×${n}`);
  const named = ops.slice(0, WARNING_OP_TYPES).join(', ');
  const more = ops.length > WARNING_OP_TYPES ? ` and ${ops.length - WARNING_OP_TYPES} more op types` : '';
  return `${cpu} of ${s.nodes} nodes fell back to the CPU on a cuda session: ${named}${more}`;
}

/**
 * Inputs for one probe run of a model: batch 1, symbolic sizes from the card (image size for images, 8 tokens
 * for text); int64 inputs are zeros (token id 0) except `attention_mask`, which is all ones.
 */
export function probeFeeds(card: ModelCard): Record<string, HostTensor> {
  const feeds: Record<string, HostTensor> = {};
  for (const spec of card.inputs) {
    const shape = spec.shape.map((d, i) => {
      if (typeof d === 'number') return d;
      if (i === 0) return 1;
      if (card.family === 'bert') return 8;
      return i === 1 ? 3 : card.preprocess.size;
    });
    const n = numel(shape);
    if (spec.dtype === 'float32') feeds[spec.name] = { dtype: 'float32', shape, data: new Float32Array(n) };
    else if (spec.dtype === 'int64')
      feeds[spec.name] = {
        dtype: 'int64',
        shape,
        data: new BigInt64Array(n).fill(spec.name === 'attention_mask' ? 1n : 0n),
      };
    else throw new Error(`probe run: input ${spec.name} has unsupported dtype ${spec.dtype}`);
  }
  return feeds;
}
