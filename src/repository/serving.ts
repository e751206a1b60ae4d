/**
 * `models/<name>/serving.json`: how one model is served (Triton's config.pbtxt, reduced to what padserve
 * uses). Every field is optional; missing ones take the server-wide defaults (server/config.ts). Unknown fields
 * are an error (a typo must not silently fall back to a default).
 *
 * {
 *   "max_batch_size": 8,          rows per batch
 *   "max_queue_delay_ms": 2,      how long a non-full batch may wait for more requests (0 = dispatch when free)
 *   "max_queue_size": 64,         queued rows before requests are refused with 429
 *   "instances": 1,               sessions of this model (each holds its own copy of the weights)
 *   "max_batch_tokens": 4096,     text models: padded tokens per batch (bucket length × rows)
 *   "length_buckets": [16, 32, 64, 128],   text models: sequence lengths batches are padded to
 *   "version_policy": { "latest": 1 } | { "all": true } | { "specific": [1, 3] },
 *   "tasks": ["mnli"],            text models: the GLUE tasks this model answers on /glue/:task
 *   "warmup": "all" | "powers-of-two" | "buckets" | "none"   batch shapes run once before the model is ready
 *   "weights": "auto" | "shared" | "private"   shared: memory-mapped, one copy for every session over the same
 *                                 weights file; private: prepacked copy per session (faster); auto: shared when
 *                                 the file is used by more than one session (instances > 1, hard links, symlinks)
 *   "golden": { "folder": "golden/", "min_accuracy": 0.95 }   image models: a labelled set (`<index>_<label>.png`,
 *                                 folder relative to this model's folder) a new version must score before it
 *                                 serves (golden.ts)
 * }
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseGoldenSpec, type GoldenSpec } from './golden.js';

export const SERVING_FILE = 'serving.json';

export type VersionPolicy = { latest: number } | { all: true } | { specific: number[] };
export type WarmupMode = 'all' | 'powers-of-two' | 'buckets' | 'none';
export type WeightsMode = 'auto' | 'shared' | 'private';

export interface ServingConfig {
  max_batch_size: number;
  max_queue_delay_ms: number;
  max_queue_size: number;
  instances: number;
  max_batch_tokens: number;
  length_buckets: number[];
  version_policy: VersionPolicy;
  tasks: string[];
  warmup: WarmupMode;
  weights: WeightsMode;
  /** Accuracy gate on a labelled golden set (null: none). */
  golden: GoldenSpec | null;
}

export type ServingDefaults = Omit<ServingConfig, 'tasks' | 'version_policy' | 'golden'>;

export class ServingConfigError extends Error {
  override name = 'ServingConfigError';
  readonly userFacing = true;
}

const KEYS = [
  'max_batch_size',
  'max_queue_delay_ms',
  'max_queue_size',
  'instances',
  'max_batch_tokens',
  'length_buckets',
  'version_policy',
  'tasks',
  'warmup',
  'weights',
  'golden',
];

function int(v: unknown, where: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new ServingConfigError(`${where} must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
  return v;
}

function parsePolicy(v: unknown, where: string): VersionPolicy {
  if (typeof v !== 'object' || v === null) throw new ServingConfigError(`${where} must be an object`);
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length !== 1)
    throw new ServingConfigError(`${where} must have exactly one of latest, all, specific`);
  if ('latest' in o) return { latest: int(o.latest, `${where}.latest`, 1) };
  if ('all' in o) {
    if (o.all !== true) throw new ServingConfigError(`${where}.all must be true`);
    return { all: true };
  }
  if ('specific' in o && Array.isArray(o.specific) && o.specific.length) {
    return { specific: o.specific.map((x, i) => int(x, `${where}.specific[${i}]`, 1)) };
  }
  throw new ServingConfigError(`${where} must be {"latest": n}, {"all": true} or {"specific": [versions]}`);
}

/** Parses and validates a serving config object over the defaults. */
export function parseServingConfig(
  raw: unknown,
  defaults: ServingDefaults,
  where = SERVING_FILE,
): ServingConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ServingConfigError(`${where}: must be a JSON object`);
  const o = raw as Record<string, unknown>;
  const unknown = Object.keys(o).filter((k) => !KEYS.includes(k) && !k.startsWith('$') && k !== 'comment');
  if (unknown.length)
    throw new ServingConfigError(
      `${where}: unknown field(s) ${unknown.join(', ')} (known: ${KEYS.join(', ')})`,
    );
  const cfg: ServingConfig = {
    max_batch_size:
      o.max_batch_size === undefined
        ? defaults.max_batch_size
        : int(o.max_batch_size, `${where}: max_batch_size`, 1),
    max_queue_delay_ms:
      o.max_queue_delay_ms === undefined
        ? defaults.max_queue_delay_ms
        : int(o.max_queue_delay_ms, `${where}: max_queue_delay_ms`, 0),
    max_queue_size:
      o.max_queue_size === undefined
        ? defaults.max_queue_size
        : int(o.max_queue_size, `${where}: max_queue_size`, 1),
    instances: o.instances === undefined ? defaults.instances : int(o.instances, `${where}: instances`, 1),
    max_batch_tokens:
      o.max_batch_tokens === undefined
        ? defaults.max_batch_tokens
        : int(o.max_batch_tokens, `${where}: max_batch_tokens`, 1),
    length_buckets: defaults.length_buckets,
    version_policy:
      o.version_policy === undefined
        ? { latest: 1 }
        : parsePolicy(o.version_policy, `${where}: version_policy`),
    tasks: [],
    warmup: defaults.warmup,
    weights: defaults.weights,
    golden: null,
  };
  if (o.length_buckets !== undefined) {
    if (!Array.isArray(o.length_buckets) || !o.length_buckets.length)
      throw new ServingConfigError(`${where}: length_buckets must be a non-empty array`);
    cfg.length_buckets = o.length_buckets.map((x, i) => int(x, `${where}: length_buckets[${i}]`, 1));
    if (cfg.length_buckets.some((b, i) => i > 0 && b <= cfg.length_buckets[i - 1]!))
      throw new ServingConfigError(`${where}: length_buckets must be ascending`);
  }
  if (o.tasks !== undefined) {
    if (!Array.isArray(o.tasks) || o.tasks.some((t) => typeof t !== 'string'))
      throw new ServingConfigError(`${where}: tasks must be an array of task names`);
    cfg.tasks = (o.tasks as string[]).map((t) => t.toLowerCase());
  }
  if (o.warmup !== undefined) {
    if (!['all', 'powers-of-two', 'buckets', 'none'].includes(o.warmup as string))
      throw new ServingConfigError(`${where}: warmup must be "all", "powers-of-two", "buckets" or "none"`);
    cfg.warmup = o.warmup as WarmupMode;
  }
  if (o.weights !== undefined) {
    if (!['auto', 'shared', 'private'].includes(o.weights as string))
      throw new ServingConfigError(`${where}: weights must be "auto", "shared" or "private"`);
    cfg.weights = o.weights as WeightsMode;
  }
  if (o.golden !== undefined)
    cfg.golden = parseGoldenSpec(o.golden, where, (msg) => {
      throw new ServingConfigError(msg);
    });
  return cfg;
}

/** Reads `<modelDir>/serving.json` (all defaults when the file is missing). */
export function readServingConfig(modelDir: string, defaults: ServingDefaults): ServingConfig {
  const path = join(modelDir, SERVING_FILE);
  if (!existsSync(path)) return parseServingConfig({}, defaults, path);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new ServingConfigError(`${path}: invalid JSON (${(err as Error).message})`);
  }
  return parseServingConfig(raw, defaults, path);
}

/** The versions a policy selects among those present (ascending). */
export function selectVersions(policy: VersionPolicy, present: readonly number[]): number[] {
  const sorted = [...present].sort((a, b) => a - b);
  if ('all' in policy) return sorted;
  if ('specific' in policy) return sorted.filter((v) => policy.specific.includes(v));
  return sorted.slice(Math.max(0, sorted.length - policy.latest));
}
