// Per-epoch cost of distillation with and without the teacher cache at a realistic passage length:
// the demo model (media/demo-model) with passages of several example documents (≈ 350 teacher
// tokens, the realistic length) and questions about their first person. For each mode
// (the teacher in every step, the exact cache, top-64), the tokens the teacher and the student read
// per epoch and the FLOPs they imply (deterministic: forward ≈ 2 FLOPs per weight per token; the
// student's backward with a frozen base ≈ 2 more, for the input gradients), then the CPU time of the
// cache pass and of one epoch (process.cpuUsage: less distorted than wall time on a shared machine,
// still not a speed).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Backend } from '../src/engine/backend';
import { CausalLM } from '../src/engine/models/model';
import { LoraTrainer, defaultTrainerConfig, type DistillSample } from '../src/engine/train/trainer';
import { studentMessages, teacherMessages } from '../src/pipeline/prompts';
import { QUESTIONS, answerFor } from '../src/demo/world';
import type { ExampleFacts } from '../src/demo/examples';
import type { ModelConfig } from '../src/engine/models/config';
import { MODEL_SHAPES } from '../src/tools/makeModel';
import { saveResult, table, threadsArg } from './common';

const cpuS = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

function samples(m: CausalLM, passageDocs: number): DistillSample[] {
  const facts = JSON.parse(readFileSync('examples/facts.json', 'utf8')) as ExampleFacts;
  const tok = m.tokenizer;
  const chat = (msgs: ReturnType<typeof studentMessages>) =>
    tok.encode(tok.applyChatTemplate(msgs, { addGenerationPrompt: true }), { addSpecialTokens: false });
  const docs = [...new Set(facts.docs.map((d) => d.file))].map((f) => readFileSync(join('examples/docs', f), 'utf8'));
  const out: DistillSample[] = [];
  facts.docs.forEach((d, i) => {
    // The passage: this person's document and the next ones, as a chunk of a longer file would be.
    const passage = Array.from({ length: passageDocs }, (_, j) => docs[(i + j) % docs.length]!).join('\n\n');
    for (const f of d.entity.facts) {
      const question = QUESTIONS[f.relation][0]!.replaceAll('{N}', d.entity.name);
      const answer = [...tok.encode(answerFor(d.entity.name, f), { addSpecialTokens: false }), tok.eosIds[0]!];
      out.push({
        teacher: [...chat(teacherMessages(passage, question)), ...answer],
        student: [...chat(studentMessages(question)), ...answer],
        answerLength: answer.length,
      });
    }
  });
  return out.slice(0, 64);
}

/**
 * Forward FLOPs of sequences of these lengths: 2 per weight per token through the layers, the
 * attention scores and mix (causal: 2·T² per head dimension and layer), the LM head at the answer
 * positions only (the train graphs pick those rows).
 */
function forwardFlops(
  c: Pick<
    ModelConfig,
    'hiddenSize' | 'numHeads' | 'numKvHeads' | 'headDim' | 'intermediateSize' | 'numLayers' | 'vocabSize'
  >,
  lengths: number[],
  answerTokens: number,
): number {
  const D = c.hiddenSize;
  const perLayer = 2 * D * c.numHeads * c.headDim + 2 * D * c.numKvHeads * c.headDim + 3 * D * c.intermediateSize;
  let f = 2 * D * c.vocabSize * answerTokens;
  for (const T of lengths) f += c.numLayers * (2 * perLayer * T + 2 * T * T * c.numHeads * c.headDim);
  return f;
}

async function main() {
  const be = await Backend.create({ device: 'cpu', threads: threadsArg() });
  const m = await CausalLM.load('media/demo-model', be);
  const cfg = m.config;
  const data = samples(m, 6);
  const Tt = data.reduce((a, s) => a + s.teacher.length, 0);
  const Ts = data.reduce((a, s) => a + s.student.length, 0);
  const A = data.reduce((a, s) => a + s.answerLength, 0);
  const teacherFlops = forwardFlops(
    cfg,
    data.map((x) => x.teacher.length),
    A,
  );
  // The student: forward and, with the base frozen, about as much again for the input gradients.
  const studentFlops =
    2 *
    forwardFlops(
      cfg,
      data.map((x) => x.student.length),
      A,
    );
  // The same per QA pair at the qwen2.5-0.5b shape, with the lengths (teacher 350 tokens,
  // student 56, 30 answer tokens): what an epoch costs there, per QA pair.
  const q = MODEL_SHAPES['qwen2.5-0.5b']!;
  const qCfg = { ...q, headDim: q.headDim ?? q.hiddenSize / q.numHeads };
  const qTeacher = forwardFlops(qCfg, [350], 30);
  const qStudent = 2 * forwardFlops(qCfg, [56], 30);
  console.log(
    `qwen2.5-0.5b shape, per QA pair (teacher 350 / student 56 / answer 30 tokens): ${((qTeacher + qStudent) / 1e9).toFixed(0)} GFLOP per epoch with the teacher, ${(qStudent / 1e9).toFixed(0)} without (the teacher's ${(qTeacher / 1e9).toFixed(0)} once), ${((30 * 64 * 12) / 1024).toFixed(1)} KB of top-64 cache, ${((30 * q.vocabSize * 4) / 2 ** 20).toFixed(0)} MB exact`,
  );
  console.log(
    `${data.length} QA pairs: teacher ${(Tt / data.length).toFixed(0)} tokens each, student ${(Ts / data.length).toFixed(0)}, answer ${(A / data.length).toFixed(1)}`,
  );
  const rows: Record<string, string | number>[] = [];
  const res: Record<string, unknown>[] = [];
  for (const [mode, k] of [
    ['teacher every step', 0],
    ['exact cache', cfg.vocabSize],
    ['top-64 cache', 64],
  ] as const) {
    const d = data.map((s) => ({ ...s }));
    const t = new LoraTrainer(m, {
      ...defaultTrainerConfig({ rank: 16, alpha: 32, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }, 100),
      microBatch: 8,
      teacherTopK: k,
    });
    let c = cpuS();
    await t.cacheTeacher(d); // includes its graph and session
    const cacheCpu = cpuS() - c;
    await t.trainStep(d.slice(0, 8)); // the train graph and session, not timed
    const epochs = 2;
    c = cpuS();
    for (let e = 0; e < epochs; e++) for (let i = 0; i < d.length; i += 8) await t.trainStep(d.slice(i, i + 8));
    const epochCpu = (cpuS() - c) / epochs;
    const flops = (k ? 0 : teacherFlops) + studentFlops;
    rows.push({
      mode,
      'teacher tok/epoch': k ? 0 : Tt,
      'student tok/epoch': Ts,
      'GFLOP/epoch': flops / 1e9,
      'once: teacher tok': k ? Tt : 0,
      'once: GFLOP': k ? teacherFlops / 1e9 : 0,
      'cache MB': k ? (A * k * (k === cfg.vocabSize ? 4 : 12)) / 2 ** 20 : 0,
      'CPU s once': cacheCpu,
      'CPU s/epoch': epochCpu,
    });
    res.push({
      mode,
      k,
      teacherTokens: Tt,
      studentTokens: Ts,
      answerTokens: A,
      flops,
      teacherFlops,
      cacheCpu,
      epochCpu,
    });
  }
  table(rows);
  saveResult('teacherCache', { samples: data.length, results: res });
  await be.dispose();
}

void main();
