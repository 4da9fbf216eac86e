// Runs the benchmarks in out/bench (built from bench/*.bench.ts by esbuild.mjs): all of them, or
// those named on the command line (`npm run bench -- engine models`). Each prints its own table
// and writes bench/out/<name>.json.
import { readdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

const dir = 'out/bench';
if (!existsSync(dir)) {
  console.error('bench: nothing built in out/bench; run `node esbuild.mjs` first');
  process.exit(1);
}
const all = readdirSync(dir).filter((f) => f.endsWith('.bench.cjs')).map((f) => f.replace(/\.bench\.cjs$/, '')).sort();
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const unknown = wanted.filter((w) => !all.includes(w));
if (unknown.length) {
  console.error(`bench: unknown benchmark(s) ${unknown.join(', ')}; available: ${all.join(', ')}`);
  process.exit(2);
}
let failed = 0;
for (const name of wanted.length ? wanted : all) {
  console.log(`\n=== bench ${name} ===`);
  const r = spawnSync(process.execPath, ['--expose-gc', `${dir}/${name}.bench.cjs`, ...process.argv.slice(2).filter((a) => a.startsWith('-'))], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exit(failed ? 1 : 0);
