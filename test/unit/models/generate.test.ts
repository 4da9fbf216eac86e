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
