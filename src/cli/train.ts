// docdistill train: LoRA training on prepared pairs (teacher prompt, student prompt, answer), and
// docdistill merge: an adapter merged into a full model folder.
import { readFileSync } from 'node:fs';
import type { Command } from './command';
import { UsageError } from './command';
import { intOption, loadFromArgs, modelOptions, modelUsage, numOption, parse, quantizeOption } from './modelArgs';
import { LoraTrainer, defaultTrainerConfig, type DistillSample } from '../engine/train/trainer';
import { writeAdapter } from '../engine/lora/peft';
import { mergeAdapter } from '../engine/lora/merge';
import { LORA_TARGETS, type LoraTarget } from '../engine/models/llama';
import type { CausalLM } from '../engine/models/model';
import { totalmem } from 'node:os';
import { trainMemoryWarning } from '../engine/train/memoryEstimate';

type Prompt = string | { role: 'system' | 'user' | 'assistant'; content: string }[];

function promptIds(model: CausalLM, p: Prompt): number[] {
  const tok = model.tokenizer;
  const messages = typeof p === 'string' ? [{ role: 'user' as const, content: p }] : p;
  if (!tok.hasChatTemplate) return tok.encode(messages.map((m) => m.content).join('\n\n'));
  return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
}

export function readPairs(path: string, model: CausalLM): DistillSample[] {
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: DistillSample[] = [];
  lines.forEach((l, i) => {
    if (!l.trim()) return;
    let o: { teacher?: Prompt; student?: Prompt; answer?: string; weight?: number };
    try {
      o = JSON.parse(l) as typeof o;
    } catch {
      throw new UsageError(`${path}:${i + 1}: not valid JSON`);
    }
    if (!o.teacher || !o.student || typeof o.answer !== 'string')
      throw new UsageError(`${path}:${i + 1}: needs "teacher", "student" (text or chat messages) and "answer"`);
    if (o.weight !== undefined && (typeof o.weight !== 'number' || !Number.isFinite(o.weight) || o.weight < 0)) {
      throw new UsageError(`${path}:${i + 1}: "weight" must be a non-negative number, got ${JSON.stringify(o.weight)}`);
    }
    const ans = [
      ...model.tokenizer.encode(o.answer, { addSpecialTokens: false }),
      ...model.tokenizer.eosIds.slice(0, 1),
    ];
    const teacher = [...promptIds(model, o.teacher), ...ans];
    const student = [...promptIds(model, o.student), ...ans];
    // Past the context the positions have no trained meaning (and the graph grows with T²).
    const ctx = model.config.maxPositionEmbeddings;
    for (const [which, ids] of [
      ['teacher', teacher],
      ['student', student],
    ] as const) {
      if (ids.length > ctx) {
        throw new UsageError(
          `${path}:${i + 1}: the ${which} prompt with the answer is ${ids.length} tokens, longer than the model's context of ${ctx}: shorten the prompt (split the document into smaller chunks) or the answer`,
        );
      }
    }
    out.push({ teacher, student, answerLength: ans.length, weight: o.weight });
  });
  if (!out.length) throw new UsageError(`${path}: no pairs`);
  return out;
}

export const trainCommand: Command = {
  name: 'train',
  summary: 'train a LoRA adapter on (teacher prompt, student prompt, answer) pairs',
  usage: `Usage: docdistill train --model DIR --data pairs.jsonl --out ADAPTER [options]

Each line of pairs.jsonl: {"teacher": …, "student": …, "answer": "…"} where the prompts are text
(one user message) or chat messages. Writes the adapter in the PEFT layout.

${modelUsage}
  --loss kl|ce       KL to the teacher (default) or cross-entropy on the answer (SFT)
  --epochs N         (default 3)   --lr X (default 1e-4)   --batch-size N (default 4)
  --grad-accum N     (default 1)   --rank R (default 16)   --alpha A (default 2×rank)
  --targets LIST     (default ${LORA_TARGETS.join(',')})
  --temperature T    distillation temperature (default 2)
  --warmup X         warmup share of the steps (default 0.1)   --weight-decay X (default 0.1)
  --dropout P        LoRA dropout (default 0)   --seed S
`,
  async run(args, ctx) {
    const { values: v } = parse(args, {
      ...modelOptions,
      data: { type: 'string' },
      out: { type: 'string' },
      loss: { type: 'string', default: 'kl' },
      epochs: { type: 'string' },
      lr: { type: 'string' },
      'batch-size': { type: 'string' },
      'grad-accum': { type: 'string' },
      rank: { type: 'string' },
      alpha: { type: 'string' },
      targets: { type: 'string' },
      temperature: { type: 'string' },
      warmup: { type: 'string' },
      'weight-decay': { type: 'string' },
      dropout: { type: 'string' },
      seed: { type: 'string' },
    });
    if (!v.data || !v.out) throw new UsageError('--data and --out are required');
    if (v.loss !== 'kl' && v.loss !== 'ce') throw new UsageError('--loss must be kl or ce');
    const targets = (v.targets?.split(',').map((s) => s.trim()) ?? [...LORA_TARGETS]) as LoraTarget[];
    const badT = targets.filter((t) => !(LORA_TARGETS as readonly string[]).includes(t));
    if (badT.length) throw new UsageError(`unknown targets ${badT.join(', ')}; use ${LORA_TARGETS.join(', ')}`);
    const { backend, model } = await loadFromArgs(v);
    try {
      const data = readPairs(v.data, model);
      const rank = intOption(v.rank, 'rank', 1) ?? 16;
      const batch = intOption(v['batch-size'], 'batch-size', 1) ?? 4;
      const accum = intOption(v['grad-accum'], 'grad-accum', 1) ?? 1;
      const epochs = intOption(v.epochs, 'epochs', 1) ?? 3;
      const perStep = batch * accum;
      const total = Math.ceil(data.length / perStep) * epochs;
      const cfg = {
        ...defaultTrainerConfig({ rank, alpha: numOption(v.alpha, 'alpha') ?? 2 * rank, targets }, total),
        loss: v.loss as 'kl' | 'ce',
        lr: numOption(v.lr, 'lr') ?? 1e-4,
        microBatch: batch,
        gradAccum: accum,
        temperature: numOption(v.temperature, 'temperature') ?? 2,
        warmupSteps: Math.round((numOption(v.warmup, 'warmup') ?? 0.1) * total),
        weightDecay: numOption(v['weight-decay'], 'weight-decay') ?? 0.1,
        dropout: numOption(v.dropout, 'dropout') ?? 0,
        seed: intOption(v.seed, 'seed') ?? 0,
      };
      // Warn before a run whose estimated peak exceeds the machine's memory: it would swap or be killed.
      const longest = (f: (d: DistillSample) => number) => data.reduce((m, d) => Math.max(m, f(d)), 0);
      const warning = trainMemoryWarning(
        model.config,
        {
          batchSize: batch,
          teacherTokens: longest((d) => d.teacher.length),
          studentTokens: longest((d) => d.student.length),
          answerTokens: longest((d) => d.answerLength),
          quantize: quantizeOption(v.quantize),
        },
        totalmem(),
      );
      if (warning) ctx.err(`warning: ${warning}\n`);
      const t = new LoraTrainer(model, cfg);
      ctx.err(`${data.length} pairs, ${total} steps of ${perStep} (${t.describe()})\n`);
      const t0 = performance.now();
      let tokens = 0;
      for (let e = 0; e < epochs && !ctx.signal.aborted; e++) {
        for (let i = 0; i < data.length && !ctx.signal.aborted; i += perStep) {
          const r = await t.trainStep(data.slice(i, i + perStep));
          tokens += r.tokens;
          ctx.err(
            `step ${r.step}/${total} epoch ${e + 1} loss ${r.loss.toFixed(4)} lr ${r.lr.toExponential(2)} |g| ${r.gradNorm.toFixed(3)} ${(tokens / ((performance.now() - t0) / 1000)).toFixed(0)} tok/s\n`,
          );
        }
      }
      await t.sync();
      writeAdapter(v.out, model.config, t.adapter(), { baseModel: model.dir, dropout: cfg.dropout });
      // The process's own peak (kB on Linux), for memory measurements (bench train-memory reads it).
      ctx.err(`peak RSS ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GB\n`);
      ctx.out(`adapter: ${v.out}${ctx.signal.aborted ? ' (stopped early)' : ''}\n`);
      return ctx.signal.aborted ? 130 : 0;
    } finally {
      await backend.dispose();
    }
  },
};

export const mergeCommand: Command = {
  name: 'merge',
  summary: 'merge a LoRA adapter into a full model folder',
  usage: `Usage: docdistill merge --model DIR --adapter DIR --out DIR

Writes a Hugging Face model folder (float32) with W + (alpha/r)·B·A in every adapted layer; the
tokenizer files are copied. Refuses non-finite results and an existing --out.
`,
  async run(args, ctx) {
    const { values: v } = parse(args, {
      model: { type: 'string' },
      adapter: { type: 'string' },
      out: { type: 'string' },
    });
    if (!v.model || !v.adapter || !v.out) throw new UsageError('--model, --adapter and --out are required');
    const r = mergeAdapter(v.model, v.adapter, v.out);
    ctx.out(`merged ${r.merged} adapted weights into ${v.out} (${r.tensors} tensors)\n`);
    return 0;
  },
};
