// Placement report: which nodes of the decoder (score), decode-step, train-step and optimizer
// (gradient accumulation, AdamW) graphs run on the WebGPU provider and which fall back to the CPU,
// from an ONNX Runtime profile of one run each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { formatPlacement, type Feed, type Placement } from '../../src/engine/backend';
import { CausalLM } from '../../src/engine/models/model';
import { buildTrainGraph } from '../../src/engine/train/graph';
import {
  accumulateFeeds,
  accumulateOutputs,
  adamWDeviceOutputs,
  adamWFeeds,
  adamWScalars,
  buildAccumulateGraph,
  buildAdamWGraph,
} from '../../src/engine/train/deviceOptim';
import { LoraTrainer, defaultTrainerConfig, Rng } from '../../src/engine/train/trainer';
import { gpuBackend, repo } from './gpu';

const modelDir = join(repo, 'media', 'demo-model');
const spec = { rank: 8, alpha: 16, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'lm_head'] as const };

const i64 = (dims: number[], f: (i: number) => number) => ({
  dtype: 'int64' as const,
  dims,
  data: BigInt64Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => BigInt(f(i))),
});

/**
 * CPU nodes that compute on model data in a hot path. Allowed: index and mask arithmetic, nodes whose
 * inputs are all int64/bool (Shape, Range, Concat of dims, the attention mask's comparisons, the cast
 * of positions for the rotary tables, the Expand of answer positions into gather indices): the WebGPU
 * provider runs int64 only with its enableInt64 option, off by default, so ONNX Runtime keeps these
 * on the CPU and copies their results, of B·T-sized index tensors, over. A node on the CPU with a
 * float input is model data leaving the device, and fails the test.
 */
function floatFallbacks(p: Placement): { name: string; op: string; outBytes: number }[] {
  return p.cpuNodes.filter((n) => n.inTypes.some((t) => t === 'float' || t === 'float16' || t === 'double'));
}

test('placement: the decoder, decode-step, train-step and optimizer graphs run on WebGPU; only int64 index and mask arithmetic falls back to the CPU', async () => {
  const be = await gpuBackend();
  const model = await CausalLM.load(modelDir, be);
  const L = model.config.numLayers;
  const { numKvHeads: K, headDim: E } = model.config;
  const B = 2,
    T = 12,
    P = 12;
  const adapter = {
    spec: { ...spec, targets: [...spec.targets] },
    tensors: new LoraTrainer(model, defaultTrainerConfig({ ...spec, targets: [...spec.targets] }, 1)).params,
  };
  const adapterFeeds = model.adapterFeeds(adapter);
  const reports: Placement[] = [];

  // Decoder: the score graph over a batch.
  reports.push(
    await be.placement(model.graphs.scoreGraph({ lora: adapter.spec }), {
      ids: i64([B, T], (i) => 4 + (i % 50)),
      mask: i64([B, T], () => 1),
      positions: i64([B, T], (i) => i % T),
      targets: i64([B, T], (i) => 5 + (i % 50)),
      ...adapterFeeds,
    }),
  );

  // Decode step: one token per row after P cached positions, the cache kept on the device.
  const zeros = (): Feed => ({ dtype: 'float16', dims: [P, B, K, E], data: new Uint16Array(P * B * K * E) });
  const past: Record<string, Feed> = {};
  for (let l = 0; l < L; l++) Object.assign(past, { [`past_k.${l}`]: zeros(), [`past_v.${l}`]: zeros() });
  const present = Array.from({ length: L }, (_, l) => [`present_k.${l}`, `present_v.${l}`]).flat();
  reports.push(
    await be.placement(
      model.graphs.stepGraph({ lora: adapter.spec, cacheOnDevice: true }),
      {
        ids: i64([B, 1], () => 7),
        mask: i64([B, P + 1], () => 1),
        positions: i64([B, 1], () => P),
        ...past,
        ...adapterFeeds,
      },
      { deviceOutputs: present },
    ),
  );

  // Train step: KL distillation with the teacher in the graph.
  const trainer = new LoraTrainer(model, {
    ...defaultTrainerConfig({ ...spec, targets: [...spec.targets] }, 1),
    microBatch: B,
  });
  const r = new Rng(3);
  const tok = () => 4 + Math.floor(r.next() * 100);
  const samples = Array.from({ length: B }, () => ({
    teacher: Array.from({ length: 20 }, tok),
    student: Array.from({ length: 10 }, tok),
    answerLength: 4,
  }));
  reports.push(
    await be.placement(buildTrainGraph(model.graphs, { loss: 'kl', lora: adapter.spec, temperature: 2 }), {
      ...trainer.batchFeeds(samples),
      ...adapterFeeds,
    }),
  );

  // Optimizer on the device: gradient accumulation and AdamW with clipping over every LoRA tensor,
  // their tensor outputs kept on the device as the trainer keeps them.
  const shapes = Object.entries(adapterFeeds).map(([name, t]) => ({ name, dims: t.dims }));
  const tensors = new Map(Object.entries(adapterFeeds) as [string, Feed][]);
  reports.push(
    await be.placement(buildAccumulateGraph(shapes), accumulateFeeds(tensors, 0.5, tensors, 0.5), {
      deviceOutputs: accumulateOutputs(shapes),
    }),
  );
  const c = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  const scalars = adamWScalars({ ...c, step: 3, lr: 1e-4, weightDecay: 0.1, maxGradNorm: 1, gradScale: 1 });
  reports.push(
    await be.placement(buildAdamWGraph(shapes, c), adamWFeeds(tensors, tensors, tensors, tensors, scalars), {
      deviceOutputs: adamWDeviceOutputs(shapes),
    }),
  );

  for (const p of reports) {
    console.log(formatPlacement(p));
    const cpuBytes = p.cpuNodes.reduce((a, n) => a + n.outBytes, 0);
    const types = [...new Set(p.cpuNodes.flatMap((n) => n.inTypes))].join(', ');
    console.log(
      `  on the CPU: ${p.cpuNodes.length} nodes, ${cpuBytes} bytes of output, input types ${types || 'none'}; largest: ${[
        ...p.cpuNodes,
      ]
        .sort((a, b) => b.outBytes - a.outBytes)
        .slice(0, 3)
        .map((n) => `${n.op} ${n.outBytes} B`)
        .join(', ')}`,
    );
    const onGpu = Object.values(p.byProvider.WebGpuExecutionProvider ?? {}).reduce((a, s) => a + s.count, 0);
    assert.ok(onGpu > 0.8 * p.nodes, `${p.graph}: only ${onGpu} of ${p.nodes} nodes on WebGPU`);
    assert.deepEqual(
      floatFallbacks(p).map((n) => `${n.op} ${n.name} ${n.outBytes} B`),
      [],
      `${p.graph}: float data computed on the CPU`,
    );
  }
});
