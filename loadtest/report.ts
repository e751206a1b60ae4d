/**
 * Turning load points into files: the Markdown table, the SVG chart, the JSON, and the ratio table of
 * `--compare a.json b.json`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  formatNumber,
  machineInfo,
  machineMarkdown,
  markdownTable,
  writeReport,
} from '../src/bench/measure.js';
import { RESULTS_DIR } from './paths.js';
import { throughputLatencySvg, type ChartSeries } from './svg.js';
import type { LoadtestReport, Point, Series } from './types.js';

/** A point's load as a short tag: "c=16", "20/s poisson", "b=8". */
export function loadTag(p: Point): string {
  if (p.mode === 'closed') return `c=${p.concurrency ?? '?'}`;
  if (p.mode === 'open') return `${formatNumber(p.targetRate ?? NaN)}/s ${p.arrivals ?? ''}`.trim();
  return `b=${p.batchSize ?? '?'}`;
}

export function meanBatchText(mb: Record<string, number> | null): string {
  if (!mb) return 'n/a';
  const entries = Object.entries(mb);
  if (!entries.length) return '–';
  if (entries.length === 1) return formatNumber(entries[0]![1]);
  return entries.map(([m, v]) => `${m} ${formatNumber(v)}`).join('; ');
}

const opt = (x: number | null | undefined) =>
  x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x;

export const POINT_HEADER = [
  'configuration',
  'load',
  'offered/s',
  'throughput/s',
  'p50 ms',
  'p90 ms',
  'p95 ms',
  'p99 ms',
  'errors',
  '429',
  'mean batch',
  'server CPU %',
  'RSS MB',
  'client CPU %',
];

export function pointRow(label: string, p: Point): (string | number)[] {
  const l = p.latencyMs;
  return [
    label,
    loadTag(p),
    p.mode === 'direct' ? 'n/a' : p.offeredRps,
    p.rowsPerS ?? p.throughputRps,
    l.p50,
    l.p90,
    l.p95,
    l.p99,
    String(p.errors),
    String(p.status429),
    meanBatchText(p.meanBatch),
    opt(p.serverCpuPct),
    opt(p.serverRssMb),
    p.clientCpuPct,
  ];
}

export function seriesTable(series: readonly Series[]): string {
  return markdownTable(
    POINT_HEADER,
    series.flatMap((s) => s.points.map((p) => pointRow(s.label, p))),
  );
}

export function chartSeries(series: readonly Series[]): ChartSeries[] {
  return series
    .filter((s) => s.points.some((p) => p.mode !== 'direct'))
    .map((s) => ({
      label: s.label,
      points: s.points
        .filter((p) => p.mode !== 'direct')
        .map((p) => ({ x: p.throughputRps, y: p.latencyMs.p99, tag: loadTag(p) })),
    }));
}

export function reportMarkdown(r: LoadtestReport): string {
  const lines = [
    `# ${r.title}`,
    '',
    machineMarkdown(r.machine),
    '',
    `Settings: ${Object.entries(r.settings)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(', ')}`,
    '',
  ];
  if (Object.keys(r.summary).length) {
    lines.push(
      markdownTable(
        ['summary', 'value'],
        Object.entries(r.summary).map(([k, v]) => [k, v]),
      ),
      '',
    );
  }
  lines.push(seriesTable(r.series), '');
  lines.push(
    'Latency: 2xx responses only, warmup excluded; throughput counts 2xx responses. Server CPU is % of one core.',
  );
  for (const n of r.notes) lines.push('', `- ${n}`);
  return lines.join('\n');
}

export function newReport(name: string, title: string, settings: Record<string, unknown>): LoadtestReport {
  return {
    kind: 'padserve-loadtest',
    formatVersion: 1,
    name,
    title,
    machine: machineInfo(),
    settings,
    series: [],
    summary: {},
    notes: [],
  };
}

function writeChart(path: string, series: readonly Series[], title: string): string {
  writeFileSync(
    path,
    throughputLatencySvg(chartSeries(series), {
      title,
      xLabel: 'throughput (successful requests/s)',
      yLabel: 'p99 latency (ms)',
    }),
  );
  return path;
}

export interface ReportFiles {
  json: string;
  md: string;
  /** `<name>.svg` (every series), then `<name>-<group>.svg` per group when the series are grouped. */
  svgs: string[];
}

/** Writes `<name>.json`, `<name>.md` and the SVG chart(s) under bench/results/ (or `dir`). */
export function writeLoadtestReport(r: LoadtestReport, dir = RESULTS_DIR): ReportFiles {
  const paths = writeReport(dir, r.name, r, reportMarkdown(r));
  const svgs = [writeChart(join(dir, `${r.name}.svg`), r.series, r.title)];
  const groups = [...new Set(r.series.map((s) => s.group).filter((g): g is string => !!g))];
  for (const g of groups) {
    const series = r.series.filter((s) => s.group === g);
    if (chartSeries(series).length)
      svgs.push(writeChart(join(dir, `${r.name}-${g}.svg`), series, `${r.title}: ${g}`));
  }
  return { ...paths, svgs };
}

export function readLoadtestReport(path: string): LoadtestReport {
  const r = JSON.parse(readFileSync(path, 'utf8')) as LoadtestReport;
  if (r.kind !== 'padserve-loadtest' || !Array.isArray(r.series))
    throw new Error(`${path} is not a padserve load-test result`);
  return r;
}

export interface CompareRow {
  label: string;
  load: string;
  throughputRatio: number;
  p50Ratio: number;
  p99Ratio: number;
  a: Point;
  b: Point;
}

/** Points of `b` matched to points of `a` by configuration label and load; ratios are b / a. */
export function compareReports(a: LoadtestReport, b: LoadtestReport): CompareRow[] {
  const index = new Map<string, Point>();
  for (const s of a.series) for (const p of s.points) index.set(`${s.label}\u0000${loadTag(p)}`, p);
  const rows: CompareRow[] = [];
  for (const s of b.series) {
    for (const p of s.points) {
      const q = index.get(`${s.label}\u0000${loadTag(p)}`);
      if (!q) continue;
      rows.push({
        label: s.label,
        load: loadTag(p),
        throughputRatio: (p.rowsPerS ?? p.throughputRps) / (q.rowsPerS ?? q.throughputRps),
        p50Ratio: p.latencyMs.p50 / q.latencyMs.p50,
        p99Ratio: p.latencyMs.p99 / q.latencyMs.p99,
        a: q,
        b: p,
      });
    }
  }
  return rows;
}

export function compareTable(rows: readonly CompareRow[], names: [string, string] = ['a', 'b']): string {
  if (!rows.length) return '(no points in common: compare results of the same scenario)';
  const [na, nb] = names;
  return markdownTable(
    [
      'configuration',
      'load',
      `throughput/s ${na}`,
      `throughput/s ${nb}`,
      `throughput ${nb}/${na}`,
      `p50 ${nb}/${na}`,
      `p99 ms ${na}`,
      `p99 ms ${nb}`,
      `p99 ${nb}/${na}`,
    ],
    rows.map((r) => [
      r.label,
      r.load,
      r.a.rowsPerS ?? r.a.throughputRps,
      r.b.rowsPerS ?? r.b.throughputRps,
      `${formatNumber(r.throughputRatio)}×`,
      `${formatNumber(r.p50Ratio)}×`,
      r.a.latencyMs.p99,
      r.b.latencyMs.p99,
      `${formatNumber(r.p99Ratio)}×`,
    ]),
  );
}
