/**
 * The thread budget, and how worker threads find their entry module.
 *
 * Budget: onnxruntime's intra-op threads do the compute. Each inference worker runs one batch at a time (a run
 * blocks its thread), so at most `workers × intraOpThreads` compute threads are busy; by default that is kept
 * within the cores. Preprocessing workers (sharp, Pillow-exact resize) take one libvips thread each.
 */
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { Worker, type WorkerOptions } from 'node:worker_threads';

export interface ThreadPlanInput {
  /** Inference worker threads (≥ 1). */
  workers: number;
  /** Intra-op threads per model instance; 0 = auto (cores / workers, at least 1). */
  intraOpThreads: number;
  /** Preprocessing worker threads; 0 = auto (same as workers). */
  preprocessWorkers: number;
  /** Cores to budget for (default: os.availableParallelism()). */
  cores?: number;
}

export interface ThreadPlan {
  cores: number;
  workers: number;
  intraOpThreads: number;
  preprocessWorkers: number;
  /** True when workers × intraOpThreads exceeds the cores (set explicitly: allowed, but said in the log). */
  oversubscribed: boolean;
}

export function planThreads(input: ThreadPlanInput): ThreadPlan {
  const cores = Math.max(1, input.cores ?? availableParallelism());
  const workers = Math.max(1, Math.floor(input.workers));
  const intraOpThreads =
    input.intraOpThreads > 0 ? Math.floor(input.intraOpThreads) : Math.max(1, Math.floor(cores / workers));
  const preprocessWorkers = input.preprocessWorkers > 0 ? Math.floor(input.preprocessWorkers) : workers;
  return {
    cores,
    workers,
    intraOpThreads,
    preprocessWorkers,
    oversubscribed: workers * intraOpThreads > cores,
  };
}

/**
 * Starts a worker thread whose entry is `./<baseName>.js` next to `callerUrl` (compiled JS: production, `dist/`),
 * or, when the caller itself runs from TypeScript (tests, tsx), `./<baseName>.ts` through tsx. On Node 20,
 * `execArgv: ['--import', 'tsx']` does not reach a worker's entry module ("Unknown file extension .ts"), so the TS
 * case starts a tiny eval'd bootstrap that registers tsx's ESM hooks in the worker and then imports the entry.
 */
export function startWorker(callerUrl: string, baseName: string, options: WorkerOptions = {}): Worker {
  if (!callerUrl.endsWith('.ts')) return new Worker(new URL(`./${baseName}.js`, callerUrl), options);
  const tsxRoot = dirname(createRequire(callerUrl).resolve('tsx/package.json'));
  const api = pathToFileURL(join(tsxRoot, 'dist', 'esm', 'api', 'index.mjs')).href;
  const entry = new URL(`./${baseName}.ts`, callerUrl).href;
  const code = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(code, { ...options, eval: true });
}

/**
 * A piscina task file: compiled JS next to the caller, or the TS source with tsx's CommonJS hook preloaded
 * (piscina's own worker `require()`s the task file first, which the hook compiles).
 */
export function piscinaEntry(callerUrl: string, baseName: string): { filename: string; execArgv: string[] } {
  if (!callerUrl.endsWith('.ts'))
    return { filename: fileURLToPath(new URL(`./${baseName}.js`, callerUrl)), execArgv: [] };
  return {
    filename: fileURLToPath(new URL(`./${baseName}.ts`, callerUrl)),
    execArgv: ['--require', createRequire(callerUrl).resolve('tsx/cjs')],
  };
}
