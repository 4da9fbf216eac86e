// generate(): seeds, sampling filters, stop tokens and strings, max tokens, streaming, batches.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import { makeModel } from '../../../src/tools/makeModel';
import { generate, sampleToken, seededRandom } from '../../../src/engine/generate';
import { rng } from '../helpers/random';
import type { LoraSpec } from '../../../src/engine/models/llama';

let dir = '';
let model: CausalLM;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dd-gen-'));
  makeModel({ shape: 'tiny-llama', seed: 11, out: join(dir, 'm') });
  model = await CausalLM.load(join(dir, 'm'), await Backend.create({ device: 'cpu', threads: 1 }));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const prompt = () => model.tokenizer.encode('The quick brown fox');

test('greedy is deterministic; the same seed gives the same sample, another seed another', async () => {
  const g1 = await generate(model, [prompt()], { maxTokens: 12 });
  const g2 = await generate(model, [prompt()], { maxTokens: 12 });
  assert.deepEqual(g1[0]!.ids, g2[0]!.ids);
  const s = (seed: number) => generate(model, [prompt()], { maxTokens: 12, temperature: 1.2, seed, stopTokens: [] });
  const [a, b, c] = [await s(1), await s(1), await s(2)];
  assert.deepEqual(a[0]!.ids, b[0]!.ids);
  assert.notDeepEqual(a[0]!.ids, c[0]!.ids);
  assert.equal(a[0]!.ids.length, 12);
  assert.equal(a[0]!.finishReason, 'length');
});

test('a batch gives each prompt what it gets alone (greedy and sampled)', async () => {
  const prompts = [
    prompt(),
    model.tokenizer.encode('Hello'),
    model.tokenizer.encode('A much longer prompt that needs left padding in a batch'),
  ];
  for (const o of [{}, { temperature: 1, topK: 20 }]) {
    const batch = await generate(model, prompts, { maxTokens: 8, stopTokens: [], seeds: [5, 6, 7], ...o });
    for (let i = 0; i < prompts.length; i++) {
      const alone = await generate(model, [prompts[i]!], { maxTokens: 8, stopTokens: [], seeds: [5 + i], ...o });
      assert.deepEqual(batch[i]!.ids, alone[0]!.ids, `prompt ${i} (${JSON.stringify(o)})`);
    }
  }
});

test('identical prompts in one batch give different samples', async () => {
  const r = await generate(model, [prompt(), prompt(), prompt(), prompt()], {
    maxTokens: 10,
    temperature: 1.5,
    seed: 3,
    stopTokens: [],
  });
  assert.ok(new Set(r.map((x) => x.ids.join(','))).size > 1);
});

test('stop tokens end a sequence without being returned; stop strings cut the text; text streams', async () => {
  const free = await generate(model, [prompt()], { maxTokens: 10, stopTokens: [] });
  const stopAt = free[0]!.ids[3]!;
  const stopped = await generate(model, [prompt()], { maxTokens: 10, stopTokens: [stopAt] });
  assert.equal(stopped[0]!.finishReason, 'stop');
  assert.deepEqual(stopped[0]!.ids, free[0]!.ids.slice(0, free[0]!.ids.indexOf(stopAt)));
  const text = free[0]!.text;
  const cut = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
  if (cut.trim().length === 2) {
    const s = await generate(model, [prompt()], { maxTokens: 10, stopTokens: [], stopStrings: [cut] });
    assert.equal(s[0]!.text, text.slice(0, text.indexOf(cut)));
  }
  let streamed = '';
  const r = await generate(model, [prompt()], { maxTokens: 10, stopTokens: [], onText: (_, t) => (streamed += t) });
  assert.equal(streamed, r[0]!.text);
});

test('top-k 1 is greedy; top-p keeps the smallest set reaching p', () => {
  const logits = Float32Array.from([1, 3, 2, 0.5]);
  const r = seededRandom(3);
  for (let i = 0; i < 20; i++) assert.equal(sampleToken(logits, { temperature: 1, topK: 1 }, r), 1);
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(sampleToken(logits, { temperature: 1, topP: 0.6 }, r));
  assert.deepEqual([...seen].sort(), [1], 'p(3)=0.61 already reaches 0.6');
  const seen2 = new Set<number>();
  for (let i = 0; i < 400; i++) seen2.add(sampleToken(logits, { temperature: 1, topP: 0.85 }, r)); // 0.63 + 0.23 = 0.86
  assert.deepEqual([...seen2].sort(), [1, 2]);
  assert.throws(() => sampleToken(logits, { temperature: 1, topP: 0 }, r), /topP/);
});

test('prompts that begin alike share the prefix computation: the same logits and tokens as a plain prefill', async () => {
  const { loraInputs } = await import('../../../src/engine/models/llama');
  const tok = model.tokenizer;
  const passage = tok.encode(
    'Document: Dapu works as a carpenter. With friends Dapu plays the cello. The birth of Dapu was in the year 2013.',
  );
  const other = tok.encode('Document: Quute takes care of a pet named Zuklyl and likes the colour black best.');
  const q = (s: string) => tok.encode(s, { addSpecialTokens: false });
  const prompts = [
    [...passage, ...q(' Question: What does Dapu do?')],
    [...other, ...q(' Question: Which pet?')],
    [...passage, ...q(' Question: When was Dapu born, and where?')],
    [...passage], // the whole prompt is the shared part: it keeps its last token to itself
    [...other, ...q(' Question: Which colour does Quute like?')],
    q('Hello'), // in no group
  ];
  const spec: LoraSpec = { rank: 2, alpha: 4, targets: ['q', 'v', 'down', 'lm_head'] };
  const r = rng(4);
  const adapter = {
    spec,
    tensors: new Map(
      loraInputs(model.config, spec).map((t) => [
        t.name,
        Float32Array.from({ length: t.shape[0] * t.shape[1] }, () => (r() - 0.5) * 0.2),
      ]),
    ),
  };
  for (const o of [{}, { adapter }, { temperature: 1, topK: 20, seeds: [1, 2, 3, 4, 5, 6] }]) {
    let shared = 0;
    const a = await generate(model, prompts, {
      maxTokens: 10,
      stopTokens: [],
      ...o,
      onTimings: (t) => (shared = t.prefixReusedTokens),
    });
    const b = await generate(model, prompts, { maxTokens: 10, stopTokens: [], ...o, sharePrefixes: false });
    assert.ok(shared >= 2 * passage.length, `shared ${shared} tokens`);
    for (let i = 0; i < prompts.length; i++) assert.deepEqual(a[i]!.ids, b[i]!.ids, `prompt ${i}`);
  }
  // The logits themselves, through the stepper.
  const { Stepper } = await import('../../../src/engine/generate');
  const session = await model.session('step');
  const cap = Math.max(...prompts.map((p) => p.length)) + 2;
  const plain = new Stepper(session, model.config, 'float32', prompts.length, cap);
  plain.sharePrefixes = false;
  const withShare = new Stepper(session, model.config, 'float32', prompts.length, cap);
  const [x, y] = [await plain.prefill(prompts), await withShare.prefill(prompts)];
  assert.ok(withShare.prefixReusedTokens > 0 && plain.prefixReusedTokens === 0);
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  assert.ok(worst < 1e-4, `max |Δ logit| ${worst}`);
  const [x2, y2] = [await plain.decode(prompts.map(() => 7)), await withShare.decode(prompts.map(() => 7))];
  for (let i = 0; i < x2.length; i++) worst = Math.max(worst, Math.abs(x2[i]! - y2[i]!));
  assert.ok(worst < 1e-4, `after a decode step: max |Δ logit| ${worst}`);
});

test('sharedPrefixes: groups prompts by their common beginning, only when it saves work', async () => {
  const { sharedPrefixes } = await import('../../../src/engine/generate');
  const base = Array.from({ length: 40 }, (_, i) => i + 3);
  const plan = sharedPrefixes([[...base, 1], [9, 9, 9], [...base, 2, 2], [...base]])!;
  assert.deepEqual(plan.groups, [{ rows: [0, 2, 3], length: 39 }]);
  assert.equal(sharedPrefixes([[...base, 1]]), undefined, 'one prompt');
  assert.equal(sharedPrefixes([base.slice(0, 10).concat([1]), base.slice(0, 10).concat([2])]), undefined, 'too short');
  assert.equal(
    sharedPrefixes([[...base, 1], [...base, 2], ...[5, 6, 7, 8, 9].map((t) => Array.from({ length: 200 }, () => t))]),
    undefined,
    'the saving is under a fifth',
  );
});
