/** Where the load tests read and write: the repository root, results, and the bench cache. */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync, readdirSync, statSync } from 'node:fs';

function findRoot(): string {
  // loadtest/paths.ts from the sources, dist/loadtest/paths.js when compiled.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'padserve.js'))) return dir;
    dir = dirname(dir);
  }
  return resolve(dirname(fileURLToPath(import.meta.url)), '..');
}

export const REPO_ROOT = findRoot();
export const RESULTS_DIR = join(REPO_ROOT, 'bench', 'results');
export const BENCH_CACHE = join(REPO_ROOT, '.cache', 'bench');
export const PADSERVE_BIN = join(REPO_ROOT, 'bin', 'padserve.js');
/** The repository's test fixtures (test/fixtures/README.md): tiny PAD-Net checkpoints and photos. */
export const FIXTURES_DIR = join(REPO_ROOT, 'test', 'fixtures');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * `bin/padserve.js` runs dist/ when it exists: a warning when the sources are newer than that build (the server
 * under test would not be the code in the tree). null when there is no build or it is current.
 */
export function staleBuildWarning(): string | null {
  const built = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(built)) return null;
  const srcTime = Math.max(newestMtime(join(REPO_ROOT, 'src')), newestMtime(join(REPO_ROOT, 'server')));
  return srcTime > statSync(built).mtimeMs
    ? 'dist/ is older than src/ or server/: the server under test runs the old build (npm run build)'
    : null;
}
