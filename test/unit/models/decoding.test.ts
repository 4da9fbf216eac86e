// The step graph with a KV cache against the full forward pass, left padding against single
// sequences, and the score graph against the step graph's logits, on random in-memory models of
// each supported architecture variant.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backend } from '../../../src/engine/backend';
import { LlamaGraphs } from '../../../src/engine/models/llama';
import { PreparedWeights, type ComputeDtype } from '../../../src/engine/models/weights';
import { Stepper } from '../../../src/engine/generate';
import type { ModelConfig } from '../../../src/engine/models/config';
import { randomWeights, tinyConfig } from '../helpers/tinyModel';
import { rng } from '../helpers/random';

const variants: [string, Partial<ModelConfig>][] = [
  ['llama', {}],
  ['qwen2 (qkv bias, tied)', { architecture: 'Qwen2ForCausalLM', qkvBias: true, tieWordEmbeddings: true }],
  ['qwen3 (q/k norm, head_dim 12)', { architecture: 'Qwen3ForCausalLM', qkNorm: true, headDim: 12 }],
];

let backendP: Promise<Backend> | undefined;
const backend = () => (backendP ??= Backend.create({ device: 'cpu', threads: 1 }));

function setup(over: Partial<ModelConfig>, dtype: ComputeDtype = 'float32') {
  const cfg = tinyConfig(over);
  const graphs = new LlamaGraphs(
    cfg,
    new PreparedWeights(cfg, dtype, `mem-${JSON.stringify(over)}-${dtype}`, randomWeights(cfg, 3)),
  );
  return { cfg, graphs };
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0,
    m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

const seq = (n: number, seed: number, V: number) => {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * V));
};

for (const [label, over] of variants) {
  test(`KV-cache decoding reproduces the full forward pass at every step: ${label}`, async () => {
    const { cfg, graphs } = setup(over);
    const s = await (await backend()).session(graphs.stepGraph());
    const ids = seq(12, 5, cfg.vocabSize);
    const st = new Stepper(s, cfg, 'float32', 1, 16);
    let logits = await st.prefill([ids.slice(0, 4)]);
    let worst = 0;
    for (let t = 4; t <= ids.length; t++) {
      // Full forward of the prefix, from scratch.
      const full = await new Stepper(s, cfg, 'float32', 1, 16).prefill([ids.slice(0, t)]);
      worst = Math.max(worst, maxRelDiff(logits, full));
      if (t < ids.length) logits = await st.decode([ids[t]!]);
    }
    console.log(
      `${label}: cached vs full logits, worst relative difference ${worst.toExponential(2)} over ${ids.length - 3} steps`,
    );
    assert.ok(worst < 1e-5, `relative difference ${worst}`);
  });

  test(`a left-padded batch gives each sequence the logits it gets alone: ${label}`, async () => {
    const { cfg, graphs } = setup(over);
    const s = await (await backend()).session(graphs.stepGraph());
    const prompts = [seq(9, 11, cfg.vocabSize), seq(4, 12, cfg.vocabSize), seq(6, 13, cfg.vocabSize)];
    const cont = [seq(5, 21, cfg.vocabSize), seq(5, 22, cfg.vocabSize), seq(5, 23, cfg.vocabSize)];
    const batch = new Stepper(s, cfg, 'float32', 3, 20);
    const V = cfg.vocabSize;
    const batched: Float32Array[] = [await batch.prefill(prompts)];
    for (let j = 0; j < 5; j++) batched.push(await batch.decode(cont.map((c) => c[j]!)));
    let worst = 0;
    for (let b = 0; b < 3; b++) {
      const one = new Stepper(s, cfg, 'float32', 1, 20);
      const alone: Float32Array[] = [await one.prefill([prompts[b]!])];
      for (let j = 0; j < 5; j++) alone.push(await one.decode([cont[b]![j]!]));
      alone.forEach((l, j) => (worst = Math.max(worst, maxRelDiff(batched[j]!.subarray(b * V, (b + 1) * V), l))));
    }
    console.log(`${label}: batched (left-padded) vs alone, worst relative difference ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-5, `relative difference ${worst}`);
  });
}

test('the score graph gives the log-softmax of the step logits at every position, padded or not', async () => {
  const { cfg, graphs } = setup({});
  const be = await backend();
  const step = await be.session(graphs.stepGraph());
  const score = await be.session(graphs.scoreGraph());
  const seqs = [seq(8, 31, cfg.vocabSize), seq(5, 32, cfg.vocabSize)];
  const T = 8;
  const feeds = {
    ids: new BigInt64Array(2 * T),
    mask: new BigInt64Array(2 * T),
    positions: new BigInt64Array(2 * T),
    targets: new BigInt64Array(2 * T),
  };
  seqs.forEach((s, b) =>
    s.forEach((t, i) => {
      const at = b * T + (T - s.length) + i;
      feeds.ids[at] = BigInt(t);
      feeds.mask[at] = 1n;
      feeds.positions[at] = BigInt(i);
      if (i + 1 < s.length) feeds.targets[at] = BigInt(s[i + 1]!);
    }),
  );
  const lp = (
    await score.run(
      Object.fromEntries(
        Object.entries(feeds).map(([k, v]) => [k, { dtype: 'int64' as const, dims: [2, T], data: v }]),
      ),
    )
  ).logprobs!.data as Float32Array;
  let worst = 0;
  for (const [b, s] of seqs.entries()) {
    for (let i = 1; i < s.length; i++) {
      const logits = await new Stepper(step, cfg, 'float32', 1, T).prefill([s.slice(0, i)]);
      const m = Math.max(...logits);
      const lse = m + Math.log(logits.reduce((a, v) => a + Math.exp(v - m), 0));
      const expected = logits[s[i]!]! - lse;
      worst = Math.max(worst, Math.abs(lp[b * T + (T - s.length) + i - 1]! - expected));
    }
  }
  console.log(`score vs step log-probs: worst absolute difference ${worst.toExponential(2)}`);
  assert.ok(worst < 1e-4, `difference ${worst}`);
});

test('float16 compute on the CPU provider stays within 5e-3 of float32 (logits, with cache)', async () => {
  const be = await backend();
  const a = setup({}, 'float32');
  const h = setup({}, 'float16');
  const s32 = await be.session(a.graphs.stepGraph());
  const s16 = await be.session(h.graphs.stepGraph());
  const ids = seq(10, 41, a.cfg.vocabSize);
  const st32 = new Stepper(s32, a.cfg, 'float32', 1, 12);
  const st16 = new Stepper(s16, h.cfg, 'float16', 1, 12);
  let worst = maxRelDiff(await st16.prefill([ids.slice(0, 6)]), await st32.prefill([ids.slice(0, 6)]));
  for (let t = 6; t < 10; t++)
    worst = Math.max(worst, maxRelDiff(await st16.decode([ids[t]!]), await st32.decode([ids[t]!])));
  console.log(`float16 vs float32 logits: worst relative difference ${worst.toExponential(2)}`);
  assert.ok(worst < 5e-3, `relative difference ${worst}`);
  assert.ok(worst > 0);
});
