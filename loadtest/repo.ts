/**
 * Model folders and model repositories for the comparisons. Model folders are built once with `padserve synth`
 * (or taken from the project's `models/` repository when the server already built that default model) and cached
 * under `.cache/bench/models/`. Each server configuration gets its own small repository under
 * `.cache/bench/repos/<config>/` holding only its models, as hard links (no copies of the weights) plus the
 * `serving.json` of the configuration.
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { BENCH_CACHE, FIXTURES_DIR, PADSERVE_BIN, REPO_ROOT } from './paths.js';
import { LoadtestError } from './url.js';

/** 'pad-bucketed': the PAD model with bucket graphs (`--buckets 1,2,4,8`), against the default per-sample form. */
export type ResnetVariant = 'pad' | 'static' | 'dyconv' | 'pad-bucketed';
export type BertVariant = 'pad' | 'dense' | 'moe';

export type ModelSource =
  { family: 'resnet'; variant: ResnetVariant } | { family: 'bert'; task: string; variant: BertVariant };

export interface RepoModel {
  name: string;
  source: ModelSource;
  serving: Record<string, unknown>;
}

export function sourceKey(s: ModelSource): string {
  return s.family === 'resnet' ? `resnet50-${s.variant}` : `bert-${s.task}-${s.variant}`;
}

/** Where the server's own default build keeps this model, when it is one of the defaults. */
function projectDefault(s: ModelSource): string | null {
  if (s.variant !== 'pad') return null;
  const name = s.family === 'resnet' ? 'resnet50-pad' : `bert-pad-${s.task}`;
  const dir = join(REPO_ROOT, 'models', name, '1');
  return existsSync(join(dir, 'config.json')) && existsSync(join(dir, 'model.onnx')) ? dir : null;
}

/** The synthesised variant of a source and whether it is the bucketed form. */
function resnetForm(v: ResnetVariant): { variant: string; bucketed: boolean } {
  return v === 'pad-bucketed' ? { variant: 'pad', bucketed: true } : { variant: v, bucketed: false };
}

export function synthArgs(s: ModelSource, out: string): string[] {
  if (s.family === 'bert') return ['synth', 'bert', '--task', s.task, '--variant', s.variant, '--out', out];
  const { variant, bucketed } = resnetForm(s.variant);
  return [
    'synth',
    'resnet50',
    '--variant',
    variant,
    '--out',
    out,
    ...(bucketed ? ['--buckets', '1,2,4,8'] : []),
  ];
}

function runPadserve(args: string[], log: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    log(`  $ padserve ${args.join(' ')}`);
    const child = spawn(process.execPath, [PADSERVE_BIN, ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new LoadtestError(`padserve ${args.join(' ')} failed (exit ${code}):\n${err}`)),
    );
  });
}

let tinyModels = false;

/**
 * Smoke mode: every ResNet variant is the tiny test fixture `resnet-tiny` and every BERT variant `bert-tiny`,
 * converted with `padserve convert` (seconds instead of minutes). Checks the pipeline; its ratios mean nothing.
 */
export function useTinyModels(on: boolean): void {
  tinyModels = on;
}

export function convertArgs(s: ModelSource, out: string): string[] {
  const fixtures = join(FIXTURES_DIR, 'padnet');
  const src =
    s.family === 'resnet' ? join(fixtures, 'resnet-tiny', 'model.safetensors') : join(fixtures, 'bert-tiny');
  return ['convert', src, '--out', out];
}

/**
 * Where a source is cached: the folders the model benchmarks (`padserve bench resnet|bert`) synthesise into
 * (`.cache/bench/resnet50-<variant>`, `.cache/bench/bert-<variant>` for MNLI; same command, same default seed),
 * so that the weights are built once for both; other GLUE tasks under `.cache/bench/models/`.
 */
export function cachePath(s: ModelSource): string {
  if (tinyModels) return join(BENCH_CACHE, 'models-tiny', sourceKey(s));
  if (s.family === 'resnet') return join(BENCH_CACHE, `resnet50-${s.variant}`);
  return s.task === 'mnli'
    ? join(BENCH_CACHE, `bert-${s.variant}`)
    : join(BENCH_CACHE, 'models', sourceKey(s));
}

/** A usable model folder: a card of the right variant, synthetic with the default seed, and its graph. */
function usable(dir: string, s: ModelSource): boolean {
  try {
    const card = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as {
      variant?: string;
      source?: { kind?: string; seed?: number };
      graph?: { file?: string; buckets?: { batch: number }[] };
    };
    if (!existsSync(join(dir, card.graph?.file ?? 'model.onnx'))) return false;
    if (tinyModels) return true;
    const want = s.family === 'resnet' ? resnetForm(s.variant) : { variant: s.variant, bucketed: false };
    // Dynamic ResNets are per sample (bucket 1) unless bucketed; older folders (no buckets) are rebuilt.
    const buckets = card.graph?.buckets?.map((b) => b.batch).join(',');
    const formOk =
      s.family !== 'resnet' || want.variant === 'static' || buckets === (want.bucketed ? '1,2,4,8' : '1');
    return (
      formOk && card.variant === want.variant && card.source?.kind === 'synthetic' && card.source.seed === 0
    );
  } catch {
    return false;
  }
}

/** The model folder of a source: cached, the project's default, or built now with `padserve synth`. */
export async function ensureModel(s: ModelSource, log: (line: string) => void): Promise<string> {
  const dir = cachePath(s);
  if (usable(dir, s)) return dir;
  const fromProject = tinyModels ? null : projectDefault(s);
  if (fromProject) return fromProject;
  const tmp = `${dir}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  const t0 = performance.now();
  await runPadserve(tinyModels ? convertArgs(s, tmp) : synthArgs(s, tmp), log);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  log(`  built ${sourceKey(s)} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return dir;
}

/** Hard-links (or copies, across file systems) every file of `from` into `to`. */
export function linkTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    if (statSync(src).isDirectory()) linkTree(src, dst);
    else {
      try {
        linkSync(src, dst);
      } catch {
        copyFileSync(src, dst);
      }
    }
  }
}

/** (Re)creates `.cache/bench/repos/<config>/` with the given models as version 1. Returns its path. */
export async function buildRepository(
  config: string,
  models: readonly RepoModel[],
  log: (line: string) => void,
): Promise<string> {
  const root = join(BENCH_CACHE, 'repos', config);
  rmSync(root, { recursive: true, force: true });
  for (const m of models) {
    const src = await ensureModel(m.source, log);
    const modelDir = join(root, m.name);
    linkTree(src, join(modelDir, '1'));
    writeFileSync(join(modelDir, 'serving.json'), `${JSON.stringify(m.serving, null, 2)}\n`);
  }
  return root;
}

/** Serving settings of the comparisons: the default models' limits, power-of-two warmup (keeps startup short). */
export function resnetServing(maxBatch: number): Record<string, unknown> {
  return {
    max_batch_size: maxBatch,
    max_queue_delay_ms: 2,
    max_queue_size: 64,
    instances: 1,
    warmup: 'powers-of-two',
  };
}

/**
 * BERT: the default models' limits, but no startup warmup: warming every (bucket, batch) shape of a full-size
 * BERT takes minutes on 2 cores; each load point's own warmup runs the shapes it needs instead.
 */
export function bertServing(task: string, maxBatch: number): Record<string, unknown> {
  return {
    max_batch_size: maxBatch,
    max_batch_tokens: 4096,
    max_queue_delay_ms: 2,
    max_queue_size: 256,
    tasks: [task],
    warmup: 'none',
  };
}

export function resnetModel(name: string, variant: ResnetVariant, maxBatch = 8): RepoModel {
  return { name, source: { family: 'resnet', variant }, serving: resnetServing(maxBatch) };
}

export function bertModel(name: string, task: string, variant: BertVariant, maxBatch = 32): RepoModel {
  return { name, source: { family: 'bert', task, variant }, serving: bertServing(task, maxBatch) };
}

/** Flags for every comparison server: this repository only, no default-model build, quiet logs. */
export const BENCH_SERVER_ARGS = ['--no-build-default-models', '--log-level', 'warn'];
