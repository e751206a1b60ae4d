/**
 * The real default-model builders: the synth modules, imported only when something must be built (so a server
 * whose repository is complete never loads the converters). server/main.ts passes them to `ensureDefaultModels`.
 */
import { mkdirSync, rmSync, symlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { DEFAULT_SEED, GLUE_SUITE_DIR, type DefaultBuilders } from '../src/repository/defaults.js';

export const synthBuilders: DefaultBuilders = {
  async resnet(outDir, onProgress, opts) {
    const { synthesizeResNet } = await import('../src/synth/resnet.js');
    await synthesizeResNet({
      outDir,
      seed: DEFAULT_SEED,
      dynamicRatio: 0.3,
      variant: 'pad',
      onProgress,
      graph: { layout: 'probe', cudaForm: opts?.cudaForm ?? false },
    });
  },
  async glue(dirs, onProgress) {
    // The suite writes <suite>/<task>/ folders (one encoder, hard-linked weights; reused on later builds);
    // each repository version folder links to its task folder.
    const { synthesizeGlueSuite } = await import('../src/synth/bert.js');
    const tasks = Object.keys(dirs);
    const suiteDir = join(dirname(dirname(dirs[tasks[0]!]!)), GLUE_SUITE_DIR);
    const built = await synthesizeGlueSuite({ rootDir: suiteDir, tasks, seed: DEFAULT_SEED, onProgress });
    for (const t of tasks) {
      const versionDir = dirs[t]!;
      mkdirSync(dirname(versionDir), { recursive: true });
      rmSync(versionDir, { recursive: true, force: true });
      symlinkSync(relative(dirname(versionDir), built[t]!), versionDir, 'dir');
    }
  },
};
