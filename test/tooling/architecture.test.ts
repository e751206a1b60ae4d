/**
 * The layer rule of docs/architecture.md ("Layers"), checked from the sources: every `.ts` file under src/ and
 * server/, every static `import` / `export … from` (type-only ones included: they still tie a layer to another)
 * and every dynamic `import('…')`. The layer list is read from the document itself, so the drawing and the code
 * cannot drift apart.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
}
const ROOT = repoRoot();
const SOURCE_DIRS = ['src', 'server'];

/**
 * Imports the rule forbids that are known and owned by work in progress. Each must still occur: the test fails
 * when one disappears, so the list only shrinks.
 */
const KNOWN_UPWARD: Record<string, string> = {};

/** Files of the graph-building layers that may load onnxruntime-node when imported (the probe and its caller). */
const ONNXRUNTIME_LOADERS = ['src/convert/resnet/layout-probe.ts', 'src/convert/resnet/command.ts'];
const GRAPH_BUILDING = ['src/tensor.ts', 'src/onnx/', 'src/model/', 'src/convert/'];

interface ImportEdge {
  from: string;
  /** Repository-relative path of the imported file, or the package name for a bare specifier. */
  to: string;
  /** A bare specifier (a package or a node: builtin): outside the rule. */
  external: boolean;
  line: number;
  /** False for `import type` / `export type … from`, which load nothing at run time. */
  loads: boolean;
  dynamic: boolean;
}

/** The numbered list under "## Layers": per layer (bottom first) its paths, e.g. ['src/convert/', 'src/runtime/']. */
function readLayers(markdown: string): string[][] {
  const section = markdown.split(/^## Layers$/m)[1]?.split(/^## /m)[0] ?? '';
  return section
    .split('\n')
    .map((line) => /^\d+\.\s+(.*?)\s+—/.exec(line)?.[1])
    .filter((head): head is string => head !== undefined)
    .map((head) => [...head.matchAll(/`([^`]+)`/g)].map((m) => m[1]!));
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every import of one file; a relative specifier is resolved to the `.ts` file it names. */
function importsOf(file: string, text: string): ImportEdge[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const edges: ImportEdge[] = [];
  const add = (spec: ts.Expression, loads: boolean, dynamic: boolean): void => {
    const line = sf.getLineAndCharacterOfPosition(spec.getStart(sf)).line + 1;
    if (!ts.isStringLiteralLike(spec)) {
      edges.push({
        from: file,
        to: `<computed: ${spec.getText(sf)}>`,
        external: false,
        line,
        loads,
        dynamic,
      });
      return;
    }
    const external = !spec.text.startsWith('.');
    const to = external
      ? spec.text
      : relative(ROOT, resolve(ROOT, dirname(file), spec.text)).replace(/\.js$/, '.ts');
    edges.push({ from: file, to, external, line, loads, dynamic });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) add(node.moduleSpecifier, !node.importClause?.isTypeOnly, false);
    else if (ts.isExportDeclaration(node) && node.moduleSpecifier)
      add(node.moduleSpecifier, !node.isTypeOnly, false);
    else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0]
    )
      add(node.arguments[0], true, true);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return edges;
}

/** The layer entry (a file or a folder ending in '/') a path belongs to, and its rank; null outside every layer. */
function placeOf(path: string, layers: string[][]): { module: string; rank: number } | null {
  for (let rank = 0; rank < layers.length; rank++)
    for (const module of layers[rank]!)
      if (module.endsWith('/') ? path.startsWith(module) : path === module) return { module, rank };
  return null;
}

const describeEdge = (e: ImportEdge) => `${e.from}:${e.line} imports ${e.to}${e.dynamic ? ' (dynamic)' : ''}`;

/** What the layer rule forbids in `edges`: one line per import, naming the file, the line and the target. */
function layerViolations(edges: readonly ImportEdge[], layers: string[][], known = KNOWN_UPWARD): string[] {
  const out: string[] = [];
  for (const e of edges) {
    if (e.external) continue;
    const from = placeOf(e.from, layers);
    if (!from) {
      out.push(`${e.from}: in no layer (add its folder to docs/architecture.md "Layers")`);
      continue;
    }
    if (e.to.startsWith('<')) {
      out.push(`${describeEdge(e)}: a computed specifier cannot be checked`);
      continue;
    }
    const to = placeOf(e.to, layers);
    if (!to) {
      out.push(`${describeEdge(e)}: outside src/ and server/ layers`);
      continue;
    }
    if (from.module === to.module || known[`${e.from} -> ${e.to}`]) continue;
    if (to.rank > from.rank) out.push(`${describeEdge(e)}: upward (${from.module} → ${to.module})`);
    else if (to.rank === from.rank)
      out.push(`${describeEdge(e)}: between peers (${from.module} → ${to.module})`);
  }
  return [...new Set(out)];
}

/** Import cycles between files (strongly connected components of more than one file, or a file importing itself). */
function importCycles(edges: readonly ImportEdge[]): string[][] {
  const next = new Map<string, string[]>();
  for (const e of edges) if (!e.external) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const connect = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || next.get(v)?.includes(v)) cycles.push(component.sort());
  };
  for (const v of next.keys()) if (!index.has(v)) connect(v);
  return cycles;
}

/** Packages a file loads when imported, following run-time (not type-only, not dynamic) imports transitively. */
function loadedPackages(file: string, edges: readonly ImportEdge[]): Set<string> {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const walk = (f: string): void => {
    if (seen.has(f)) return;
    seen.add(f);
    for (const e of edges)
      if (e.from === f && e.loads && !e.dynamic) {
        if (e.external) packages.add(e.to);
        else walk(e.to);
      }
  };
  walk(file);
  return packages;
}

const LAYERS = readLayers(readFileSync(join(ROOT, 'docs', 'architecture.md'), 'utf8'));
const FILES = SOURCE_DIRS.flatMap(sourceFiles);
const EDGES = FILES.flatMap((f) => importsOf(f, readFileSync(join(ROOT, f), 'utf8')));

describe('architecture: imports point down the layers of docs/architecture.md', () => {
  it('the document lists the layers, each module once, and every source file belongs to one', () => {
    expect(LAYERS.length).toBeGreaterThanOrEqual(10);
    const modules = LAYERS.flat();
    expect(new Set(modules).size).toBe(modules.length);
    for (const m of modules)
      expect(existsSync(join(ROOT, m)), `${m} (docs/architecture.md) does not exist`).toBe(true);
    expect(FILES.filter((f) => !placeOf(f, LAYERS))).toEqual([]);
    expect(FILES.length).toBeGreaterThan(100);
  });

  it('finds the imports it checks (static, type-only, export-from, dynamic)', () => {
    const edges = importsOf(
      'src/runtime/example.ts',
      [
        "import type { A } from '../model/card.js';",
        "// import { commented } from '../routes/hooks.js';",
        "export { b } from './pool.js';",
        "const c = await import('../onnx/builder.js');",
        "const d = `import('../cli/main.js')`;",
      ].join('\n'),
    );
    expect(edges.map((e) => [e.to, e.line, e.loads, e.dynamic])).toEqual([
      ['src/model/card.ts', 1, false, false],
      ['src/runtime/pool.ts', 3, true, false],
      ['src/onnx/builder.ts', 4, true, true],
    ]);
  });

  it('reports upward, sideways, unplaced and outside imports, and cycles (the checker on made-up edges)', () => {
    const edge = (from: string, to: string): ImportEdge => {
      const external = !to.includes('/');
      return { from, to, external, line: 1, loads: true, dynamic: false };
    };
    const made = [
      edge('src/routes/a.ts', 'src/batching/b.ts'), // down: allowed
      edge('src/batching/b.ts', 'src/routes/a.ts'), // up
      edge('src/runtime/c.ts', 'src/preprocess/d.ts'), // peers
      edge('src/newdir/e.ts', 'src/tensor.ts'), // in no layer
      edge('src/model/f.ts', 'test/support/paths.ts'), // outside
      edge('src/model/f.ts', 'node:fs'), // a builtin: not checked
    ];
    expect(layerViolations(made, LAYERS, {})).toEqual([
      'src/batching/b.ts:1 imports src/routes/a.ts: upward (src/batching/ → src/routes/)',
      'src/runtime/c.ts:1 imports src/preprocess/d.ts: between peers (src/runtime/ → src/preprocess/)',
      'src/newdir/e.ts: in no layer (add its folder to docs/architecture.md "Layers")',
      'src/model/f.ts:1 imports test/support/paths.ts: outside src/ and server/ layers',
    ]);
    expect(importCycles(made)).toEqual([['src/batching/b.ts', 'src/routes/a.ts']]);
  });

  it('no import in src/ or server/ runs up the layers or between peers', () => {
    expect(layerViolations(EDGES, LAYERS)).toEqual([]);
  });

  it('the known exceptions still occur (remove an entry from KNOWN_UPWARD once its import is gone)', () => {
    const present = new Set(EDGES.map((e) => `${e.from} -> ${e.to}`));
    expect(Object.keys(KNOWN_UPWARD).filter((k) => !present.has(k))).toEqual([]);
  });

  it('no file takes part in an import cycle', () => {
    expect(importCycles(EDGES)).toEqual([]);
  });

  it('the graph-building layers load no onnxruntime-node when imported (only the NCHWc probe and its caller do)', () => {
    const graphFiles = FILES.filter((f) =>
      GRAPH_BUILDING.some((g) => (g.endsWith('/') ? f.startsWith(g) : f === g)),
    );
    expect(graphFiles.length).toBeGreaterThan(20);
    const loaders = graphFiles.filter((f) => loadedPackages(f, EDGES).has('onnxruntime-node'));
    expect(loaders.sort()).toEqual([...ONNXRUNTIME_LOADERS].sort());
  });

  it("docs/server.md's layering line runs down the same layers", () => {
    const text = readFileSync(join(ROOT, 'docs', 'server.md'), 'utf8');
    const chain = /Layering is one way: `([^`]+)`/.exec(text)?.[1];
    expect(chain, 'docs/server.md: "Layering is one way: `a → b → …`"').toBeDefined();
    const ranks = chain!.split('→').map((name) => {
      const place = placeOf(`src/${name.trim()}/`, LAYERS);
      expect(place, `${name.trim()} in docs/server.md is not a layer`).not.toBeNull();
      return place!.rank;
    });
    for (let i = 1; i < ranks.length; i++) expect(ranks[i]!).toBeLessThan(ranks[i - 1]!);
  });
});
