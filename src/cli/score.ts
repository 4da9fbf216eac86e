// docdistill score: the log-probability of each token of a text given the ones before it.
import type { Command } from './command';
import { UsageError } from './command';
import { loadFromArgs, modelOptions, modelUsage, parse } from './modelArgs';
import { nonFiniteError } from '../engine/models/finite';

export const scoreCommand: Command = {
  name: 'score',
  summary: 'log-probabilities of each token of a text under a model (and adapter)',
  usage: `Usage: docdistill score --model DIR [--adapter DIR] (--text T | --ids 1,2,3) [--json]

Prints log p(token i | tokens before i) for every token; the first has none (null).
--text is tokenized as the model's tokenizer does by default (e.g. with a BOS token).

${modelUsage}
  --text T           the text to score
  --ids LIST         token ids, comma-separated
  --json             print {"ids":[…],"logprobs":[…]} on one line
`,
  async run(args, ctx) {
    const { values: v } = parse(args, {
      ...modelOptions,
      text: { type: 'string' },
      ids: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    if ((v.text === undefined) === (v.ids === undefined)) throw new UsageError('give exactly one of --text or --ids');
    let ids: number[] | undefined;
    if (v.ids !== undefined) {
      ids = v.ids
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .map((s) => {
          const n = Number(s);
          if (!Number.isInteger(n) || n < 0) throw new UsageError(`--ids: '${s}' is not a token id`);
          return n;
        });
      if (ids.length === 0) throw new UsageError('--ids: no token ids given');
    }
    const { backend, model, adapter } = await loadFromArgs(v, ctx.err);
    try {
      ids ??= model.tokenizer.encode(v.text!);
      const [logprobs] = await model.score([ids], adapter);
      if (logprobs!.some((lp) => lp !== null && !Number.isFinite(lp)))
        throw nonFiniteError('score', model, v.adapter ? { dir: v.adapter } : undefined);
      if (v.json) {
        ctx.out(JSON.stringify({ ids, logprobs }) + '\n');
      } else {
        let total = 0;
        for (let i = 0; i < ids.length; i++) {
          const lp = logprobs![i];
          if (typeof lp === 'number') total += lp;
          ctx.out(
            `${String(ids[i]).padStart(8)}  ${JSON.stringify(model.tokenizer.decode([ids[i]!], { skipSpecialTokens: false })).padEnd(20)}  ${lp === null || lp === undefined ? '' : lp.toFixed(4)}\n`,
          );
        }
        const n = ids.length - 1;
        if (n > 0)
          ctx.out(`total ${total.toFixed(4)} over ${n} tokens; perplexity ${Math.exp(-total / n).toFixed(3)}\n`);
      }
      return 0;
    } finally {
      await backend.dispose();
    }
  },
};
