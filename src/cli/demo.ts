// docdistill demo: the README's main command. Distils the example documents into the built-in
// demo model (prompt distillation and the SFT baseline) and prints the evaluation table.
import { mkdtempSync, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Command } from './command';
import { UsageError } from './command';
import { intOption, parse, quantizeOption } from './modelArgs';
import { settingsFrom, settingsOptions, settingsUsageFor, terminalReporter } from './distill';
import { Backend, PROVIDERS, type ProviderChoice } from '../engine/backend';
import { CausalLM } from '../engine/models/model';
import { DEMO_SETTINGS, capacityTable, runDemo, demoTable, spreadTable, type DemoScores } from '../demo/demo';
import { HELD_OUT_PEOPLE, writeExampleDocs } from '../demo/examples';
import { DEFAULT_SETTINGS } from '../pipeline/settings';
import { writeJson } from '../pipeline/runFolder';
import type { ExampleFacts } from '../demo/examples';

/** The package root (where media/ and examples/ are), from dist/cli.js. */
export const packageRoot = (): string => resolve(__dirname, '..');

export const demoCommand: Command = {
  name: 'demo',
  summary: 'distil the example docs into the built-in demo model and print the evaluation',
  usage: `Usage: docdistill demo [--root DIR] [--device D] [--threads N] [--seeds N] [--no-sft] [settings]

Copies examples/docs into a fresh workspace (default: a temporary folder), distils them into the
built-in demo model (media/demo-model) by prompt distillation and by SFT on the same QA pairs,
and grades every fact: base model and students closed book, the teacher with the document,
question phrasings never seen in training, and people in no document ("I do not know").

  --seeds N          run the whole demo N times, with distillation seeds S … S+N-1 (S = --seed,
                     default 0), and print the mean, standard deviation and range of each figure
  --no-sft           skip the SFT baseline (about half the time)
  --docs N[,N…]      instead of examples/docs, distil N documents generated the same way (people
                     the model never read about, one in five files about several; N up to 100) and print, per N, the figures and the
                     time taken: how much one adapter holds
  --model DIR        another model folder than the built-in demo model
  --quantize Q       none (default), int8 or int4: distil and grade on a quantized base
Distillation settings (defaults: the demo model's own, from its training.json):
${settingsUsageFor({ ...DEFAULT_SETTINGS, ...DEMO_SETTINGS })}
`,
  async run(args, ctx) {
    const { values: v, positionals } = parse(args, {
      ...settingsOptions,
      root: { type: 'string' },
      device: { type: 'string', default: 'cpu' },
      threads: { type: 'string' },
      model: { type: 'string' },
      seeds: { type: 'string' },
      'no-sft': { type: 'boolean', default: false },
      docs: { type: 'string' },
      quantize: { type: 'string' },
    });
    if (positionals.length)
      throw new UsageError(`unexpected argument '${positionals[0]}' (the demo distils examples/docs)`);
    const settings = settingsFrom(v);
    if (v.quantize !== undefined) settings.baseQuantization = quantizeOption(v.quantize);
    const nSeeds = intOption(v.seeds, 'seeds', 1) ?? 1;
    const seeds = Array.from({ length: nSeeds }, (_, i) => (settings.seed ?? 0) + i);
    const many = seeds.length > 1;
    const root = packageRoot();
    const modelDir = v.model ?? join(root, 'media', 'demo-model');
    const examples = join(root, 'examples');
    if (!existsSync(join(modelDir, 'model.safetensors')))
      throw new UsageError(
        `the demo model is missing at ${modelDir}; run "docdistill demo-model train --out ${modelDir}"`,
      );
    const docCounts = v.docs?.split(',').map((x) => intOption(x.trim(), 'docs', 1)!);
    if (docCounts?.some((n) => n > 100))
      throw new UsageError(
        `--docs takes up to 100 documents (the demo world has ${HELD_OUT_PEOPLE} people the model never read about, 20 of them kept unknown)`,
      );
    const device = v.device as ProviderChoice;
    if (device !== 'auto' && !(PROVIDERS as readonly string[]).includes(device))
      throw new UsageError(`--device must be auto or one of ${PROVIDERS.join(', ')}`);
    const work = v.root ? resolve(v.root) : mkdtempSync(join(tmpdir(), 'docdistill-demo-'));
    const t0 = performance.now();
    const backend = await Backend.create({ device, threads: intOption(v.threads, 'threads') });
    try {
      // Graded on the base it was distilled on.
      const model = await CausalLM.load(modelDir, backend, { quantize: settings.baseQuantization });
      ctx.err(
        `demo model: ${modelDir} (${backend.provider}${model.quantization === 'none' ? '' : `, ${model.quantization} base`}); workspace: ${work}\n`,
      );
      const all: DemoScores[] = [];
      // One set of documents, or (--docs) one generated set per count, each in its own folder.
      const sets = docCounts
        ? docCounts.map((n) => {
            // As examples/docs: one in five about several people.
            const multi = Math.round(n / 5);
            writeExampleDocs(join(work, `docs-${n}`, 'source', 'docs'), n - multi, 1, multi);
            return { n, docsDir: join(work, `docs-${n}`, 'source', 'docs'), dir: join(work, `docs-${n}`) };
          })
        : [{ n: 0, docsDir: join(examples, 'docs'), dir: work }];
      const capacity: { n: number; minutes: number; scores: DemoScores[] }[] = [];
      for (const set of sets) {
        const facts = JSON.parse(readFileSync(join(set.docsDir, '..', 'facts.json'), 'utf8')) as ExampleFacts;
        const t1 = performance.now();
        const forSet: DemoScores[] = [];
        for (const seed of seeds) {
          const dir = many ? join(set.dir, `seed-${seed}`) : set.dir;
          const res = await runDemo(model, {
            docsDir: set.docsDir,
            facts,
            workRoot: docCounts ? join(dir, 'workspace') : dir,
            settings: { ...settings, seed },
            sft: !v['no-sft'],
            onEvent: terminalReporter(ctx, !!process.stderr.isTTY),
            signal: ctx.signal,
            log: (s) => ctx.err(`\n== ${many ? `seed ${seed}: ` : ''}${s}\n`),
          });
          all.push(res.scores);
          forSet.push(res.scores);
          ctx.out(
            `\n${docCounts ? `${set.n} documents${many ? ', ' : '\n'}` : ''}${many ? `seed ${seed}\n` : ''}${demoTable(res.scores)}\n`,
          );
        }
        capacity.push({ n: set.n, minutes: (performance.now() - t1) / 60000 / seeds.length, scores: forSet });
      }
      if (docCounts) {
        ctx.out(`\n${capacityTable(capacity)}\n`);
        writeJson(join(work, 'demo-capacity.json'), capacity);
      } else if (many) {
        ctx.out(`\n${spreadTable(all, seeds)}\n`);
        writeJson(join(work, 'demo-seeds.json'), { seeds, scores: all });
      }
      const details = docCounts
        ? `${join(work, 'demo-capacity.json')} and ${join(work, 'docs-*')}`
        : many
          ? `${join(work, 'demo-seeds.json')} and ${join(work, 'seed-*')}`
          : `${join(work, 'demo-eval.json')} and ${join(work, '.docdistill')}`;
      ctx.out(`\nfinished in ${((performance.now() - t0) / 60000).toFixed(1)} min; details in ${details}\n`);
      return 0;
    } finally {
      await backend.dispose();
    }
  },
};
