// LoRA training steps: a fresh adapter changes nothing, the KL loss falls, gradient accumulation
// equals one large batch, and a run restored from its state continues exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import {
  LoraTrainer,
  defaultTrainerConfig,
  type DistillSample,
  type TrainerConfig,
  type TrainerState,
} from '../../../src/engine/train/trainer';
import { AdamW, clipByGlobalNorm, lrFactor } from '../../../src/engine/train/optim';
import { randomWeights, tinyConfig } from '../helpers/tinyModel';
import { rng } from '../helpers/random';

const cfg = tinyConfig({ vocabSize: 53 });
let modelP: Promise<CausalLM> | undefined;
const model = () =>
  (modelP ??= Backend.create({ device: 'cpu', threads: 1 }).then((be) =>
    CausalLM.fromWeights(cfg, randomWeights(cfg, 4), be, { id: 'trainer-test' }),
  ));

function samples(n: number, seed: number): DistillSample[] {
  const r = rng(seed);
  const tok = () => 2 + Math.floor(r() * (cfg.vocabSize - 2));
  return Array.from({ length: n }, () => {
    const doc = Array.from({ length: 4 + Math.floor(r() * 4) }, tok);
    const q = Array.from({ length: 2 + Math.floor(r() * 3) }, tok);
    const a = Array.from({ length: 2 + Math.floor(r() * 3) }, tok);
    return { teacher: [...doc, ...q, ...a], student: [...q, ...a], answerLength: a.length };
  });
}

const config = (over: Partial<TrainerConfig> = {}): TrainerConfig => ({
  ...defaultTrainerConfig({ rank: 4, alpha: 8, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'lm_head'] }, 12),
  lr: 1e-2,
  microBatch: 4,
  warmupSteps: 2,
  ...over,
});

const clone = (s: TrainerState): TrainerState => ({
  step: s.step,
  rng: s.rng,
  params: new Map([...s.params].map(([k, v]) => [k, v.slice()])),
  m: new Map([...s.m].map(([k, v]) => [k, v.slice()])),
  v: new Map([...s.v].map(([k, v]) => [k, v.slice()])),
});

test('a new adapter (B = 0) leaves the model unchanged', async () => {
  const m = await model();
  const t = new LoraTrainer(m, config());
  const ids = [[3, 4, 5, 6, 7, 8]];
  const base = await m.score(ids);
  const adapted = await m.score(ids, t.adapter());
  assert.deepEqual(adapted, base);
});

test('distillation training lowers the KL loss on its samples', async () => {
  const m = await model();
  const t = new LoraTrainer(m, config());
  const data = samples(8, 1);
  const first = await t.evalLoss(data);
  const log: string[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await t.trainStep(data.slice((i % 2) * 4, (i % 2) * 4 + 4));
    log.push(`${r.step}:${r.loss.toFixed(4)}@${r.lr.toExponential(1)}`);
  }
  const last = await t.evalLoss(data);
  console.log(`KL ${first.toFixed(4)} → ${last.toFixed(4)}; steps ${log.join(' ')}`);
  assert.ok(last < 0.5 * first, `loss ${first} → ${last}`);
});

test('gradient accumulation over micro-batches equals one large batch', async () => {
  const m = await model();
  const data = samples(6, 2);
  data[1]!.weight = 0.5;
  const big = new LoraTrainer(m, config({ microBatch: 6 }));
  const acc = new LoraTrainer(m, config({ microBatch: 2, gradAccum: 3 }));
  const a = await big.trainStep(data);
  const b = await acc.trainStep(data);
  assert.ok(Math.abs(a.loss - b.loss) < 1e-5 * a.loss, `loss ${a.loss} vs ${b.loss}`);
  assert.ok(Math.abs(a.gradNorm - b.gradNorm) < 1e-4 * a.gradNorm, `grad norm ${a.gradNorm} vs ${b.gradNorm}`);
  let worst = 0;
  for (const [k, p] of big.params) {
    const q = acc.params.get(k)!;
    for (let i = 0; i < p.length; i++) worst = Math.max(worst, Math.abs(p[i]! - q[i]!));
  }
  assert.ok(worst < 1e-6, `parameters differ by ${worst}`);
});

test('a run restored from its state continues exactly as an uninterrupted one (with dropout)', async () => {
  const m = await model();
  const data = samples(8, 3);
  const c = config({ dropout: 0.1, seed: 7 });
  const straight = new LoraTrainer(m, c);
  for (let i = 0; i < 6; i++) await straight.trainStep(data.slice((i % 2) * 4, (i % 2) * 4 + 4));
  const first = new LoraTrainer(m, c);
  for (let i = 0; i < 3; i++) await first.trainStep(data.slice((i % 2) * 4, (i % 2) * 4 + 4));
  const resumed = new LoraTrainer(m, c, clone(first.state()));
  for (let i = 3; i < 6; i++) await resumed.trainStep(data.slice((i % 2) * 4, (i % 2) * 4 + 4));
  assert.equal(resumed.step, 6);
  for (const [k, p] of straight.params) assert.deepEqual(resumed.params.get(k), p, k);
});

test('the teacher cache: with k = V training is the teacher-every-step training; with k < V the KL falls and a resumed run is exact', async () => {
  const m = await model();
  const run = async (c: TrainerConfig, steps: number, from?: TrainerState, seed = 5) => {
    const data = samples(8, seed); // fresh objects: no cache carried over between runs
    const t = new LoraTrainer(m, c, from);
    await t.cacheTeacher(data);
    for (let i = from?.step ?? 0; i < steps; i++) await t.trainStep(data.slice((i % 2) * 4, (i % 2) * 4 + 4));
    return { t, data };
  };
  const exact = (await run(config(), 4)).t;
  const cached = (await run(config({ teacherTopK: cfg.vocabSize }), 4)).t;
  let worst = 0;
  for (const [k, p] of exact.params) {
    const q = cached.params.get(k)!;
    for (let i = 0; i < p.length; i++) worst = Math.max(worst, Math.abs(p[i]! - q[i]!));
  }
  assert.ok(worst < 1e-5, `k = V: parameters differ by ${worst}`);

  const c8 = config({ teacherTopK: 8 });
  const { t, data } = await run(c8, 0);
  const first = await t.evalLoss(data);
  for (let i = 0; i < 12; i++) await t.trainStep(data.slice((i % 2) * 4, (i % 2) * 4 + 4));
  const last = await t.evalLoss(data);
  assert.ok(last < 0.5 * first, `top-8 KL ${first} → ${last}`);
  assert.ok(data.every((x) => x.teacherTop?.k === 8 && x.teacherTop.idx.length === 8 * x.answerLength));

  const straight = (await run(c8, 6)).t;
  const half = (await run(c8, 3)).t;
  const resumed = (await run(c8, 6, clone(half.state()))).t;
  for (const [k, p] of straight.params) assert.deepEqual(resumed.params.get(k), p, k);
});

test('AdamW, schedule and clipping follow their PyTorch/transformers definitions', () => {
  // One parameter, two steps, by hand: torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1).
  const p = new Map([['w', Float32Array.of(1)]]);
  const opt = new AdamW({ lr: 0.1, weightDecay: 0.1 });
  opt.step(p, new Map([['w', Float32Array.of(0.5)]]), 0.1);
  // step 1: p = 1·(1 − 0.01) − 0.1 · (0.05/0.1) / (sqrt(0.00025/0.001) + 1e-8) = 0.99 − 0.1 = 0.89
  assert.ok(Math.abs(p.get('w')![0]! - 0.89) < 1e-6, String(p.get('w')![0]));
  assert.equal(lrFactor(0, { kind: 'cosine', totalSteps: 10, warmupSteps: 2 }), 0);
  assert.equal(lrFactor(1, { kind: 'cosine', totalSteps: 10, warmupSteps: 2 }), 0.5);
  assert.equal(lrFactor(2, { kind: 'cosine', totalSteps: 10, warmupSteps: 2 }), 1);
  assert.ok(Math.abs(lrFactor(6, { kind: 'cosine', totalSteps: 10, warmupSteps: 2 }) - 0.5) < 1e-12);
  assert.equal(lrFactor(6, { kind: 'linear', totalSteps: 10, warmupSteps: 2 }), 0.5);
  const g = new Map([
    ['a', Float32Array.of(3)],
    ['b', Float32Array.of(4)],
  ]);
  assert.equal(clipByGlobalNorm(g, 1), 5);
  assert.ok(Math.abs(g.get('a')![0]! - 0.6) < 1e-6 && Math.abs(g.get('b')![0]! - 0.8) < 1e-6);
});
