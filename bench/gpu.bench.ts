// The GPU path on the WebGPU provider: the timed probe `auto` decides with, decode and train-step
// speed against the CPU, bytes crossing host↔device per decoded token and per train step, and node
// placement. In CI the adapter is Mesa's lavapipe, a CPU emulating a GPU: its speeds are not what a
// user sees, but the bytes, the placement and the ratios between runs catch regressions in copies
// and fallbacks. Without a WebGPU adapter it says so and exits 0.
import { join } from 'node:path';
import { Backend, SPEED_PROBE, formatPlacement, probeProvider, timeSpeedProbe } from '../src/engine/backend';
import { CausalLM } from '../src/engine/models/model';
import { generate } from '../src/engine/generate';
import { buildTrainGraph } from '../src/engine/train/graph';
import { LoraTrainer, defaultTrainerConfig, Rng, type DistillSample } from '../src/engine/train/trainer';
import { now, saveResult, table, threadsArg } from './common';

const threads = threadsArg();
const modelDir = join('media', 'demo-model');
const spec = {
  rank: 16,
  alpha: 32,
  targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'lm_head'] as (
    'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down' | 'lm_head'
  )[],
};

function samples(V: number, n: number): DistillSample[] {
  const r = new Rng(1);
  const tok = () => 4 + Math.floor(r.next() * (V - 4));
  return Array.from({ length: n }, () => ({
    teacher: Array.from({ length: 96 }, tok),
    student: Array.from({ length: 32 }, tok),
    answerLength: 12,
  }));
}

async function decodeRun(model: CausalLM, cacheOnDevice: boolean, B: number, tokens: number) {
  const be = model.backend;
  const prompts = Array.from({ length: B }, (_, b) =>
    Array.from({ length: 32 }, (_, i) => 4 + ((i * 7 + b * 13) % 500)),
  );
  await generate(model, prompts, { maxTokens: 4, stopTokens: [], cacheOnDevice }); // sessions, shaders
  const t0 = { ...be.transfers };
  const a = now();
  await generate(model, prompts, { maxTokens: tokens, stopTokens: [], cacheOnDevice });
  const ms = now() - a;
  return {
    tokS: (B * tokens) / (ms / 1000),
    upPerToken: (be.transfers.toDevice - t0.toDevice) / tokens,
    downPerToken: (be.transfers.toHost - t0.toHost) / tokens,
  };
}

/** Train steps of 8 samples in 2 micro-batches; onDevice false sends the adapter and gradients through the host. */
async function trainRun(model: CausalLM, steps: number, onDevice = true) {
  const t = new LoraTrainer(
    model,
    { ...defaultTrainerConfig(spec, steps + 1), microBatch: 4, gradAccum: 2 },
    undefined,
    { onDevice },
  );
  const data = samples(model.config.vocabSize, 8);
  await t.trainStep(data);
  const t0 = { ...model.backend.transfers };
  const a = now();
  for (let i = 0; i < steps; i++) await t.trainStep(data);
  const r = {
    msPerStep: (now() - a) / steps,
    upPerStep: (model.backend.transfers.toDevice - t0.toDevice) / steps,
    downPerStep: (model.backend.transfers.toHost - t0.toHost) / steps,
  };
  await t.release();
  return r;
}

async function main() {
  const probe = await probeProvider('webgpu');
  if (!probe.ok) {
    console.log(
      `no WebGPU adapter (${probe.reason}); GPU bench skipped. Install Mesa's lavapipe as .ci/run does to run it without a GPU.`,
    );
    return;
  }
  const cpuMs = await timeSpeedProbe('cpu');
  const gpuMs = await timeSpeedProbe('webgpu');
  console.log(
    `speed probe (${SPEED_PROBE.M}×${SPEED_PROBE.K} @ ${SPEED_PROBE.K}×${SPEED_PROBE.N} MatMul): cpu ${cpuMs.toFixed(2)} ms, webgpu ${gpuMs.toFixed(2)} ms → auto ${gpuMs <= cpuMs ? 'takes' : 'skips'} webgpu (${(gpuMs / cpuMs).toFixed(1)}× the CPU's time)`,
  );

  const cpuBe = await Backend.create({ device: 'cpu', threads });
  const gpuBe = await Backend.create({ device: 'webgpu' });
  const cpu = await CausalLM.load(modelDir, cpuBe, { dtype: 'float32' });
  const gpu = await CausalLM.load(modelDir, gpuBe, { dtype: 'float16' });
  const B = 4,
    NEW = 32;
  const dCpu = await decodeRun(cpu, false, B, NEW);
  const dHost = await decodeRun(gpu, false, B, NEW);
  const dDev = await decodeRun(gpu, true, B, NEW);
  const tCpu = await trainRun(cpu, 3);
  const tHost = await trainRun(gpu, 3, false);
  const tGpu = await trainRun(gpu, 3);
  const rows = [
    { run: 'decode, cpu float32', 'tok/s or ms/step': dCpu.tokS, 'bytes up': NaN, 'bytes down': NaN, per: 'token' },
    {
      run: 'decode, webgpu f16, cache via host',
      'tok/s or ms/step': dHost.tokS,
      'bytes up': dHost.upPerToken,
      'bytes down': dHost.downPerToken,
      per: 'token',
    },
    {
      run: 'decode, webgpu f16, cache on device',
      'tok/s or ms/step': dDev.tokS,
      'bytes up': dDev.upPerToken,
      'bytes down': dDev.downPerToken,
      per: 'token',
    },
    {
      run: 'train step, cpu float32',
      'tok/s or ms/step': tCpu.msPerStep,
      'bytes up': NaN,
      'bytes down': NaN,
      per: 'step',
    },
    {
      run: 'train step, webgpu f16, adapter via host',
      'tok/s or ms/step': tHost.msPerStep,
      'bytes up': tHost.upPerStep,
      'bytes down': tHost.downPerStep,
      per: 'step',
    },
    {
      run: 'train step, webgpu f16, adapter on device',
      'tok/s or ms/step': tGpu.msPerStep,
      'bytes up': tGpu.upPerStep,
      'bytes down': tGpu.downPerStep,
      per: 'step',
    },
  ];
  console.log(
    `demo model (${modelDir}), batch ${B}, ${NEW} new tokens; train: 8 samples of 96/32 tokens in 2 micro-batches, LoRA r${spec.rank} on all modules; WebGPU on this machine's adapter`,
  );
  table(rows);

  const trainer = new LoraTrainer(gpu, { ...defaultTrainerConfig(spec, 1), microBatch: 4 });
  const placement = await gpuBe.placement(buildTrainGraph(gpu.graphs, { loss: 'kl', lora: spec, temperature: 2 }), {
    ...trainer.batchFeeds(samples(gpu.config.vocabSize, 4)),
    ...gpu.adapterFeeds(trainer.adapter()),
  });
  console.log(formatPlacement(placement));
  saveResult('gpu', {
    threads,
    probe: { cpuMs, gpuMs },
    rows,
    placement: { nodes: placement.nodes, cpuNodes: placement.cpuNodes.length, copies: placement.copies },
  });
  await cpuBe.dispose();
  await gpuBe.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
