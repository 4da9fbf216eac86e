// docdistill demo-model: trains (or evaluates) the built-in demo model of the micro-world.
import type { Command } from './command';
import { UsageError } from './command';
import { intOption, numOption, parse } from './modelArgs';
import {
  trainDemoModel,
  evaluateDemo,
  evaluateSampledQuestions,
  fmtEval,
  DemoData,
  DEMO_SHAPE,
  type DemoShape,
} from '../demo/trainModel';
import { DEFAULT_SETTINGS, modelDefaults } from '../pipeline/settings';
import { writeExampleDocs } from '../demo/examples';
import { makeVocab } from '../demo/world';
import { Backend } from '../engine/backend';
import { CausalLM } from '../engine/models/model';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

function mixOption(v: string | undefined): keyof typeof DemoData.MIXES | undefined {
  if (v === undefined) return undefined;
  if (!Object.keys(DemoData.MIXES).includes(v))
    throw new UsageError(`--mix must be one of ${Object.keys(DemoData.MIXES).join(', ')} (got ${v})`);
  return Number(v) as keyof typeof DemoData.MIXES;
}

/** `--shape hidden,layers,heads,intermediate`. */
function shapeOption(v: string | undefined): DemoShape | undefined {
  if (v === undefined) return undefined;
  const n = v.split(',').map(Number);
  const [hidden, layers, heads, intermediate] = n;
  if (
    n.length !== 4 ||
    !n.every((x) => Number.isInteger(x) && x > 0) ||
    hidden! % heads! !== 0 ||
    (hidden! / heads!) % 2
  )
    throw new UsageError(
      `--shape is hidden,layers,heads,intermediate with hidden a multiple of heads and an even head size (got ${v}; the built-in model's is ${Object.values(DEMO_SHAPE).join(',')})`,
    );
  return { hidden: hidden!, layers: layers!, heads: heads!, intermediate: intermediate! };
}

export const demoModelCommand: Command = {
  name: 'demo-model',
  summary: 'train or evaluate the built-in demo model (synthetic micro-world)',
  usage: `Usage: docdistill demo-model train --out DIR [--minutes M | --steps N [--stop-at S]] [--all-subjects-from STEP]
                              [--mix 1…23]
                              [--from DIR --lr X --warmup N] [--shape H,L,HEADS,I] [--seed S] [--threads N]
       docdistill demo-model eval --model DIR [--per-relation N] [--count N] [--temperature T]
       docdistill demo-model docs --out DIR [--count N] [--multi M] [--seed S]

train   trains a small Llama from scratch on the micro-world's tasks with DocDistill's own engine,
        time-boxed (default 90 minutes), checkpointed: re-running the same command resumes.
        --mix picks the task mix (see DemoData.MIXES): 1, the built-in model's; 2 also teaches
        the teacher to say "I do not know" about what its document does not say; 3 adds documents
        about 1–4 people under ## headings; 4 weights them up; 5 adds "who" questions (which
        person of a document has a value), a direct signal for tying values to people; 6 is
        single-person documents, a quarter of the questions about a relation they lack; 7 pairs
        each such question with one the document answers and answers it at the value ("Vreruq has
        a pet named - the document does not say."); 8 is 7 on documents about 1–4 people; 9–15
        try to teach reading one person among several, 16–21 drill that alone, 22 and 23 follow them (see
        DemoData.MIXES).
        --stop-at S ends the run at step S of the --steps schedule (its learning rate not yet
        decayed), writing the model folder there: one stage of a recipe that goes on with --from.
        --from DIR starts from a demo model's weights (made with the same --seed) instead of
        random ones: a fine-tune, usually with a lower --lr.
        --shape hidden,layers,heads,intermediate sets the model's size (the built-in one's is
        128,4,4,384).
eval    measures, on people never seen in training: reading accuracy per relation (document in the
        prompt), closed-book "I do not know" rate, and how many written questions are valid,
        greedy and sampled as the pipeline samples them (--count of them).
docs    writes documents about people the model has never read about (held-out names), and
        their facts to <DIR>/../facts.json, for distillation demos and tests; --multi M more
        documents about 2–4 people each, under ## headings.
`,
  async run(args, ctx) {
    const { values: v, positionals } = parse(args, {
      out: { type: 'string' },
      model: { type: 'string' },
      minutes: { type: 'string' },
      seed: { type: 'string' },
      threads: { type: 'string' },
      'per-relation': { type: 'string' },
      'eval-every': { type: 'string' },
      count: { type: 'string' },
      steps: { type: 'string' },
      'stop-at': { type: 'string' },
      'all-subjects-from': { type: 'string' },
      temperature: { type: 'string' },
      mix: { type: 'string' },
      multi: { type: 'string' },
      from: { type: 'string' },
      lr: { type: 'string' },
      warmup: { type: 'string' },
      shape: { type: 'string' },
    });
    const sub = positionals[0];
    if (sub === 'train') {
      if (!v.out) throw new UsageError('--out DIR is required');
      if (v['stop-at'] !== undefined && (v.steps === undefined || Number(v['stop-at']) > Number(v.steps)))
        throw new UsageError('--stop-at S needs --steps N (the schedule it stops within), with S at most N');
      const res = await trainDemoModel({
        out: v.out,
        minutes: numOption(v.minutes, 'minutes') ?? 90,
        steps: intOption(v.steps, 'steps', 1),
        stopAt: intOption(v['stop-at'], 'stop-at', 1),
        allSubjectsFrom: intOption(v['all-subjects-from'], 'all-subjects-from', 0),
        seed: intOption(v.seed, 'seed') ?? 1,
        threads: intOption(v.threads, 'threads'),
        mix: mixOption(v.mix),
        from: v.from,
        lr: numOption(v.lr, 'lr'),
        warmup: intOption(v.warmup, 'warmup', 0),
        evalEvery: intOption(v['eval-every'], 'eval-every', 1),
        shape: shapeOption(v.shape),
        log: (l) => ctx.err(`${l}\n`),
        signal: ctx.signal,
      });
      ctx.out(JSON.stringify(res) + '\n');
      return 0;
    }
    if (sub === 'docs') {
      if (!v.out) throw new UsageError('--out DIR is required');
      const n = intOption(v.count, 'count', 1) ?? 12;
      const files = writeExampleDocs(v.out, n, intOption(v.seed, 'seed') ?? 1, intOption(v.multi, 'multi', 0) ?? 0);
      ctx.out(`${files.length} documents in ${v.out}; facts in ${join(v.out, '..', 'facts.json')}\n`);
      return 0;
    }
    if (sub === 'eval') {
      if (!v.model) throw new UsageError('--model DIR is required');
      const info = JSON.parse(readFileSync(join(v.model, 'training.json'), 'utf8')) as { seed: number };
      const backend = await Backend.create({ device: 'cpu', threads: intOption(v.threads, 'threads') });
      const model = await CausalLM.load(v.model, backend);
      const data = new DemoData(model.tokenizer, makeVocab(info.seed));
      const res = await evaluateDemo(model, data, {
        seed: 4242,
        perRelation: intOption(v['per-relation'], 'per-relation', 1) ?? 24,
      });
      ctx.out(`greedy: ${fmtEval(res)}\n`);
      // As the pipeline would sample them for this model: its own recommended settings, else the defaults.
      const d = { ...DEFAULT_SETTINGS, ...modelDefaults(v.model) };
      const temperature = numOption(v.temperature, 'temperature') ?? d.questionTemperature;
      const topK = d.questionTopK;
      const sq = await evaluateSampledQuestions(model, data, {
        seed: 4243,
        n: intOption(v.count, 'count', 1) ?? 400,
        temperature,
        topK,
        answerTemperature: d.answerTemperature,
        answerTopK: d.answerTopK,
        answerableOnly: d.answerableOnly,
      });
      const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
      ctx.out(
        `questions sampled as the pipeline does (temperature ${temperature}, top-k ${topK}, n=${sq.n}): valid ${pct(sq.valid)}; grounded ${pct(sq.grounded)}; kept by the pipeline (grounded, and the teacher answers) ${pct(sq.kept)}; valid among the kept ${pct(sq.validAmongKept)}\n`,
      );
      if (sq.invalidKept.length)
        ctx.out(
          `kept but not valid, e.g.:\n${sq.invalidKept.map((x) => `  ${JSON.stringify(x.question)}  (document: ${x.facts.join(', ')})`).join('\n')}\n`,
        );
      await backend.dispose();
      return 0;
    }
    throw new UsageError(`expected 'train' or 'eval' (got ${sub ?? 'nothing'})`);
  },
};
