/** The result format of every load test (JSON under bench/results/, read back by `--compare`). */
import type { MachineInfo } from '../src/bench/measure.js';

export interface LatencyMs {
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  mean: number;
  max: number;
}

/** One measured load point (warmup excluded). */
export interface Point {
  mode: 'closed' | 'open' | 'direct';
  /** Closed loop: connections kept busy. */
  concurrency?: number;
  /** Open loop: target arrival rate (requests/s) and the arrival process. */
  targetRate?: number;
  arrivals?: 'poisson' | 'constant';
  durationS: number;
  /** Requests sent per second (closed loop: what the connections managed to send). */
  offeredRps: number;
  /** Successful (2xx) responses per second. */
  throughputRps: number;
  /** Rows (images / sentence pairs) per second for the direct onnxruntime baseline; = throughput otherwise. */
  rowsPerS?: number;
  requests: number;
  ok: number;
  /** Transport errors and timeouts. */
  errors: number;
  status429: number;
  /** Responses by status code (2xx included). */
  status: Record<string, number>;
  latencyMs: LatencyMs;
  /** Mean rows per batch per model, from the server's batch-size histogram (null without /metrics). */
  meanBatch: Record<string, number> | null;
  /** Text models: mean padded sequence length per model (server metrics). */
  meanPaddedLength?: Record<string, number>;
  /** Server process CPU over the point, in % of one core (200% = both cores of a 2-core machine). */
  serverCpuPct: number | null;
  serverRssMb: number | null;
  /** This load generator's own CPU (it shares the machine). */
  clientCpuPct: number;
  /** Direct baseline: rows per run (and sequence length for text models). */
  batchSize?: number;
  seqLength?: number;
}

export interface Series {
  /** Configuration label, e.g. "batching on", "resnet50-static", "classify". */
  label: string;
  /** What was requested, e.g. "POST /classify (9 images)". */
  target: string;
  /** Chart group: reports with several groups get one chart per group (`<name>-<group>.svg`). */
  group?: string;
  points: Point[];
}

export interface LoadtestReport {
  kind: 'padserve-loadtest';
  formatVersion: 1;
  name: string;
  title: string;
  machine: MachineInfo;
  settings: Record<string, unknown>;
  series: Series[];
  /** Derived ratios and verdicts ("batching on / off at c=16: 2.1×"). */
  summary: Record<string, number | string>;
  notes: string[];
}
