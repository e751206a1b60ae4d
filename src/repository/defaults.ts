/**
 * The default repository content, built on first start when missing: a synthetic full-size PAD-Net ResNet-50
 * (`resnet50-pad`) and PAD-Net BERT models for the nine GLUE tasks (`bert-pad-<task>`, built together by
 * `synthesizeGlueSuite`: one shared synthetic encoder, in `.glue-suite/`, linked as each model's version 1). Seeded, so every build is identical. Each model gets a
 * `serving.json`; an existing model folder is never touched.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CARD_FILE } from '../model/folder.js';
import { SERVING_FILE } from './serving.js';
import { GLUE_TASK_NAMES } from '../preprocess/glue-tasks.js';

export const DEFAULT_IMAGE_MODEL = 'resnet50-pad';
/** Every GLUE task gets a default model. */
export const GLUE_DEFAULT_TASKS = GLUE_TASK_NAMES;
export const glueModelName = (task: string) => `bert-pad-${task}`;
export const DEFAULT_SEED = 0;
/** Hidden folder (skipped by the repository scan) holding the GLUE suite's task folders. */
export const GLUE_SUITE_DIR = '.glue-suite';

export type ProgressFn = (label: string, done: number, total: number, detail?: string) => void;

/** How the defaults are built: `cudaForm` when the server runs on CUDA (the form every CUDA node can run). */
export interface DefaultBuildOptions {
  cudaForm?: boolean;
}

/**
 * What the builders must provide. The server entry passes the synth modules (server/default-builders.ts), tests
 * their own: the repository does not import synthesis.
 */
export interface DefaultBuilders {
  resnet(
    outDir: string,
    onProgress: (done: number, total: number, detail?: string) => void,
    opts?: DefaultBuildOptions,
  ): Promise<void>;
  glue(
    dirs: Record<string, string>,
    onProgress: (done: number, total: number, detail?: string) => void,
  ): Promise<void>;
}

export interface DefaultModelPlan {
  resnet: string | null;
  glue: Record<string, string>;
}

function present(modelDir: string): boolean {
  return existsSync(join(modelDir, '1', CARD_FILE));
}

/** Which default models are missing from `repoDir` (and where their version-1 folders go). */
export function missingDefaults(repoDir: string): DefaultModelPlan {
  const resnetDir = join(repoDir, DEFAULT_IMAGE_MODEL);
  const glue: Record<string, string> = {};
  for (const t of GLUE_DEFAULT_TASKS) {
    const d = join(repoDir, glueModelName(t));
    if (!present(d)) glue[t] = join(d, '1');
  }
  return { resnet: present(resnetDir) ? null : join(resnetDir, '1'), glue };
}

function writeServing(modelDir: string, serving: Record<string, unknown>): void {
  const path = join(modelDir, SERVING_FILE);
  if (existsSync(path)) return;
  mkdirSync(modelDir, { recursive: true });
  writeFileSync(path, `${JSON.stringify(serving, null, 2)}\n`);
}

/** Builds what is missing; returns the names built. */
export async function ensureDefaultModels(
  repoDir: string,
  builders: DefaultBuilders,
  progress: ProgressFn,
  opts: DefaultBuildOptions = {},
): Promise<string[]> {
  const plan = missingDefaults(repoDir);
  const built: string[] = [];
  if (plan.resnet) {
    const modelDir = join(repoDir, DEFAULT_IMAGE_MODEL);
    writeServing(modelDir, {
      max_batch_size: 8,
      max_queue_delay_ms: 2,
      max_queue_size: 64,
      instances: 1,
      warmup: 'all',
    });
    await builders.resnet(plan.resnet, (d, t, detail) => progress(DEFAULT_IMAGE_MODEL, d, t, detail), opts);
    built.push(DEFAULT_IMAGE_MODEL);
  }
  const tasks = Object.keys(plan.glue);
  if (tasks.length) {
    for (const t of tasks) {
      // Full-size PAD-MoE BERT runs at roughly 10 ms per padded token on 2 cores: a 1024-token budget keeps a
      // batch under ~10 s; one warmup row per length bucket (a new shape costs no more than a repeat on the CPU
      // once the first run has paged the weights in). The nine models share one memory-mapped weights file.
      writeServing(join(repoDir, glueModelName(t)), {
        max_batch_size: 16,
        max_batch_tokens: 1024,
        max_queue_delay_ms: 2,
        max_queue_size: 256,
        tasks: [t],
        warmup: 'buckets',
        weights: 'auto',
      });
    }
    await builders.glue(plan.glue, (d, t, detail) => progress(`glue (${tasks.length} tasks)`, d, t, detail));
    built.push(...tasks.map(glueModelName));
  }
  return built;
}
