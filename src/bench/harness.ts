/**
 * The runner both model benchmarks (resnet.ts, bert.ts) share: the child process that loads one model and answers
 * `warmup` / `run` requests, the parent's side of it, synthesising a cached model folder, the rotating round-robin
 * order, and publishing the report (bench/results/<name>.{json,md}, copied to docs/bench/ for the default name).
 * The families differ only in their inputs, what a run measures and what the report says.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BenchChild } from './child.js';
import {
  BenchError,
  RESULTS_DIR,
  machineInfo,
  machineMarkdown,
  markdownTable,
  targetReport,
  writeReport,
  type TargetCheck,
} from './measure.js';

/** Where the synthesised full-size models are cached between runs (git-ignored). */
export const BENCH_CACHE = '.cache/bench';

/** Requests every benchmark child answers; `Run` is the family's own measurement request. */
export type ChildRequest<Run extends { type: 'run' }> = { type: 'warmup' } | Run | { type: 'exit' };
export type ChildError = { type: 'error'; message: string };

/** bin/padserve.js, found upwards from this file (src/bench or dist/src/bench). */
export function findCli(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const cli = join(dir, 'bin', 'padserve.js');
    if (existsSync(cli)) return cli;
  }
  throw new Error('bin/padserve.js not found above src/bench');
}

/**
 * The child's side (`padserve bench <family> --worker DIR`): answers the parent's requests one at a time; `exit`
 * releases the session and ends the process; a failure becomes an `error` reply (the parent throws it).
 */
export function answerParent<Run extends { type: 'run' }, Reply extends { type: string }>(
  session: { release(): Promise<void> },
  handlers: { warmup(): Promise<Reply>; run(request: Run): Promise<Reply> },
): void {
  const send = (m: Reply | ChildError) => process.send!(m);
  process.on('message', (m: ChildRequest<Run>) => {
    void (async () => {
      if (m.type === 'exit') {
        await session.release();
        process.exit(0);
      }
      send(m.type === 'warmup' ? await handlers.warmup() : await handlers.run(m as Run));
    })().catch((err: unknown) => send({ type: 'error', message: String((err as Error).stack ?? err) }));
  });
}

/** The parent's side: one model's child process, `padserve bench <family> --worker DIR --threads N ...extra`. */
function startModelChild<ToChild extends { type: string }, FromChild extends { type: string }>(
  cli: string,
  family: 'resnet' | 'bert',
  dir: string,
  threads: number,
  extraArgs: readonly string[] = [],
): BenchChild<ToChild, FromChild> {
  const args = ['bench', family, '--worker', dir, '--threads', String(threads), ...extraArgs];
  return new BenchChild<ToChild, FromChild>(cli, args, dir);
}

/**
 * Starts one model's child and takes it through load and warm-up (one model at a time, so each process's RSS is
 * measured without the others' churn); the child is stopped if either fails.
 */
export async function startWarmChild<Run extends { type: 'run' }, Reply extends { type: string }>(
  cli: string,
  family: 'resnet' | 'bert',
  dir: string,
  threads: number,
  extraArgs: readonly string[] = [],
): Promise<{
  child: BenchChild<ChildRequest<Run>, Reply>;
  loaded: Extract<Reply, { type: 'loaded' }>;
  ready: Extract<Reply, { type: 'ready' }>;
}> {
  const child = startModelChild<ChildRequest<Run>, Reply>(cli, family, dir, threads, extraArgs);
  try {
    const loaded = (await child.request(null, 'loaded')) as Extract<Reply, { type: 'loaded' }>;
    const ready = (await child.request({ type: 'warmup' }, 'ready')) as Extract<Reply, { type: 'ready' }>;
    return { child, loaded, ready };
  } catch (err) {
    child.stop();
    throw err;
  }
}

/**
 * Runs `padserve synth <synthArgs> --out DIR` in a child process (its progress on stderr) and returns how long it
 * took and the line it printed (the model summary).
 */
export function synthesise(
  cli: string,
  dir: string,
  synthArgs: readonly string[],
  what: string,
): { seconds: number; line: string } {
  console.error(`synthesising ${dir} (${what}) ...`);
  const started = performance.now();
  const r = spawnSync(process.execPath, [cli, 'synth', ...synthArgs, '--out', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new BenchError(`synthesising ${dir} failed`);
  process.stderr.write(r.stdout);
  return { seconds: (performance.now() - started) / 1000, line: r.stdout.trim() };
}

/**
 * One round (or turn) of the round-robin: `measure(i)` for every model, starting at model `round % count`, so no
 * model always runs right after the same neighbour and load from other work hits every model alike.
 */
export async function roundRobin(
  count: number,
  round: number,
  measure: (i: number) => Promise<void>,
): Promise<void> {
  for (let j = 0; j < count; j++) await measure((j + round) % count);
}

/** a / b, NaN when either is missing (a model left out of the run) or b is not positive. */
export const ratio = (a?: number, b?: number): number =>
  a !== undefined && b !== undefined && b > 0 ? a / b : NaN;

/**
 * Writes bench/results/<name>.{json,md}, prints the Markdown, and copies it to docs/bench/<family>.md when the
 * report has the family's default name (other names are experiments that stay under bench/results).
 */
export function publishReport(
  family: 'resnet' | 'bert',
  name: string,
  json: unknown,
  markdown: string,
): void {
  const paths = writeReport(RESULTS_DIR, name, json, markdown);
  console.log(markdown);
  const doc = `docs/bench/${family}.md`;
  if (name === family) {
    mkdirSync('docs/bench', { recursive: true });
    copyFileSync(paths.md, doc);
  }
  console.error(`wrote ${resolve(paths.json)}, ${resolve(paths.md)}${name === family ? ` and ${doc}` : ''}`);
}

/** What a model benchmark's report says besides its measurements. */
export interface ReportParts<Result> {
  title: string;
  /** The command line that generated it. */
  command: string;
  /** The method paragraph: threads, order, inputs, what each column means. */
  method: string;
  header: readonly string[];
  rows: readonly (readonly (string | number)[])[];
  targets: readonly TargetCheck[];
  /** The closing line (where the analysis lives). */
  footer: string;
  meta: Record<string, unknown>;
  results: readonly Result[];
}

/** The report's Markdown (title, machine, method, table, target checks, footer) and its JSON form. */
export function composeReport<Result>(p: ReportParts<Result>): { json: unknown; markdown: string } {
  const machine = machineInfo();
  const checks = targetReport(p.targets);
  const markdown = [
    `# ${p.title}`,
    '',
    `Generated by \`${p.command}\`. ${machineMarkdown(machine)}.`,
    p.method,
    '',
    markdownTable(p.header, p.rows),
    '',
    ...checks.markdown,
    p.footer,
  ].join('\n');
  return { json: { machine, ...p.meta, results: p.results, targets: checks.json }, markdown };
}

/** A target the measured ratio must reach (`≥ min`) or stay under (`≤ max`). */
export const atLeast = (what: string, value: number, min: number): TargetCheck => ({
  what,
  value,
  target: `≥ ${min}`,
  ok: (v) => v >= min,
});
export const atMost = (what: string, value: number, max: number): TargetCheck => ({
  what,
  value,
  target: `≤ ${max}`,
  ok: (v) => v <= max,
});
