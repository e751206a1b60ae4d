/**
 * `npm run bench`: the quick versions of every comparison plus the model benchmarks, within a time budget
 * (default 5 minutes on 2 cores, not counting a first-time model build), written as one small report:
 * docs/bench/REPORT.md by default (the committed one; the model benchmarks write docs/bench/resnet.md and
 * bert.md next to it) and bench/results/bench-<time>.{json,md,svg}.
 *
 * Servers: "batching on" (PAD ResNet-50 + PAD BERT mnli/sst2) carries the traffic sweeps, the mixed point, the
 * HTTP side of the overhead comparison, the PAD side of the model comparison and the rate search; "batching off"
 * the same models with max batch 1; one server per other model variant. Phases run in priority order and the
 * rest is skipped (and said so) once the budget is spent.
 */
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { addBatchingSeries, classifyAndGlueSweeps } from './compare-batching.js';
import {
  BERT_VARIANTS,
  modelConcurrencies,
  RESNET_VARIANTS,
  variantSeries,
  variantSummary,
} from './compare-models.js';
import { addOverhead, overheadDirect, saturatingConcurrencies, type HttpSide } from './compare-overhead.js';
import {
  bertVariantSpec,
  mainSpec,
  pointAt,
  ratio,
  resnetVariantSpec,
  type CompareOptions,
} from './configs.js';
import { runModelBenches, type ModelBenchResult } from './model-benches.js';
import { REPO_ROOT, RESULTS_DIR, staleBuildWarning } from './paths.js';
import { ensureModel, useTinyModels, type ModelSource } from './repo.js';
import { newReport, writeLoadtestReport } from './report.js';
import { benchReportMarkdown, type PhaseTime } from './bench-report.js';
import { maxRateUnderBound } from './rate-search.js';
import { withServer } from './run-server.js';
import { stamp } from './scenarios.js';
import {
  closedSweep,
  FULL_CONCURRENCIES,
  FULL_TIMING,
  mixedSweep,
  QUICK_CONCURRENCIES,
  QUICK_TIMING,
} from './sweep.js';
import type { LoadtestReport, Series } from './types.js';
import { LoadtestError } from './url.js';
import { classifyRequests, glueRequestSpecs } from './workloads.js';
import type { ServerTarget } from './server.js';
import type { RequestSpec } from './closed.js';
import type { GlueTaskName } from '../src/preprocess/glue-tasks.js';

/** GLUE tasks of the traffic sweeps: MNLI only in the quick run (one full-size BERT per server on 2 cores). */
export function glueTasks(quick: boolean): GlueTaskName[] {
  return quick ? ['mnli'] : ['mnli', 'sst2'];
}

class Budget {
  readonly phases: PhaseTime[] = [];
  private readonly t0 = performance.now();
  constructor(readonly seconds: number) {}

  elapsed(): number {
    return (performance.now() - this.t0) / 1000;
  }

  /** Runs `fn` unless the budget is spent; records its time either way. */
  async phase<T>(name: string, fn: () => Promise<T>, log: (l: string) => void): Promise<T | null> {
    if (this.elapsed() > this.seconds) {
      this.phases.push({ name, seconds: 0, skipped: `budget of ${this.seconds} s spent` });
      log(`skipping ${name}: budget spent`);
      return null;
    }
    log(`\n== ${name} (${this.elapsed().toFixed(0)} s elapsed)`);
    const t = performance.now();
    try {
      return await fn();
    } finally {
      this.phases.push({ name, seconds: (performance.now() - t) / 1000 });
    }
  }
}

function allSources(quick: boolean): ModelSource[] {
  return [
    ...RESNET_VARIANTS.map((variant) => ({ family: 'resnet' as const, variant })),
    ...BERT_VARIANTS.map((variant) => ({ family: 'bert' as const, task: 'mnli', variant })),
    ...glueTasks(quick)
      .filter((t) => t !== 'mnli')
      .map((task) => ({ family: 'bert' as const, task, variant: 'pad' as const })),
  ];
}

interface MainResults {
  traffic: Series[];
  batchingOn: Series[];
  pad: { resnet: Series; bert: Series };
  overheadHttp: HttpSide;
}

function subset(s: Series, label: string, concurrencies: readonly number[]): Series {
  return {
    label,
    target: s.target,
    points: s.points.filter((p) => concurrencies.includes(p.concurrency ?? 0)),
  };
}

async function rateSearch(
  target: ServerTarget,
  o: CompareOptions,
  report: LoadtestReport,
  requests: readonly RequestSpec[],
  rateEstimate: number,
): Promise<void> {
  const r = await maxRateUnderBound(
    target,
    {
      requests,
      factor: 3,
      probeS: o.timing.durationS,
      maxProbes: o.quick ? 4 : 8,
      timing: o.timing,
      rateEstimate,
    },
    o.log,
  );
  report.series.push({
    label: 'rate probes (poisson)',
    group: 'rate',
    target: 'POST /classify',
    points: [...r.probes].sort((a, b) => (a.targetRate ?? 0) - (b.targetRate ?? 0)),
  });
  if (r.atMax.constant)
    report.series.push({
      label: 'at max rate (constant)',
      group: 'rate',
      target: 'POST /classify',
      points: [r.atMax.constant],
    });
  report.summary['classify: unloaded p50 ms'] = Number(r.unloaded.latencyMs.p50.toFixed(1));
  report.summary['classify: max Poisson rate/s with p99 ≤ 3× unloaded p50'] = Number(r.maxRate.toFixed(2));
  if (r.atMax.poisson && r.atMax.constant)
    report.summary['classify: p99 Poisson / constant at that rate'] = Number(
      (r.atMax.poisson.latencyMs.p99 / r.atMax.constant.latencyMs.p99).toFixed(2),
    );
}

/** Everything measured on the "batching on" server. */
async function onMainServer(
  target: ServerTarget,
  o: CompareOptions,
  report: LoadtestReport,
  budget: Budget,
): Promise<MainResults> {
  const tasks = glueTasks(o.quick);
  const batchingOn = await classifyAndGlueSweeps(target, 'batching on', o, tasks);
  const [classify, glue] = [await classifyRequests(), glueRequestSpecs({ tasks })];
  const rate = (s: Series) => Math.max(...s.points.map((p) => p.throughputRps));
  o.log('mixed (classify + glue at once)');
  const mixed = await mixedSweep(
    target,
    [
      { label: 'mixed: classify', requests: classify },
      { label: 'mixed: glue', requests: glue },
    ],
    [o.quick ? 8 : 16],
    o.timing,
    o.log,
    Math.min(rate(batchingOn[0]!), rate(batchingOn[1]!)),
  );
  const modelCs = modelConcurrencies(o);
  const saturating = saturatingConcurrencies(o.quick);
  let bertPad: Series;
  if (tasks.length === 1 && tasks[0] === 'mnli') bertPad = subset(batchingOn[1]!, 'bert-pad-mnli', modelCs);
  else {
    o.log('PAD BERT, mnli only (model comparison, overhead)');
    bertPad = await variantSeries(target, 'bert-pad-mnli', glueRequestSpecs({ tasks: ['mnli'] }), o);
  }
  o.log('small images (overhead)');
  const small = await classifyRequests({ small: true });
  const smallSeries = await closedSweep(
    target,
    'classify 256×256 JPEG, HTTP',
    small,
    saturating,
    o.timing,
    o.log,
    rate(batchingOn[0]!),
  );
  await budget.phase(
    'rate search (classify, Poisson, p99 ≤ 3× unloaded p50)',
    () => rateSearch(target, o, report, classify, rate(batchingOn[0]!)),
    o.log,
  );
  return {
    traffic: mixed,
    batchingOn,
    pad: { resnet: subset(batchingOn[0]!, 'resnet50-pad', modelCs), bert: bertPad },
    overheadHttp: { classify: smallSeries, glue: subset(bertPad, 'glue mnli, HTTP', saturating) },
  };
}

async function variants(
  o: CompareOptions,
  budget: Budget,
  pad: MainResults['pad'],
  report: LoadtestReport,
): Promise<void> {
  const resnet: Series[] = [pad.resnet];
  const bert: Series[] = [pad.bert];
  for (const v of RESNET_VARIANTS.filter((x) => x !== 'pad')) {
    const spec = resnetVariantSpec(v);
    const s = await budget.phase(
      `model ${spec.label}`,
      () => withServer(spec, o.log, async (t) => variantSeries(t, spec.label, await classifyRequests(), o)),
      o.log,
    );
    if (s) resnet.push(s);
  }
  for (const v of BERT_VARIANTS.filter((x) => x !== 'pad')) {
    const spec = bertVariantSpec(v);
    const s = await budget.phase(
      `model ${spec.label}`,
      () =>
        withServer(spec, o.log, (t) =>
          variantSeries(t, spec.label, glueRequestSpecs({ tasks: ['mnli'] }), o),
        ),
      o.log,
    );
    if (s) bert.push(s);
  }
  report.series.push(...[...resnet, ...bert].map((s) => ({ ...s, group: 'models' })));
  variantSummary(report, 'ResNet-50', resnet);
  // The bucketed PAD graphs against the default per-sample form of the same model, side by side in this run.
  const bucketed = resnet.find((s) => s.label === 'resnet50-pad-bucketed');
  if (bucketed) {
    const top = Math.max(...pad.resnet.points.map((p) => p.concurrency ?? 0));
    report.summary[`classify c=${top}: bucketed / per-sample PAD throughput`] = ratio(
      pointAt(bucketed, top)?.throughputRps,
      pointAt(pad.resnet, top)?.throughputRps,
    );
    report.summary['classify c=1: bucketed / per-sample PAD p50 latency'] = ratio(
      pointAt(bucketed, 1)?.latencyMs.p50,
      pointAt(pad.resnet, 1)?.latencyMs.p50,
    );
  }
  variantSummary(report, 'BERT', bert);
}

export interface BenchOptions {
  quick: boolean;
  budgetS: number;
  reportPath: string;
  tiny: boolean;
  skipModelBenches: boolean;
}

export async function benchAll(
  b: BenchOptions,
  log: (l: string) => void,
): Promise<{ report: LoadtestReport; md: string }> {
  useTinyModels(b.tiny);
  const stale = staleBuildWarning();
  if (stale) log(`warning: ${stale}`);
  const o: CompareOptions = {
    quick: b.quick,
    concurrencies: b.quick ? QUICK_CONCURRENCIES : FULL_CONCURRENCIES,
    timing: b.quick ? QUICK_TIMING : FULL_TIMING,
    log,
  };
  const tasks = glueTasks(b.quick);
  const report = newReport(`bench-${stamp()}`, 'padserve benchmark report', {
    quick: b.quick,
    concurrencies: o.concurrencies,
    ...o.timing,
    glueTasks: tasks,
    budgetS: b.budgetS,
    tinyModels: b.tiny,
  });
  if (stale) report.notes.push(`Warning: ${stale}.`);
  const prep = new Budget(Infinity);
  await prep.phase(
    'model folders (cached after the first run)',
    async () => {
      for (const s of allSources(b.quick)) await ensureModel(s, log);
    },
    log,
  );
  const budget = new Budget(b.budgetS);
  const main = await budget.phase(
    'server "batching on": sweeps, mixed, PAD models, overhead (HTTP), rate',
    () => withServer(mainSpec(tasks, true), log, (t) => onMainServer(t, o, report, budget)),
    log,
  );
  if (!main) throw new LoadtestError('the main server phase did not run');
  report.series.push(...main.traffic.map((s) => ({ ...s, group: 'mixed' })));
  const direct = await budget.phase(
    'overhead: direct onnxruntime',
    () => overheadDirect(main.overheadHttp, o),
    log,
  );
  if (direct) addOverhead(report, main.overheadHttp, direct);
  const off = await budget.phase(
    'server "batching off"',
    () => withServer(mainSpec(tasks, false), log, (t) => classifyAndGlueSweeps(t, 'batching off', o, tasks)),
    log,
  );
  if (off) addBatchingSeries(report, main.batchingOn, off);
  else report.series.push(...main.batchingOn.map((s) => ({ ...s, group: 'batching' })));
  await variants(o, budget, main.pad, report);
  // The model benchmarks always run (they are other modules' reports); their time shows in the phase table.
  const always = new Budget(Infinity);
  const modelBenches: ModelBenchResult[] = b.skipModelBenches
    ? []
    : ((await always.phase(
        'model benchmarks (padserve bench resnet|bert)',
        () => runModelBenches(b.quick, log),
        log,
      )) ?? []);
  if (b.tiny)
    report.notes.unshift(
      'SMOKE RUN with the tiny fixture models (every variant is the same tiny model): the numbers check the pipeline, they compare nothing.',
    );
  const top = pointAt(main.batchingOn[0], 16);
  if (top) report.summary['classify c=16: server CPU %'] = Number((top.serverCpuPct ?? NaN).toFixed(0));
  const phases = [...prep.phases, ...budget.phases, ...always.phases];
  const paths = writeLoadtestReport(report);
  const md = benchReportMarkdown(report, {
    phases,
    modelBenches,
    budgetS: b.budgetS,
    totalS: budget.elapsed(),
    files: paths,
    reportPath: b.reportPath,
  });
  mkdirSync(dirname(b.reportPath), { recursive: true });
  writeFileSync(b.reportPath, md);
  log(`\n${b.reportPath}\n${paths.md}\n${paths.svgs.join('\n')}`);
  return { report, md };
}

const USAGE = `usage: npm run bench [-- --full] [--budget S] [--report PATH] [--tiny] [--no-model-benches]

  --full              full sweeps and durations (tens of minutes) instead of the quick ones
  --budget S          stop starting new phases after S seconds (default 300, full 3600)
  --report PATH       report file (default docs/bench/REPORT.md, the committed one, next to the model
                      benchmarks' docs/bench/resnet.md and bert.md; with --tiny bench/results/REPORT.md)
  --tiny              smoke run with the tiny fixture models (checks the pipeline; numbers compare nothing)
  --no-model-benches  skip padserve bench resnet|bert`;

async function cli(argv: string[]): Promise<void> {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      full: { type: 'boolean' },
      budget: { type: 'string' },
      report: { type: 'string' },
      tiny: { type: 'boolean' },
      'no-model-benches': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (v.help) return console.log(USAGE);
  const quick = !v.full;
  const budgetS = v.budget ? Number(v.budget) : quick ? 300 : 3600;
  if (!(budgetS > 0)) throw new LoadtestError(`--budget must be a positive number of seconds\n\n${USAGE}`);
  await benchAll(
    {
      quick,
      budgetS,
      reportPath: resolve(
        v.report ?? (v.tiny ? join(RESULTS_DIR, 'REPORT.md') : join(REPO_ROOT, 'docs', 'bench', 'REPORT.md')),
      ),
      tiny: v.tiny ?? false,
      skipModelBenches: v['no-model-benches'] ?? false,
    },
    (l) => console.error(l),
  );
}

if (process.argv[1] && /loadtest[\\/]bench-all\.(ts|js)$/.test(process.argv[1])) {
  cli(process.argv.slice(2)).catch((err: Error) => {
    console.error(err instanceof LoadtestError ? `bench: ${err.message}` : err);
    process.exitCode = err instanceof LoadtestError ? 2 : 1;
  });
}
