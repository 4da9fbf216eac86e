// Generation speed on a SmolLM2-135M-shaped random model: prefill (128-token prompts) and decode
// (64 new tokens, greedy, KV cache) tokens/s at batch 1 and 16, and peak memory, side by side with
// PyTorch eager with a KV cache (bench/torch/generate_bench.py) on the same threads.
// Targets: decode at batch 1 ≥ 2× PyTorch, prefill ≥ 1× PyTorch.
import { Backend } from '../src/engine/backend';
import { CausalLM } from '../src/engine/models/model';
import { Stepper } from '../src/engine/generate';
import { benchModel, now, peakRssMb, saveResult, table, threadsArg, torchBaseline } from './common';
import { leanMallocEnv } from '../src/common/leanMalloc';

const threads = threadsArg();
const PROMPT = 128;
const NEW = 64;

async function ours(dir: string) {
  const be = await Backend.create({ device: 'cpu', threads });
  const t0 = now();
  const model = await CausalLM.load(dir, be, { dtype: 'float32' });
  const session = await model.session('step');
  const loadS = (now() - t0) / 1000;
  const V = model.config.vocabSize;
  const results = [];
  for (const B of [1, 16]) {
    let seed = 1;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) % (V - 3)) + 3;
    const prompts = Array.from({ length: B }, () => Array.from({ length: PROMPT }, rnd));
    // warm-up
    const w = new Stepper(session, model.config, 'float32', B, 32, {});
    await w.prefill(prompts.map((p) => p.slice(0, 16)));
    await w.decode(prompts.map(() => 5));
    const st = new Stepper(session, model.config, 'float32', B, PROMPT + NEW + 1, {});
    const a = now();
    let logits = await st.prefill(prompts);
    const b = now();
    for (let i = 0; i < NEW; i++) {
      const next = prompts.map((_, r) => {
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[r * V + v]! > logits[r * V + best]!) best = v;
        return best;
      });
      logits = await st.decode(next);
    }
    const c = now();
    results.push({
      batch: B,
      prefill_tok_s: (B * PROMPT) / ((b - a) / 1000),
      decode_tok_s: (B * NEW) / ((c - b) / 1000),
      decode_ms_per_step: (c - b) / NEW,
    });
  }
  await be.dispose();
  return { loadS, results, peakRssMb: peakRssMb() };
}

async function main() {
  const dir = benchModel();
  if (process.argv.includes('--child')) {
    console.log(JSON.stringify(await ours(dir)));
    return;
  }
  // Ours in a child process, so its peak memory is its own.
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [__filename, '--child', `--threads=${threads}`], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    env: leanMallocEnv(process.env), // as the worker and the CLI run
  });
  if (r.status !== 0) throw new Error(r.stderr);
  const me = JSON.parse(r.stdout.trim().split('\n').pop()!) as Awaited<ReturnType<typeof ours>>;
  const torch = torchBaseline('generate_bench.py', [
    dir,
    '--threads',
    String(threads),
    '--prompt',
    String(PROMPT),
    '--new-tokens',
    String(NEW),
    '--batches',
    '1,16',
  ]) as { results: { batch: number; prefill_tok_s: number; decode_tok_s: number }[]; peak_rss_mb: number } | undefined;
  const rows = me.results.map((m) => {
    const t = torch?.results.find((x) => x.batch === m.batch);
    return {
      batch: m.batch,
      'prefill tok/s': m.prefill_tok_s,
      'torch prefill': t?.prefill_tok_s ?? NaN,
      'prefill ×': t ? m.prefill_tok_s / t.prefill_tok_s : NaN,
      'decode tok/s': m.decode_tok_s,
      'torch decode': t?.decode_tok_s ?? NaN,
      'decode ×': t ? m.decode_tok_s / t.decode_tok_s : NaN,
    };
  });
  console.log(`SmolLM2-135M-shaped, float32, ${threads} threads, prompt ${PROMPT}, ${NEW} new tokens`);
  table(rows);
  console.log(
    `peak RSS: ours ${me.peakRssMb.toFixed(0)} MB, PyTorch ${torch?.peak_rss_mb ?? 'n/a'} MB; model load + session ${me.loadS.toFixed(1)} s`,
  );
  saveResult('models', { threads, ours: me, torch, rows });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
