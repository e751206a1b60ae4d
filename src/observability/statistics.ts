/**
 * Per model version inference statistics in the shape of Triton's statistics extension
 * (docs/protocol/extension_statistics.md in triton-inference-server/server): request counts and cumulative
 * durations (nanoseconds) for success / fail / queue / compute_input / compute_infer / compute_output, and per
 * executed batch size the execution count and compute time. Fed by the V2 pipeline (requests, on any transport)
 * and the batcher (executions, whatever route queued the rows). Kept in memory since the process started.
 */

export interface DurationStat {
  count: number;
  ns: number;
}

interface BatchStat {
  count: number;
  inferNs: number;
}

interface VersionStats {
  lastInference: number;
  inferenceCount: number;
  executionCount: number;
  success: DurationStat;
  fail: DurationStat;
  queue: DurationStat;
  computeInput: DurationStat;
  computeInfer: DurationStat;
  computeOutput: DurationStat;
  batches: Map<number, BatchStat>;
}

const zero = (): DurationStat => ({ count: 0, ns: 0 });
const ns = (ms: number) => Math.round(ms * 1e6);
const add = (d: DurationStat, ms: number) => {
  d.count++;
  d.ns += ns(ms);
};

export class InferenceStatistics {
  private readonly byVersion = new Map<string, VersionStats>();

  private get(model: string, version: number): VersionStats {
    const key = `${model}\u0000${version}`;
    let s = this.byVersion.get(key);
    if (!s) {
      s = {
        lastInference: 0,
        inferenceCount: 0,
        executionCount: 0,
        success: zero(),
        fail: zero(),
        queue: zero(),
        computeInput: zero(),
        computeInfer: zero(),
        computeOutput: zero(),
        batches: new Map(),
      };
      this.byVersion.set(key, s);
    }
    return s;
  }

  /** A V2 request that succeeded: `rows` inferences, its phases in milliseconds. */
  success(
    model: string,
    version: number,
    rows: number,
    totalMs: number,
    phases: { queueMs: number; inputMs: number; inferMs: number; outputMs: number },
  ): void {
    const s = this.get(model, version);
    s.lastInference = Date.now();
    s.inferenceCount += rows;
    add(s.success, totalMs);
    add(s.queue, phases.queueMs);
    add(s.computeInput, phases.inputMs);
    add(s.computeInfer, phases.inferMs);
    add(s.computeOutput, phases.outputMs);
  }

  /** A V2 request that failed after its model was resolved. */
  failure(model: string, version: number, totalMs: number): void {
    add(this.get(model, version).fail, totalMs);
  }

  /** An executed batch (warmup excluded), from the batcher. */
  execution(model: string, version: number, size: number, inferMs: number): void {
    const s = this.get(model, version);
    s.executionCount++;
    const b = s.batches.get(size) ?? { count: 0, inferNs: 0 };
    b.count++;
    b.inferNs += ns(inferMs);
    s.batches.set(size, b);
  }

  /** Triton's `$model_stat` for a model version (zeros when it never ran). */
  modelStat(model: string, version: number): Record<string, unknown> {
    const s = this.get(model, version);
    const empty = zero();
    return {
      name: model,
      version: String(version),
      last_inference: s.lastInference,
      inference_count: s.inferenceCount,
      execution_count: s.executionCount,
      inference_stats: {
        success: { ...s.success },
        fail: { ...s.fail },
        queue: { ...s.queue },
        compute_input: { ...s.computeInput },
        compute_infer: { ...s.computeInfer },
        compute_output: { ...s.computeOutput },
        cache_hit: { ...empty },
        cache_miss: { ...empty },
      },
      response_stats: {},
      batch_stats: [...s.batches.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([size, b]) => ({
          batch_size: size,
          compute_input: { count: b.count, ns: 0 },
          compute_infer: { count: b.count, ns: b.inferNs },
          compute_output: { count: b.count, ns: 0 },
        })),
      memory_usage: [],
    };
  }
}
