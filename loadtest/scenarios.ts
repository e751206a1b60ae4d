/**
 * The traffic scenarios against one server: `classify`, `glue`, `mixed` (closed-loop sweeps, or open-loop points
 * with `--rate`) and `rate` (the highest Poisson rate within 3× the unloaded latency).
 */
import type { GlueTaskName } from '../src/preprocess/glue-tasks.js';
import type { RequestSpec } from './closed.js';
import type { Arrivals } from './random.js';
import { maxRateUnderBound } from './rate-search.js';
import { newReport } from './report.js';
import type { ServerTarget } from './server.js';
import {
  closedSweep,
  mixedSweep,
  openDuration,
  openPoint,
  pointLine,
  type Log,
  type Timing,
} from './sweep.js';
import type { LoadtestReport, Series } from './types.js';
import { classifyRequests, describe, glueRequestSpecs, primeOrThrow } from './workloads.js';

export type Traffic = 'classify' | 'glue' | 'mixed';

export interface ScenarioOptions {
  quick: boolean;
  concurrencies: readonly number[];
  timing: Timing;
  /** Open-loop rates (requests/s); closed-loop sweep when empty. */
  rates: readonly number[];
  arrivals: readonly Arrivals[];
  tasks: readonly GlueTaskName[];
  /** Image model for /classify (default: the server's default). */
  model?: string;
  /** Result name (default: the scenario and a timestamp). */
  name?: string;
  log: Log;
}

export function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
}

export async function workload(
  kind: 'classify' | 'glue',
  o: Pick<ScenarioOptions, 'tasks' | 'model'>,
): Promise<RequestSpec[]> {
  return kind === 'classify' ? classifyRequests({ model: o.model }) : glueRequestSpecs({ tasks: o.tasks });
}

function settingsOf(o: ScenarioOptions, target: ServerTarget): Record<string, unknown> {
  return {
    url: target.baseUrl,
    serverStartedByLoadtest: target.pid !== null,
    quick: o.quick,
    ...(o.rates.length ? { rates: o.rates, arrivals: o.arrivals } : { concurrencies: o.concurrencies }),
    durationS: o.timing.durationS,
    warmupS: o.timing.warmupS,
    tasks: o.tasks,
  };
}

async function openSeries(
  target: ServerTarget,
  label: string,
  requests: readonly RequestSpec[],
  o: ScenarioOptions,
): Promise<Series[]> {
  const out: Series[] = [];
  for (const arrivals of o.arrivals) {
    const s: Series = { label: `${label} (${arrivals})`, target: describe(requests), points: [] };
    for (const rate of o.rates) {
      const p = await openPoint(target, requests, rate, arrivals, openDuration(o.timing, rate));
      s.points.push(p);
      o.log(pointLine(s.label, p));
    }
    out.push(s);
  }
  return out;
}

/** classify / glue / mixed: a sweep over concurrencies, or open-loop points at `rates`. */
export async function trafficScenario(
  kind: Traffic,
  target: ServerTarget,
  o: ScenarioOptions,
): Promise<LoadtestReport> {
  const report = newReport(
    o.name ?? `${kind}-${stamp()}`,
    `padserve load test: ${kind}`,
    settingsOf(o, target),
  );
  const kinds: ('classify' | 'glue')[] = kind === 'mixed' ? ['classify', 'glue'] : [kind];
  const workloads = await Promise.all(kinds.map(async (k) => ({ label: k, requests: await workload(k, o) })));
  const rates: number[] = [];
  for (const w of workloads) {
    o.log(`${w.label}: ${describe(w.requests)}; priming`);
    rates.push(await primeOrThrow(target.baseUrl, w.requests, w.label === 'glue' ? 2 : 16));
  }
  if (o.rates.length) {
    for (const w of workloads) report.series.push(...(await openSeries(target, w.label, w.requests, o)));
    if (kind === 'mixed')
      report.notes.push(
        'Open loop, mixed: the workloads ran one after the other (closed-loop mixed runs them together).',
      );
  } else if (kind === 'mixed') {
    report.series.push(
      ...(await mixedSweep(target, workloads, o.concurrencies, o.timing, o.log, Math.min(...rates))),
    );
    report.notes.push(
      'Mixed: classify and glue ran at the same time, each with the listed concurrency; server CPU, RSS and batch sizes are shared.',
    );
  } else {
    report.series.push(
      await closedSweep(target, kind, workloads[0]!.requests, o.concurrencies, o.timing, o.log, rates[0]),
    );
  }
  for (const s of report.series) {
    const best = s.points.reduce((a, p) => (p.throughputRps > a.throughputRps ? p : a), s.points[0]!);
    report.summary[`${s.label}: peak throughput/s`] = Number(best.throughputRps.toFixed(2));
  }
  return report;
}

/** The highest Poisson rate whose p99 stays within `factor` × the unloaded (c=1) p50. */
export async function rateScenario(
  kind: 'classify' | 'glue',
  target: ServerTarget,
  o: ScenarioOptions,
  factor = 3,
): Promise<LoadtestReport> {
  const report = newReport(
    o.name ?? `rate-${kind}-${stamp()}`,
    `padserve load test: max Poisson rate (${kind})`,
    { ...settingsOf(o, target), factor },
  );
  const requests = await workload(kind, o);
  const rateEstimate = await primeOrThrow(target.baseUrl, requests, kind === 'glue' ? 2 : 16);
  o.log(`rate search (${kind}): bound = ${factor} × unloaded p50`);
  const r = await maxRateUnderBound(
    target,
    {
      requests,
      factor,
      probeS: o.timing.durationS,
      maxProbes: o.quick ? 5 : 8,
      timing: o.timing,
      rateEstimate,
    },
    o.log,
  );
  report.series.push({ label: `${kind} unloaded`, target: describe(requests), points: [r.unloaded] });
  report.series.push({
    label: `${kind} probes (poisson)`,
    target: describe(requests),
    points: [...r.probes].sort((a, b) => (a.targetRate ?? 0) - (b.targetRate ?? 0)),
  });
  if (r.atMax.constant)
    report.series.push({
      label: `${kind} at max rate (constant)`,
      target: describe(requests),
      points: [r.atMax.constant],
    });
  report.summary[`${kind}: unloaded p50 ms`] = Number(r.unloaded.latencyMs.p50.toFixed(2));
  report.summary[`${kind}: p99 bound ms`] = Number(r.boundMs.toFixed(2));
  report.summary[`${kind}: max Poisson rate/s within bound`] = Number(r.maxRate.toFixed(2));
  if (r.atMax.poisson && r.atMax.constant) {
    report.summary[`${kind}: p99 poisson / constant at that rate`] = Number(
      (r.atMax.poisson.latencyMs.p99 / r.atMax.constant.latencyMs.p99).toFixed(2),
    );
  }
  report.notes.push(
    `A probe passes when p99 ≤ ${factor} × the unloaded p50, no errors or 429s, and ≥ 98% of arrivals answered; rates grow ×1.6 then bisect. Probes of ${o.timing.durationS} s hold few samples: their p99 is close to the maximum.`,
  );
  return report;
}
