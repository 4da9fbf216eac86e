// The demo: distil example documents of the micro-world into the demo model, once by prompt
// distillation (KL to the teacher) and once by SFT on the same question/answer pairs, then grade
// every fact against the world's ground truth: closed book (base, PD student, SFT student), with
// the document (teacher), phrasings never seen in training, and people in no document.
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from '../engine/generate';
import { readAdapter } from '../engine/lora/peft';
import type { AdapterWeights, CausalLM } from '../engine/models/model';
import { Distiller, type DistillEvent } from '../pipeline/distill';
import { saysDontKnow, studentMessages, teacherMessages, type ChatMessage } from '../pipeline/prompts';
import { readJson, writeJson } from '../pipeline/runFolder';
import { definedSettings, type DistillSettings } from '../pipeline/settings';
import type { ExampleFacts } from './examples';
import { QUESTIONS, RELATIONS, absentRelations, renderDoc, type Relation } from './world';
import { Rng } from '../common/rng';

export interface DemoRow {
  who: string;
  relation: Relation;
  value: string;
  question: string;
  reserved: boolean;
  base: string;
  teacher: string;
  pd: string;
  sft: string;
}

/** A question about a distilled person's relation that their document does not have, and what each model answered. */
export interface AbsentRow {
  question: string;
  teacher: string;
  pd: string;
  sft: string;
}

/** A question about someone in no document, and what each model answered. */
export interface UnknownRow {
  who: string;
  question: string;
  base: string;
  pd: string;
  sft: string;
}

export interface DemoScores {
  facts: number;
  questions: number;
  base: number;
  teacher: number;
  pd: number;
  sft: number;
  pdReserved: number;
  sftReserved: number;
  /** On people in no document: share of "I do not know". */
  unknownQuestions: number;
  baseDontKnow: number;
  pdDontKnow: number;
  sftDontKnow: number;
  /** On the distilled people, about relations their document does not have: share of "I do not know". */
  absentQuestions: number;
  teacherAbsentDontKnow: number;
  pdAbsentDontKnow: number;
  sftAbsentDontKnow: number;
  perRelation: Record<string, { n: number; pd: number; sft: number; teacher: number }>;
}

/**
 * The distillation settings for the demo model, measured with `npm run demo -- --seeds 8` (see the
 * README): a 1 M-parameter model needs a higher rank and more epochs than the defaults for
 * 0.1–1.5 B models. Learning rate 1e-3: with abstentions in training, 2e-3 left two seeds in eight
 * at 88.5 and 90.3 % on phrasings never trained (1e-3: 92.9 and 92.0, every other seed ≥ 99.1).
 * `docdistill demo-model train` writes them into training.json as `distillDefaults`, so the
 * extension and the CLI use them for this model unless a setting is chosen explicitly. Questions at
 * temperature 1: of the questions the pipeline keeps, 97.2 % are valid for their document at 1.2
 * and 100 % at 1 (`docdistill demo-model eval`); the few invalid ones at 1.2 ("What year was the job
 * of X?", answered with the job) taught one seed in 8 to answer "What is the birth year of X?" with
 * another relation (unseen phrasings over 8 seeds: min 94.7 % at 1.2, 97.3 % at 1). A general pool
 * of 4: each epoch trains on a quarter of 4× as many general questions, so the guard covers 4× as
 * many names.
 */
export const DEMO_SETTINGS: Partial<DistillSettings> = {
  rounds: 6,
  questionsPerRound: 5,
  questionTemperature: 1,
  epochs: 60,
  earlyStopPatience: 0,
  learningRate: 1e-3,
  loraRank: 64,
  loraAlpha: 128,
  batchSize: 8,
  generalShare: 1,
  generalPool: 4,
  // A file about several people is a passage per person, each with its own rounds of questions
  // (examples/docs, seed 0: facts 100 % with it, 96.5 % without; 75.5 % for the model before #21's).
  sectionPassages: true,
  // Its question writer knows two phrasings per relation; a quarter of the questions said a little
  // differently each epoch lets the student answer the third (8 seeds: unseen phrasings min 92.0 → 95.6 %).
  questionNoise: 0.25,
};

export async function runDemo(
  model: CausalLM,
  o: {
    docsDir: string;
    facts: ExampleFacts;
    workRoot: string;
    settings?: Partial<DistillSettings>;
    sft?: boolean;
    onEvent?: (e: DistillEvent) => void;
    signal?: AbortSignal;
    log: (s: string) => void;
  },
): Promise<{ scores: DemoScores; rows: DemoRow[]; unknownRows: UnknownRow[]; pdRun: string; sftRun?: string }> {
  const settings = { ...DEMO_SETTINGS, ...definedSettings(o.settings) };
  mkdirSync(join(o.workRoot, 'docs'), { recursive: true });
  for (const d of o.facts.docs) copyFileSync(join(o.docsDir, d.file), join(o.workRoot, 'docs', d.file));
  o.log('prompt distillation (KL to the teacher)…');
  const pd = await new Distiller(
    model,
    { inputs: ['docs'], root: o.workRoot, name: 'demo-pd', settings: { ...settings, loss: 'kl' } },
    { onEvent: o.onEvent, signal: o.signal },
  ).run();
  const pdA = readAdapter(pd.adapterDir, model.config);
  const sft = o.sft === false ? undefined : await sftBaseline(model, o, settings, pd.runId);
  o.log('grading every fact against the ground truth…');
  const res = await grade(model, o.docsDir, o.facts, pdA, sft?.adapter, o.signal);
  writeJson(join(o.workRoot, 'demo-eval.json'), res);
  return { ...res, pdRun: pd.runId, sftRun: sft?.runId };
}

/** SFT on the very same question/answer pairs: a run whose first three phases are the PD run's. */
async function sftBaseline(
  model: CausalLM,
  o: { workRoot: string; onEvent?: (e: DistillEvent) => void; signal?: AbortSignal; log: (s: string) => void },
  settings: Partial<DistillSettings>,
  pdRun: string,
): Promise<{ adapter: AdapterWeights; runId: string }> {
  const runs = join(o.workRoot, '.docdistill', 'runs');
  const sftId = `${pdRun}-sft`;
  const sftDir = join(runs, sftId);
  if (!existsSync(join(sftDir, 'run.json'))) {
    mkdirSync(sftDir, { recursive: true });
    for (const f of ['chunks.jsonl', 'questions.jsonl', 'answers.jsonl'])
      copyFileSync(join(runs, pdRun, f), join(sftDir, f));
    const st = readJson<Record<string, unknown>>(join(runs, pdRun, 'run.json'))!;
    writeJson(join(sftDir, 'run.json'), {
      ...st,
      id: sftId,
      name: 'demo-sft',
      settings: { ...(st.settings as object), loss: 'ce' },
      phases: { ingest: 'done', questions: 'done', answers: 'done' },
      finished: undefined,
      baseAdapter: undefined,
      knownHashes: undefined,
    });
  }
  o.log('SFT baseline on the same QA pairs…');
  const sft = await new Distiller(
    model,
    { inputs: ['docs'], root: o.workRoot, name: 'demo-sft', runId: sftId, settings: { ...settings, loss: 'ce' } },
    { onEvent: o.onEvent, signal: o.signal },
  ).run();
  return { adapter: readAdapter(sft.adapterDir, model.config), runId: sftId };
}

const fill = (t: string, n: string) => t.replaceAll('{N}', n);

async function answers(
  model: CausalLM,
  prompts: ChatMessage[][],
  adapter?: AdapterWeights,
  signal?: AbortSignal,
): Promise<string[]> {
  const tok = model.tokenizer;
  const ids = prompts.map((m) =>
    tok.encode(tok.applyChatTemplate(m, { addGenerationPrompt: true }), { addSpecialTokens: false }),
  );
  const out: string[] = [];
  for (let i = 0; i < ids.length; i += 32) {
    const r = await generate(model, ids.slice(i, i + 32), { maxTokens: 24, adapter, signal });
    out.push(...r.map((x) => x.text.trim()));
  }
  return out;
}

export async function grade(
  model: CausalLM,
  docsDir: string,
  facts: ExampleFacts,
  pd: AdapterWeights,
  sft: AdapterWeights | undefined,
  signal?: AbortSignal,
): Promise<{ scores: DemoScores; rows: DemoRow[]; unknownRows: UnknownRow[]; absentRows: AbsentRow[] }> {
  const docText = new Map(facts.docs.map((d) => [d.file, readFileSync(join(docsDir, d.file), 'utf8')]));
  // The SFT student's answers, when there is an SFT baseline.
  const sftAnswers = async (prompts: ChatMessage[][]) => (sft ? await answers(model, prompts, sft, signal) : undefined);
  const items: { who: string; relation: Relation; value: string; question: string; reserved: boolean; doc: string }[] =
    [];
  for (const d of facts.docs) {
    const doc = docText.get(d.file)!;
    for (const f of d.entity.facts) {
      QUESTIONS[f.relation].forEach((q, i, all) =>
        items.push({
          who: d.entity.name,
          relation: f.relation,
          value: f.value,
          question: fill(q, d.entity.name),
          reserved: i === all.length - 1,
          doc,
        }),
      );
    }
  }
  const closed = items.map((it) => studentMessages(it.question));
  const [base, teacher, pdAns, sftAns] = [
    await answers(model, closed, undefined, signal),
    await answers(
      model,
      items.map((it) => teacherMessages(it.doc, it.question)),
      undefined,
      signal,
    ),
    await answers(model, closed, pd, signal),
    await sftAnswers(closed),
  ];
  const rows: DemoRow[] = items.map((it, i) => ({
    who: it.who,
    relation: it.relation,
    value: it.value,
    question: it.question,
    reserved: it.reserved,
    base: base[i]!,
    teacher: teacher[i]!,
    pd: pdAns[i]!,
    sft: sftAns?.[i] ?? '',
  }));
  // People in no document.
  const rng = new Rng(facts.seed + 5);
  const unkQ = facts.unknown.flatMap((e) =>
    e.facts.map((f) => ({
      who: e.name,
      question: fill(QUESTIONS[f.relation][rng.int(QUESTIONS[f.relation].length)]!, e.name),
    })),
  );
  const unk = unkQ.map((u) => studentMessages(u.question));
  const [ub, upd, usft] = [
    await answers(model, unk, undefined, signal),
    await answers(model, unk, pd, signal),
    await sftAnswers(unk),
  ];
  const unknownRows: UnknownRow[] = unkQ.map((u, i) => ({ ...u, base: ub[i]!, pd: upd[i]!, sft: usft?.[i] ?? '' }));
  // The distilled people, about what their documents do not say.
  const absQ = facts.docs.flatMap((d) =>
    absentRelations(d.entity).map((r) => ({
      doc: docText.get(d.file)!,
      question: fill(QUESTIONS[r][rng.int(QUESTIONS[r].length)]!, d.entity.name),
    })),
  );
  const absClosed = absQ.map((a) => studentMessages(a.question));
  const [at, apd, asft] = [
    await answers(
      model,
      absQ.map((a) => teacherMessages(a.doc, a.question)),
      undefined,
      signal,
    ),
    await answers(model, absClosed, pd, signal),
    await sftAnswers(absClosed),
  ];
  const frac = (xs: boolean[]) => (xs.length ? xs.filter(Boolean).length / xs.length : 0);
  const ok = (k: 'base' | 'teacher' | 'pd' | 'sft', sub = rows) =>
    k === 'sft' && !sft ? NaN : frac(sub.map((r) => r[k].includes(r.value)));
  const reserved = rows.filter((r) => r.reserved);
  const perRelation: DemoScores['perRelation'] = {};
  for (const rel of RELATIONS) {
    const sub = rows.filter((r) => r.relation === rel);
    if (sub.length)
      perRelation[rel] = { n: sub.length, pd: ok('pd', sub), sft: ok('sft', sub), teacher: ok('teacher', sub) };
  }
  const absentRows: AbsentRow[] = absQ.map((a, i) => ({
    question: a.question,
    teacher: at[i]!,
    pd: apd[i]!,
    sft: asft?.[i] ?? '',
  }));
  return {
    rows,
    unknownRows,
    absentRows,
    scores: {
      facts: facts.docs.reduce((a, d) => a + d.entity.facts.length, 0),
      questions: rows.length,
      base: ok('base'),
      teacher: ok('teacher'),
      pd: ok('pd'),
      sft: ok('sft'),
      pdReserved: ok('pd', reserved),
      sftReserved: ok('sft', reserved),
      unknownQuestions: unk.length,
      baseDontKnow: frac(ub.map(saysDontKnow)),
      pdDontKnow: frac(upd.map(saysDontKnow)),
      sftDontKnow: usft ? frac(usft.map(saysDontKnow)) : NaN,
      absentQuestions: absQ.length,
      teacherAbsentDontKnow: frac(at.map(saysDontKnow)),
      pdAbsentDontKnow: frac(apd.map(saysDontKnow)),
      sftAbsentDontKnow: asft ? frac(asft.map(saysDontKnow)) : NaN,
      perRelation,
    },
  };
}

export function demoTable(s: DemoScores): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`.padStart(8);
  const withSft = !Number.isNaN(s.sft);
  return [
    `${s.facts} facts in the distilled documents, ${s.questions} questions (every phrasing), ${s.unknownQuestions} about people in no document`,
    '',
    `${''.padEnd(40)} correct  unseen phrasing  "don't know" on unknown people`,
    `${'base model, closed book'.padEnd(40)}${pct(s.base)}${''.padStart(17)}${pct(s.baseDontKnow)}`,
    `${'teacher (document in the prompt)'.padEnd(40)}${pct(s.teacher)}`,
    `${'student, prompt distillation'.padEnd(40)}${pct(s.pd)}${pct(s.pdReserved).padStart(17)}${pct(s.pdDontKnow)}`,
    ...(!withSft
      ? []
      : [
          `${'student, SFT on the same QA pairs'.padEnd(40)}${pct(s.sft)}${pct(s.sftReserved).padStart(17)}${pct(s.sftDontKnow)}`,
        ]),
    '',
    ...(s.absentQuestions
      ? [
          `not in their document (${s.absentQuestions} questions about the distilled people): "don't know" teacher ${pct(s.teacherAbsentDontKnow).trim()}, PD ${pct(s.pdAbsentDontKnow).trim()}${withSft ? `, SFT ${pct(s.sftAbsentDontKnow).trim()}` : ''}`,
        ]
      : []),
    `per relation (PD${withSft ? ' / SFT' : ''} / teacher): ${Object.entries(s.perRelation)
      .map(
        ([r, v]) =>
          `${r} ${(withSft ? [v.pd, v.sft, v.teacher] : [v.pd, v.teacher]).map((x) => Math.round(100 * x)).join('/')}`,
      )
      .join(', ')}`,
  ].join('\n');
}

/** The headline figures of several demo runs (one per seed): mean, sample standard deviation, min and max. */
export interface DemoSpread {
  n: number;
  mean: number;
  sd: number;
  min: number;
  max: number;
}

export const SPREAD_KEYS = [
  'teacher',
  'pd',
  'pdReserved',
  'pdDontKnow',
  'pdAbsentDontKnow',
  'sft',
  'sftReserved',
  'sftDontKnow',
] as const;

export function demoSpread(runs: DemoScores[]): Record<(typeof SPREAD_KEYS)[number], DemoSpread> {
  const out = {} as Record<(typeof SPREAD_KEYS)[number], DemoSpread>;
  for (const k of SPREAD_KEYS) {
    const xs = runs.map((r) => r[k]).filter((x) => !Number.isNaN(x));
    const n = xs.length;
    const mean = n ? xs.reduce((a, b) => a + b, 0) / n : NaN;
    const sd = n > 1 ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : 0;
    out[k] = { n, mean, sd, min: Math.min(...xs), max: Math.max(...xs) };
  }
  return out;
}

export function spreadTable(runs: DemoScores[], seeds: number[]): string {
  const sp = demoSpread(runs);
  const f = (x: DemoSpread) =>
    x.n
      ? `${(100 * x.mean).toFixed(1)} ± ${(100 * x.sd).toFixed(1)} % (${(100 * x.min).toFixed(1)}–${(100 * x.max).toFixed(1)})`
      : '—';
  const lines = [
    `over ${runs.length} seeds (${seeds.join(', ')}): mean ± standard deviation (min–max)`,
    `  teacher, document in the prompt        ${f(sp.teacher)}`,
    `  PD student, correct closed book        ${f(sp.pd)}`,
    `  PD student, unseen phrasing            ${f(sp.pdReserved)}`,
    `  PD student, "don't know" on unknowns   ${f(sp.pdDontKnow)}`,
    `  PD student, "don't know" not in doc    ${f(sp.pdAbsentDontKnow)}`,
  ];
  if (sp.sft.n)
    lines.push(
      `  SFT student, correct closed book       ${f(sp.sft)}`,
      `  SFT student, unseen phrasing           ${f(sp.sftReserved)}`,
      `  SFT student, "don't know" on unknowns  ${f(sp.sftDontKnow)}`,
    );
  return lines.join('\n');
}

/** The headline figures against the number of distilled documents (`demo --docs N,…`), with the time per run. */
export function capacityTable(rows: { n: number; minutes: number; scores: DemoScores[] }[]): string {
  const f = (xs: number[]) => {
    const ys = xs.filter((x) => !Number.isNaN(x));
    if (!ys.length) return '—'.padStart(16);
    const mean = ys.reduce((a, b) => a + b, 0) / ys.length;
    return (
      ys.length > 1
        ? `${(100 * mean).toFixed(1)} (min ${(100 * Math.min(...ys)).toFixed(1)})`
        : `${(100 * mean).toFixed(1)}%`
    ).padStart(16);
  };
  return [
    'capacity: PD student against the number of distilled documents' +
      (rows[0] && rows[0].scores.length > 1 ? ` (mean of ${rows[0].scores.length} seeds, min)` : ''),
    `${'docs'.padStart(5)}${'facts'.padStart(7)}${'correct'.padStart(16)}${'unseen phrasing'.padStart(16)}${'"don\'t know"'.padStart(16)}${'not in doc'.padStart(16)}${'min/run'.padStart(9)}`,
    ...rows.map(
      (r) =>
        `${String(r.n).padStart(5)}${String(r.scores[0]?.facts ?? 0).padStart(7)}${f(r.scores.map((s) => s.pd))}${f(r.scores.map((s) => s.pdReserved))}${f(r.scores.map((s) => s.pdDontKnow))}${f(r.scores.map((s) => s.pdAbsentDontKnow))}${r.minutes.toFixed(1).padStart(9)}`,
    ),
  ].join('\n');
}

export { renderDoc };
