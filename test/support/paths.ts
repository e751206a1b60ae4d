/**
 * Where the shared fixtures live: `../shared/fixtures` next to the repository (as CI lays out a clone), or
 * $PADSERVE_FIXTURES. Missing fixtures are an error, never a silent skip.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function fixturesRoot(): string {
  const root = process.env.PADSERVE_FIXTURES ?? resolve(REPO_ROOT, '../shared/fixtures');
  if (!existsSync(join(root, 'padnet')) || !existsSync(join(root, 'images'))) {
    throw new Error(
      `shared fixtures not found at ${root} (expected ../shared/fixtures beside the repository, or set PADSERVE_FIXTURES)`,
    );
  }
  return root;
}

export const FIXTURES_ROOT = fixturesRoot();
export const PADNET_FIXTURES = join(FIXTURES_ROOT, 'padnet');
export const IMAGE_FIXTURES = join(FIXTURES_ROOT, 'images');
export const CLI = join(REPO_ROOT, 'bin', 'padserve.js');
