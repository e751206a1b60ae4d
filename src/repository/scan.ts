/**
 * Reading a model repository: `<repo>/<name>/serving.json` + `<repo>/<name>/<version>/` model folders (positive
 * integer versions, each a folder `padserve convert|synth` wrote). A broken entry does not stop the others: it is
 * reported in `problems` (and logged by the caller).
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readModelCard } from '../model/folder.js';
import type { ModelCard } from '../model/card.js';
import { readServingConfig, selectVersions, type ServingConfig, type ServingDefaults } from './serving.js';

export interface VersionEntry {
  version: number;
  dir: string;
  card: ModelCard;
}

export interface ModelEntry {
  name: string;
  dir: string;
  serving: ServingConfig;
  /** Every readable version present, ascending. */
  versions: VersionEntry[];
  /** The versions the version policy selects (served). */
  served: number[];
}

export interface RepositoryScan {
  models: ModelEntry[];
  problems: string[];
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function isValidModelName(name: string): boolean {
  return NAME_RE.test(name);
}

export function scanModel(
  repoDir: string,
  name: string,
  defaults: ServingDefaults,
  problems: string[] = [],
): ModelEntry | null {
  const dir = join(repoDir, name);
  if (!isValidModelName(name) || !existsSync(dir) || !statSync(dir).isDirectory()) {
    problems.push(`${name}: no such model folder in ${repoDir}`);
    return null;
  }
  let serving: ServingConfig;
  try {
    serving = readServingConfig(dir, defaults);
  } catch (err) {
    problems.push((err as Error).message);
    return null;
  }
  const versions: VersionEntry[] = [];
  for (const v of readdirSync(dir)) {
    if (!/^[1-9][0-9]{0,8}$/.test(v)) continue;
    const vdir = join(dir, v);
    if (!statSync(vdir).isDirectory()) continue;
    try {
      versions.push({ version: Number(v), dir: vdir, card: readModelCard(vdir) });
    } catch (err) {
      problems.push(`${name} version ${v}: ${(err as Error).message}`);
    }
  }
  versions.sort((a, b) => a.version - b.version);
  if (!versions.length) {
    problems.push(`${name}: no readable version folder (expected ${dir}/<n>/config.json)`);
    return null;
  }
  const served = selectVersions(
    serving.version_policy,
    versions.map((v) => v.version),
  );
  if (!served.length) {
    problems.push(
      `${name}: version_policy selects none of the versions present (${versions.map((v) => v.version).join(', ')})`,
    );
    return null;
  }
  return { name, dir, serving, versions, served };
}

export function scanRepository(repoDir: string, defaults: ServingDefaults): RepositoryScan {
  const problems: string[] = [];
  const models: ModelEntry[] = [];
  if (!existsSync(repoDir)) return { models, problems: [`model repository ${repoDir} does not exist`] };
  for (const name of readdirSync(repoDir).sort()) {
    const dir = join(repoDir, name);
    if (name.startsWith('.') || !statSync(dir).isDirectory()) continue;
    if (!isValidModelName(name)) {
      problems.push(`${name}: not a valid model name (letters, digits, . _ -)`);
      continue;
    }
    const m = scanModel(repoDir, name, defaults, problems);
    if (m) models.push(m);
  }
  return { models, problems };
}
