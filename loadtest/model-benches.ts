/**
 * The model benchmarks of the bench run: `padserve bench resnet --quick` and `padserve bench bert --quick`
 * (src/bench/), run as child processes so that their onnxruntime sessions and memory go away with them. Their
 * own reports land under bench/results/; this collects the files they wrote and the tail of their output.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PADSERVE_BIN, REPO_ROOT } from './paths.js';

export interface ModelBenchResult {
  name: string;
  ok: boolean;
  seconds: number;
  /** Markdown reports it wrote under bench/results/. */
  files: string[];
  outputTail: string;
}

/** Where the model benchmarks write: their raw results, and their committed reports next to REPORT.md. */
const REPORT_DIRS = [join(REPO_ROOT, 'docs', 'bench'), join(REPO_ROOT, 'bench', 'results')];

function newFiles(since: number): string[] {
  return REPORT_DIRS.flatMap((dir) =>
    existsSync(dir)
      ? readdirSync(dir)
          .filter((f) => f.endsWith('.md') && f !== 'REPORT.md')
          .map((f) => join(dir, f))
          .filter((f) => statSync(f).mtimeMs >= since)
          .sort()
      : [],
  );
}

function runBench(
  which: 'resnet' | 'bert',
  quick: boolean,
  log: (l: string) => void,
): Promise<ModelBenchResult> {
  const args = [PADSERVE_BIN, 'bench', which, ...(quick ? ['--quick'] : [])];
  log(`  $ padserve bench ${which}${quick ? ' --quick' : ''}`);
  const started = Date.now();
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (d: Buffer) => (out = (out + d.toString()).slice(-6000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const done = (ok: boolean) =>
      resolve({
        name: `padserve bench ${which}`,
        ok,
        seconds: (performance.now() - t0) / 1000,
        files: newFiles(started - 1000),
        outputTail: out.trim().split('\n').slice(-25).join('\n'),
      });
    child.on('error', () => done(false));
    child.on('exit', (code) => done(code === 0));
  });
}

export async function runModelBenches(quick: boolean, log: (l: string) => void): Promise<ModelBenchResult[]> {
  const out: ModelBenchResult[] = [];
  for (const which of ['resnet', 'bert'] as const) {
    const r = await runBench(which, quick, log);
    log(
      `  ${r.name}: ${r.ok ? 'ok' : 'FAILED'} in ${r.seconds.toFixed(0)} s${r.files.length ? ` (${r.files.join(', ')})` : ''}`,
    );
    out.push(r);
  }
  return out;
}
