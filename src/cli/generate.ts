// docdistill generate: text from a model (and adapter), streamed.
import type { Command } from './command';
import { UsageError } from './command';
import { generate, type GenerateTimings } from '../engine/generate';
import { intOption, loadFromArgs, modelOptions, modelUsage, numOption, parse } from './modelArgs';

const round1 = (x: number) => Math.round(x * 10) / 10;
const rate = (n: number, ms: number) => (ms > 0 ? `${((1000 * n) / ms).toFixed(1)} tokens/s` : '–');

/** load 12.3 s · prefill 350 tokens 2.10 s (166.7 tokens/s) · decode 63 tokens 12.00 s (5.3 tokens/s) */
export function timingsLine(t: {
  loadMs: number;
  prefillMs: number;
  prefillTokens: number;
  decodeMs: number;
  decodeTokens: number;
}): string {
  return `load ${(t.loadMs / 1000).toFixed(2)} s · prefill ${t.prefillTokens} tokens ${(t.prefillMs / 1000).toFixed(2)} s (${rate(t.prefillTokens, t.prefillMs)}) · decode ${t.decodeTokens} tokens ${(t.decodeMs / 1000).toFixed(2)} s (${rate(t.decodeTokens, t.decodeMs)})`;
}

export const generateCommand: Command = {
  name: 'generate',
  summary: 'generate text from a prompt with a model (and adapter)',
  usage: `Usage: docdistill generate --model DIR [--adapter DIR] --prompt P [options]

${modelUsage}
  --prompt P         the prompt (repeat for a batch)
  --chat             wrap the prompt as a user message in the model's chat template
  --system S         a system message (with --chat)
  --max-tokens N     new tokens at most (default 128)
  --temperature T    0 = greedy (default); otherwise sample
  --top-k K          sample from the K most likely tokens (default: off)
  --top-p P          sample from the nucleus of probability P (default 1 = off)
  --seed S           random seed (default 0): the same seed gives the same output
  --stop S           a stop string (repeatable)
  --no-shared-prefix prefill every prompt in full (by default prompts that begin alike compute
                     that beginning once)
  --json             print one JSON object per prompt instead of streaming text, with
                     timings {loadMs, prefillMs, prefillTokens, decodeMs, decodeTokens,
                     prefixReusedTokens, prefillPositions} (the whole batch's; prompts that
                     begin alike share that beginning's computation; prefillPositions counts
                     what the prefill computed, padding included); otherwise the same timings
                     go to stderr
`,
  async run(args, ctx) {
    const { values: v } = parse(args, {
      ...modelOptions,
      prompt: { type: 'string', multiple: true },
      chat: { type: 'boolean', default: false },
      system: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      'top-p': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      'no-shared-prefix': { type: 'boolean', default: false },
    });
    const prompts = v.prompt ?? [];
    if (prompts.length === 0) throw new UsageError('--prompt P is required');
    const temperature = numOption(v.temperature, 'temperature') ?? 0;
    if (temperature < 0) throw new UsageError('--temperature must be ≥ 0');
    const topP = numOption(v['top-p'], 'top-p');
    if (topP !== undefined && !(topP > 0 && topP <= 1)) throw new UsageError('--top-p must be in (0, 1]');
    const opts = {
      maxTokens: intOption(v['max-tokens'], 'max-tokens', 1) ?? 128,
      temperature,
      topK: intOption(v['top-k'], 'top-k', 0),
      topP,
      seed: intOption(v.seed, 'seed', 0) ?? 0,
      stopStrings: v.stop,
      sharePrefixes: !v['no-shared-prefix'],
    };
    const tLoad = performance.now();
    const { backend, model, adapter } = await loadFromArgs(v, ctx.err);
    try {
      // The step graph's session is built here, so that load time includes it and decode does not.
      await model.session('step', adapter?.spec);
      const loadMs = performance.now() - tLoad;
      const tok = model.tokenizer;
      const ids = prompts.map((p) => {
        if (!v.chat) return tok.encode(p);
        const messages = [
          ...(v.system ? [{ role: 'system' as const, content: v.system }] : []),
          { role: 'user' as const, content: p },
        ];
        return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
      });
      const stream = !v.json && prompts.length === 1;
      let t: GenerateTimings = {
        prefillMs: 0,
        prefillTokens: 0,
        decodeMs: 0,
        decodeTokens: 0,
        decodeSteps: 0,
        prefixReusedTokens: 0,
        prefillPositions: 0,
      };
      const res = await generate(model, ids, {
        ...opts,
        adapter,
        signal: ctx.signal,
        onText: stream ? (_, s) => ctx.out(s) : undefined,
        onTimings: (x) => (t = x),
      });
      const timings = {
        loadMs: round1(loadMs),
        prefillMs: round1(t.prefillMs),
        prefillTokens: t.prefillTokens,
        decodeMs: round1(t.decodeMs),
        decodeTokens: t.decodeTokens,
        prefixReusedTokens: t.prefixReusedTokens,
        prefillPositions: t.prefillPositions,
      };
      if (v.json) {
        res.forEach((r, i) =>
          ctx.out(
            JSON.stringify({ prompt: prompts[i], text: r.text, ids: r.ids, finishReason: r.finishReason, timings }) +
              '\n',
          ),
        );
      } else if (stream) {
        ctx.out('\n');
      } else {
        res.forEach((r, i) => ctx.out(`--- ${i + 1}: ${prompts[i]}\n${r.text}\n`));
      }
      const n = res.reduce((a, r) => a + r.ids.length, 0);
      ctx.err(
        `[${n} new tokens on ${backend.provider}, ${model.dtype}${model.quantization === 'none' ? '' : `, ${model.quantization} base`}] ${timingsLine(timings)}\n`,
      );
      return 0;
    } finally {
      await backend.dispose();
    }
  },
};
