// LoRA distillation against the PyTorch reference (scripts/reference/make_train_fixtures.py):
// KL loss and its gradients for every LoRA tensor in float64, then 10 AdamW steps (warmup, cosine,
// clipping) of KL and of cross-entropy in float32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Backend, type HostTensor } from '../../../src/engine/backend';
import { loadModelFolder } from '../../../src/engine/models/folder';
import { CausalLM } from '../../../src/engine/models/model';
import { readAdapter } from '../../../src/engine/lora/peft';
import { loraInputs } from '../../../src/engine/models/llama';
import { buildTrainGraph } from '../../../src/engine/train/graph';
import { LoraTrainer, type DistillSample, type TrainerConfig } from '../../../src/engine/train/trainer';
import { hfModulePath, type LinearModule } from '../../../src/engine/models/weights';

const fixtures = resolve(__dirname, '..', '..', '..', 'test', 'fixtures');

interface TrainFixture {
  tau: number;
  lora: { r: number; alpha: number };
  samples: { teacher_ids: number[]; student_ids: number[]; answer_length: number }[];
  kl: { loss: number; grads: Record<string, { shape: number[]; values: number[] }> };
  ce: { loss: number };
  optimizer: {
    lr: number;
    weight_decay: number;
    warmup_steps: number;
    total_steps: number;
    max_grad_norm: number;
    betas: number[];
    eps: number;
  };
  trajectory: Record<'kl' | 'ce', { steps: { step: number; loss: number; grad_norm: number; lr: number }[] }>;
}

let beP: Promise<Backend> | undefined;
const backend = () => (beP ??= Backend.create({ device: 'cpu', threads: 1, optimization: 'basic' }));

for (const name of ['tiny-llama', 'tiny-qwen2', 'tiny-qwen3']) {
  const fx = () => JSON.parse(readFileSync(join(fixtures, 'reference', `${name}.train.json`), 'utf8')) as TrainFixture;
  const load = async (dtype: 'float32' | 'float64') => {
    const folder = loadModelFolder(join(fixtures, 'models', name), { requireTokenizer: false });
    return CausalLM.fromWeights(folder.config, folder.weights, await backend(), { dtype, id: `train-ref-${name}` });
  };
  const samples = (f: TrainFixture): DistillSample[] =>
    f.samples.map((s) => ({ teacher: s.teacher_ids, student: s.student_ids, answerLength: s.answer_length }));

  test(`LoRA KL loss and gradients match PyTorch (float64): ${name}`, async () => {
    const f = fx();
    const model = await load('float64');
    const adapter = readAdapter(join(fixtures, 'reference', `${name}-lora`), model.config);
    const cfg = { loss: 'kl' as const, lora: adapter.spec, temperature: f.tau };
    const t = new LoraTrainer(model, { ...baseConfig(f, 'kl'), lora: adapter.spec });
    const feeds: Record<string, HostTensor> = t.batchFeeds(samples(f));
    for (const [k, v] of adapter.tensors)
      feeds[k] = {
        dtype: 'float64',
        dims: loraInputs(model.config, adapter.spec).find((i) => i.name === k)!.shape,
        data: Float64Array.from(v),
      };
    const out = await (await model.backend.session(buildTrainGraph(model.graphs, cfg))).run(feeds);
    const loss = out.loss!.data[0] as number;
    assert.ok(Math.abs(loss - f.kl.loss) / f.kl.loss < 1e-6, `loss ${loss} vs ${f.kl.loss}`);
    let worst = 0;
    for (const i of loraInputs(model.config, adapter.spec)) {
      const key =
        i.layer === 'lm_head'
          ? `base_model.model.lm_head.lora_${i.which.toUpperCase()}.weight`
          : `base_model.model.${hfModulePath(i.layer, i.module as LinearModule)}.lora_${i.which.toUpperCase()}.weight`;
      const ref = f.kl.grads[key]!;
      const got = out[`grad.${i.name}`]!.data as Float64Array;
      const [rows, cols] = ref.shape as [number, number]; // PEFT layout = ours transposed
      let num = 0,
        den = 0;
      for (let r = 0; r < rows; r++)
        for (let c = 0; c < cols; c++) {
          const a = got[c * rows + r]!;
          const b = ref.values[r * cols + c]!;
          num = Math.max(num, Math.abs(a - b));
          den = Math.max(den, Math.abs(b));
        }
      worst = Math.max(worst, num / den);
    }
    console.log(
      `${name}: KL ${loss.toFixed(8)} (reference ${f.kl.loss}), worst relative gradient difference ${worst.toExponential(2)}`,
    );
    assert.ok(worst < 1e-4, `gradients differ by ${worst}`);
  });

  for (const kind of ['kl', 'ce'] as const) {
    test(`10-step ${kind.toUpperCase()} training trajectory matches PyTorch (float32): ${name}`, async () => {
      const f = fx();
      const model = await load('float32');
      const adapter = readAdapter(join(fixtures, 'reference', `${name}-lora`), model.config);
      const t = new LoraTrainer(
        model,
        { ...baseConfig(f, kind), lora: adapter.spec },
        { step: 0, params: adapter.tensors, m: new Map(), v: new Map(), rng: 0 },
      );
      const ref = f.trajectory[kind].steps;
      let worst = 0;
      const got: number[] = [];
      for (const s of ref) {
        const r = await t.trainStep(samples(f));
        got.push(r.loss);
        worst = Math.max(
          worst,
          Math.abs(r.loss - s.loss) / Math.abs(s.loss),
          Math.abs(r.gradNorm - s.grad_norm) / s.grad_norm,
        );
        assert.ok(Math.abs(r.lr - s.lr) < 1e-12, `lr at step ${s.step}: ${r.lr} vs ${s.lr}`);
      }
      console.log(
        `${name} ${kind}: losses ${got.map((x) => x.toFixed(5)).join(' ')}; worst relative difference (loss, grad norm) ${worst.toExponential(2)}`,
      );
      assert.ok(worst < 1e-3, `trajectory differs by ${worst}`);
    });
  }
}

function baseConfig(f: TrainFixture, loss: 'kl' | 'ce'): Omit<TrainerConfig, 'lora'> {
  const o = f.optimizer;
  return {
    loss,
    dropout: 0,
    temperature: f.tau,
    lr: o.lr,
    weightDecay: o.weight_decay,
    beta1: o.betas[0]!,
    beta2: o.betas[1]!,
    eps: o.eps,
    schedule: 'cosine',
    warmupSteps: o.warmup_steps,
    totalSteps: o.total_steps,
    microBatch: f.samples.length,
    gradAccum: 1,
    maxGradNorm: o.max_grad_norm,
    seed: 0,
  };
}
