/**
 * Server overhead: rows per second through HTTP at the saturating concurrency (small 256×256 JPEG uploads on
 * /classify; MNLI pairs on /glue/mnli) against the same model folder run in-process through onnxruntime
 * (ModelSession) at the batch size, and padded length, that the server formed under that load. The goal is
 * HTTP ≥ 0.9× direct. The HTTP side also decodes/resizes images or tokenises text; the direct side does not.
 */
import { directPoint } from './direct.js';
import { newReport } from './report.js';
import { ensureModel } from './repo.js';
import { withServer } from './run-server.js';
import { stamp } from './scenarios.js';
import { closedSweep } from './sweep.js';
import type { ServerTarget } from './server.js';
import type { LoadtestReport, Point, Series } from './types.js';
import { classifyRequests, glueRequestSpecs, primeOrThrow } from './workloads.js';
import {
  bestPoint,
  glueModel,
  IMAGE_MODEL,
  mainSpec,
  ratio,
  SATURATING,
  type CompareOptions,
} from './configs.js';

export const OVERHEAD_GOAL = 0.9;

export interface HttpSide {
  classify: Series;
  glue: Series;
}

export function saturatingConcurrencies(quick: boolean): number[] {
  return quick ? [SATURATING.quick] : [...SATURATING.full];
}

export async function overheadHttp(target: ServerTarget, o: CompareOptions): Promise<HttpSide> {
  const classify = await classifyRequests({ small: true });
  const glue = glueRequestSpecs({ tasks: ['mnli'] });
  const classifyRate = await primeOrThrow(target.baseUrl, classify);
  const glueRate = await primeOrThrow(target.baseUrl, glue, 2);
  const cs = saturatingConcurrencies(o.quick);
  return {
    classify: await closedSweep(
      target,
      'classify 256×256 JPEG, HTTP',
      classify,
      cs,
      o.timing,
      o.log,
      classifyRate,
    ),
    glue: await closedSweep(target, 'glue mnli, HTTP', glue, cs, o.timing, o.log, glueRate),
  };
}

function meanBatchOf(p: Point, model: string): number {
  return Math.max(1, Math.round(p.meanBatch?.[model] ?? 1));
}

/** Direct runs at the batch sizes the best HTTP points formed. */
export async function overheadDirect(
  http: HttpSide,
  o: CompareOptions,
): Promise<{ classify: Series; glue: Series }> {
  const seconds = o.timing.durationS;
  const c = bestPoint(http.classify);
  const g = bestPoint(http.glue);
  const resnetDir = await ensureModel({ family: 'resnet', variant: 'pad' }, o.log);
  const bertDir = await ensureModel({ family: 'bert', task: 'mnli', variant: 'pad' }, o.log);
  const cb = meanBatchOf(c, IMAGE_MODEL);
  const gb = meanBatchOf(g, glueModel('mnli'));
  const len = Math.max(8, Math.round(g.meanPaddedLength?.[glueModel('mnli')] ?? 64));
  const dc = await directPoint(resnetDir, { batch: cb, seconds });
  o.log(`  direct resnet50-pad b=${cb}: ${dc.rowsPerS?.toFixed(1)} rows/s`);
  const dg = await directPoint(bertDir, { batch: gb, seqLength: len, seconds });
  o.log(`  direct bert mnli b=${gb} len=${len}: ${dg.rowsPerS?.toFixed(1)} rows/s`);
  return {
    classify: {
      label: 'resnet50-pad, direct onnxruntime',
      target: `ModelSession.run batch ${cb}`,
      points: [dc],
    },
    glue: {
      label: 'bert mnli, direct onnxruntime',
      target: `ModelSession.run batch ${gb} × ${len} tokens`,
      points: [dg],
    },
  };
}

export function overheadSummary(
  report: LoadtestReport,
  http: HttpSide,
  direct: { classify: Series; glue: Series },
): void {
  const pairs: [string, Series, Series][] = [
    ['classify', http.classify, direct.classify],
    ['glue mnli', http.glue, direct.glue],
  ];
  for (const [what, h, d] of pairs) {
    const best = bestPoint(h);
    const r = ratio(best.throughputRps, d.points[0]?.rowsPerS);
    report.summary[`${what}: HTTP / direct throughput (c=${best.concurrency})`] = r;
    report.summary[`${what}: overhead goal ≥ ${OVERHEAD_GOAL}`] = Number.isNaN(r)
      ? 'n/a'
      : r >= OVERHEAD_GOAL
        ? 'met'
        : 'not met';
  }
}

export function addOverhead(
  report: LoadtestReport,
  http: HttpSide,
  direct: { classify: Series; glue: Series },
): void {
  report.series.push(
    ...[http.classify, direct.classify, http.glue, direct.glue].map((s) => ({ ...s, group: 'overhead' })),
  );
  overheadSummary(report, http, direct);
  report.notes.push(
    'Overhead: direct = ModelSession.run in this process at the mean batch size (and padded length) the server formed at its best concurrency, run after the server stopped; the HTTP side includes upload, decode/resize or tokenisation, queueing and the worker hop.',
  );
}

export async function compareOverhead(o: CompareOptions): Promise<LoadtestReport> {
  const report = newReport(
    o.name ?? `overhead-${stamp()}`,
    'padserve: server overhead (HTTP vs direct onnxruntime)',
    { quick: o.quick, ...o.timing },
  );
  const http = await withServer(mainSpec(['mnli'], true), o.log, (t) => overheadHttp(t, o));
  const direct = await overheadDirect(http, o);
  addOverhead(report, http, direct);
  return report;
}
