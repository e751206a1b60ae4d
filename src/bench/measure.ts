/**
 * Measurement helpers shared by the benchmarks: latency statistics, process memory, machine description, report
 * files. Benchmarks print and write numbers; tests never assert them.
 */
import { cpus, totalmem, type as osType, release } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';

/** A benchmark failure shown as one line: src/cli/main.ts prints errors marked `userFacing` without a stack. */
export class BenchError extends Error {
  override name = 'BenchError';
  readonly userFacing = true;
}

export interface LatencyStats {
  n: number;
  meanMs: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  minMs: number;
}

function percentile(sortedMs: readonly number[], p: number): number {
  if (!sortedMs.length) return NaN;
  const idx = Math.min(sortedMs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedMs.length) - 1));
  return sortedMs[idx]!;
}

export function latencyStats(samplesMs: readonly number[]): LatencyStats {
  const s = [...samplesMs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return {
    n: s.length,
    meanMs: mean,
    p50Ms: percentile(s, 50),
    p90Ms: percentile(s, 90),
    p99Ms: percentile(s, 99),
    minMs: s[0] ?? NaN,
  };
}

export function rssMb(): number {
  return process.memoryUsage.rss() / 2 ** 20;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  node: string;
  onnxruntime: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  const c = cpus();
  return {
    cpu: c[0]?.model ?? 'unknown',
    cores: c.length,
    memoryGb: Math.round(totalmem() / 2 ** 30),
    os: `${osType()} ${release()}`,
    node: process.version,
    onnxruntime: ort.env.versions.node ?? 'unknown',
    date: new Date().toISOString(),
  };
}

export function machineMarkdown(m: MachineInfo): string {
  return `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GiB; ${m.os}; Node ${m.node}; onnxruntime-node ${m.onnxruntime}; ${m.date}`;
}

/** Markdown table from rows of cells. */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): string {
  const fmt = (c: string | number) => (typeof c === 'number' ? formatNumber(c) : c);
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(fmt).join(' | ')} |`),
  ].join('\n');
}

export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** Writes `<name>.json` and `<name>.md` under the results folder (git-ignored) and returns their paths. */
export function writeReport(
  dir: string,
  name: string,
  json: unknown,
  markdown: string,
): { json: string; md: string } {
  mkdirSync(dir, { recursive: true });
  const paths = { json: join(dir, `${name}.json`), md: join(dir, `${name}.md`) };
  writeFileSync(paths.json, `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(paths.md, `${markdown}\n`);
  return paths;
}

export const RESULTS_DIR = 'bench/results';

export interface LatencySummary extends LatencyStats {
  p95Ms: number;
  maxMs: number;
}

/** latencyStats plus p95 and the maximum (the load tests report p50/p90/p95/p99). */
export function latencySummary(samplesMs: readonly number[]): LatencySummary {
  const s = [...samplesMs].sort((a, b) => a - b);
  return { ...latencyStats(s), p95Ms: percentile(s, 95), maxMs: s[s.length - 1] ?? NaN };
}

/** A measured ratio against the target. */
export interface TargetCheck {
  what: string;
  value: number;
  /** As written in the report, e.g. '≥ 0.75'. */
  target: string;
  ok: (v: number) => boolean;
}

/**
 * The "ratio | measured | target | met/missed" table (empty when nothing could be measured) and the JSON form of
 * the checks (without their predicates). Non-finite ratios (a model missing from the run) are dropped.
 */
export function targetReport(checks: readonly TargetCheck[]): {
  markdown: string[];
  json: Omit<TargetCheck, 'ok'>[];
} {
  const measured = checks.filter((t) => Number.isFinite(t.value));
  const rows = measured.map((t) => [t.what, t.value.toFixed(2), t.target, t.ok(t.value) ? 'met' : 'missed']);
  return {
    markdown: rows.length ? [markdownTable(['ratio', 'measured', 'target', ''], rows), ''] : [],
    json: measured.map(({ ok: _ok, ...t }) => t),
  };
}
