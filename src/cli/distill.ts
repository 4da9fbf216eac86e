// docdistill distill: Markdown files or folders → a LoRA adapter, with progress bars. Ctrl-C
// stops at the next safe point; running the same command again resumes.
import { resolve } from 'node:path';
import type { Command, CommandContext } from './command';
import { UsageError } from './command';
import { nameProblem } from '../pipeline/names';
import { loadFromArgs, modelOptions, modelUsage, numOption, intOption, parse, quantizeOption } from './modelArgs';
import {
  Distiller,
  CancelledError,
  describeEstimate,
  formatDuration,
  type DistillEvent,
  type EvalSummary,
} from '../pipeline/distill';
import { DEFAULT_SETTINGS, definedSettings, settingDefault, type DistillSettings } from '../pipeline/settings';
import type { LoraTarget } from '../engine/models/llama';

const bar = (done: number, total: number, width = 24) => {
  const f = total ? Math.min(1, done / total) : 0;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${String(Math.round(f * 100)).padStart(3)}%`;
};

const eta = (s?: number) =>
  s === undefined || !Number.isFinite(s) ? '' : s > 90 ? ` ETA ${Math.round(s / 60)} min` : ` ETA ${Math.round(s)} s`;

export function evalTable(s: EvalSummary): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(7);
  const row = (label: string, m: EvalSummary['base']) =>
    `${label.padEnd(26)}${pct(m.exact)}${pct(m.contains)}${pct(m.f1)}`;
  return [
    `held-out questions: ${s.n}`,
    `${''.padEnd(26)}  exact contains     F1`,
    row('base (closed book)', s.base),
    row('teacher (with the doc)', s.teacher),
    row('student (closed book)', s.student),
  ].join('\n');
}

/** The estimate as the CLI prints it: the total and the phases, and a warning when it is long. */
export function estimateLines(e: {
  totalSec: number;
  seconds: { questions: number; answers: number; train: number; evaluate: number };
  long: boolean;
  suggestions: string[];
  refined?: boolean;
}): string[] {
  const out = [`${e.refined ? 'estimate with the questions written' : 'estimate'}: ${describeEstimate(e)}`];
  if (e.long)
    out.push(
      `warning: this run will take ${formatDuration(e.totalSec)}. To shorten it: ${e.suggestions.join('; ')}. Ctrl-C stops it; the same command resumes.`,
    );
  return out;
}

/** Renders pipeline events for a terminal: one updating line per phase on a TTY, plain lines otherwise. */
export function terminalReporter(ctx: CommandContext, tty: boolean): (e: DistillEvent) => void {
  let live = false;
  const line = (t: string) => {
    if (tty) ctx.err(`\r\x1b[2K${t}`);
    else ctx.err(`${t}\n`);
    live = tty;
  };
  const end = () => {
    if (live) ctx.err('\n');
    live = false;
  };
  let lastPlain = 0;
  return (e) => {
    switch (e.type) {
      case 'run':
        end();
        ctx.err(`${e.resumed ? 'resuming' : 'run'} ${e.runId} (${e.dir})\n`);
        break;
      case 'phase':
        end();
        if (e.status !== 'done')
          ctx.err(`${e.phase}: ${e.status === 'skipped' ? `skipped (${e.detail})` : 'started'}\n`);
        break;
      case 'progress':
        if (tty || Date.now() - lastPlain > 5000) {
          line(`  ${e.phase.padEnd(9)} ${bar(e.done, e.total)} ${e.done}/${e.total}${eta(e.etaSec)}`);
          lastPlain = Date.now();
        }
        break;
      case 'train':
        if (tty || Date.now() - lastPlain > 5000) {
          line(
            `  train     ${bar(e.step, e.totalSteps)} step ${e.step}/${e.totalSteps} epoch ${e.epoch.toFixed(2)} loss ${e.loss.toFixed(4)} lr ${e.lr.toExponential(1)} ${Math.round(e.tokensPerSec)} tok/s${eta(e.etaSec)}`,
          );
          lastPlain = Date.now();
        }
        break;
      case 'validation':
        end();
        ctx.err(`  validation loss after epoch ${e.epoch}: ${e.loss.toFixed(4)}\n`);
        break;
      case 'sample':
        end();
        ctx.err(`  sample  Q: ${e.question}\n          A: ${e.answer.slice(0, 160)}\n`);
        break;
      case 'estimate':
        end();
        ctx.err(`${estimateLines(e).join('\n')}\n`);
        break;
      case 'log':
        end();
        ctx.err(`${e.level === 'warn' ? 'warning: ' : ''}${e.message}\n`);
        break;
      case 'eval':
        end();
        break;
      case 'done':
        end();
        break;
    }
  };
}

export const settingsOptions = {
  questions: { type: 'string' },
  rounds: { type: 'string' },
  epochs: { type: 'string' },
  lr: { type: 'string' },
  rank: { type: 'string' },
  alpha: { type: 'string' },
  targets: { type: 'string' },
  loss: { type: 'string' },
  temperature: { type: 'string' },
  'batch-size': { type: 'string' },
  'held-out': { type: 'string' },
  'general-share': { type: 'string' },
  seed: { type: 'string' },
  dropout: { type: 'string' },
  'keep-ungrounded': { type: 'boolean' },
  set: { type: 'string', multiple: true },
} as const;

/** `--set key=value`: any setting by its name in settings.ts / the extension's docdistill.distill.*. */
export function setOptions(pairs: string[] | undefined): Partial<DistillSettings> {
  const out: Record<string, unknown> = {};
  for (const p of pairs ?? []) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new UsageError(`--set takes key=value (got '${p}')`);
    const k = p.slice(0, eq).trim();
    const raw = p.slice(eq + 1).trim();
    const def = settingDefault(k);
    if (def === undefined)
      throw new UsageError(
        `--set: '${k}' is not a setting; one of ${Object.keys(DEFAULT_SETTINGS)
          .filter((x) => settingDefault(x) !== undefined)
          .join(', ')}`,
      );
    if (typeof def === 'number') {
      const n = Number(raw);
      if (raw === '' || !Number.isFinite(n)) throw new UsageError(`--set ${k} must be a number (got '${raw}')`);
      out[k] = n;
    } else if (typeof def === 'boolean') {
      if (raw !== 'true' && raw !== 'false') throw new UsageError(`--set ${k} must be true or false (got '${raw}')`);
      out[k] = raw === 'true';
    } else if (Array.isArray(def))
      out[k] = raw
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean);
    else out[k] = raw;
  }
  return out as Partial<DistillSettings>;
}

/** The settings the user gave on the command line, and only those (no undefined entries). */
export function settingsFrom(v: Record<string, string | string[] | boolean | undefined>): Partial<DistillSettings> {
  const s = (k: string) => v[k] as string | undefined;
  return definedSettings({
    questionsPerRound: intOption(s('questions'), 'questions', 1),
    rounds: intOption(s('rounds'), 'rounds', 1),
    epochs: intOption(s('epochs'), 'epochs', 1),
    learningRate: numOption(s('lr'), 'lr'),
    loraRank: intOption(s('rank'), 'rank', 1),
    loraAlpha: numOption(s('alpha'), 'alpha'),
    loraTargets: s('targets')
      ?.split(',')
      .map((t) => t.trim()) as LoraTarget[] | undefined,
    loss: s('loss') as DistillSettings['loss'] | undefined,
    distillTemperature: numOption(s('temperature'), 'temperature'),
    batchSize: intOption(s('batch-size'), 'batch-size', 1),
    heldOutShare: numOption(s('held-out'), 'held-out'),
    generalShare: numOption(s('general-share'), 'general-share'),
    seed: intOption(s('seed'), 'seed', 0),
    loraDropout: numOption(s('dropout'), 'dropout'),
    groundQuestions: v['keep-ungrounded'] ? false : undefined,
    ...setOptions(v.set as string[] | undefined),
  });
}

/** The settings options, with the defaults `d` in force. */
export function settingsUsageFor(d: DistillSettings): string {
  return `  --questions N      questions per round and passage (default ${d.questionsPerRound})
  --rounds N         question rounds (default ${d.rounds})
  --epochs N         training epochs (default ${d.epochs}; ${d.earlyStopPatience ? 'early stopping on' : 'the best epoch by'} held-out KL)
  --lr X             learning rate (default ${d.learningRate})
  --rank R --alpha A LoRA rank and alpha (default ${d.loraRank}, ${d.loraAlpha})
  --targets LIST     LoRA targets (default ${d.loraTargets.join(',')})
  --loss kl|ce       distillation (default) or the SFT baseline
  --temperature T    distillation temperature (default ${d.distillTemperature})
  --batch-size N     samples per step (default ${d.batchSize})
  --held-out X       share of questions kept for evaluation (default ${d.heldOutShare})
  --general-share X  questions the docs do not answer, per QA pair (default ${d.generalShare}; 0 = off)
  --dropout P        LoRA dropout (default ${d.loraDropout})
  --keep-ungrounded  keep questions that name something their passage does not mention
  --seed S           random seed
  --set KEY=VALUE    any other setting by name, e.g. --set questionTemperature=1 (repeatable)`;
}

export const settingsUsage = settingsUsageFor(DEFAULT_SETTINGS);

export const distillCommand: Command = {
  name: 'distill',
  summary: 'distil Markdown files or folders into a LoRA adapter',
  usage: `Usage: docdistill distill <files|folders…> --model DIR [--name N] [options]

Writes .docdistill/runs/<id>/ (questions, answers, metrics, eval) and the adapter to
.docdistill/adapters/<name>/ under --root (default: the current folder). Ctrl-C stops cleanly;
running the same command again resumes. If the adapter exists, only new or changed passages get
new questions, and training continues from it.

${modelUsage}
  --name N           adapter name (default "docs")
  --root DIR         workspace root (default: current folder)
  --no-eval          skip the evaluation
  --json             print the result as JSON
  --estimate-only    print how long the run would take (measured by a short probe) and exit;
                     nothing is written
${settingsUsage}
`,
  async run(args, ctx) {
    const { values: v, positionals } = parse(args, {
      ...modelOptions,
      ...settingsOptions,
      name: { type: 'string', default: 'docs' },
      root: { type: 'string' },
      'no-eval': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'estimate-only': { type: 'boolean', default: false },
    });
    if (!positionals.length) throw new UsageError('give at least one Markdown file or folder');
    const bad = nameProblem(v.name, 'adapter name (--name)');
    if (bad) throw new UsageError(bad);
    const settings = settingsFrom(v);
    // --quantize is the setting baseQuantization for a run (--set baseQuantization=… works too).
    if (v.quantize !== undefined) settings.baseQuantization = quantizeOption(v.quantize);
    const { backend, model } = await loadFromArgs(v, ctx.err);
    try {
      const d = new Distiller(
        model,
        { inputs: positionals, root: resolve(v.root ?? '.'), name: v.name!, settings, skipEval: v['no-eval'] },
        {
          onEvent: terminalReporter(ctx, !!process.stderr.isTTY),
          signal: ctx.signal,
        },
      );
      if (v['estimate-only']) {
        const e = await d.estimateOnly();
        if (v.json) ctx.out(JSON.stringify(e) + '\n');
        else ctx.out(estimateLines(e).join('\n') + '\n');
        return 0;
      }
      const res = await d.run();
      if (v.json) ctx.out(JSON.stringify(res) + '\n');
      else {
        if (res.summary) ctx.out(evalTable(res.summary) + '\n');
        ctx.out(`adapter: ${res.adapterDir}\n`);
      }
      return 0;
    } catch (e) {
      if (e instanceof CancelledError) {
        ctx.err(`\n${e.message}\n`);
        return 130;
      }
      throw e;
    } finally {
      await backend.dispose();
    }
  },
};
