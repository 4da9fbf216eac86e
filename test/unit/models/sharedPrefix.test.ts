// Shared prefixes in the prefill (Stepper.prefill, sharedPrefixes): prompts that begin alike compute
// that beginning once. Checked against the plain prefill and against each prompt alone: the same
// logits (1e-4 relative) and the same tokens, greedy and sampled, with an adapter and with fed
// weights, for batches mixing several beginnings and lengths; and fewer positions computed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { CausalLM, type AdapterWeights } from '../../../src/engine/models/model';
import { loraInputs, type LoraSpec } from '../../../src/engine/models/llama';
import { FullTrainer } from '../../../src/engine/train/full';
import { makeModel } from '../../../src/tools/makeModel';
import {
  generate,
  sharedPrefixes,
  Stepper,
  type GenerateOptions,
  type GenerateTimings,
} from '../../../src/engine/generate';
import { mulberry32 } from '../../../src/common/rng';

let dir = '';
let model: CausalLM;
let adapter: AdapterWeights;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dd-prefix-'));
  makeModel({ shape: 'tiny-llama', seed: 11, out: join(dir, 'm') });
  model = await CausalLM.load(join(dir, 'm'), await Backend.create({ device: 'cpu', threads: 1 }));
  const spec: LoraSpec = { rank: 4, alpha: 8, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down', 'lm_head'] };
  const r = mulberry32(4);
  adapter = {
    spec,
    tensors: new Map(
      loraInputs(model.config, spec).map((t) => [
        t.name,
        Float32Array.from({ length: t.shape[0] * t.shape[1] }, () => (r() - 0.5) * 0.3),
      ]),
    ),
  };
});
after(() => rmSync(dir, { recursive: true, force: true }));

// A teacher's prompts: a header every prompt has (longer than a chat template's), then a passage,
// then a question; one prompt asked twice (the question writer samples one prompt several times),
// a passage without its question (a prompt that begins another), a general question (the header
// only) and a prompt that shares nothing.
function teacherPrompts(): number[][] {
  const tok = model.tokenizer;
  const enc = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const header = tok.encode('System: you answer questions about the document below, briefly, from what it says.\n');
  const a = enc(
    'Document: Dapu works as a carpenter in the old town. With friends Dapu plays the cello on Sundays. The birth of Dapu was in the year 2013, by the river.\n',
  );
  const b = enc('Document: Quute takes care of a pet named Zuklyl and likes the colour black best of all.\n');
  const q = (s: string) => enc(`Question: ${s}`);
  return [
    [...header, ...a, ...q('What does Dapu do?')],
    [...header, ...b, ...q('Which pet?')],
    [...header, ...a, ...q('When was Dapu born, and where exactly was it?')],
    [...header, ...a, ...q('What does Dapu do?')],
    [...header, ...b, ...q('Which colour does Quute like?')],
    enc('Hello there'),
    [...header, ...q('What is the capital of France?')],
    [...header, ...a],
  ];
}

function relErr(x: Float32Array, ref: Float32Array): number {
  let d = 0,
    m = 0;
  for (let i = 0; i < ref.length; i++) {
    d = Math.max(d, Math.abs(x[i]! - ref[i]!));
    m = Math.max(m, Math.abs(ref[i]!));
  }
  return d / m;
}

async function run(prompts: number[][], opts: GenerateOptions) {
  let t: GenerateTimings | undefined;
  const res = await generate(model, prompts, { maxTokens: 8, stopTokens: [], ...opts, onTimings: (x) => (t = x) });
  return { ids: res.map((r) => r.ids), t: t! };
}

test('the plan groups prompts by passage, not by the header every prompt has', () => {
  const prompts = teacherPrompts();
  const plan = sharedPrefixes(prompts)!;
  const byRow = new Map(plan.groups.flatMap((g) => g.rows.map((r) => [r, g] as const)));
  const a = byRow.get(0)!;
  assert.deepEqual(a.rows.filter((r) => [0, 2, 3, 7].includes(r)).sort(), [0, 2, 3, 7]);
  assert.ok(a.length >= prompts[7]!.length - 1, `passage A shared over ${a.length} tokens`);
  const b = byRow.get(1)!;
  assert.notEqual(a, b);
  assert.deepEqual(b.rows, [1, 4]);
  assert.ok(b.length > prompts[6]!.length - 6, `passage B shared over ${b.length} tokens`);
  assert.ok(!byRow.has(5), 'the prompt that shares nothing and is short stays whole in the second run');
});

test('the plan: one prompt sampled many times, a passage asked many questions, and what it never does', () => {
  const r = mulberry32(7);
  const toks = (n: number) => Array.from({ length: n }, () => 3 + Math.floor(r() * 50));
  // 15 samples of one question-writer prompt and the first of the next passage's (a batch of 16).
  const p1 = toks(300),
    p2 = toks(300);
  const plan1 = sharedPrefixes([...Array.from({ length: 15 }, () => p1), p2])!;
  assert.deepEqual(
    plan1.groups.map((g) => [g.rows.length, g.length]),
    [
      [15, 299],
      [1, 299],
    ],
    'the odd prompt goes to the first run whole too, so that the second run is one token wide',
  );
  // A passage asked 12 questions, another 4: one beginning each.
  const header = toks(40),
    a = toks(500),
    b = toks(400);
  const prompts = [
    ...Array.from({ length: 12 }, (_, i) => [...header, ...a, ...toks(5 + (i % 7))]),
    ...Array.from({ length: 4 }, (_, i) => [...header, ...b, ...toks(8 + i)]),
  ];
  const plan2 = sharedPrefixes(prompts)!;
  assert.equal(plan2.groups.length, 2);
  assert.ok(plan2.groups.some((g) => g.rows.length === 12 && g.length >= 540));
  assert.ok(plan2.groups.some((g) => g.rows.length === 4 && g.length >= 440));
  assert.equal(sharedPrefixes([p1]), undefined, 'one prompt');
  assert.equal(sharedPrefixes([toks(300), toks(300), toks(300)]), undefined, 'nothing in common');
  // Random batches: every plan is sound and cheaper than the plain prefill by a fifth.
  for (let n = 0; n < 300; n++) {
    const heads = Array.from({ length: 1 + Math.floor(r() * 4) }, () => toks(Math.floor(r() * 60)));
    const B = 2 + Math.floor(r() * 14);
    const ps = Array.from({ length: B }, () => {
      const h = heads[Math.floor(r() * heads.length)]!;
      return [...h.slice(0, Math.floor(h.length * (r() < 0.3 ? r() : 1))), ...toks(1 + Math.floor(r() * 12))];
    });
    const plan = sharedPrefixes(ps);
    if (!plan) continue;
    const Tp = Math.max(...ps.map((p) => p.length));
    const seen = new Set<number>();
    for (const g of plan.groups) {
      assert.ok(g.rows.length >= 1 && g.length > 0);
      for (const row of g.rows) {
        assert.ok(!seen.has(row), 'a row in two groups');
        seen.add(row);
        assert.ok(ps[row]!.length > g.length, 'a row keeps a token of its own');
        assert.deepEqual(
          ps[row]!.slice(0, g.length),
          ps[g.rows[0]!]!.slice(0, g.length),
          'a group shares its beginning',
        );
      }
    }
    const P = Math.max(...plan.groups.map((g) => g.length));
    const shared = new Map(plan.groups.flatMap((g) => g.rows.map((row) => [row, g.length])));
    const T = Math.max(...ps.map((p, row) => p.length - (shared.get(row) ?? 0)));
    assert.ok(P + T <= Tp, 'the cache never needs more room than for the plain prefill');
    assert.ok(plan.groups.length * P + B * T <= 0.8 * B * Tp, 'saves a fifth');
  }
});

test('batch 1: prefilled whole, nothing shared', async () => {
  const p = teacherPrompts()[0]!;
  const { t } = await run([p], {});
  assert.equal(t.prefixReusedTokens, 0);
  assert.equal(t.prefillPositions, p.length);
  assert.equal(t.prefillTokens, p.length);
});

test('the same tokens as a plain prefill and as each prompt alone: greedy, sampled, adapter, fed weights', async () => {
  const prompts = teacherPrompts();
  const seeds = prompts.map((_, i) => 100 + i);
  const trainer = new FullTrainer(model, {
    lr: 1e-3,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.99,
    schedule: 'constant',
    warmupSteps: 0,
    totalSteps: 1,
    maxGradNorm: 1,
  });
  const r = mulberry32(9);
  for (const w of trainer.params.values()) for (let i = 0; i < w.length; i++) w[i] = w[i]! * 1.5 + (r() - 0.5) * 0.1;
  const cases: [string, GenerateOptions][] = [
    ['greedy', {}],
    ['greedy, adapter', { adapter }],
    ['sampled', { temperature: 1, topK: 20, seeds }],
    ['sampled, adapter', { temperature: 0.8, topP: 0.9, seeds, adapter }],
    ['greedy, fed weights', { weights: trainer.weightFeeds() }],
  ];
  const outs: number[][][] = [];
  for (const [name, o] of cases) {
    const shared = await run(prompts, o);
    const plain = await run(prompts, { ...o, sharePrefixes: false });
    assert.deepEqual(shared.ids, plain.ids, name);
    outs.push(shared.ids);
    for (let i = 0; i < prompts.length; i++) {
      const alone = await run([prompts[i]!], { ...o, seeds: [seeds[i]!] });
      assert.deepEqual(alone.ids[0], shared.ids[i], `${name}: prompt ${i} alone`);
    }
    // Same prompt tokens; the beginnings of passage A (×4) and B (×2) computed once.
    assert.equal(shared.t.prefillTokens, plain.t.prefillTokens);
    assert.equal(plain.t.prefixReusedTokens, 0);
    assert.ok(shared.t.prefixReusedTokens >= 3 * (prompts[7]!.length - 1), `${name}: ${shared.t.prefixReusedTokens}`);
    assert.equal(plain.t.prefillPositions, prompts.length * Math.max(...prompts.map((p) => p.length)));
    assert.ok(
      shared.t.prefillPositions < 0.6 * plain.t.prefillPositions,
      `${name}: ${shared.t.prefillPositions} positions against ${plain.t.prefillPositions}`,
    );
  }
  // The adapter and the fed weights change the output: they reach both runs of the prefill.
  assert.notDeepEqual(outs[0], outs[1]);
  assert.notDeepEqual(outs[0], outs[4]);
});

test('the same logits as a plain prefill and as each prompt alone, through decode steps (1e-4 relative)', async () => {
  const prompts = teacherPrompts();
  const B = prompts.length;
  const cap = Math.max(...prompts.map((p) => p.length)) + 4;
  for (const ad of [undefined, adapter]) {
    const session = await model.session('step', ad?.spec);
    const feeds = model.adapterFeeds(ad);
    const plain = new Stepper(session, model.config, 'float32', B, cap, feeds);
    plain.sharePrefixes = false;
    const shared = new Stepper(session, model.config, 'float32', B, cap, feeds);
    const alone = prompts.map((p) => new Stepper(session, model.config, 'float32', 1, p.length + 4, feeds));
    let x = await plain.prefill(prompts);
    let y = await shared.prefill(prompts);
    let z = await Promise.all(alone.map((s, i) => s.prefill([prompts[i]!])));
    assert.ok(shared.prefixReusedTokens > 0 && shared.prefillPositions < plain.prefillPositions);
    const V = x.length / B;
    for (let step = 0; step < 4; step++) {
      const e = relErr(y, x);
      assert.ok(e <= 1e-4, `step ${step}, adapter ${!!ad}: shared vs plain ${e}`);
      for (let b = 0; b < B; b++) {
        const e1 = relErr(y.subarray(b * V, (b + 1) * V), z[b]!);
        assert.ok(e1 <= 1e-4, `step ${step}, adapter ${!!ad}, row ${b}: shared vs alone ${e1}`);
      }
      const next = prompts.map((_, b) => 5 + ((b * 7 + step * 3) % 40));
      x = await plain.decode(next);
      y = await shared.decode(next);
      z = await Promise.all(alone.map((s, b) => s.decode([next[b]!])));
    }
  }
});

test('chunked prefill: pieces of time give the same logits as one run, plain and shared, through decode steps', async () => {
  const prompts = teacherPrompts();
  const B = prompts.length;
  const Tp = Math.max(...prompts.map((p) => p.length));
  const cap = Tp + 4;
  const session = await model.session('step', adapter.spec);
  const feeds = model.adapterFeeds(adapter);
  const make = (chunk: number, share: boolean) => {
    const s = new Stepper(session, model.config, 'float32', B, cap, feeds);
    s.prefillChunk = chunk;
    s.sharePrefixes = share;
    return s;
  };
  const whole = make(Infinity, false);
  // 7 tokens of every row per run: the short rows' first pieces are all padding.
  const steppers = { 'plain, chunked': make(7 * B, false), 'shared, chunked': make(5 * B, true) };
  let x = await whole.prefill(prompts);
  const ys = await Promise.all(Object.values(steppers).map((s) => s.prefill(prompts)));
  assert.ok(Tp > 3 * 7, `${Tp} tokens: several pieces`);
  assert.ok(steppers['shared, chunked'].prefixReusedTokens > 0);
  for (let step = 0; step < 4; step++) {
    Object.keys(steppers).forEach((name, i) => {
      const e = relErr(ys[i]!, x);
      assert.ok(e <= 1e-4, `step ${step}, ${name}: against one run ${e}`);
    });
    const next = prompts.map((_, b) => 5 + ((b * 7 + step * 3) % 40));
    x = await whole.decode(next);
    for (const [i, s] of Object.values(steppers).entries()) ys[i] = await s.decode(next);
  }
});

test('random batches of prompts that begin alike: the same greedy tokens with and without sharing', async () => {
  const r = mulberry32(21);
  const toks = (n: number) => Array.from({ length: n }, () => 4 + Math.floor(r() * (model.config.vocabSize - 4)));
  let sharedRuns = 0;
  for (let n = 0; n < 6; n++) {
    const heads = Array.from({ length: 1 + Math.floor(r() * 3) }, () => toks(20 + Math.floor(r() * 40)));
    const prompts = Array.from({ length: 2 + Math.floor(r() * 7) }, () => [
      ...heads[Math.floor(r() * heads.length)]!,
      ...toks(1 + Math.floor(r() * 10)),
    ]);
    const a = await run(prompts, {});
    const b = await run(prompts, { sharePrefixes: false });
    assert.deepEqual(a.ids, b.ids, `batch ${n}`);
    if (a.t.prefixReusedTokens > 0) sharedRuns++;
  }
  assert.ok(sharedRuns >= 4, `${sharedRuns} of 6 batches shared`);
});
