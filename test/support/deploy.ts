/**
 * What the deployment tests (test/tooling/deploy-*.test.ts) share: the repository's YAML files read as Kubernetes
 * reads them, and the server's own settings parser to judge the flags and PADSERVE_* values the Dockerfiles and
 * manifests give it.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { ConfigError, SETTINGS, loadConfig } from '../../server/config.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const rel = (p: string) => relative(ROOT, p);
export const read = (file: string) => readFileSync(join(ROOT, file), 'utf8');

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
export const obj = (v: unknown, what: string): Obj => {
  if (!isObj(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
};
export const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
export const str = (v: unknown): string => (typeof v === 'string' ? v : String(v));
/** `at(o, 'spec.template.spec.containers.0')`: undefined where the path does not exist. */
export const at = (o: unknown, path: string): unknown =>
  path
    .split('.')
    .reduce<unknown>((v, k) => (Array.isArray(v) ? v[Number(k)] : isObj(v) ? v[k] : undefined), o);

// ------------------------------------------------------------------------------------------ server settings
export { SETTINGS };
type Def = (typeof SETTINGS)[keyof typeof SETTINGS] & { secret?: boolean };
export const byEnv = new Map<string, Def>(Object.values(SETTINGS).map((s) => [s.env, s]));
export const byFlag = new Map<string, Def>(Object.values(SETTINGS).map((s) => [s.flag, s]));

/**
 * What the server would refuse at startup given `args` (`serve --flag value ...`) and these variables: the
 * server's own parser (server/config.ts loadConfig) for flags and values, plus PADSERVE_* names it does not know
 * (it ignores those, so a misspelt variable would be dropped silently).
 */
export function startupErrors(args: string[], env: Record<string, string> = {}): string[] {
  const errors = args[0] === 'serve' ? [] : [`first argument should be "serve", got "${args[0]}"`];
  for (const name of Object.keys(env))
    if (name.startsWith('PADSERVE_') && !byEnv.has(name))
      errors.push(`${name} is not a server setting (server/config.ts)`);
  try {
    loadConfig(args.slice(1), env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    errors.push(e.message.split('\n')[0]!);
  }
  return errors;
}

// ------------------------------------------------------------------------------------------ YAML
export interface Manifest {
  file: string;
  index: number;
  doc: Obj;
}

/** Kubernetes reads YAML 1.1 (sigs.k8s.io/yaml): yes/no/on/off are booleans there, so parse the same way. */
export function parseYaml(text: string, file: string): Manifest[] {
  const out: Manifest[] = [];
  for (const [index, d] of parseAllDocuments(text, { version: '1.1', uniqueKeys: true }).entries()) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    const js: unknown = d.toJS();
    if (js !== null && js !== undefined) out.push({ file, index, doc: obj(js, `${file} document ${index}`) });
  }
  return out;
}

/** Every .yaml / .yml file under `dir` (relative to the repository), sorted. */
export function listYaml(dir: string): string[] {
  return readdirSync(join(ROOT, dir))
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      if (statSync(join(ROOT, p)).isDirectory()) return listYaml(p);
      return /\.ya?ml$/.test(name) ? [p] : [];
    });
}
