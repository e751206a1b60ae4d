#!/usr/bin/env bash
# Replays the Dockerfile's build stage without a Docker engine, then checks that the final stage's file set runs.
#
#   scripts/docker-steps.sh              replay for the default target (the Dockerfile's last stage, the CPU image)
#   scripts/docker-steps.sh --plan       print what would be replayed (stages, COPY'd context files, RUN lines) as
#                                        JSON and exit; fast (no npm), used by test/deploy.test.ts
#   options: --target STAGE   final stage to check (default: the last stage)
#            --dockerfile F   (default: Dockerfile)     --context DIR   build context (default: the repository root)
#            --build-arg K=V  like docker build          --keep          keep the scratch folder (printed at the end)
#   scripts/docker-steps.sh --ignored PATH...   print whether .dockerignore excludes each context path (JSON)
#
# Nothing about the image is hard-coded here: the script reads the Dockerfile. For the target stage it finds the
# stage it copies from (`COPY --from=<stage>`), replays that stage and the stages it is built FROM, in order: the
# COPY lines from the context (applying .dockerignore the way Docker does, no globs), ENV/ARG/WORKDIR, and the RUN
# lines with `/bin/sh -c` (BuildKit `--mount`/`--network` flags dropped: the npm cache mount becomes ~/.npm) in a
# scratch folder standing for the image's root. Then it assembles the target's file set from its `COPY --from=...`
# lines and checks it:
#   1. the ENTRYPOINT/CMD script exists; `<entrypoint> --help` (tini stripped: `node bin/padserve.js --help`) and
#      `<entrypoint> <CMD's command> --help` (`node bin/padserve.js serve --help`: imports the whole server) exit 0;
#   2. every production dependency in package.json imports from the pruned tree (native bindings load);
#   3. every static import in dist/ resolves in the pruned tree (nothing at run time needs a devDependency);
#   4. no dev-only package ("dev": true in package-lock.json) is left in node_modules (the prune ran).
# The target's own RUN lines (apt-get, useradd) and COPYs from base-image layers (the CUDA image's node binary) are
# not replayed: they need the base images. Differences from a real build: the host's Node/npm (the image has the
# node:20 image's npm 10), the host's user instead of root, the host's npm cache. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -d '' PROGRAM <<'JS' || true
import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(1);
const opt = { plan: false, keep: false, target: null, dockerfile: 'Dockerfile', context: '.', buildArgs: {}, ignored: null };
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const next = () => {
    if (i + 1 >= args.length) fail(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--plan') opt.plan = true;
  else if (a === '--ignored') {
    opt.ignored = args.slice(i + 1);
    break;
  }
  else if (a === '--keep') opt.keep = true;
  else if (a === '--target') opt.target = next();
  else if (a === '--dockerfile') opt.dockerfile = next();
  else if (a === '--context') opt.context = next();
  else if (a === '--build-arg') {
    const [k, ...v] = next().split('=');
    opt.buildArgs[k] = v.join('=');
  } else if (a === '-h' || a === '--help') {
    console.log('usage: scripts/docker-steps.sh [--plan] [--keep] [--target STAGE] [--dockerfile F] [--context DIR] [--build-arg K=V] [--ignored PATH...]');
    process.exit(0);
  } else fail(`unknown option ${a}`);
}

function fail(msg) {
  console.error(`docker-steps: ${msg}`);
  process.exit(1);
}
const log = (msg) => console.error(`docker-steps: ${msg}`);

// ---------------------------------------------------------------- Dockerfile parsing
function parseDockerfile(text) {
  const lines = text.split(/\r?\n/);
  const out = [];
  let buf = null;
  let start = 0;
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n];
    const t = raw.trim();
    if (buf === null && (t === '' || t.startsWith('#'))) continue;
    if (buf !== null && t.startsWith('#')) continue; // comments inside a continuation are dropped
    if (buf === null) {
      buf = '';
      start = n + 1;
    }
    if (/\\\s*$/.test(raw)) {
      buf += raw.replace(/\\\s*$/, ''); // Docker drops the backslash and the newline: the lines are joined
      continue;
    }
    buf += raw;
    const m = /^\s*([A-Za-z]+)\s*(.*)$/s.exec(buf);
    if (!m) fail(`${opt.dockerfile}:${start}: cannot parse "${buf}"`);
    out.push({ line: start, keyword: m[1].toUpperCase(), rest: m[2].trim() });
    buf = null;
  }
  if (buf !== null) fail(`${opt.dockerfile}: unterminated line continuation at line ${start}`);
  return out;
}

function splitFlags(rest) {
  const flags = {};
  let s = rest;
  for (;;) {
    const m = /^--([a-z-]+)(?:=(\S*))?\s*/.exec(s);
    if (!m) break;
    flags[m[1]] = m[2] ?? true;
    s = s.slice(m[0].length);
  }
  return { flags, rest: s };
}

function words(s) {
  // shell-like words with quotes (ENV values, COPY arguments)
  const out = [];
  let cur = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (/\s/.test(c)) {
      if (cur !== null) out.push(cur), (cur = null);
      continue;
    }
    cur ??= '';
    if (c === '"' || c === "'") {
      const q = c;
      i++;
      while (i < s.length && s[i] !== q) {
        if (q === '"' && s[i] === '\\' && i + 1 < s.length) i++;
        cur += s[i++];
      }
    } else if (c === '\\' && i + 1 < s.length) cur += s[++i];
    else cur += c;
  }
  if (cur !== null) out.push(cur);
  return out;
}

function subst(s, vars) {
  return s.replace(/\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g, (_, a, op, w, b) => {
    const v = vars[a ?? b];
    if (op === '-') return v === undefined || v === '' ? w : v;
    if (op === '+') return v === undefined || v === '' ? '' : w;
    return v ?? '';
  });
}

function execForm(rest) {
  if (!rest.startsWith('[')) return null;
  try {
    const v = JSON.parse(rest);
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v : null;
  } catch {
    return null;
  }
}

function stagesOf(instructions) {
  const globalArgs = { ...opt.buildArgs };
  const stages = [];
  let cur = null;
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const { rest } = splitFlags(ins.rest);
      const w = words(rest);
      const base = subst(w[0], globalArgs);
      const name = w[1]?.toUpperCase() === 'AS' ? w[2] : String(stages.length);
      cur = { name, base, line: ins.line, instructions: [] };
      stages.push(cur);
    } else if (!cur) {
      if (ins.keyword === 'ARG') {
        const [k, ...v] = ins.rest.split('=');
        if (!(k in globalArgs)) globalArgs[k.trim()] = v.length ? words(v.join('='))[0] ?? '' : undefined;
      }
    } else cur.instructions.push(ins);
  }
  return stages;
}

// ---------------------------------------------------------------- .dockerignore (moby/patternmatcher semantics)
function compilePattern(p) {
  let re = '^';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '*') {
      if (p[i + 1] === '*') {
        i++;
        if (p[i + 1] === '/') i++;
        re += i + 1 >= p.length ? '.*' : '(.*/)?';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '\\' && i + 1 < p.length) re += '\\' + p[++i];
    else if (c === '[') {
      const end = p.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += '[' + p.slice(i + 1, end).replace(/^!/, '^') + ']';
        i = end;
      }
    } else if ('.+()|{}^$'.includes(c)) re += '\\' + c;
    else re += c;
  }
  return new RegExp(re + '$');
}

function loadIgnore(context) {
  const file = path.join(context, '.dockerignore');
  const patterns = [];
  if (fs.existsSync(file)) {
    for (let line of fs.readFileSync(file, 'utf8').split(/\r?\n/)) {
      line = line.trim();
      if (!line || line.startsWith('#')) continue;
      let exclusion = false;
      if (line.startsWith('!')) {
        exclusion = true;
        line = line.slice(1).trim();
      }
      line = path.posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '');
      if (!line || line === '.') continue;
      patterns.push({ text: (exclusion ? '!' : '') + line, exclusion, re: compilePattern(line) });
    }
  }
  const matches = (rel) => {
    let matched = false;
    const dirs = path.posix.dirname(rel) === '.' ? [] : path.posix.dirname(rel).split('/');
    for (const p of patterns) {
      if (p.exclusion !== matched) continue;
      let m = p.re.test(rel);
      for (let i = 0; !m && i < dirs.length; i++) m = p.re.test(dirs.slice(0, i + 1).join('/'));
      if (m) matched = !p.exclusion;
    }
    return matched;
  };
  return { patterns: patterns.map((p) => p.text), matches, hasExclusions: patterns.some((p) => p.exclusion) };
}

// ---------------------------------------------------------------- copying
function walk(abs, rel, ignore, out) {
  const st = fs.lstatSync(abs);
  if (rel && ignore && ignore.matches(rel) && !(st.isDirectory() && ignore.hasExclusions)) return;
  if (st.isDirectory()) {
    out.push({ rel, abs, dir: true });
    for (const name of fs.readdirSync(abs).sort()) walk(path.join(abs, name), rel ? `${rel}/${name}` : name, ignore, out);
  } else out.push({ rel, abs, dir: false, link: st.isSymbolicLink() });
}

/** Docker COPY: a directory source copies its contents; several sources or a trailing '/' make dest a directory. */
function resolveCopy(srcRoot, sources, dest, ignore, what) {
  const plan = [];
  const destIsDir = dest.endsWith('/') || sources.length > 1;
  for (const src of sources) {
    if (/[*?[]/.test(src)) fail(`${what}: globs in COPY sources are not replayed ("${src}"): name the paths`);
    const rel = path.posix.normalize(src.replace(/^\/+/, '')).replace(/\/+$/, '');
    const abs = path.join(srcRoot, rel === '.' ? '' : rel);
    if (!fs.existsSync(abs)) fail(`${what}: "${src}" not found (${abs})`);
    if (ignore && rel !== '.' && ignore.matches(rel)) fail(`${what}: "${src}" is excluded by .dockerignore`);
    const entries = [];
    walk(abs, rel === '.' ? '' : rel, ignore, entries);
    const top = entries[0];
    for (const e of entries) {
      if (top.dir) {
        const sub = e.rel === top.rel ? '' : e.rel.slice(top.rel ? top.rel.length + 1 : 0);
        plan.push({ from: e.abs, to: path.posix.join(dest, sub), dir: e.dir, link: e.link, rel: e.rel });
      } else {
        const to = destIsDir ? path.posix.join(dest, path.posix.basename(rel)) : dest;
        plan.push({ from: e.abs, to, dir: false, link: e.link, rel: e.rel });
      }
    }
  }
  return plan;
}

function doCopy(plan, rootfs, hardlink = false) {
  for (const e of plan) {
    const to = path.join(rootfs, e.to);
    if (e.dir) fs.mkdirSync(to, { recursive: true });
    else {
      fs.mkdirSync(path.dirname(to), { recursive: true });
      if (e.link) fs.symlinkSync(fs.readlinkSync(e.from), to);
      else if (hardlink) fs.linkSync(e.from, to); // build-stage files are not written again: share them
      else {
        fs.copyFileSync(e.from, to);
        fs.chmodSync(to, fs.statSync(e.from).mode & 0o7777);
      }
    }
  }
}

// ---------------------------------------------------------------- plan
if (opt.ignored) {
  // --ignored PATH...: whether .dockerignore keeps each context path out of the build context
  const ig = loadIgnore(path.resolve(opt.context));
  console.log(JSON.stringify(Object.fromEntries(opt.ignored.map((p) => [p, ig.matches(path.posix.normalize(p).replace(/^\/+/, ''))])), null, 2));
  process.exit(0);
}
const dockerfilePath = path.resolve(opt.dockerfile);
const context = path.resolve(opt.context);
const stages = stagesOf(parseDockerfile(fs.readFileSync(dockerfilePath, 'utf8')));
if (!stages.length) fail('no FROM in the Dockerfile');
const target = opt.target ? stages.find((s) => s.name === opt.target) : stages[stages.length - 1];
if (!target) fail(`no stage "${opt.target}"`);
const byName = new Map(stages.map((s) => [s.name, s]));
const fromStages = [
  ...new Set(
    target.instructions
      .filter((i) => i.keyword === 'COPY')
      .map((i) => splitFlags(i.rest).flags.from)
      .filter((f) => typeof f === 'string' && byName.has(f)),
  ),
];
if (fromStages.length !== 1) fail(`stage "${target.name}" must copy from exactly one build stage (found: ${fromStages.join(', ') || 'none'})`);
const chain = [];
for (let s = byName.get(fromStages[0]); s; s = byName.get(s.base)) chain.unshift(s);
const ignore = loadIgnore(context);

/** A stage's steps; a stage built FROM another stage starts with that stage's ENV and WORKDIR (ARGs do not carry). */
function stageSteps(stage, inherited = { workdir: '/', env: {} }) {
  const env = { ...inherited.env };
  const vars = { ...inherited.env };
  let workdir = inherited.workdir;
  const steps = [];
  for (const ins of stage.instructions) {
    const what = `${path.basename(dockerfilePath)}:${ins.line} ${ins.keyword}`;
    if (ins.keyword === 'WORKDIR') {
      workdir = path.posix.resolve(workdir, subst(ins.rest, vars));
      steps.push({ kind: 'workdir', line: ins.line, workdir });
    } else if (ins.keyword === 'ENV' || ins.keyword === 'ARG') {
      const w = words(ins.rest);
      const pairs = ins.keyword === 'ENV' && w.length >= 2 && !w[0].includes('=') ? [[w[0], w.slice(1).join(' ')]] : w.map((x) => x.split(/=(.*)/s));
      const set = {};
      for (const [k, v] of pairs) {
        if (ins.keyword === 'ARG' && k in opt.buildArgs) set[k] = opt.buildArgs[k];
        else if (v !== undefined) set[k] = subst(v, vars);
      }
      Object.assign(vars, set);
      if (ins.keyword === 'ENV') Object.assign(env, set);
      steps.push({ kind: ins.keyword.toLowerCase(), line: ins.line, set });
    } else if (ins.keyword === 'COPY' || ins.keyword === 'ADD') {
      const { flags, rest } = splitFlags(ins.rest);
      if (ins.keyword === 'ADD') fail(`${what}: use COPY (ADD is not replayed)`);
      const w = (execForm(rest) ?? words(rest)).map((x) => subst(x, vars));
      const dest = path.posix.resolve(workdir, w[w.length - 1]) + (w[w.length - 1].endsWith('/') ? '/' : '');
      steps.push({ kind: 'copy', line: ins.line, from: flags.from ?? null, sources: w.slice(0, -1), dest });
    } else if (ins.keyword === 'RUN') {
      const { flags, rest } = splitFlags(ins.rest);
      const ex = execForm(rest);
      steps.push({ kind: 'run', line: ins.line, flags, command: ex ? ex : rest });
    } else steps.push({ kind: ins.keyword.toLowerCase(), line: ins.line, value: ins.rest });
  }
  return { start: { workdir: inherited.workdir, env: inherited.env }, workdir, env, steps };
}

const plans = new Map();
const planOf = (s) => {
  if (!plans.has(s.name)) {
    const parent = byName.get(s.base);
    plans.set(s.name, { stage: s.name, base: s.base, ...stageSteps(s, parent ? planOf(parent) : undefined) });
  }
  return plans.get(s.name);
};
const buildPlan = chain.map(planOf);
const targetPlan = planOf(target);

const contextFiles = [];
for (const sp of buildPlan)
  for (const st of sp.steps)
    if (st.kind === 'copy' && !st.from)
      for (const e of resolveCopy(context, st.sources, st.dest, ignore, `${sp.stage}: COPY ${st.sources.join(' ')}`))
        if (!e.dir) contextFiles.push({ source: e.rel, dest: e.to });

if (opt.plan) {
  console.log(
    JSON.stringify(
      { dockerfile: dockerfilePath, context, dockerignore: ignore.patterns, stages: stages.map((s) => ({ name: s.name, base: s.base })), build: buildPlan, target: targetPlan, contextFiles },
      null,
      2,
    ),
  );
  process.exit(0);
}

// ---------------------------------------------------------------- replay
const t0 = Date.now();
const scratch = fs.mkdtempSync(path.join(process.env.DOCKER_STEPS_DIR || os.tmpdir(), 'padserve-docker-steps-'));
const buildRoot = path.join(scratch, 'build-rootfs');
const finalRoot = path.join(scratch, 'final-rootfs');
const mapped = (root, p) => path.join(root, p);
const timings = [];
const baseEnv = {};
for (const k of ['PATH', 'HOME', 'USER', 'LANG', 'TMPDIR', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'npm_config_cache'])
  if (process.env[k] !== undefined) baseEnv[k] = process.env[k];

let failed = null;
function finish(code) {
  const total = ((Date.now() - t0) / 1000).toFixed(1);
  console.error('\ndocker-steps: timings');
  for (const [what, s] of timings) console.error(`  ${s.toFixed(1).padStart(7)} s  ${what}`);
  if (opt.keep || code !== 0) console.error(`docker-steps: scratch folder kept: ${scratch}`);
  else spawnSync('rm', ['-rf', scratch]);
  console.error(code === 0 ? `docker-steps: OK (${total} s)` : `docker-steps: FAILED: ${failed} (${total} s)`);
  process.exit(code);
}
function timed(what, fn) {
  const s = Date.now();
  log(what);
  const r = fn();
  timings.push([what, (Date.now() - s) / 1000]);
  return r;
}
function sh(command, cwd, env, what) {
  const argv = Array.isArray(command) ? command : ['/bin/sh', '-c', command];
  const r = spawnSync(argv[0], argv.slice(1), { cwd, env, stdio: 'inherit' });
  if (r.status !== 0) {
    failed = `${what} exited with ${r.status ?? r.signal}`;
    finish(1);
  }
}

log(`context ${context}, scratch ${scratch}`);
log(`target stage "${target.name}" copies from "${fromStages[0]}"; replaying ${chain.map((s) => `${s.name} (FROM ${s.base})`).join(' -> ')}`);
for (const sp of buildPlan) {
  let env = { ...baseEnv, ...sp.start.env };
  let workdir = sp.start.workdir;
  fs.mkdirSync(mapped(buildRoot, workdir), { recursive: true });
  let n = 0;
  const count = sp.steps.filter((s) => s.kind === 'copy' || s.kind === 'run').length;
  for (const st of sp.steps) {
    if (st.kind === 'workdir') {
      workdir = st.workdir;
      fs.mkdirSync(mapped(buildRoot, workdir), { recursive: true });
    } else if (st.kind === 'env' || st.kind === 'arg') env = { ...env, ...st.set };
    else if (st.kind === 'copy') {
      const what = `[${sp.stage} ${++n}/${count}] COPY ${st.from ? `--from=${st.from} ` : ''}${st.sources.join(' ')} ${st.dest}`;
      if (st.from) fail(`${what}: COPY --from inside a build stage is not replayed`);
      timed(what, () => doCopy(resolveCopy(context, st.sources, st.dest, ignore, what), buildRoot));
    } else if (st.kind === 'run') {
      const what = `[${sp.stage} ${++n}/${count}] RUN ${Array.isArray(st.command) ? JSON.stringify(st.command) : st.command.replace(/\s*\n\s*/g, ' ')}`;
      const dropped = Object.keys(st.flags);
      if (dropped.length) log(`dropping RUN flags: ${dropped.map((f) => `--${f}`).join(' ')}`);
      timed(what, () => sh(st.command, mapped(buildRoot, workdir), env, what));
    }
  }
}

// ---------------------------------------------------------------- assemble and check the target's file set
let finalEnv = { ...baseEnv, ...targetPlan.start.env };
let finalWorkdir = targetPlan.start.workdir;
let entrypoint = null;
let cmd = null;
for (const st of targetPlan.steps) {
  if (st.kind === 'workdir') finalWorkdir = st.workdir;
  else if (st.kind === 'env' || st.kind === 'arg') finalEnv = { ...finalEnv, ...st.set };
  else if (st.kind === 'copy') {
    const what = `[${target.name}] COPY ${st.from ? `--from=${st.from} ` : ''}${st.sources.join(' ')} ${st.dest}`;
    if (st.from === fromStages[0]) timed(what, () => doCopy(resolveCopy(buildRoot, st.sources, st.dest, null, what), finalRoot, true));
    else log(`${what}: not replayed (${st.from ? 'a base-image layer' : 'context file'})`);
  } else if (st.kind === 'run') log(`[${target.name}] RUN ${String(st.command).split('\n')[0]}...: not replayed (system setup in the base image)`);
  else if (st.kind === 'entrypoint') entrypoint = execForm(st.value);
  else if (st.kind === 'cmd') cmd = execForm(st.value);
}
const app = mapped(finalRoot, finalWorkdir);
if (!entrypoint) fail(`stage "${target.name}" has no exec-form ENTRYPOINT`);
let entry = entrypoint.includes('--') ? entrypoint.slice(entrypoint.indexOf('--') + 1) : entrypoint;
if (/(^|\/)tini$/.test(entry[0])) entry = entry.slice(1);
const script = entry.find((a) => /\.(c|m)?js$/.test(a));
if (!script || !fs.existsSync(path.join(app, script))) {
  failed = `the entrypoint script ${script} is not in the final file set`;
  finish(1);
}
log(`final file set: ${fs.readdirSync(app).sort().join(' ')} (entrypoint: ${entry.join(' ')}; cmd: ${(cmd ?? []).join(' ')})`);
const runEnv = { ...finalEnv, PADSERVE_MODEL_REPOSITORY: path.join(scratch, 'models') };

timed(`[${target.name}] ${entry.join(' ')} --help`, () => sh([...entry, '--help'], app, runEnv, `${entry.join(' ')} --help`));

if (cmd?.[0] && !cmd[0].startsWith('-')) {
  // `serve --help` imports the whole server (fastify, onnxruntime-node, piscina, sharp...) and exits before listening.
  const what = `${entry.join(' ')} ${cmd[0]} --help`;
  timed(`[${target.name}] ${what}`, () => {
    const r = spawnSync(entry[0], [...entry.slice(1), cmd[0], '--help'], { cwd: app, env: runEnv, encoding: 'utf8', timeout: 60_000 });
    process.stderr.write(r.stdout.split('\n').slice(0, 3).join('\n') + '\n...\n');
    if (r.status !== 0 || !/usage/i.test(r.stdout)) {
      failed = `${what} exited with ${r.status ?? r.signal} (expected 0 and a usage text): ${r.stderr.slice(-2000)}`;
      finish(1);
    }
  });
}

const pkg = JSON.parse(fs.readFileSync(path.join(app, 'package.json'), 'utf8'));
const prod = Object.keys(pkg.dependencies ?? {});
const dev = Object.keys(pkg.devDependencies ?? {});
timed(`[${target.name}] import every production dependency (${prod.length})`, () =>
  sh(['node', '--input-type=module', '-e', `for (const m of ${JSON.stringify(prod)}) { await import(m); }`], app, runEnv, 'importing the production dependencies'),
);

timed(`[${target.name}] static imports in dist/ resolve in the pruned tree`, () => {
  const missing = new Map();
  const files = [];
  if (fs.existsSync(path.join(app, 'dist'))) walk(path.join(app, 'dist'), 'dist', null, files);
  const builtin = new Set(builtinModules);
  for (const f of files) {
    if (f.dir || !f.rel.endsWith('.js')) continue;
    const src = fs.readFileSync(f.abs, 'utf8');
    for (const m of src.matchAll(/^\s*(?:import|export)\s[^'"]*?\sfrom\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm)) {
      const spec = m[1] ?? m[2];
      if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:') || builtin.has(spec.split('/')[0])) continue;
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
      if (!fs.existsSync(path.join(app, 'node_modules', name, 'package.json'))) missing.set(spec, f.rel);
    }
  }
  if (missing.size) {
    failed = `dist/ imports packages missing from the pruned node_modules: ${[...missing].map(([s, f]) => `${s} (${f})`).join(', ')}`;
    finish(1);
  }
});

timed(`[${target.name}] no dev-only package left in node_modules`, () => {
  // package-lock.json marks packages needed only by devDependencies with "dev": true (a devDependency that a
  // production package also needs, like @types/node under protobufjs, is not marked and stays).
  const lock = JSON.parse(fs.readFileSync(path.join(mapped(buildRoot, buildPlan[buildPlan.length - 1].workdir), 'package-lock.json'), 'utf8'));
  const left = Object.entries(lock.packages ?? {})
    .filter(([p, e]) => p.startsWith('node_modules/') && e.dev === true && fs.existsSync(path.join(app, p)))
    .map(([p]) => p.slice('node_modules/'.length));
  if (left.length) {
    failed = `dev-only packages still installed after the prune: ${left.slice(0, 20).join(', ')}${left.length > 20 ? ', ...' : ''}`;
    finish(1);
  }
  log(`${dev.filter((d) => fs.existsSync(path.join(app, 'node_modules', d))).join(', ') || 'no'} devDependencies present (needed by production packages)`);
});

const du = spawnSync('du', ['-sh', ...fs.readdirSync(app).map((e) => path.join(app, e))], { encoding: 'utf8' });
if (du.status === 0) console.error(du.stdout.replaceAll(app + '/', '  /app/').trimEnd());
finish(0);
JS

exec node --input-type=module -e "$PROGRAM" -- "$@"
