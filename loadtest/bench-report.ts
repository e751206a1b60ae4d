/** The Markdown of `npm run bench`: machine, versions, settings, the ratios, the load points, the phases. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { formatNumber, machineMarkdown, markdownTable } from '../src/bench/measure.js';
import type { ModelBenchResult } from './model-benches.js';
import { REPO_ROOT } from './paths.js';
import { seriesTable, type ReportFiles } from './report.js';
import type { LoadtestReport } from './types.js';

export interface PhaseTime {
  name: string;
  seconds: number;
  skipped?: string;
}

export interface BenchContext {
  phases: PhaseTime[];
  modelBenches: ModelBenchResult[];
  budgetS: number;
  totalS: number;
  files: ReportFiles;
  /** Where the report goes (links are relative to it). */
  reportPath: string;
}

function versions(): string {
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .toString()
      .trim();
    if (dirty) commit += ' (with uncommitted changes)';
  } catch {
    // not a git checkout
  }
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
    version: string;
    devDependencies?: Record<string, string>;
  };
  return `padserve ${pkg.version}, commit ${commit}; autocannon ${pkg.devDependencies?.autocannon ?? '?'}`;
}

const rel = (p: string) => relative(REPO_ROOT, p) || p;

/** One line per model benchmark, linking the reports it wrote; the tail of its output when it failed. */
function modelBenchSection(results: readonly ModelBenchResult[], reportDir: string): string[] {
  if (!results.length) return ['Not run.', ''];
  const out: string[] = [];
  for (const r of results) {
    // Link the committed reports (docs/); name the git-ignored raw ones only when there is nothing else.
    const docs = r.files.filter((f) => rel(f).startsWith('docs/'));
    const links = docs.length
      ? docs.map((f) => `[${rel(f)}](${relative(reportDir, f)})`).join(', ')
      : r.files.map((f) => `\`${rel(f)}\``).join(', ');
    out.push(
      `- \`${r.name}\`: ${r.ok ? 'ok' : '**failed**'} in ${r.seconds.toFixed(0)} s${links ? `: ${links}` : ''}`,
    );
    if (!r.ok) out.push('', '  ```', ...r.outputTail.split('\n').map((l) => `  ${l}`), '  ```');
  }
  return [...out, ''];
}

export function benchReportMarkdown(r: LoadtestReport, ctx: BenchContext): string {
  const summary = Object.entries(r.summary).map(([k, v]) => [k, typeof v === 'number' ? formatNumber(v) : v]);
  const phases = ctx.phases.map((p) => [p.name, p.skipped ? `skipped (${p.skipped})` : p.seconds.toFixed(0)]);
  const lines = [
    `# ${r.title}`,
    '',
    machineMarkdown(r.machine),
    '',
    `${versions()}. 1-minute load average when the report was written: ${loadavg()[0]!.toFixed(2)} (other work on the machine makes every number noisy).`,
    '',
    `Settings: ${r.settings.quick ? 'quick' : 'full'} run; per point a warmup of ≥ ${r.settings.warmupS} s at the same load (≥ one pipeline round trip), then a window of ≥ ${r.settings.durationS} s (lengthened to about ${r.settings.minOk ?? '-'} answers for slow models, ≤ ${r.settings.maxDurationS ?? '-'} s); closed-loop concurrencies ${JSON.stringify(r.settings.concurrencies)}; GLUE tasks ${JSON.stringify(r.settings.glueTasks)}; one inference worker, intra-op threads = cores.`,
    '',
    ...r.notes.map((n) => `- ${n}`),
    '',
    '## Ratios',
    '',
    summary.length ? markdownTable(['comparison', 'value'], summary) : 'None measured.',
    '',
    '## Load points',
    '',
    seriesTable(r.series),
    '',
    "Latency: 2xx responses only, warmup excluded. Server CPU in % of one core. Mean batch from the server's batch-size histogram.",
    `Charts (throughput vs p99): ${ctx.files.svgs.map((f) => `\`${rel(f)}\``).join(', ')}; all data: \`${rel(ctx.files.json)}\`.`,
    '',
    '## Model benchmarks',
    '',
    ...modelBenchSection(ctx.modelBenches, dirname(ctx.reportPath)),
    '## Run',
    '',
    markdownTable(['phase', 'seconds'], phases),
    '',
    `Total ${ctx.totalS.toFixed(0)} s after model preparation (budget ${ctx.budgetS} s). Reproduce: \`npm run bench\` (quick) or \`npm run bench -- --full\`; one scenario: \`npm run loadtest -- <scenario>\` (docs/loadtest.md).`,
  ];
  return `${lines.join('\n')}\n`;
}
