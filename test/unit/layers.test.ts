// The layer rules of ARCHITECTURE.md, enforced: imports only point downwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';
import { builtinModules } from 'node:module';

const root = resolve(__dirname, '..', '..');

function walk(dir: string, acc: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, acc);
    else if (/\.(ts|tsx|mts|cts)$/.test(n) && !n.endsWith('.d.ts')) acc.push(p);
  }
  return acc;
}

/** Every module specifier a file imports (static, dynamic, require, export-from). */
export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re =
    /(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3] ?? m[4]!);
  return out;
}

type Layer =
  | 'webview'
  | 'host'
  | 'protocol'
  | 'worker'
  | 'cli'
  | 'demo'
  | 'tools'
  | 'pipeline'
  | 'engine'
  | 'engine/backend'
  | 'common'
  | 'extension';

function layerOfPath(abs: string): Layer | undefined {
  const rel = relative(root, abs).split('\\').join('/');
  if (rel.startsWith('webview/')) return 'webview';
  if (rel === 'src/extension.ts') return 'extension';
  if (rel.startsWith('src/engine/backend/')) return 'engine/backend';
  const m = /^src\/(host|protocol|worker|cli|demo|tools|pipeline|engine|common)\//.exec(rel);
  return m ? (m[1] as Layer) : undefined;
}

// Which project layers each layer may import. From the top: the entry points (extension, worker,
// CLI); demo (the demo world and demo-model training) and tools (random-weight models for tests
// and benchmarks), used by the CLI; the pipeline (prompt distillation); the engine; and common,
// the Node helpers every Node layer shares (one seeded RNG, one atomic file writer), which
// imports no project code.
const allowed: Record<Layer, Layer[]> = {
  webview: ['webview', 'protocol'],
  extension: ['host', 'protocol', 'common'],
  host: ['host', 'protocol', 'common'],
  protocol: ['protocol'],
  worker: ['worker', 'cli', 'protocol', 'pipeline', 'engine', 'engine/backend', 'common'],
  cli: ['cli', 'worker', 'protocol', 'demo', 'tools', 'pipeline', 'engine', 'engine/backend', 'common'],
  demo: ['demo', 'pipeline', 'engine', 'engine/backend', 'common'],
  tools: ['tools', 'engine', 'engine/backend', 'common'],
  pipeline: ['pipeline', 'engine', 'engine/backend', 'common'],
  engine: ['engine', 'engine/backend', 'common'],
  'engine/backend': ['engine', 'engine/backend', 'common'],
  common: ['common'],
};

// One exception, upwards: a job's events are defined where they are emitted, in
// src/pipeline/events.ts (a module with no imports), and the protocol re-exports them as its
// job/event payload, type-only, so that there is one definition and the worker forwards them
// unchanged. Nothing of the pipeline's code reaches the protocol, the host or the webview.
const pipelineEvents = join(root, 'src', 'pipeline', 'events');
function isPipelineEventTypes(layer: Layer, file: string, spec: string, source: string): boolean {
  if (layer !== 'protocol' || resolve(dirname(file), spec).replace(/\.ts$/, '') !== pipelineEvents) return false;
  const esc = spec.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const all = source.match(new RegExp(`(?:import|export)\\s[^'"\`;]*?from\\s*['"]${esc}['"]`, 'g')) ?? [];
  return (
    all.length === importsOf(source).filter((x) => x === spec).length &&
    all.every((st) => /^(?:import|export)\s+type\s/.test(st))
  );
}

const nodeBuiltins = new Set<string>(builtinModules);
const isNodeApi = (s: string) => s.startsWith('node:') || nodeBuiltins.has(s.split('/')[0]!);

export function violations(file: string, source: string): string[] {
  const layer = layerOfPath(file);
  if (!layer) return [];
  const bad: string[] = [];
  for (const spec of importsOf(source)) {
    const where = `${relative(root, file)} imports '${spec}'`;
    if (spec === 'vscode' && !['host', 'extension'].includes(layer))
      bad.push(`${where}: only src/host may import vscode`);
    if (spec === 'onnxruntime-node' || spec.startsWith('onnxruntime-')) {
      if (layer !== 'engine/backend') bad.push(`${where}: only src/engine/backend may import onnxruntime`);
    }
    if ((layer === 'webview' || layer === 'protocol') && isNodeApi(spec))
      bad.push(`${where}: ${layer} code runs without Node APIs`);
    if (spec.startsWith('.')) {
      const target = layerOfPath(resolve(dirname(file), spec));
      if (target && !allowed[layer].includes(target) && !isPipelineEventTypes(layer, file, spec, source))
        bad.push(`${where}: ${layer} may not import ${target}`);
      const abs = resolve(dirname(file), spec);
      // The manifest (name, version) is the one file outside src/ that the entry points may read.
      if (!target && layer !== 'webview' && !abs.startsWith(join(root, 'src')) && abs !== join(root, 'package.json')) {
        bad.push(`${where}: imports outside src/`);
      }
    }
  }
  return bad;
}

test('src/pipeline/events.ts, which the protocol re-exports, imports nothing', () => {
  assert.deepEqual(importsOf(readFileSync(`${pipelineEvents}.ts`, 'utf8')), []);
});

test('no file breaks the layer rules of ARCHITECTURE.md', () => {
  const files = [...walk(join(root, 'src')), ...walk(join(root, 'webview'))];
  assert.ok(files.length > 0, 'no source files found');
  const bad = files.flatMap((f) => violations(f, readFileSync(f, 'utf8')));
  assert.deepEqual(bad, []);
});

test('the layer check catches a vscode import in the engine, onnxruntime outside the backend and fs in a webview', () => {
  assert.equal(violations(join(root, 'src/engine/graph/x.ts'), "import * as vscode from 'vscode';").length, 1);
  assert.equal(violations(join(root, 'src/pipeline/x.ts'), "import * as vscode from 'vscode';").length, 1);
  assert.equal(violations(join(root, 'src/engine/models/x.ts'), "import * as ort from 'onnxruntime-node';").length, 1);
  assert.equal(violations(join(root, 'src/engine/backend/x.ts'), "import * as ort from 'onnxruntime-node';").length, 0);
  assert.equal(
    violations(join(root, 'webview/dashboard/main.ts'), "import { readFileSync } from 'node:fs';").length,
    1,
  );
  assert.equal(
    violations(join(root, 'webview/dashboard/main.ts'), "import type { X } from '../../src/protocol/messages';").length,
    0,
  );
  assert.equal(violations(join(root, 'src/engine/graph/x.ts'), "import { run } from '../../pipeline/run';").length, 1);
  assert.equal(violations(join(root, 'src/host/x.ts'), "const e = require('../engine/backend/session');").length, 1);
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "import { spawn } from 'child_process';").length, 1);
  assert.equal(violations(join(root, 'src/pipeline/x.ts'), "import { runDemo } from '../demo/demo';").length, 1);
  assert.equal(
    violations(join(root, 'src/engine/models/x.ts'), "import { makeModel } from '../../tools/makeModel';").length,
    1,
  );
  assert.equal(violations(join(root, 'src/common/x.ts'), "import { Graph } from '../engine/graph';").length, 1);
  assert.equal(violations(join(root, 'src/cli/x.ts'), "import { runDemo } from '../demo/demo';").length, 0);
  assert.equal(
    violations(join(root, 'src/host/x.ts'), "import { writeJsonAtomic } from '../common/atomicFile';").length,
    0,
  );
  assert.equal(
    violations(join(root, 'src/protocol/x.ts'), "export type { DistillEvent as JobEvent } from '../pipeline/events';")
      .length,
    0,
  );
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "export { PHASES } from '../pipeline/events';").length, 1);
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "const e = require('../pipeline/events');").length, 1);
  assert.equal(
    violations(join(root, 'src/protocol/x.ts'), "import type { Distiller } from '../pipeline/distill';").length,
    1,
  );
  assert.equal(
    violations(join(root, 'src/host/x.ts'), "import type { DistillEvent } from '../pipeline/events';").length,
    1,
  );
});

// ---------------------------------------------------------------------------------------------
// Import cycles. A cycle makes the order in which modules load decide whether a value exists yet
// when it is read, and means two modules cannot be understood (or changed) one without the other.

/** The source files a file imports, resolved as the bundler resolves them; `types` keeps type-only imports. */
export function localImportsOf(file: string, source: string, types: boolean, exists: (p: string) => boolean): string[] {
  const out: string[] = [];
  const re =
    /(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3] ?? m[4]!;
    if (!spec.startsWith('.')) continue;
    // `import type` / `export type` vanish when compiled: no edge at load time.
    if (!types && /^(?:import|export)\s+type\s/.test(m[0])) continue;
    if (!types && m[3] !== undefined && /typeof\s+$/.test(source.slice(0, m.index))) continue;
    const base = resolve(dirname(file), spec);
    const hit = [`${base}.ts`, join(base, 'index.ts'), base].find(exists);
    if (hit) out.push(hit);
  }
  return out;
}

/** Every cycle of the import graph that a depth-first search closes, as file lists (first = last). */
export function importCycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    stack.push(f);
    for (const t of graph.get(f) ?? []) {
      if (state.get(t) === 'open') cycles.push([...stack.slice(stack.indexOf(t)), t]);
      else if (!state.has(t)) visit(t);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of [...graph.keys()].sort()) if (!state.has(f)) visit(f);
  return cycles;
}

function srcGraph(types: boolean): Map<string, string[]> {
  const files = walk(join(root, 'src'));
  const known = new Set(files);
  return new Map(files.map((f) => [f, localImportsOf(f, readFileSync(f, 'utf8'), types, (p) => known.has(p))]));
}

const show = (c: string[]) => c.map((f) => relative(root, f).split('\\').join('/')).join(' → ');

test('no import cycle anywhere in src/', () => {
  assert.deepEqual(importCycles(srcGraph(false)).map(show), []);
});

// Type-only cycles: harmless at load time, but the same tangle. Issue 19's host split removed the
// last ones (the host's modules took the whole extension object; the panels now take a PanelHost).
test('no import cycle in src/ counting type-only imports either', () => {
  assert.deepEqual(importCycles(srcGraph(true)).map(show).sort(), []);
});

test('the cycle check finds a cycle through three files, and none in a chain', () => {
  assert.deepEqual(
    importCycles(
      new Map([
        ['a', ['b']],
        ['b', ['c']],
        ['c', ['a']],
      ]),
    ),
    [['a', 'b', 'c', 'a']],
  );
  assert.deepEqual(
    importCycles(
      new Map([
        ['a', ['b', 'c']],
        ['b', ['c']],
        ['c', []],
      ]),
    ),
    [],
  );
  const exists = (p: string) => p === join(root, 'src/x/b.ts');
  assert.deepEqual(localImportsOf(join(root, 'src/x/a.ts'), "import { f } from './b';", false, exists), [
    join(root, 'src/x/b.ts'),
  ]);
  assert.deepEqual(localImportsOf(join(root, 'src/x/a.ts'), "import type { F } from './b';", false, exists), []);
  assert.deepEqual(localImportsOf(join(root, 'src/x/a.ts'), "import type { F } from './b';", true, exists), [
    join(root, 'src/x/b.ts'),
  ]);
});
