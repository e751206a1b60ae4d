/**
 * `padserve bench resnet` (`npm run bench:resnet`): full-size ResNet-50 as static (M = 0), PAD-Net (30% dynamic,
 * K = 4) and fully dynamic DY-Conv (M = 1), synthesised once into .cache/bench/resnet50-* by the same converter,
 * each dynamic one in two forms: per sample (the CPU default: a batch runs as single-sample runs) and bucketed
 * (`--buckets 1,2,4,8`: fixed-batch grouped graphs, the CUDA form's batching on the CPU). Each model runs in its own child process (its RSS is its
 * own: before load, after load, after warm-up); the parent drives them round-robin in short segments at batch 1
 * and 8, so load from other work on a shared machine hits every model alike. A memory-only child loads the
 * bucketed PAD model with its largest bucket graph alone, for the all-buckets / one-bucket RSS ratio. Same
 * intra-op thread count for all. Writes bench/results/resnet.{json,md} and copies the Markdown to
 * docs/bench/resnet.md.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readModelCard } from '../model/folder.js';
import { RESNET_GRAPH_VERSION } from '../convert/resnet/graph.js';
import type { ResNetCard } from '../model/card.js';
import { ModelSession, type Feeds } from '../runtime/session.js';
import { calibrationImages } from '../synth/calibrate.js';
import { Rng } from '../synth/random.js';
import { latencyStats, rssMb, type LatencyStats } from './measure.js';
import type { BenchChild } from './child.js';
import * as harness from './harness.js';

const BATCHES = [1, 8];
/** The synthesised models `padserve bench resnet --models` can run (all by default). */
export const RESNET_BENCH_VARIANTS = ['static', 'pad', 'dyconv', 'pad-bucketed', 'dyconv-bucketed'] as const;
export type ResNetBenchVariant = (typeof RESNET_BENCH_VARIANTS)[number];
const BUCKETED = '-bucketed';
/** The label of the memory-only child: the bucketed PAD model with only its largest bucket graph loaded. */
const ONE_BUCKET = 'pad-one-bucket';
const SIZE = 224;

/** Photo-like synthetic images (the synth calibration's generator), fixed seed: one feed per batch size. */
function imageBatch(batch: number, seed: number): Feeds {
  const images = calibrationImages(new Rng(seed), batch, SIZE, 0);
  const data = new Float32Array(batch * 3 * SIZE * SIZE);
  images.forEach((im, i) => data.set(im.data, i * im.data.length));
  return { pixel_values: { dtype: 'float32', shape: [batch, 3, SIZE, SIZE], data } };
}

// ---------- worker (one model per child process) ----------

type RunRequest = { type: 'run'; batch: number; seconds: number };
type FromWorker =
  | { type: 'loaded'; loadMs: number; rssBeforeMb: number; rssLoadMb: number }
  | { type: 'ready'; rssMb: number }
  | { type: 'samples'; batch: number; ms: number[] }
  | harness.ChildError;
type Worker = BenchChild<harness.ChildRequest<RunRequest>, FromWorker>;

/** The child process side (`padserve bench resnet --worker DIR`): loads one model and answers run requests. */
export async function runWorker(dir: string, threads: number, buckets?: number[]): Promise<void> {
  const send = (m: FromWorker) => process.send!(m);
  const inputs = new Map(BATCHES.map((b) => [b, imageBatch(b, 100 + b)]));
  const rssBeforeMb = rssMb();
  const started = performance.now();
  const session = await ModelSession.load(dir, { intraOpThreads: threads, buckets });
  send({ type: 'loaded', loadMs: performance.now() - started, rssBeforeMb, rssLoadMb: rssMb() });
  harness.answerParent<RunRequest, FromWorker>(session, {
    async warmup() {
      // As the server's workers do: every bucket graph warmed and timed for the planner, then each batch size.
      await session.calibrate();
      for (const feeds of inputs.values()) for (let i = 0; i < 2; i++) await session.run(feeds);
      return { type: 'ready', rssMb: rssMb() };
    },
    async run({ batch, seconds }) {
      const feeds = inputs.get(batch)!;
      const ms: number[] = [];
      const start = performance.now();
      while (ms.length === 0 || performance.now() - start < seconds * 1000) {
        const t0 = performance.now();
        await session.run(feeds);
        ms.push(performance.now() - t0);
      }
      return { type: 'samples', batch, ms };
    },
  });
}

// ---------- parent ----------

interface SynthRecord {
  seed: number;
  graphVersion: number;
  variant: string;
  seconds: number;
  line: string;
}

/** The cached model folder for a variant, synthesised (and timed) when missing, made with another seed, or by an older graph builder. */
function ensureModel(cli: string, label: string, seed: number): { dir: string; synth: SynthRecord | null } {
  const dir = join(harness.BENCH_CACHE, `resnet50-${label}`);
  const bucketed = label.endsWith(BUCKETED);
  const variant = bucketed ? label.slice(0, -BUCKETED.length) : label;
  const recordFile = `${dir}.synth.json`;
  try {
    const card = readModelCard(dir);
    const synth = existsSync(recordFile)
      ? (JSON.parse(readFileSync(recordFile, 'utf8')) as SynthRecord)
      : null;
    const current = synth?.seed === seed && synth.graphVersion === RESNET_GRAPH_VERSION;
    if (card.variant === variant && card.source.kind === 'synthetic' && card.source.seed === seed && current)
      return { dir, synth };
  } catch {
    // not there yet: synthesise it
  }
  const done = harness.synthesise(
    cli,
    dir,
    ['resnet50', '--variant', variant, '--seed', String(seed), ...(bucketed ? ['--buckets', '1,2,4,8'] : [])],
    `full-size ResNet-50 ${variant}, seed ${seed}`,
  );
  const synth: SynthRecord = { seed, graphVersion: RESNET_GRAPH_VERSION, variant, ...done };
  writeFileSync(recordFile, `${JSON.stringify(synth, null, 2)}\n`);
  return { dir, synth };
}

interface ModelResult {
  label: string;
  dir: string;
  variant: string;
  graph: string;
  storedMb: number;
  parameters: number;
  loadMs: number;
  rssBeforeMb: number;
  rssLoadMb: number;
  rssMb: number;
  /** RSS growth from before load to after warm-up: the model's resident memory. */
  residentMb: number;
  synthSeconds: number | null;
  batches: Record<string, LatencyStats & { imgPerS: number; meanImgPerS: number; roundImgPerS: number[] }>;
}

function graphForm(card: ResNetCard, buckets?: number[]): string {
  const all = card.graph.buckets?.map((b) => b.batch);
  if (!all) return 'batched (any batch)';
  if (all.length === 1 && all[0] === 1) return 'per-sample';
  return `buckets ${(buckets ?? all).join(',')}`;
}

function report(results: ModelResult[], meta: Record<string, unknown>): { json: unknown; markdown: string } {
  const by = (label: string) => results.find((r) => r.label === label);
  const tput = (r: ModelResult | undefined, b: number) => r?.batches[`b${b}`]?.imgPerS;
  const header = [
    'model',
    'graph',
    'stored values',
    'weights MB',
    ...BATCHES.flatMap((b) => [`img/s b${b}`, `p50 ms b${b}`, `p99 ms b${b}`]),
    'RSS before → load → warm MB',
    'resident MB',
    'load s',
    'synth s',
  ];
  const rows = results.map((r) => [
    r.label,
    r.graph,
    `${(r.parameters / 1e6).toFixed(1)}M`,
    r.storedMb,
    ...BATCHES.flatMap((b): (string | number)[] => {
      const s = r.batches[`b${b}`];
      return s ? [s.imgPerS, s.p50Ms, s.p99Ms] : ['(memory only)', '', ''];
    }),
    `${r.rssBeforeMb.toFixed(0)} → ${r.rssLoadMb.toFixed(0)} → ${r.rssMb.toFixed(0)}`,
    r.residentMb,
    (r.loadMs / 1000).toFixed(1),
    r.synthSeconds === null ? 'cached' : r.synthSeconds.toFixed(0),
  ]);
  const pad = by('pad');
  const perForm = (form: '' | typeof BUCKETED, name: string) => [
    ...BATCHES.map((b) =>
      harness.atLeast(
        `PAD / static throughput, batch ${b}, ${name}`,
        harness.ratio(tput(by(`pad${form}`), b), tput(by('static'), b)),
        0.75,
      ),
    ),
    ...BATCHES.map((b) =>
      harness.atLeast(
        `PAD / DY-Conv throughput, batch ${b}, ${name}`,
        harness.ratio(tput(by(`pad${form}`), b), tput(by(`dyconv${form}`), b)),
        0.95,
      ),
    ),
  ];
  const targets = [
    ...perForm('', 'per-sample'),
    ...perForm(BUCKETED, 'bucketed'),
    ...BATCHES.map((b) => ({
      what: `PAD bucketed / per-sample throughput, batch ${b}`,
      value: harness.ratio(tput(by(`pad${BUCKETED}`), b), tput(pad, b)),
      target: b === 1 ? '(≥ 0.95: the same graph)' : '(> 1)',
      ok: (v: number) => (b === 1 ? v >= 0.95 : v > 1),
    })),
    harness.atMost('PAD / DY-Conv stored weights', harness.ratio(pad?.storedMb, by('dyconv')?.storedMb), 0.6),
    {
      what: 'PAD / DY-Conv resident memory (per-sample)',
      value: harness.ratio(pad?.residentMb, by('dyconv')?.residentMb),
      target: '(≤ 0.6)',
      ok: (v: number) => v <= 0.6,
    },
    harness.atMost(
      'PAD bucketed process RSS, all buckets / largest bucket alone',
      harness.ratio(by(`pad${BUCKETED}`)?.rssMb, by(ONE_BUCKET)?.rssMb),
      1.15,
    ),
  ];
  return harness.composeReport({
    title: 'ResNet-50 benchmark: static vs PAD-Net vs DY-Conv',
    command: `npm run bench:resnet${meta.quick ? ' -- --quick' : ''}`,
    method:
      `${meta.threads} intra-op threads per model, each model in its own process; ${meta.rounds} round-robin rounds of ${meta.seconds} s per model and batch size ` +
      '(so background load hits every model alike); 224×224 photo-like synthetic images. Full-size ResNet-50 (Bottleneck [3,4,6,3]), ' +
      'synthetic weights (seed ' +
      String(meta.seed) +
      '), PAD: K = 4, 30% dynamic, τ = 1; all three converted by `padserve synth resnet50` through the same converter. ' +
      '"stored values" / "weights MB": what the graph stores (BN folded; PAD: static part with the first kernel in place + 3 packed kernel deltas + int32 indices). ' +
      '"resident MB": RSS growth of the model\'s process from before session load to after warm-up. ' +
      'img/s = batch size / median run time (the mean-based figure is in the JSON); p50/p99 per run of the whole batch.',
    header,
    rows,
    targets,
    footer: 'Graph forms, what else was measured and why: docs/resnet-graph.md.',
    meta,
    results,
  });
}

export interface ResNetBenchOptions {
  quick: boolean;
  /** Round-robin rounds, and seconds per model and batch size in each round. */
  rounds: number;
  seconds: number;
  /** Intra-op threads per model. */
  threads: number;
  /** Seed of the synthetic models. */
  seed: number;
  /** Report name under bench/results; only "resnet" is copied to docs/bench. */
  name: string;
  variants: readonly ResNetBenchVariant[];
  /** Model folders to run besides the synthesised ones (`--model LABEL=DIR`). */
  extra: readonly { label: string; dir: string }[];
}

export async function runResNetBench(opts: ResNetBenchOptions): Promise<void> {
  const { quick, rounds, seconds, threads, seed, name } = opts;
  const cli = harness.findCli();
  mkdirSync(harness.BENCH_CACHE, { recursive: true });
  const models: { label: string; dir: string; synth: SynthRecord | null; buckets?: number[] }[] =
    opts.variants.map((v) => ({ label: v, ...ensureModel(cli, v, seed) }));
  const padModel = models.find((m) => m.label === `pad${BUCKETED}`);
  const padBuckets = padModel && readModelCard(padModel.dir).graph.buckets;
  if (padModel && padBuckets)
    models.push({
      ...padModel,
      label: ONE_BUCKET,
      synth: null,
      buckets: [padBuckets[padBuckets.length - 1]!.batch],
    });
  for (const { label, dir } of opts.extra) models.push({ label, dir, synth: null });

  const results: ModelResult[] = [];
  const workers: Worker[] = [];
  try {
    for (const m of models) {
      const card = readModelCard(m.dir) as ResNetCard;
      const bucketArgs = m.buckets ? ['--buckets', m.buckets.join(',')] : [];
      const { child, loaded, ready } = await harness.startWarmChild<RunRequest, FromWorker>(
        cli,
        'resnet',
        m.dir,
        threads,
        bucketArgs,
      );
      // The memory-only child stops after warm-up: its figure is its RSS.
      if (m.buckets) child.stop();
      else workers.push(child);
      console.error(
        `${m.label}: loaded in ${(loaded.loadMs / 1000).toFixed(1)} s, RSS ${loaded.rssBeforeMb.toFixed(0)} → ${loaded.rssLoadMb.toFixed(0)} → ${ready.rssMb.toFixed(0)} MB`,
      );
      results.push({
        label: m.label,
        dir: m.dir,
        variant: card.variant,
        graph: graphForm(card, m.buckets),
        storedMb: Math.round(card.graph.initializerBytes / 2 ** 20),
        parameters: card.graph.parameters,
        loadMs: loaded.loadMs,
        rssBeforeMb: loaded.rssBeforeMb,
        rssLoadMb: loaded.rssLoadMb,
        rssMb: ready.rssMb,
        residentMb: Math.round(ready.rssMb - loaded.rssBeforeMb),
        synthSeconds: m.synth?.seconds ?? null,
        batches: {},
      });
    }
    const samples = new Map<string, { ms: number[]; rounds: number[] }>();
    for (let r = 0; r < rounds; r++) {
      for (const batch of BATCHES) {
        await harness.roundRobin(workers.length, r, async (i) => {
          const { ms } = await workers[i]!.request({ type: 'run', batch, seconds }, 'samples');
          const s = samples.get(`${i}:${batch}`) ?? { ms: [], rounds: [] };
          s.ms.push(...ms);
          s.rounds.push((batch * ms.length * 1000) / ms.reduce((a, b) => a + b, 0));
          samples.set(`${i}:${batch}`, s);
        });
      }
      console.error(`round ${r + 1}/${rounds} done`);
    }
    results
      .filter((r) => r.label !== ONE_BUCKET)
      .forEach((res, i) => {
        for (const batch of BATCHES) {
          const s = samples.get(`${i}:${batch}`)!;
          const total = s.ms.reduce((a, b) => a + b, 0);
          res.batches[`b${batch}`] = {
            ...latencyStats(s.ms),
            // Median-based: bursts of load from other work on a shared machine move the mean, not the median.
            imgPerS: (batch * 1000) / latencyStats(s.ms).p50Ms,
            meanImgPerS: (batch * s.ms.length * 1000) / total,
            roundImgPerS: s.rounds,
          };
        }
      });
  } finally {
    for (const w of workers) w.stop();
  }
  const meta = {
    quick,
    rounds,
    seconds,
    threads,
    seed,
    imageSize: SIZE,
    synth: Object.fromEntries(models.filter((m) => m.synth).map((m) => [m.label, m.synth])),
  };
  const { json, markdown } = report(results, meta);
  harness.publishReport('resnet', name, json, markdown);
}
