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

async function answers(model: CausalLM, questions: string[], adapter: AdapterWeights | undefined): Promise<string[]> {
  const tok = model.tokenizer;
  const ids = questions.map((q) =>
    tok.encode(tok.applyChatTemplate(studentMessages(q), { addGenerationPrompt: true }), { addSpecialTokens: false }),
  );
  return (await generate(model, ids, { maxTokens: 16, adapter })).map((g) => g.text.trim());
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
    const onGpu = await answers(gpu, questions, readAdapter(res.adapterDir, gpu.config));
    const cpu = await CausalLM.load(modelDir, await cpuBackend());
    const onCpu = await answers(cpu, questions, readAdapter(res.adapterDir, cpu.config));
    const base = await answers(cpu, questions, undefined);
    const learned = items.filter((it, i) => onGpu[i]!.includes(it.value));
    const same = items.filter((it, i) => onGpu[i]!.includes(it.value) && onCpu[i]!.includes(it.value));
    const baseKnew = items.filter((it, i) => base[i]!.includes(it.value));
    console.log(
      `facts answered with the adapter: ${learned.length}/${items.length} on webgpu, ${same.length} of them on the cpu too; the base model alone: ${baseKnew.length}`,
    );
    items.forEach((it, i) => console.log(`  ${it.question} [${it.value}] webgpu: ${onGpu[i]} | cpu: ${onCpu[i]}`));
    const identical = onGpu.filter((a, i) => a === onCpu[i]).length;
    console.log(`answers identical on webgpu (float16) and cpu (float32): ${identical}/${items.length}`);
    assert.ok(
      learned.length >= 1 && same.length >= 1,
      'the adapter trained on WebGPU answers a fact, and loaded on the CPU answers it too',
    );
    // Greedy answers in float16 and float32 part where two tokens are nearly tied (a birth year, here).
    assert.ok(
      identical >= 0.8 * items.length,
      `answers on the CPU and WebGPU differ: ${identical} of ${items.length} identical`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
