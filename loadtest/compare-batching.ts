/**
 * Batching on vs off: the same models and requests through two servers, one with the default batch limits and
 * one with `max_batch_size: 1`, swept over the same concurrencies (classify: the photo set; glue: MNLI pairs).
 */
import { newReport } from './report.js';
import { withServer } from './run-server.js';
import { stamp } from './scenarios.js';
import { closedSweep } from './sweep.js';
import type { ServerTarget } from './server.js';
import type { LoadtestReport, Series } from './types.js';
import { classifyRequests, glueRequestSpecs, primeOrThrow } from './workloads.js';
import { mainSpec, pointAt, ratio, type CompareOptions } from './configs.js';
import type { GlueTaskName } from '../src/preprocess/glue-tasks.js';

/** classify and glue sweeps on one server, labelled with its configuration. */
export async function classifyAndGlueSweeps(
  target: ServerTarget,
  config: string,
  o: CompareOptions,
  tasks: readonly GlueTaskName[] = ['mnli'],
): Promise<Series[]> {
  const classify = await classifyRequests();
  const glue = glueRequestSpecs({ tasks });
  const glueLabel = `glue ${tasks.join('+')}`;
  const classifyRate = await primeOrThrow(target.baseUrl, classify);
  const glueRate = await primeOrThrow(target.baseUrl, glue, 2);
  o.log(`${config}: classify`);
  const a = await closedSweep(
    target,
    `classify, ${config}`,
    classify,
    o.concurrencies,
    o.timing,
    o.log,
    classifyRate,
  );
  o.log(`${config}: ${glueLabel}`);
  const b = await closedSweep(
    target,
    `${glueLabel}, ${config}`,
    glue,
    o.concurrencies,
    o.timing,
    o.log,
    glueRate,
  );
  return [a, b];
}

/** Adds "throughput on/off at c=N" and "p99 on/off" entries for every concurrency both series measured. */
export function batchingSummary(report: LoadtestReport, on: Series, off: Series, what: string): void {
  for (const p of on.points) {
    const q = pointAt(off, p.concurrency ?? -1);
    if (!q) continue;
    report.summary[`${what} c=${p.concurrency}: throughput on/off`] = ratio(p.throughputRps, q.throughputRps);
    report.summary[`${what} c=${p.concurrency}: p99 on/off`] = ratio(p.latencyMs.p99, q.latencyMs.p99);
  }
}

export function addBatchingSeries(report: LoadtestReport, on: Series[], off: Series[]): void {
  report.series.push(...[on[0]!, off[0]!, on[1]!, off[1]!].map((s) => ({ ...s, group: 'batching' })));
  batchingSummary(report, on[0]!, off[0]!, 'classify');
  batchingSummary(report, on[1]!, off[1]!, on[1]!.label.replace(/, batching on$/, ''));
  report.notes.push(
    'Batching off = the same models with `max_batch_size: 1` in serving.json; everything else equal.',
  );
}

export async function compareBatching(o: CompareOptions): Promise<LoadtestReport> {
  const report = newReport(o.name ?? `batching-${stamp()}`, 'padserve: batching on vs off', {
    quick: o.quick,
    concurrencies: o.concurrencies,
    ...o.timing,
  });
  const on = await withServer(mainSpec(['mnli'], true), o.log, (t) =>
    classifyAndGlueSweeps(t, 'batching on', o),
  );
  const off = await withServer(mainSpec(['mnli'], false), o.log, (t) =>
    classifyAndGlueSweeps(t, 'batching off', o),
  );
  addBatchingSeries(report, on, off);
  return report;
}
