/** Running something against a server configuration started for it (repository built, server stopped after). */
import { join } from 'node:path';
import { buildRepository, BENCH_SERVER_ARGS, type RepoModel } from './repo.js';
import { RESULTS_DIR } from './paths.js';
import { startServer, stopOnSignal, type ServerTarget } from './server.js';
import type { Log } from './sweep.js';

export interface ServerSpec {
  /** Configuration label (repository folder and log file name). */
  label: string;
  models: readonly RepoModel[];
  /** Extra `padserve serve` flags. */
  args?: readonly string[];
}

export async function withServer<T>(
  spec: ServerSpec,
  log: Log,
  fn: (target: ServerTarget) => Promise<T>,
): Promise<T> {
  const repo = await buildRepository(spec.label, spec.models, log);
  const logFile = join(RESULTS_DIR, 'logs', `${spec.label}.log`);
  const target = await startServer({
    repository: repo,
    args: [...BENCH_SERVER_ARGS, ...(spec.args ?? [])],
    logFile,
  });
  log(
    `server "${spec.label}" ready in ${target.readyS.toFixed(1)} s (${spec.models.map((m) => m.name).join(', ')}; log ${logFile})`,
  );
  const release = stopOnSignal(target);
  try {
    return await fn(target);
  } finally {
    release();
    await target.stop();
  }
}
