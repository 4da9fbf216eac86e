// Bundles the extension, the worker, the CLI and the webviews into dist/, and the unit tests into
// out/test/. onnxruntime-node stays external everywhere (native binaries); `vscode` is provided by
// the editor. Everything else is bundled, so the VSIX needs no node_modules but onnxruntime-node.
import * as esbuild from 'esbuild';
import { readdirSync, statSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');

function walk(dir, pred, acc = []) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return acc;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, pred, acc);
    else if (pred(p)) acc.push(p);
  }
  return acc;
}

const nodeCommon = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: true,
  minify: production,
  external: ['onnxruntime-node', 'vscode'],
  logLevel: 'warning',
  // Some dependencies ship ESM only; import.meta.url appears in them. Map it to a CJS equivalent.
  define: { 'import.meta.url': 'importMetaUrl' },
  banner: { js: "const importMetaUrl = require('url').pathToFileURL(__filename).href;" },
};

const nodeEntries = { extension: 'src/extension.ts', worker: 'src/worker/main.ts', cli: 'src/cli/main.ts' };
const builds = Object.entries(nodeEntries)
  .filter(([, file]) => existsSync(file))
  .map(([name, file]) => ({ ...nodeCommon, entryPoints: { [name]: file }, outdir: 'dist' }));

const webviewEntries = walk('webview', (p) => /webview[\\/][^\\/]+[\\/]main\.ts$/.test(p));
if (webviewEntries.length > 0) {
  builds.push({
    entryPoints: Object.fromEntries(webviewEntries.map((p) => [p.split(/[\\/]/)[1], p])),
    outdir: 'dist/webview',
    bundle: true,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    sourcemap: true,
    minify: production,
    logLevel: 'warning',
  });
}

const tests = walk('test/unit', (p) => p.endsWith('.test.ts'));
if (tests.length > 0) {
  rmSync('out/test', { recursive: true, force: true });
  builds.push({
    ...nodeCommon,
    entryPoints: tests,
    outdir: 'out/test',
    outbase: 'test/unit',
    outExtension: { '.js': '.cjs' },
    sourcemap: 'inline',
  });
}

// The GPU suite (npm run test:gpu): the same engine on the WebGPU provider, against the CPU and the
// PyTorch fixtures. Separate from the unit tests: it needs a WebGPU adapter (a software one in CI).
const gpuTests = walk('test/gpu', (p) => p.endsWith('.test.ts'));
if (gpuTests.length > 0) {
  rmSync('out/gpu', { recursive: true, force: true });
  builds.push({
    ...nodeCommon,
    entryPoints: gpuTests,
    outdir: 'out/gpu',
    outbase: 'test/gpu',
    outExtension: { '.js': '.cjs' },
    sourcemap: 'inline',
  });
}

const benches = walk('bench', (p) => p.endsWith('.bench.ts'));
if (benches.length > 0) {
  builds.push({
    ...nodeCommon,
    entryPoints: benches,
    outdir: 'out/bench',
    outbase: 'bench',
    outExtension: { '.js': '.cjs' },
  });
}

if (watch) {
  const ctxs = await Promise.all(builds.map((b) => esbuild.context(b)));
  await Promise.all(ctxs.map((c) => c.watch()));
  console.error('esbuild: watching');
} else {
  // Build everything even when one bundle fails, then fail with all errors shown.
  const results = await Promise.allSettled(builds.map((b) => esbuild.build(b)));
  if (results.some((r) => r.status === 'rejected')) process.exit(1);
}
