// A short distillation of two example docs on the WebGPU provider, as a user with the device set to
// "webgpu" runs it (float16 compute): it finishes, the loss falls, and the adapter, loaded on the
// CPU, answers the facts it learned as it does on WebGPU.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CausalLM, type AdapterWeights } from '../../src/engine/models/model';
import { readAdapter } from '../../src/engine/lora/peft';
import { generate } from '../../src/engine/generate';
import { Distiller, type DistillEvent } from '../../src/pipeline/distill';
import { studentMessages } from '../../src/pipeline/prompts';
import type { ExampleFacts } from '../../src/demo/examples';
import { QUESTIONS } from '../../src/demo/world';
import { cpuBackend, gpuBackend, repo } from './gpu';

const modelDir = join(repo, 'media', 'demo-model');
const docs = join(repo, 'examples', 'docs');
const facts = JSON.parse(readFileSync(join(repo, 'examples', 'facts.json'), 'utf8')) as ExampleFacts;

async function answers(model: CausalLM, questions: string[], adapter: AdapterWeights | undefined) {
  const prompts = promptIds(model, questions);
  return (await generate(model, prompts, { maxTokens: 16, adapter })).map((g) => ({ ids: g.ids, text: g.text.trim() }));
}

function promptIds(model: CausalLM, questions: string[]): number[][] {
  const tok = model.tokenizer;
  return questions.map((q) =>
    tok.encode(tok.applyChatTemplate(studentMessages(q), { addGenerationPrompt: true }), { addSpecialTokens: false }),
  );
}

/**
 * Where two greedy answers part, how close the tie was: log p(a) − log p(b) of the two tokens they
 * chose, after the tokens they share, under `model` (positive: `model` prefers a).
 */
async function margin(
  model: CausalLM,
  prompt: number[],
  a: number[],
  b: number[],
  adapter: AdapterWeights,
): Promise<{ at: number; nats: number }> {
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  const shared = [...prompt, ...a.slice(0, k)];
  // One of the two ended (an end token the other did not pick) counts as its own token.
  const eos = model.config.eosTokenIds[0]!;
  const [la, lb] = await model.score(
    [
      [...shared, a[k] ?? eos],
      [...shared, b[k] ?? eos],
    ],
    adapter,
  );
  return { at: k, nats: la!.at(-1)! - lb!.at(-1)! };
}

test('a short distillation of two docs on WebGPU: the loss falls, the adapter answers on the CPU as on WebGPU', async () => {
  const picked = facts.docs.slice(0, 2);
  const root = mkdtempSync(join(tmpdir(), 'dd-gpu-distill-'));
  try {
    for (const d of picked) cpSync(join(docs, d.file), join(root, 'docs', d.file));
    const gpu = await CausalLM.load(modelDir, await gpuBackend());
    assert.equal(gpu.dtype, 'float16', 'a GPU provider computes in float16 by default');
    const events: DistillEvent[] = [];
    const t0 = performance.now();
    const res = await new Distiller(
      gpu,
      {
        inputs: ['docs'],
        root,
        name: 'gpu',
        settings: {
          rounds: 2,
          questionsPerRound: 5,
          epochs: 6,
          earlyStopPatience: 0,
          learningRate: 2e-3,
          loraRank: 16,
          loraAlpha: 32,
          batchSize: 8,
          generalShare: 0,
          seed: 1,
        },
      },
      { onEvent: (e) => events.push(e) },
    ).run();
    const losses = events.flatMap((e) => (e.type === 'train' ? [(e as { loss: number }).loss] : []));
    const head = losses.slice(0, 3).reduce((a, b) => a + b, 0) / Math.min(3, losses.length);
    const tail = losses.slice(-3).reduce((a, b) => a + b, 0) / Math.min(3, losses.length);
    console.log(
      `distillation on webgpu: ${losses.length} steps in ${((performance.now() - t0) / 1000).toFixed(1)} s, loss ${head.toFixed(3)} → ${tail.toFixed(3)} (mean of the first and last 3 steps)`,
    );
    assert.ok(losses.length >= 6, `${losses.length} train steps`);
    assert.ok(tail < 0.7 * head, `the loss falls: ${head} → ${tail}`);

    // Every fact of the two docs, asked closed-book, with the adapter on WebGPU and on the CPU.
    const items = picked.flatMap((d) =>
      d.entity.facts.map((f) => ({
        value: f.value,
        question: QUESTIONS[f.relation][0]!.replace('{N}', d.entity.name),
      })),
    );
    const questions = items.map((i) => i.question);
    const gpuAdapter = readAdapter(res.adapterDir, gpu.config);
    const onGpu = await answers(gpu, questions, gpuAdapter);
    const cpu = await CausalLM.load(modelDir, await cpuBackend());
    const cpuAdapter = readAdapter(res.adapterDir, cpu.config);
    const onCpu = await answers(cpu, questions, cpuAdapter);
    const base = await answers(cpu, questions, undefined);
    const learned = items.filter((it, i) => onGpu[i]!.text.includes(it.value));
    const same = items.filter((it, i) => onGpu[i]!.text.includes(it.value) && onCpu[i]!.text.includes(it.value));
    const baseKnew = items.filter((it, i) => base[i]!.text.includes(it.value));
    console.log(
      `facts answered with the adapter: ${learned.length}/${items.length} on webgpu, ${same.length} of them on the cpu too; the base model alone: ${baseKnew.length}`,
    );
    items.forEach((it, i) =>
      console.log(`  ${it.question} [${it.value}] webgpu: ${onGpu[i]!.text} | cpu: ${onCpu[i]!.text}`),
    );
    assert.ok(
      learned.length >= 1 && same.length >= 1,
      'the adapter trained on WebGPU answers a fact, and loaded on the CPU answers it too',
    );
    // Greedy answers in float16 and float32 may part where two tokens are nearly tied (the two birth
    // years of the docs, after a dozen steps). Where they part, each backend must have preferred its
    // own token by less than float16's error on a logit here (≤ 2 % of the largest logit, ≈ 0.3; see
    // logits.test.ts); a wrongly loaded adapter or a broken kernel parts by whole nats, and early on
    // most answers. The WebGPU margin may dip a little below 0: its decode with a cache and its
    // scoring of the whole sequence round differently.
    const prompts = promptIds(cpu, questions);
    let identical = 0;
    for (let i = 0; i < items.length; i++) {
      const g = onGpu[i]!.ids;
      const c = onCpu[i]!.ids;
      if (g.length === c.length && g.every((t, j) => t === c[j])) {
        identical++;
        continue;
      }
      const onC = await margin(cpu, prompts[i]!, c, g, cpuAdapter);
      const onG = await margin(gpu, prompts[i]!, g, c, gpuAdapter);
      console.log(
        `  parted at answer token ${onC.at} of "${questions[i]}": the cpu prefers its token by ${onC.nats.toFixed(3)} nats, webgpu its own by ${onG.nats.toFixed(3)}`,
      );
      assert.ok(
        onC.nats >= 0 && onC.nats < 0.3 && onG.nats > -0.1 && onG.nats < 0.3,
        `the answers to "${questions[i]}" part at a clear choice, not a near-tie: cpu margin ${onC.nats}, webgpu ${onG.nats}`,
      );
    }
    console.log(`answers identical on webgpu (float16) and cpu (float32): ${identical}/${items.length}`);
    assert.ok(identical >= items.length / 2, `answers on the CPU and WebGPU differ: ${identical} of ${items.length}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
