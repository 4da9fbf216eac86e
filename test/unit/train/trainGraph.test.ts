// The train-step graphs (distillation KL, cross-entropy, language modelling; LoRA and full
// training): their gradients against float64 finite differences of their own loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backend, type HostTensor } from '../../../src/engine/backend';
import { LlamaGraphs, loraInputs, type LoraSpec } from '../../../src/engine/models/llama';
import { PreparedWeights } from '../../../src/engine/models/weights';
import {
  buildTeacherTopKGraph,
  buildTrainGraph,
  trainableNames,
  type TrainGraphOptions,
} from '../../../src/engine/train/graph';
import { randomWeights, tinyConfig } from '../helpers/tinyModel';
import { rng } from '../helpers/random';

const cfg = tinyConfig({ architecture: 'Qwen2ForCausalLM', qkvBias: true, numLayers: 1, vocabSize: 41 });
const graphs = new LlamaGraphs(cfg, new PreparedWeights(cfg, 'float64', 'train-test', randomWeights(cfg, 9)));
const spec: LoraSpec = { rank: 2, alpha: 4, targets: ['q', 'v', 'down', 'lm_head'] };
let beP: Promise<Backend> | undefined;
const backend = () => (beP ??= Backend.create({ device: 'cpu', threads: 1, optimization: 'basic' }));

const i64 = (dims: number[], v: number[]): HostTensor => ({
  dtype: 'int64',
  dims,
  data: BigInt64Array.from(v, BigInt),
});
const f64 = (dims: number[], v: ArrayLike<number>): HostTensor => ({
  dtype: 'float64',
  dims,
  data: Float64Array.from(v),
});

/** Two samples, right-padded: student = question + answer, teacher = doc + question + answer. */
function batchFeeds(kind: TrainGraphOptions['loss']): Record<string, HostTensor> {
  const r = rng(5);
  const tok = () => Math.floor(r() * cfg.vocabSize);
  const student = [
    [tok(), tok(), tok(), tok(), tok(), tok()],
    [tok(), tok(), tok(), tok(), 0, 0],
  ];
  const sLen = [6, 4];
  const feeds: Record<string, HostTensor> = {
    ids: i64([2, 6], student.flat()),
    mask: i64(
      [2, 6],
      student.flatMap((s, b) => s.map((_, i) => (i < sLen[b]! ? 1 : 0))),
    ),
    positions: i64(
      [2, 6],
      student.flatMap((s) => s.map((_, i) => i)),
    ),
  };
  if (kind === 'lm') {
    feeds.targets = i64(
      [2, 6],
      student.flatMap((s) => s.map((_, i) => s[i + 1] ?? 0)),
    );
    feeds.weights = f64([2, 6], [1, 1, 2, 2, 2, 0, 1, 2, 2, 0, 0, 0]);
    return feeds;
  }
  const A = 3;
  feeds.student_idx = i64([2, A], [2, 3, 4, 1, 2, 0]);
  feeds.answer_mask = f64([2, A], [1, 1, 1, 1, 1, 0]);
  feeds.sample_weights = f64([2], [1, 0.5]);
  if (kind === 'ce') {
    feeds.answer_ids = i64(
      [2, A],
      [student[0]![3]!, student[0]![4]!, student[0]![5]!, student[1]![2]!, student[1]![3]!, 0],
    );
  } else {
    const teacher = [
      [tok(), tok(), tok(), ...student[0]!],
      [tok(), tok(), ...student[1]!.slice(0, 4), 0, 0, 0],
    ];
    feeds.teacher_ids = i64([2, 9], teacher.flat());
    feeds.teacher_mask = i64(
      [2, 9],
      teacher.flatMap((s, b) => s.map((_, i) => (i < [9, 6][b]! ? 1 : 0))),
    );
    feeds.teacher_positions = i64(
      [2, 9],
      teacher.flatMap((s) => s.map((_, i) => i)),
    );
    feeds.teacher_idx = i64([2, A], [5, 6, 7, 3, 4, 0]);
  }
  return feeds;
}

for (const [label, o] of [
  ['distillation KL (τ = 2), LoRA', { loss: 'kl', lora: spec, temperature: 2 }],
  ['cross-entropy, LoRA', { loss: 'ce', lora: spec }],
  ['language modelling, full parameters', { loss: 'lm', full: true }],
] as [string, TrainGraphOptions][]) {
  test(`train graph gradients match finite differences: ${label}`, async () => {
    const g = buildTrainGraph(graphs, o);
    const be = await backend();
    const s = await be.session(g);
    const feeds = batchFeeds(o.loss);
    const r = rng(17);
    const names = trainableNames(graphs, o);
    if (o.full) {
      for (const n of names) {
        const w = graphs.weights.get(n.slice(2));
        feeds[n] = { dtype: 'float64', dims: w.shape, data: Float64Array.from(w.data as Float64Array) };
      }
    } else {
      for (const i of loraInputs(cfg, spec))
        feeds[i.name] = f64(
          i.shape,
          Array.from({ length: i.shape[0] * i.shape[1] }, () => (r() - 0.5) * 0.6),
        );
    }
    const out = await s.run(feeds);
    const loss0 = out.loss!.data[0] as number;
    assert.ok(Number.isFinite(loss0) && loss0 > 0, `loss ${loss0}`);
    let worst = 0;
    let checked = 0;
    const h = 1e-5;
    for (const n of names.filter((_, i) => !o.full || i % 3 === 0)) {
      const x = feeds[n]!.data as Float64Array;
      const grad = out[`grad.${n}`]!.data as Float64Array;
      for (let k = 0; k < 3; k++) {
        const j = Math.floor(r() * x.length);
        const orig = x[j]!;
        x[j] = orig + h;
        const lp = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
        x[j] = orig - h;
        const lm = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
        x[j] = orig;
        const num = (lp - lm) / (2 * h);

        const rel = Math.abs(grad[j]! - num) / Math.max(Math.abs(num), Math.abs(grad[j]!), 1e-6);
        worst = Math.max(worst, rel);
        checked++;
      }
    }
    console.log(
      `${label}: loss ${loss0.toFixed(5)}, worst relative gradient error ${worst.toExponential(2)} over ${checked} elements`,
    );
    assert.ok(worst < 1e-5, `relative error ${worst}`);
  });
}

/** The teacher's top-k at the batch's answer positions (buildTeacherTopKGraph) as train-graph feeds. */
async function teacherTopFeeds(k: number): Promise<Record<string, HostTensor>> {
  const be = await backend();
  const feeds = batchFeeds('kl');
  const s = await be.session(buildTeacherTopKGraph(graphs, { temperature: 2, k }));
  const out = await s.run({
    teacher_ids: feeds.teacher_ids!,
    teacher_mask: feeds.teacher_mask!,
    teacher_positions: feeds.teacher_positions!,
    teacher_idx: feeds.teacher_idx!,
  });
  const lp = out.top_lp!.data as Float64Array;
  const rows = lp.length / k;
  const tailP = new Float64Array(rows);
  const tailLp = new Float64Array(rows);
  for (let j = 0; j < rows; j++) {
    let mass = 0;
    for (let c = 0; c < k; c++) mass += Math.exp(lp[j * k + c]!);
    tailP[j] = k === cfg.vocabSize ? 0 : Math.max(0, 1 - mass);
    tailLp[j] = Math.log(Math.max(tailP[j]!, 1e-30));
  }
  for (const n of ['teacher_ids', 'teacher_mask', 'teacher_positions', 'teacher_idx']) delete feeds[n];
  return {
    ...feeds,
    teacher_top_idx: out.top_idx!,
    teacher_top_lp: out.top_lp!,
    teacher_tail_p: f64([2, 3], tailP),
    teacher_tail_lp: f64([2, 3], tailLp),
  };
}

const loraFeeds = (seed: number): Record<string, HostTensor> => {
  const r = rng(seed);
  return Object.fromEntries(
    loraInputs(cfg, spec).map((i) => [
      i.name,
      f64(
        i.shape,
        Array.from({ length: i.shape[0] * i.shape[1] }, () => (r() - 0.5) * 0.6),
      ),
    ]),
  );
};

test('teacher top-k KL: with k = V it is the exact KL (loss and gradients); with k < V it is no larger', async () => {
  const be = await backend();
  const lora = loraFeeds(17);
  const exact = await (
    await be.session(buildTrainGraph(graphs, { loss: 'kl', lora: spec, temperature: 2 }))
  ).run({ ...batchFeeds('kl'), ...lora });
  const all = await (
    await be.session(buildTrainGraph(graphs, { loss: 'kl', lora: spec, temperature: 2, teacherTopK: cfg.vocabSize }))
  ).run({ ...(await teacherTopFeeds(cfg.vocabSize)), ...lora });
  const l0 = exact.loss!.data[0] as number;
  assert.ok(Math.abs((all.loss!.data[0] as number) - l0) < 1e-10 * l0, `${all.loss!.data[0]} vs ${l0}`);
  for (const n of trainableNames(graphs, { loss: 'kl', lora: spec })) {
    const a = exact[`grad.${n}`]!.data as Float64Array;
    const b = all[`grad.${n}`]!.data as Float64Array;
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-9, `${n}[${i}]: ${b[i]} vs ${a[i]}`);
  }
  for (const k of [1, 5, 20]) {
    const top = await (
      await be.session(buildTrainGraph(graphs, { loss: 'kl', lora: spec, temperature: 2, teacherTopK: k }))
    ).run({ ...(await teacherTopFeeds(k)), ...lora });
    const lk = top.loss!.data[0] as number;
    console.log(`top-${k} + tail KL ${lk.toFixed(6)} against exact ${l0.toFixed(6)}`);
    assert.ok(lk <= l0 + 1e-12 && lk > 0, `top-${k}: ${lk} vs exact ${l0}`);
  }
});

test('train graph gradients match finite differences: distillation KL against the teacher top-5 + tail, LoRA', async () => {
  const be = await backend();
  const o: TrainGraphOptions = { loss: 'kl', lora: spec, temperature: 2, teacherTopK: 5 };
  const s = await be.session(buildTrainGraph(graphs, o));
  const feeds = { ...(await teacherTopFeeds(5)), ...loraFeeds(23) };
  const out = await s.run(feeds);
  const r = rng(29);
  let worst = 0;
  const h = 1e-5;
  for (const n of trainableNames(graphs, o)) {
    const x = feeds[n]!.data as Float64Array;
    const grad = out[`grad.${n}`]!.data as Float64Array;
    for (let k = 0; k < 3; k++) {
      const j = Math.floor(r() * x.length);
      const orig = x[j]!;
      x[j] = orig + h;
      const lp = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
      x[j] = orig - h;
      const lm = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
      x[j] = orig;
      const num = (lp - lm) / (2 * h);
      worst = Math.max(worst, Math.abs(grad[j]! - num) / Math.max(Math.abs(num), Math.abs(grad[j]!), 1e-6));
    }
  }
  console.log(`teacher top-5 KL: worst relative gradient error ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-5, `relative error ${worst}`);
});

test('a LoRA train graph never transposes a frozen weight (ONNX Runtime would fold it into a second copy)', () => {
  const g = buildTrainGraph(graphs, {
    loss: 'kl',
    lora: { ...spec, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'lm_head'] },
  });
  const weights = new Set(g.initializers.filter((i) => i.data.length > 1 || i.external).map((i) => i.tensor.name));
  const transposed = g.nodes.filter((n) => n.op === 'Transpose' && n.inputs.some((t) => t && weights.has(t.name)));
  assert.deepEqual(
    transposed.map((n) => n.inputs[0]!.name),
    [],
    'weights reach the backward pass through Gemm (transB), not Transpose',
  );
  assert.ok(
    g.nodes.some((n) => n.op === 'Gemm'),
    'the input gradients of the linear layers are Gemm nodes',
  );
});

test('activation checkpointing: the same loss and gradients as the plain graph (3 layers, KL and cross-entropy, with dropout)', async () => {
  const c3 = tinyConfig({ architecture: 'Qwen2ForCausalLM', qkvBias: true, numLayers: 3, vocabSize: 41 });
  const g3 = new LlamaGraphs(c3, new PreparedWeights(c3, 'float64', 'ckpt-test', randomWeights(c3, 4)));
  const all: LoraSpec = { rank: 2, alpha: 4, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'lm_head'] };
  const be = await backend();
  const r = rng(23);
  for (const o of [
    { loss: 'kl', lora: all, temperature: 2 },
    { loss: 'ce', lora: all, dropout: 0.1 },
  ] as TrainGraphOptions[]) {
    const feeds = batchFeeds(o.loss);
    for (const i of loraInputs(c3, all))
      feeds[i.name] = f64(
        i.shape,
        Array.from({ length: i.shape[0] * i.shape[1] }, () => (r() - 0.5) * 0.6),
      );
    const plainGraph = buildTrainGraph(g3, o);
    const ckptGraph = buildTrainGraph(g3, { ...o, checkpoint: true });
    if (o.dropout)
      for (const t of plainGraph.inputs.filter((t) => t.name.endsWith('.drop'))) {
        const dims = (t.shape as (number | string)[]).map((d) =>
          d === 'B' ? 2 : d === 'T' ? 6 : d === 'A' ? 3 : (d as number),
        );
        feeds[t.name] = f64(
          dims,
          Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (r() < 0.1 ? 0 : 1 / 0.9)),
        );
      }
    // Each layer is computed twice: once forward, once from its saved input in the backward pass.
    const count = (g: typeof plainGraph, op: string) => g.nodes.filter((n) => n.op === op).length;
    assert.equal(count(ckptGraph, 'Softmax') - count(plainGraph, 'Softmax'), c3.numLayers);
    const plain = await (await be.session(plainGraph)).run(feeds);
    const ckpt = await (await be.session(ckptGraph)).run(feeds);
    assert.ok(Math.abs((ckpt.loss!.data[0] as number) - (plain.loss!.data[0] as number)) < 1e-12);
    for (const n of trainableNames(g3, o)) {
      const [a, b] = [plain[`grad.${n}`]!.data as Float64Array, ckpt[`grad.${n}`]!.data as Float64Array];
      const scale = Math.max(...a.map(Math.abs), 1e-12);
      const err = Math.max(...a.map((v, i) => Math.abs(v - b[i]!))) / scale;
      assert.ok(err < 1e-10, `${o.loss} ${n}: relative difference ${err}`);
    }
  }
});
