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
  const re = /(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of source.matchAll(re)) out.push(m[1] ?? m[2] ?? m[3] ?? m[4]!);
  return out;
}

type Layer = 'webview' | 'host' | 'protocol' | 'worker' | 'cli' | 'pipeline' | 'engine' | 'engine/backend' | 'extension';

function layerOfPath(abs: string): Layer | undefined {
  const rel = relative(root, abs).split('\\').join('/');
  if (rel.startsWith('webview/')) return 'webview';
  if (rel === 'src/extension.ts') return 'extension';
  if (rel.startsWith('src/engine/backend/')) return 'engine/backend';
  const m = /^src\/(host|protocol|worker|cli|pipeline|engine)\//.exec(rel);
  return m ? (m[1] as Layer) : undefined;
}

// Which project layers each layer may import.
const allowed: Record<Layer, Layer[]> = {
  webview: ['webview', 'protocol'],
  extension: ['host', 'protocol'],
  host: ['host', 'protocol'],
  protocol: ['protocol'],
  worker: ['worker', 'cli', 'protocol', 'pipeline', 'engine', 'engine/backend'],
  cli: ['cli', 'worker', 'protocol', 'pipeline', 'engine', 'engine/backend'],
  pipeline: ['pipeline', 'engine', 'engine/backend'],
  engine: ['engine', 'engine/backend'],
  'engine/backend': ['engine', 'engine/backend'],
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
  return all.length === importsOf(source).filter((x) => x === spec).length && all.every((st) => /^(?:import|export)\s+type\s/.test(st));
}

const nodeBuiltins = new Set<string>(builtinModules);
const isNodeApi = (s: string) => s.startsWith('node:') || nodeBuiltins.has(s.split('/')[0]!);

export function violations(file: string, source: string): string[] {
  const layer = layerOfPath(file);
  if (!layer) return [];
  const bad: string[] = [];
  for (const spec of importsOf(source)) {
    const where = `${relative(root, file)} imports '${spec}'`;
    if (spec === 'vscode' && !['host', 'extension'].includes(layer)) bad.push(`${where}: only src/host may import vscode`);
    if (spec === 'onnxruntime-node' || spec.startsWith('onnxruntime-')) {
      if (layer !== 'engine/backend') bad.push(`${where}: only src/engine/backend may import onnxruntime`);
    }
    if ((layer === 'webview' || layer === 'protocol') && isNodeApi(spec)) bad.push(`${where}: ${layer} code runs without Node APIs`);
    if (spec.startsWith('.')) {
      const target = layerOfPath(resolve(dirname(file), spec));
      if (target && !allowed[layer].includes(target) && !isPipelineEventTypes(layer, file, spec, source)) bad.push(`${where}: ${layer} may not import ${target}`);
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
  assert.equal(violations(join(root, 'webview/dashboard/main.ts'), "import { readFileSync } from 'node:fs';").length, 1);
  assert.equal(violations(join(root, 'webview/dashboard/main.ts'), "import type { X } from '../../src/protocol/messages';").length, 0);
  assert.equal(violations(join(root, 'src/engine/graph/x.ts'), "import { run } from '../../pipeline/run';").length, 1);
  assert.equal(violations(join(root, 'src/host/x.ts'), "const e = require('../engine/backend/session');").length, 1);
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "import { spawn } from 'child_process';").length, 1);
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "export type { DistillEvent as JobEvent } from '../pipeline/events';").length, 0);
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "export { PHASES } from '../pipeline/events';").length, 1);
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "const e = require('../pipeline/events');").length, 1);
  assert.equal(violations(join(root, 'src/protocol/x.ts'), "import type { Distiller } from '../pipeline/distill';").length, 1);
  assert.equal(violations(join(root, 'src/host/x.ts'), "import type { DistillEvent } from '../pipeline/events';").length, 1);
});
