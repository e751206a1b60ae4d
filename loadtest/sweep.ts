/**
 * Load shapes over one server: closed-loop concurrency sweeps (each point after its own warmup), the mixed
 * scenario (two closed loops at once), and open-loop points at a target rate.
 */
import { runClosedWindow, type RequestSpec } from './closed.js';
import { runOpen } from './open.js';
import { buildPoint, measurePoints, ServerProbe, type ServerSide } from './point.js';
import { settle } from './prometheus.js';
import type { Arrivals } from './random.js';
import type { ServerTarget } from './server.js';
import type { Point, Series } from './types.js';
import { describe } from './workloads.js';

export interface Timing {
  /** Measured seconds per point (the minimum when minOk is set). */
  durationS: number;
  /** Discarded seconds before each point (same load). */
  warmupS: number;
  /**
   * Slow models: lengthen a point so that about this many requests complete (estimated from the best
   * throughput seen so far), up to maxDurationS.
   */
  minOk?: number;
  maxDurationS?: number;
}

export const FULL_CONCURRENCIES = [1, 2, 4, 8, 16, 32, 64];
export const QUICK_CONCURRENCIES = [1, 4, 16];
export const FULL_TIMING: Timing = { durationS: 10, warmupS: 2, minOk: 50, maxDurationS: 60 };
export const QUICK_TIMING: Timing = { durationS: 3, warmupS: 1, minOk: 10, maxDurationS: 12 };

/** The measured duration of a point at `concurrency` given an estimate of the server's rate (requests/s). */
export function pointDuration(t: Timing, concurrency: number, rateEstimate: number | undefined): number {
  if (!t.minOk || !rateEstimate || !(rateEstimate > 0)) return t.durationS;
  const wanted = (t.minOk + concurrency) / rateEstimate;
  return Math.min(Math.max(t.durationS, wanted), Math.max(t.durationS, t.maxDurationS ?? t.durationS));
}

export type Log = (line: string) => void;

export function pointLine(label: string, p: Point): string {
  const load = p.mode === 'closed' ? `c=${p.concurrency}` : `${p.targetRate?.toFixed(1)}/s ${p.arrivals}`;
  const batch =
    p.meanBatch && Object.keys(p.meanBatch).length
      ? ` batch ${Object.values(p.meanBatch)
          .map((b) => b.toFixed(2))
          .join('/')}`
      : '';
  const cpu = p.serverCpuPct === null ? '' : ` cpu ${p.serverCpuPct.toFixed(0)}%`;
  return `  ${label} ${load}: ${p.throughputRps.toFixed(1)} req/s, p50 ${p.latencyMs.p50.toFixed(1)} ms, p99 ${p.latencyMs.p99.toFixed(1)} ms, ${p.errors} errors, ${p.status429}×429${batch}${cpu}`;
}

/** An open-loop point's duration: long enough for about minOk arrivals at `rate`, within [durationS, max]. */
export function openDuration(t: Timing, rate: number): number {
  const wanted = (t.minOk ?? 0) / rate;
  return Math.min(Math.max(t.durationS, wanted), Math.max(t.durationS, t.maxDurationS ?? t.durationS));
}

/**
 * Warmup of a point: at least timing.warmupS, and at least one round trip of the whole pipeline (c / rate, up to
 * maxDurationS) so that the window opens in steady state.
 */
export function warmupDuration(t: Timing, concurrency: number, rateEstimate: number | undefined): number {
  const fill = rateEstimate && rateEstimate > 0 ? concurrency / rateEstimate : 0;
  return Math.max(t.warmupS, Math.min(fill, t.maxDurationS ?? t.durationS));
}

/** Closed-loop workloads at `concurrency` connections each, measured over one window after a warmup. */
export async function closedWindowPoints(
  target: ServerTarget,
  requestSets: readonly (readonly RequestSpec[])[],
  concurrency: number,
  timing: Timing,
  rateEstimate?: number,
): Promise<Point[]> {
  await settle(target.baseUrl);
  const durationS = pointDuration(timing, concurrency, rateEstimate);
  const probe = new ServerProbe(target);
  let server: ServerSide | null = null;
  const raws = await runClosedWindow(
    requestSets.map((requests) => ({ baseUrl: target.baseUrl, requests, connections: concurrency })),
    {
      warmupS: warmupDuration(timing, concurrency, rateEstimate),
      durationS,
      onOpen: () => probe.begin(),
      onClose: async () => {
        server = await probe.end();
      },
    },
  );
  return raws.map((raw) =>
    buildPoint(
      raw,
      { mode: 'closed', concurrency, durationS },
      server ?? { meanBatch: null, cpuPct: null, rssMb: null },
    ),
  );
}

export async function closedPoint(
  target: ServerTarget,
  requests: readonly RequestSpec[],
  concurrency: number,
  timing: Timing,
  rateEstimate?: number,
): Promise<Point> {
  const [p] = await closedWindowPoints(target, [requests], concurrency, timing, rateEstimate);
  return p!;
}

/** Points at each concurrency; `rateEstimate` (requests/s, e.g. from priming) sizes the first points. */
export async function closedSweep(
  target: ServerTarget,
  label: string,
  requests: readonly RequestSpec[],
  concurrencies: readonly number[],
  timing: Timing,
  log: Log,
  rateEstimate?: number,
): Promise<Series> {
  const series: Series = { label, target: describe(requests), points: [] };
  let rate = rateEstimate;
  for (const c of concurrencies) {
    const p = await closedPoint(target, requests, c, timing, rate);
    series.points.push(p);
    log(pointLine(label, p));
    if (p.throughputRps > (rate ?? 0)) rate = p.throughputRps;
  }
  return series;
}

/** Two closed loops at once (classify and glue): `concurrency` connections each. */
export async function mixedSweep(
  target: ServerTarget,
  workloads: readonly { label: string; requests: readonly RequestSpec[] }[],
  concurrencies: readonly number[],
  timing: Timing,
  log: Log,
  rateEstimate?: number,
): Promise<Series[]> {
  const series: Series[] = workloads.map((w) => ({
    label: w.label,
    target: describe(w.requests),
    points: [],
  }));
  for (const c of concurrencies) {
    const points = await closedWindowPoints(
      target,
      workloads.map((w) => w.requests),
      c,
      timing,
      rateEstimate,
    );
    points.forEach((p, i) => {
      series[i]!.points.push(p);
      log(pointLine(series[i]!.label, p));
    });
  }
  return series;
}

export async function openPoint(
  target: ServerTarget,
  requests: readonly RequestSpec[],
  ratePerS: number,
  arrivals: Arrivals,
  durationS: number,
  seed = 7,
): Promise<Point> {
  await settle(target.baseUrl);
  const [p] = await measurePoints(
    target,
    [{ mode: 'open', targetRate: ratePerS, arrivals, durationS }],
    async () => [await runOpen({ baseUrl: target.baseUrl, requests, ratePerS, arrivals, durationS, seed })],
  );
  return p!;
}
