/**
 * Where the test fixtures live: `test/fixtures` in the repository (test/fixtures/README.md: provenance, formats,
 * tolerances), or $PADSERVE_FIXTURES to run the suite against another copy of the same layout. Missing fixtures
 * are an error, never a silent skip.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function fixturesRoot(): string {
  const root = process.env.PADSERVE_FIXTURES || join(REPO_ROOT, 'test', 'fixtures');
  if (!existsSync(join(root, 'padnet')) || !existsSync(join(root, 'images'))) {
    throw new Error(
      `test fixtures not found at ${root} (expected test/fixtures/{padnet,images} in the repository, or $PADSERVE_FIXTURES)`,
    );
  }
  return root;
}

export const FIXTURES_ROOT = fixturesRoot();
export const PADNET_FIXTURES = join(FIXTURES_ROOT, 'padnet');
export const IMAGE_FIXTURES = join(FIXTURES_ROOT, 'images');
export const CLI = join(REPO_ROOT, 'bin', 'padserve.js');
