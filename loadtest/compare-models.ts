/**
 * PAD vs static vs fully dynamic, through the whole server: ResNet-50 (PAD, static convolutions, DY-Conv
 * everywhere) on /classify and BERT (PAD-MoE, dense FFN, full MoE) on /glue/mnli, each model alone in its own
 * server, at concurrency 1 (latency) and at the saturating concurrency (throughput).
 */
import { newReport } from './report.js';
import { withServer, type ServerSpec } from './run-server.js';
import { stamp } from './scenarios.js';
import { closedSweep } from './sweep.js';
import type { RequestSpec } from './closed.js';
import type { LoadtestReport, Series } from './types.js';
import { classifyRequests, glueRequestSpecs, primeOrThrow } from './workloads.js';
import {
  bertVariantSpec,
  pointAt,
  ratio,
  resnetVariantSpec,
  SATURATING,
  type CompareOptions,
} from './configs.js';
import type { BertVariant, ResnetVariant } from './repo.js';
import type { ServerTarget } from './server.js';

export const RESNET_VARIANTS: readonly ResnetVariant[] = ['pad', 'static', 'dyconv', 'pad-bucketed'];
export const BERT_VARIANTS: readonly BertVariant[] = ['pad', 'dense', 'moe'];

export function modelConcurrencies(o: CompareOptions): number[] {
  return o.quick ? [1, SATURATING.quick] : [1, ...SATURATING.full];
}

export async function variantSeries(
  target: ServerTarget,
  label: string,
  requests: readonly RequestSpec[],
  o: CompareOptions,
): Promise<Series> {
  const rate = await primeOrThrow(target.baseUrl, requests, 2);
  return closedSweep(target, label, requests, modelConcurrencies(o), o.timing, o.log, rate);
}

/** Ratios of each variant to the first (PAD) one: throughput at the highest concurrency, p50 at c=1. */
export function variantSummary(report: LoadtestReport, family: string, bySeries: readonly Series[]): void {
  const pad = bySeries[0];
  if (!pad) return;
  const top = Math.max(...pad.points.map((p) => p.concurrency ?? 0));
  for (const s of bySeries) {
    if (s === pad) continue;
    report.summary[`${family} ${s.label} / PAD throughput (c=${top})`] = ratio(
      pointAt(s, top)?.throughputRps,
      pointAt(pad, top)?.throughputRps,
    );
    report.summary[`${family} ${s.label} / PAD p50 latency (c=1)`] = ratio(
      pointAt(s, 1)?.latencyMs.p50,
      pointAt(pad, 1)?.latencyMs.p50,
    );
  }
}

async function familySeries<V extends string>(
  variants: readonly V[],
  spec: (v: V) => ServerSpec,
  requests: () => Promise<RequestSpec[]>,
  o: CompareOptions,
): Promise<Series[]> {
  const out: Series[] = [];
  for (const v of variants) {
    const s = spec(v);
    out.push(await withServer(s, o.log, async (t) => variantSeries(t, s.label, await requests(), o)));
  }
  return out;
}

export async function compareModels(
  o: CompareOptions,
  families: readonly ('resnet' | 'bert')[] = ['resnet', 'bert'],
): Promise<LoadtestReport> {
  const report = newReport(o.name ?? `models-${stamp()}`, 'padserve: PAD vs static vs fully dynamic models', {
    quick: o.quick,
    concurrencies: modelConcurrencies(o),
    ...o.timing,
  });
  if (families.includes('resnet')) {
    const series = await familySeries(RESNET_VARIANTS, resnetVariantSpec, () => classifyRequests(), o);
    report.series.push(...series);
    variantSummary(report, 'ResNet-50', series);
  }
  if (families.includes('bert')) {
    const series = await familySeries(
      BERT_VARIANTS,
      (v) => bertVariantSpec(v),
      async () => glueRequestSpecs({ tasks: ['mnli'] }),
      o,
    );
    report.series.push(...series);
    variantSummary(report, 'BERT', series);
  }
  report.notes.push(
    'Each model alone in its own server (same serving settings); synthetic seeded weights, so accuracy is not compared here.',
  );
  return report;
}
