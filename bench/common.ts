// Shared helpers for the benchmarks: timing, memory, result files.
import { mkdirSync, existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { makeModel } from '../src/tools/makeModel';
import { writeFileAtomic } from '../src/common/atomicFile';
import { cpus } from 'node:os';
import { readFileSync } from 'node:fs';

export const now = (): number => performance.now();

/** Median wall time in ms of `reps` runs after `warmup` runs. */
export async function timeIt(fn: () => Promise<unknown> | unknown, reps = 5, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = now();
    await fn();
    times.push(now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

/** Peak resident set size of this process so far, in MB (VmHWM from /proc on Linux). */
export function peakRssMb(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    /* not Linux */
  }
  return process.memoryUsage().rss / 2 ** 20;
}

export function threadsArg(): number {
  const a = process.argv.find((x) => x.startsWith('--threads='));
  return a ? Number(a.split('=')[1]) : Math.min(2, cpus().length);
}

export function machine(): Record<string, unknown> {
  return {
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

export function table(rows: Record<string, string | number>[]): void {
  if (!rows.length) return;
  const cols = Object.keys(rows[0]!);
  const fmt = (v: string | number) =>
    typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3)) : v;
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(fmt(r[c] ?? '')).length)));
  console.log(cols.map((c, i) => c.padEnd(w[i]!)).join('  '));
  for (const r of rows) console.log(cols.map((c, i) => String(fmt(r[c] ?? '')).padEnd(w[i]!)).join('  '));
}

export function saveResult(name: string, result: unknown): void {
  mkdirSync('bench/out', { recursive: true });
  const path = `bench/out/${name}.json`;
  writeFileAtomic(
    path,
    JSON.stringify({ machine: machine(), date: new Date().toISOString(), ...(result as object) }, null, 2),
  );
  console.log(`→ ${path}`);
}

/** A random SmolLM2-135M-shaped model in the Hugging Face layout (float32), made once under bench/out. */
export function benchModel(): string {
  const dir = 'bench/out/models/smollm2-135m';
  if (!existsSync(`${dir}/model.safetensors`)) {
    console.log(`making ${dir} (random weights, float32)…`);
    makeModel({ shape: 'smollm2-135m', seed: 0, out: dir, dtype: 'float32', force: true });
  }
  return dir;
}

/** Runs a PyTorch baseline script (bench/torch) with Debian's python3-torch, if installed. */
export function torchBaseline(script: string, args: string[]): Record<string, unknown> | undefined {
  if (!existsSync('/usr/bin/python3')) return undefined;
  const probe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.log('PyTorch baseline skipped: python3-torch is not installed (bash scripts/reference/setup.sh)');
    return undefined;
  }
  const r = spawnSync('/usr/bin/python3', [`bench/torch/${script}`, ...args], { encoding: 'utf8', maxBuffer: 1 << 24 });
  if (r.status !== 0) {
    console.log(`PyTorch baseline failed: ${r.stderr.slice(-500)}`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}
