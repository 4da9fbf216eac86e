// Runs the benchmarks in out/bench (built from bench/*.bench.ts by esbuild.mjs): all of them, or
// those named on the command line (`npm run bench -- engine models`); `--shape NAME` alone runs
// bench/shape.bench.ts on a real model shape (`npm run bench -- --shape qwen2.5-0.5b`). Each prints its own table
// and writes bench/out/<name>.json.
import { readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const dir = 'out/bench';
if (!existsSync(dir)) {
  console.error('bench: nothing built in out/bench; run `node esbuild.mjs` first');
  process.exit(1);
}
const all = readdirSync(dir)
  .filter((f) => f.endsWith('.bench.cjs'))
  .map((f) => f.replace(/\.bench\.cjs$/, ''))
  .sort();
// Options are `--name=value` or `--name value`; `--shape NAME` alone runs the real-shape bench.
const opts = [];
const names = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (!a.startsWith('-')) names.push(a);
  else if (a.includes('=') || ['--expose-gc'].includes(a) || i + 1 >= argv.length || argv[i + 1].startsWith('-'))
    opts.push(a);
  else opts.push(`${a}=${argv[++i]}`);
}
const wanted = names.length === 0 && opts.some((o) => o.startsWith('--shape=')) ? ['shape'] : names;
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  console.error(`bench: unknown benchmark(s) ${unknown.join(', ')}; available: ${all.join(', ')}`);
  process.exit(2);
}
let failed = 0;
for (const name of wanted.length ? wanted : all) {
  console.log(`\n=== bench ${name} ===`);
  const r = spawnSync(process.execPath, ['--expose-gc', `${dir}/${name}.bench.cjs`, ...opts], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
