// A whole Llama-family decoder layer (RMSNorm, grouped-query attention with RoPE and a causal
// mask, SwiGLU MLP, Qwen2 biases, Qwen3 q/k norms, LoRA) checked against finite differences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, op, type Tensor } from '../../../src/engine/graph';
import { gradients } from '../../../src/engine/autodiff';
import type { HostTensor } from '../../../src/engine/backend';
import { rng } from '../helpers/random';
import { attentionBias, decoderLayer, ropeTables, type LayerWeights } from '../../../src/engine/models/layers';
import { cpuBackend, gradCheck, type CheckInput } from '../helpers/gradcheck';

const B = 2,
  T = 5,
  D = 16,
  H = 4,
  K = 2,
  E = 4,
  I = 24,
  r = 3;

function inputs(opts: { bias?: boolean; qkNorm?: boolean; lora?: boolean }): CheckInput[] {
  const list: CheckInput[] = [
    { name: 'x', shape: [B, T, D], dims: ['B', 'T', D] },
    { name: 'mask', shape: [B, T], dims: ['B', 'T'], kind: 'int', ints: [0, 0, 1, 1, 1, 1, 1, 1, 1, 1] }, // row 0 left-padded
    { name: 'pos', shape: [B, T], dims: ['B', 'T'], kind: 'int', ints: [0, 0, 0, 1, 2, 0, 1, 2, 3, 4] },
    { name: 'inputNorm', shape: [D], kind: 'positive' },
    { name: 'postNorm', shape: [D], kind: 'positive' },
    { name: 'wq', shape: [D, H * E] },
    { name: 'wk', shape: [D, K * E] },
    { name: 'wv', shape: [D, K * E] },
    { name: 'wo', shape: [H * E, D] },
    { name: 'wg', shape: [D, I] },
    { name: 'wu', shape: [D, I] },
    { name: 'wd', shape: [I, D] },
  ];
  if (opts.bias)
    list.push({ name: 'bq', shape: [H * E] }, { name: 'bk', shape: [K * E] }, { name: 'bv', shape: [K * E] });
  if (opts.qkNorm)
    list.push({ name: 'qn', shape: [E], kind: 'positive' }, { name: 'kn', shape: [E], kind: 'positive' });
  if (opts.lora)
    list.push(
      { name: 'aq', shape: [D, r] },
      { name: 'bq_lora', shape: [r, H * E] },
      { name: 'ad', shape: [I, r] },
      { name: 'bd_lora', shape: [r, D] },
    );
  return list;
}

function build(xs: Tensor[], names: string[]): Tensor {
  const t = (n: string) => xs[names.indexOf(n)];
  const need = (n: string) => t(n)!;
  const g = need('x').graph;
  const invFreq = g.constant(
    'float32',
    [E / 2],
    Array.from({ length: E / 2 }, (_, i) => 1 / 10000 ** ((2 * i) / E)),
  );
  const w: LayerWeights = {
    inputNorm: need('inputNorm'),
    postNorm: need('postNorm'),
    q: {
      weight: need('wq'),
      bias: t('bq'),
      lora: t('aq') ? { a: need('aq'), b: need('bq_lora'), scale: 2 } : undefined,
    },
    k: { weight: need('wk'), bias: t('bk') },
    v: { weight: need('wv'), bias: t('bv') },
    o: { weight: need('wo') },
    gate: { weight: need('wg') },
    up: { weight: need('wu') },
    down: { weight: need('wd'), lora: t('ad') ? { a: need('ad'), b: need('bd_lora'), scale: 0.5 } : undefined },
    qNorm: t('qn'),
    kNorm: t('kn'),
  };
  const rope = ropeTables(need('pos'), invFreq, 'float64');
  const bias = attentionBias(need('mask'), 'T', 'T', 'float64');
  const out = decoderLayer(need('x'), w, { numHeads: H, numKvHeads: K, headDim: E, eps: 1e-6 }, rope, bias).out;
  // Padding queries see only padding keys: their outputs are meaningless and unused, so the loss skips them.
  return op.mul(out, op.unsqueeze(op.cast(need('mask'), 'float64'), [-1]));
}

for (const [label, opts] of [
  ['Llama', {}],
  ['Qwen2 (qkv bias)', { bias: true }],
  ['Qwen3 (q/k norm)', { qkNorm: true }],
  ['Llama + LoRA on q and down', { lora: true }],
] as const) {
  test(`decoder layer gradients match finite differences: ${label}`, async () => {
    const ins = inputs(opts);
    const names = ins.map((i) => i.name);
    const res = await gradCheck(`block_${label}`, ins, (xs) => build(xs, names), { samples: 12, h: 1e-5 });
    console.log(
      `decoder layer ${label}: worst relative error ${res.maxRel.toExponential(2)} over ${res.checked} elements`,
      JSON.stringify(res.perInput),
    );
    for (const [k, v] of Object.entries(res.perInput)) assert.ok(v < 1e-5, `${k}: relative error ${v}`);
  });
}

test('padding gets no attention: real outputs do not depend on the inputs at padded positions', async () => {
  const ins = inputs({});
  const names = ins.map((i) => i.name);
  const g = new Graph('padding');
  const xs = ins.map((i) => g.input(i.name, i.kind === 'int' ? 'int64' : 'float64', i.dims ?? i.shape));
  const out = build(xs, names); // [B, T, D]
  const loss = op.reduceSum(op.mul(out, out), [0, 1, 2], false);
  const [dx] = gradients(loss, [xs[0]!]);
  g.output(dx!, 'dx');
  const r = rng(7);
  const feeds: Record<string, HostTensor> = {};
  for (const i of ins) {
    const n = i.shape.reduce((a, b) => a * b, 1);
    feeds[i.name] =
      i.kind === 'int'
        ? { dtype: 'int64', dims: i.shape, data: BigInt64Array.from(i.ints!, BigInt) }
        : { dtype: 'float64', dims: i.shape, data: Float64Array.from({ length: n }, () => 0.5 + r()) };
  }
  const s = await (await cpuBackend()).session(g);
  const grad = (await s.run(feeds)).dx!.data as Float64Array;
  const padded = Array.from(grad.subarray(0, 2 * D)); // row 0, positions 0 and 1
  const real = Array.from(grad.subarray(2 * D, 3 * D));
  assert.ok(
    padded.every((v) => v === 0),
    `gradient at padded positions: ${padded.slice(0, 4)}`,
  );
  assert.ok(real.some((v) => v !== 0));
});
