// LoRA distillation training speed on a SmolLM2-135M-shaped random model: batch 4 × 256 student
// tokens (teacher 256, answer 64), rank 16 on every target, exact full-vocabulary KL with the
// teacher computed on the fly; side by side with PyTorch eager doing the same step
// (bench/torch/train_bench.py) on the same threads. MFU against the MatMul rate measured here.
// Targets: ≥ 1.3× PyTorch, MFU ≥ 50 %.
import { Backend } from '../src/engine/backend';
import { CausalLM } from '../src/engine/models/model';
import { Graph, op } from '../src/engine/graph';
import { LoraTrainer, defaultTrainerConfig, type DistillSample } from '../src/engine/train/trainer';
import { LORA_TARGETS } from '../src/engine/models/llama';
import { benchModel, now, peakRssMb, saveResult, table, threadsArg, timeIt, torchBaseline } from './common';
import { leanMallocEnv } from '../src/common/leanMalloc';

const threads = threadsArg();
const B = 4,
  S = 256,
  TS = 256,
  A = 64,
  RANK = 16,
  STEPS = 3;

async function matmulPeak(be: Backend): Promise<number> {
  let best = 0;
  for (const [M, K, N] of [
    [1024, 576, 1536],
    [1024, 1536, 576],
    [1024, 1024, 1024],
  ] as const) {
    const g = new Graph(`peak_${M}_${K}_${N}`);
    g.output(
      op.matmul(
        g.input('a', 'float32', [M, K]),
        g.initializer('b', 'float32', [K, N], new Float32Array(K * N).fill(0.01)),
      ),
      'y',
    );
    const s = await be.session(g);
    const a = new Float32Array(M * K).fill(0.5);
    const ms = await timeIt(() => s.run({ a: { dtype: 'float32', dims: [M, K], data: a } }), 10, 2);
    best = Math.max(best, (2 * M * K * N) / ms / 1e6);
  }
  return best;
}

async function ours(dir: string) {
  const be = await Backend.create({ device: 'cpu', threads });
  const peak = await matmulPeak(be);
  const model = await CausalLM.load(dir, be, { dtype: 'float32' });
  const c = model.config;
  let seed = 7;
  const rnd = () => ((seed = (seed * 16807) % 2147483647) % (c.vocabSize - 3)) + 3;
  const batch: DistillSample[] = Array.from({ length: B }, () => {
    const ans = Array.from({ length: A }, rnd);
    return {
      student: [...Array.from({ length: S - A }, rnd), ...ans],
      teacher: [...Array.from({ length: TS - A }, rnd), ...ans],
      answerLength: A,
    };
  });
  const t = new LoraTrainer(model, {
    ...defaultTrainerConfig({ rank: RANK, alpha: 2 * RANK, targets: [...LORA_TARGETS] }, 100),
    microBatch: B,
    lr: 1e-4,
    warmupSteps: 0,
  });
  const tc = now();
  await t.trainStep(batch); // session creation + warm-up
  const firstS = (now() - tc) / 1000;
  const times: number[] = [];
  for (let i = 0; i < STEPS; i++) {
    const a = now();
    await t.trainStep(batch);
    times.push((now() - a) / 1000);
  }
  const step = times.reduce((x, y) => x + y, 0) / times.length;
  // Model FLOPs of one step: student forward + backward (≈ 3 × forward; LoRA adds little) and the
  // teacher forward, 2·params per token plus attention.
  const D = c.hiddenSize,
    L = c.numLayers,
    I = c.intermediateSize,
    H = c.numHeads,
    K = c.numKvHeads,
    E = c.headDim,
    V = c.vocabSize;
  const perTokLayer = 2 * (D * H * E + 2 * D * K * E + H * E * D + 3 * D * I);
  const fwd = (T: number, logitsRows: number) =>
    B * (T * L * perTokLayer + 2 * L * H * T * T * E + 2 * logitsRows * D * V);
  const flops = 3 * fwd(S, A) + fwd(TS, A);
  await be.dispose();
  return {
    stepS: step,
    firstStepS: firstS,
    tokensPerS: (B * S) / step,
    gflops: flops / step / 1e9,
    matmulPeak: peak,
    mfu: flops / step / 1e9 / peak,
    peakRssMb: peakRssMb(),
  };
}

async function main() {
  const dir = benchModel();
  if (process.argv.includes('--child')) {
    console.log(JSON.stringify(await ours(dir)));
    return;
  }
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync(process.execPath, [__filename, '--child', `--threads=${threads}`], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
    env: leanMallocEnv(process.env), // as the worker and the CLI run
  });
  if (r.status !== 0) throw new Error(r.stderr);
  const me = JSON.parse(r.stdout.trim().split('\n').pop()!) as Awaited<ReturnType<typeof ours>>;
  const torch = torchBaseline('train_bench.py', [
    dir,
    '--threads',
    String(threads),
    '--batch',
    String(B),
    '--seq',
    String(S),
    '--teacher-seq',
    String(TS),
    '--answer',
    String(A),
    '--rank',
    String(RANK),
    '--steps',
    '2',
  ]) as { mean_step_s: number; tokens_per_s: number; peak_rss_mb: number } | undefined;
  console.log(
    `LoRA KL step: SmolLM2-135M-shaped, batch ${B} × ${S} (teacher ${TS}, answer ${A}), rank ${RANK}, all targets, ${threads} threads`,
  );
  table([
    {
      engine: 'DocDistill',
      'step s': me.stepS,
      'tokens/s': me.tokensPerS,
      'GFLOP/s': me.gflops,
      MFU: `${(100 * me.mfu).toFixed(0)} %`,
      'peak RSS MB': me.peakRssMb,
    },
    {
      engine: 'PyTorch eager',
      'step s': torch?.mean_step_s ?? NaN,
      'tokens/s': torch?.tokens_per_s ?? NaN,
      'GFLOP/s': '',
      MFU: '',
      'peak RSS MB': torch?.peak_rss_mb ?? NaN,
    },
  ]);
  if (torch)
    console.log(
      `speed-up ${(me.tokensPerS / torch.tokens_per_s).toFixed(2)}×; MatMul peak measured ${me.matmulPeak.toFixed(0)} GFLOP/s; first step (graph + session) ${me.firstStepS.toFixed(1)} s`,
    );
  saveResult('train', { threads, ours: me, torch });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
