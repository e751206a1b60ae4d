/**
 * The highest Poisson arrival rate a server sustains within a latency bound (MLPerf's server scenario): the bound
 * is `factor` × the unloaded batch-1 latency (p50 at concurrency 1). A probe passes when p99 ≤ bound, nothing
 * failed or was refused (429), and at least 98% of the arrivals were answered within the run. The search grows
 * the rate ×1.6 until a probe fails (or shrinks ÷2 until one passes), then bisects geometrically.
 */
import type { RequestSpec } from './closed.js';
import type { Arrivals } from './random.js';
import type { ServerTarget } from './server.js';
import { closedPoint, openDuration, openPoint, pointLine, type Log, type Timing } from './sweep.js';
import type { Point } from './types.js';

export interface SearchResult {
  /** Highest passing rate (0 when none passed). */
  rate: number;
  /** Lowest failing rate (Infinity when none failed). */
  failedAt: number;
  probes: { rate: number; pass: boolean }[];
}

/** Generic search over a monotone pass/fail probe. */
export async function searchRate(
  probe: (rate: number) => Promise<boolean>,
  start: number,
  maxProbes: number,
  precision = 0.1,
): Promise<SearchResult> {
  let lo = 0;
  let hi = Infinity;
  let rate = start;
  const probes: { rate: number; pass: boolean }[] = [];
  while (probes.length < maxProbes) {
    const pass = await probe(rate);
    probes.push({ rate, pass });
    if (pass) lo = Math.max(lo, rate);
    else hi = Math.min(hi, rate);
    if (hi === Infinity) rate = rate * 1.6;
    else if (lo === 0) rate = rate / 2;
    else {
      if (hi / lo <= 1 + precision) break;
      rate = Math.sqrt(lo * hi);
    }
  }
  return { rate: lo, failedAt: hi, probes };
}

export function probePasses(p: Point, boundMs: number): boolean {
  const answered = p.ok / Math.max(1, p.requests);
  return p.errors === 0 && p.status429 === 0 && answered >= 0.98 && p.latencyMs.p99 <= boundMs;
}

export interface RateSearchOutcome {
  unloaded: Point;
  boundMs: number;
  maxRate: number;
  probes: Point[];
  /** At the found rate: the same arrivals as Poisson and evenly spaced (Poisson p99 is typically 2–3× higher). */
  atMax: { poisson: Point | null; constant: Point | null };
}

export interface RateSearchOptions {
  requests: readonly RequestSpec[];
  factor: number;
  /** Minimum probe duration (lengthened to about timing.minOk answers, up to timing.maxDurationS). */
  probeS: number;
  /** Unloaded rate estimate (requests/s) from priming. */
  rateEstimate?: number;
  maxProbes: number;
  timing: Timing;
  arrivals?: Arrivals;
}

/** Long enough for about minOk arrivals at `rate`, within [probeS, maxDurationS]. */
export function probeDuration(o: Pick<RateSearchOptions, 'probeS' | 'timing'>, rate: number): number {
  return openDuration({ ...o.timing, durationS: o.probeS }, rate);
}

export async function maxRateUnderBound(
  target: ServerTarget,
  o: RateSearchOptions,
  log: Log,
): Promise<RateSearchOutcome> {
  const unloaded = await closedPoint(target, o.requests, 1, o.timing, o.rateEstimate);
  const boundMs = o.factor * unloaded.latencyMs.p50;
  log(`  unloaded (c=1): p50 ${unloaded.latencyMs.p50.toFixed(1)} ms → p99 bound ${boundMs.toFixed(1)} ms`);
  const probes: Point[] = [];
  const byRate = new Map<number, Point>();
  const start = 0.5 * unloaded.throughputRps;
  const result = await searchRate(
    async (rate) => {
      const p = await openPoint(
        target,
        o.requests,
        rate,
        o.arrivals ?? 'poisson',
        probeDuration(o, rate),
        probes.length + 1,
      );
      probes.push(p);
      byRate.set(rate, p);
      const pass = probePasses(p, boundMs);
      log(`${pointLine('probe', p)} → ${pass ? 'pass' : 'fail'}`);
      return pass;
    },
    start,
    o.maxProbes,
  );
  const poisson = byRate.get(result.rate) ?? null;
  const constant =
    result.rate > 0
      ? await openPoint(target, o.requests, result.rate, 'constant', probeDuration(o, result.rate))
      : null;
  if (constant) log(pointLine('constant arrivals', constant));
  return { unloaded, boundMs, maxRate: result.rate, probes, atMax: { poisson, constant } };
}
