/**
 * `npm run loadtest -- <scenario> [options]`: load tests of padserve on this machine (loopback only), with
 * autocannon (closed loop) and a Poisson client (open loop). Results: bench/results/<name>.{json,md,svg}.
 * See docs/loadtest.md.
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { GlueTaskName } from '../src/preprocess/glue-tasks.js';
import { compareBatching } from './compare-batching.js';
import { compareModels } from './compare-models.js';
import { compareOverhead } from './compare-overhead.js';
import { compareProtocols, PROTOCOL_CONCURRENCIES } from './compare-protocols.js';
import type { CompareOptions } from './configs.js';
import { RESULTS_DIR, staleBuildWarning } from './paths.js';
import { useTinyModels } from './repo.js';
import type { Arrivals } from './random.js';
import { compareReports, compareTable, readLoadtestReport, writeLoadtestReport } from './report.js';
import { rateScenario, trafficScenario, type ScenarioOptions } from './scenarios.js';
import { connectTarget, startServer, stopOnSignal, type ServerTarget } from './server.js';
import { FULL_CONCURRENCIES, FULL_TIMING, QUICK_CONCURRENCIES, QUICK_TIMING } from './sweep.js';
import { LoadtestError } from './url.js';
import { DEFAULT_GLUE_TASKS, parseTasks } from './workloads.js';
import type { LoadtestReport } from './types.js';

export const USAGE = `usage: npm run loadtest -- <scenario> [options]
       npm run loadtest -- --compare A.json B.json

traffic scenarios (against --url, or a server started here):
  classify               multipart photo uploads (fixtures + generated 640×480/1920×1080 JPEG, 800×600 PNG, 512×512 WebP)
  glue                   sentence pairs of varied lengths for several GLUE tasks
  mixed                  classify and glue at the same time
  rate                   highest Poisson rate with p99 ≤ --factor × the unloaded p50 (--route classify|glue)
comparisons (each starts its own servers; repositories under .cache/bench/):
  batching               batching on vs off (max_batch_size 1) at each concurrency
  overhead               HTTP vs the same model run in-process through onnxruntime
  models                 PAD vs static vs fully dynamic ResNet-50 and BERT
  protocols              HTTP vs gRPC (--grpc) V2 inference, classify- and GLUE-equivalent (default --concurrency 1,16)

options:
  --url URL              a running server (loopback addresses only); default: start one on a free port
  --model-repository DIR repository of the server started here (default: models, where the server builds
                         the default models on first start; a named one is used as it is)
  --server-arg ARG       extra flag for that server, repeatable (--server-arg=--workers --server-arg=2)
  --quick                short lists and durations
  --concurrency LIST     closed-loop connections (default ${FULL_CONCURRENCIES.join(',')}; quick ${QUICK_CONCURRENCIES.join(',')})
  --duration S           measured seconds per point (default ${FULL_TIMING.durationS}; quick ${QUICK_TIMING.durationS})
  --warmup S             discarded seconds before each point (default ${FULL_TIMING.warmupS}; quick ${QUICK_TIMING.warmupS})
  --rate LIST            open loop at these rates (requests/s) instead of the sweep
  --arrivals KIND        poisson | constant | both (default poisson)
  --tasks LIST           GLUE tasks (default ${DEFAULT_GLUE_TASKS.join(',')})
  --model NAME           image model for /classify (default: the server's default)
  --route ROUTE          classify | glue, for rate (default classify)
  --factor F             latency bound factor for rate (default 3)
  --name NAME            result file name (default: scenario + time)
  --tiny                 comparisons on the tiny test fixture models (a smoke run: checks the pipeline, compares nothing)`;

const OPTIONS = {
  url: { type: 'string' },
  'model-repository': { type: 'string' },
  'server-arg': { type: 'string', multiple: true },
  quick: { type: 'boolean' },
  concurrency: { type: 'string' },
  duration: { type: 'string' },
  warmup: { type: 'string' },
  rate: { type: 'string' },
  arrivals: { type: 'string' },
  tasks: { type: 'string' },
  model: { type: 'string' },
  route: { type: 'string' },
  factor: { type: 'string' },
  name: { type: 'string' },
  tiny: { type: 'boolean' },
  compare: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export function numberList(raw: string, what: string, integer: boolean): number[] {
  const xs = raw.split(',').map((x) => Number(x.trim()));
  if (!xs.length || xs.some((x) => !Number.isFinite(x) || x <= 0 || (integer && !Number.isInteger(x)))) {
    throw new LoadtestError(
      `--${what}: expected comma-separated positive ${integer ? 'integers' : 'numbers'}, got "${raw}"`,
    );
  }
  return xs;
}

function positive(raw: string | undefined, what: string, fallback: number): number {
  if (raw === undefined) return fallback;
  const x = Number(raw);
  if (!Number.isFinite(x) || x <= 0)
    throw new LoadtestError(`--${what} must be a positive number, got "${raw}"`);
  return x;
}

function arrivalsOf(raw: string | undefined): Arrivals[] {
  if (raw === undefined || raw === 'poisson') return ['poisson'];
  if (raw === 'constant') return ['constant'];
  if (raw === 'both') return ['poisson', 'constant'];
  throw new LoadtestError(`--arrivals must be poisson, constant or both, got "${raw}"`);
}

type Values = ReturnType<typeof parse>['values'];

function parse(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new LoadtestError(`${(err as Error).message}\n\n${USAGE}`);
  }
}

export function scenarioOptions(v: Values, log: (l: string) => void): ScenarioOptions {
  const quick = v.quick ?? false;
  const base = quick ? QUICK_TIMING : FULL_TIMING;
  return {
    quick,
    concurrencies: v.concurrency
      ? numberList(v.concurrency, 'concurrency', true)
      : quick
        ? QUICK_CONCURRENCIES
        : FULL_CONCURRENCIES,
    timing: {
      durationS: positive(v.duration, 'duration', base.durationS),
      warmupS: v.warmup === '0' ? 0 : positive(v.warmup, 'warmup', base.warmupS),
    },
    rates: v.rate ? numberList(v.rate, 'rate', false) : [],
    arrivals: arrivalsOf(v.arrivals),
    tasks: v.tasks ? parseTasks(v.tasks) : ([...DEFAULT_GLUE_TASKS] as GlueTaskName[]),
    ...(v.model ? { model: v.model } : {}),
    ...(v.name ? { name: v.name } : {}),
    log,
  };
}

async function target(v: Values, scenario: string, log: (l: string) => void): Promise<ServerTarget> {
  if (v.url) return connectTarget(v.url);
  const repository = v['model-repository'] ?? 'models';
  const args = v['server-arg'] ?? [];
  const has = (flag: string) =>
    args.some((a) => a.startsWith(flag) || a.startsWith(flag.replace('--', '--no-')));
  const extra = [
    ...(has('--load-policy') ? [] : ['--load-policy', 'lazy']),
    ...(has('--log-level') ? [] : ['--log-level', 'warn']),
    // A repository named on the command line is taken as it is; the default one gets the default models.
    ...(v['model-repository'] && !has('--build-default-models') ? ['--no-build-default-models'] : []),
  ];
  log(`starting padserve (repository ${repository}) …`);
  const t = await startServer({
    repository,
    args: [...extra, ...args],
    logFile: join(RESULTS_DIR, 'logs', `${scenario}.log`),
  });
  log(`ready in ${t.readyS.toFixed(1)} s at ${t.baseUrl} (pid ${t.pid})`);
  return t;
}

async function runScenario(scenario: string, v: Values, log: (l: string) => void): Promise<LoadtestReport> {
  const o = scenarioOptions(v, log);
  if (['batching', 'overhead', 'models', 'protocols'].includes(scenario)) {
    if (v.url)
      throw new LoadtestError(
        `${scenario} starts its own servers (it needs several configurations): leave out --url`,
      );
    const c: CompareOptions = {
      quick: o.quick,
      concurrencies: o.concurrencies,
      timing: o.timing,
      log,
      ...(o.name ? { name: o.name } : {}),
    };
    useTinyModels(v.tiny ?? false);
    if (scenario === 'protocols')
      return compareProtocols({
        ...c,
        concurrencies: v.concurrency ? c.concurrencies : PROTOCOL_CONCURRENCIES,
      });
    if (scenario === 'batching') return compareBatching(c);
    if (scenario === 'overhead') return compareOverhead(c);
    return compareModels(c);
  }
  if (!['classify', 'glue', 'mixed', 'rate'].includes(scenario))
    throw new LoadtestError(`unknown scenario "${scenario}"\n\n${USAGE}`);
  const route = v.route ?? 'classify';
  if (route !== 'classify' && route !== 'glue')
    throw new LoadtestError(`--route must be classify or glue, got "${route}"`);
  const t = await target(v, scenario, log);
  const release = stopOnSignal(t);
  try {
    if (scenario === 'rate') return await rateScenario(route, t, o, positive(v.factor, 'factor', 3));
    return await trafficScenario(scenario as 'classify' | 'glue' | 'mixed', t, o);
  } finally {
    release();
    await t.stop();
  }
}

export async function main(argv: string[]): Promise<number> {
  const { values: v, positionals } = parse(argv);
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  if (v.compare) {
    if (positionals.length !== 2) throw new LoadtestError(`--compare takes two result files\n\n${USAGE}`);
    const [a, b] = positionals as [string, string];
    console.log(compareTable(compareReports(readLoadtestReport(a), readLoadtestReport(b)), ['A', 'B']));
    return 0;
  }
  const [scenario] = positionals;
  if (!scenario || positionals.length > 1) throw new LoadtestError(`expected one scenario\n\n${USAGE}`);
  const log = (l: string) => console.error(l);
  const stale = v.url ? null : staleBuildWarning();
  if (stale) log(`warning: ${stale}`);
  const report = await runScenario(scenario, v, log);
  const paths = writeLoadtestReport(report);
  console.log(`\n${paths.md}\n${paths.json}\n${paths.svgs.join('\n')}`);
  return 0;
}

const isMain = process.argv[1] && /loadtest[\\/]main\.(ts|js)$/.test(process.argv[1]);
if (isMain) {
  main(process.argv.slice(2)).then(
    (code) => (process.exitCode = code),
    (err: Error) => {
      if (err instanceof LoadtestError) {
        console.error(`loadtest: ${err.message}`);
        process.exitCode = 2;
      } else {
        console.error(err);
        process.exitCode = 1;
      }
    },
  );
}
