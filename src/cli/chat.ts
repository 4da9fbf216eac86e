// docdistill chat: a terminal conversation with a model (and adapter), streamed; and
// docdistill eval: the evaluation of a finished run, again.
import { createInterface } from 'node:readline/promises';
import { join, resolve } from 'node:path';
import type { Command } from './command';
import { UsageError } from './command';
import { nameProblem } from '../pipeline/names';
import { intOption, loadFromArgs, modelOptions, modelUsage, numOption, parse } from './modelArgs';
import { generate } from '../engine/generate';
import { Distiller, listAdapters } from '../pipeline/distill';
import { listDirs, readJson } from '../pipeline/runFolder';
import { DEFAULT_PROMPTS } from '../pipeline/prompts';
import { evalTable } from './distill';

export const chatCommand: Command = {
  name: 'chat',
  summary: 'a terminal conversation with a model (and adapter)',
  usage: `Usage: docdistill chat --model DIR [--adapter DIR] [options]

Type a message and press Enter; the answer streams. /reset starts over, /exit (or Ctrl-D) quits.

${modelUsage}
  --system S         system message (default: "${DEFAULT_PROMPTS.system}")
  --max-tokens N     per answer (default 256)
  --temperature T    0 = greedy (default)
`,
  async run(args, ctx) {
    const { values: v } = parse(args, {
      ...modelOptions,
      system: { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
    });
    const { backend, model, adapter } = await loadFromArgs(v, ctx.err);
    const tok = model.tokenizer;
    if (!tok.hasChatTemplate)
      throw new UsageError('this model has no chat template; use "docdistill generate" instead');
    const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: !!process.stdin.isTTY });
    const history: { role: 'system' | 'user' | 'assistant'; content: string }[] = [
      { role: 'system', content: v.system ?? DEFAULT_PROMPTS.system },
    ];
    ctx.err(
      `chatting with ${model.dir}${adapter ? ` + adapter (${adapter.spec.rank}-rank LoRA)` : ''}; /reset, /exit\n`,
    );
    try {
      for (;;) {
        let line: string;
        try {
          line = (await rl.question('you> ')).trim();
        } catch {
          break;
        }
        if (ctx.signal.aborted || line === '/exit') break;
        if (!line) continue;
        if (line === '/reset') {
          history.splice(1);
          continue;
        }
        history.push({ role: 'user', content: line });
        const ids = tok.encode(tok.applyChatTemplate(history, { addGenerationPrompt: true }), {
          addSpecialTokens: false,
        });
        ctx.out('model> ');
        const [r] = await generate(model, [ids], {
          maxTokens: intOption(v['max-tokens'], 'max-tokens', 1) ?? 256,
          temperature: numOption(v.temperature, 'temperature') ?? 0,
          adapter,
          signal: ctx.signal,
          onText: (_, t) => ctx.out(t),
        });
        ctx.out('\n');
        history.push({ role: 'assistant', content: r!.text });
      }
    } finally {
      rl.close();
      await backend.dispose();
    }
    return 0;
  },
};

export const evalCommand: Command = {
  name: 'eval',
  summary: 'evaluate a distillation run again (base / teacher with docs / student)',
  usage: `Usage: docdistill eval --model DIR [--root DIR] [--run ID | --name ADAPTER]

Re-runs the evaluation of a run on its held-out questions and prints the table (default: the
latest run of the adapter --name, or the latest run).
`,
  async run(args, ctx) {
    const { values: v } = parse(args, {
      ...modelOptions,
      root: { type: 'string' },
      run: { type: 'string' },
      name: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const bad =
      (v.name !== undefined && nameProblem(v.name, 'adapter name (--name)')) ||
      (v.run !== undefined && nameProblem(v.run, 'run id (--run)'));
    if (bad) throw new UsageError(bad);
    const root = resolve(v.root ?? '.');
    const workDir = join(root, '.docdistill');
    let runId = v.run;
    if (!runId) {
      const runs = listDirs(join(workDir, 'runs')).reverse();
      runId = runs.find(
        (r) => !v.name || readJson<{ name: string }>(join(workDir, 'runs', r, 'run.json'))?.name === v.name,
      );
    }
    if (!runId)
      throw new UsageError(
        `no run found in ${workDir}${v.name ? ` for adapter ${v.name}` : ''}; known adapters: ${
          listAdapters(workDir)
            .map((a) => a.name)
            .join(', ') || 'none'
        }`,
      );
    const name = readJson<{ name: string }>(join(workDir, 'runs', runId, 'run.json'))?.name ?? 'docs';
    const { backend, model } = await loadFromArgs(v, ctx.err);
    try {
      const s = await new Distiller(model, { inputs: [], root, name, runId }).evaluateOnly();
      if (!s) throw new Error('the run has no held-out questions');
      ctx.out(v.json ? JSON.stringify(s) + '\n' : `run ${runId}\n${evalTable(s)}\n`);
      return 0;
    } finally {
      await backend.dispose();
    }
  },
};
