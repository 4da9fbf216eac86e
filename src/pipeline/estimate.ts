// An honest estimate before a run starts: how much work the job is (counted from the settings and
// the chunked docs, the way the phases do it) and how long that work takes on this model and
// device (measured by a short probe on the loaded model: a prefill, a few decode steps and a train
// step, never a constant). The pipeline emits it before the questions phase and writes it into the
// run folder; the CLI prints it (also alone, with --estimate-only) and the dashboard shows it.
//
// The counts are exact where the phases' work is fixed by the settings (the question prompts and
// their tokens) and projections elsewhere: how many questions the model writes is known only once
// it has written them, so a short probe (probeLengths) samples a few questions and answers from two
// passages: how many distinct questions a passage keeps is projected from how often they repeat,
// and a batch's decode steps are counted at the longest of the sampled ones.
import { relative } from 'node:path';
import type { CausalLM } from '../engine/models/model';
import { generate, sharedPrefixes } from '../engine/generate';
import { LoraTrainer, type DistillSample } from '../engine/train/trainer';
import { chunkMarkdown, IngestError, type Chunk } from './ingest';
import { collectMarkdown, readDocument } from './docFiles';
import {
  questionMessages,
  studentMessages,
  teacherMessages,
  generalQuestionMessages,
  paraphraseMessages,
} from './prompts';
import type { DistillSettings } from './settings';
import { teacherCacheK } from './phases/train';
import type { Phase } from './events';
import type { QuestionRow } from './phases/context';
import {
  dedupe,
  isGrounded,
  keptParaphrases,
  parseQuestions,
  questionId,
  questionKey,
  questionKind,
  wordSet,
} from './questions';

/** The phases that do model work (ingest only reads and tokenizes). */
export type WorkPhase = Exclude<Phase, 'ingest'>;
export const WORK_PHASES: readonly WorkPhase[] = ['questions', 'answers', 'train', 'evaluate'];

/** One batched generation, as the phases call `generate`: its prompts' tokens and its max tokens. */
export interface GenerateCall {
  rows: number;
  promptTokens: number;
  maxTokens: number;
}

/** The work of one phase. Decode steps are per call (a step runs every row still generating). */
export interface PhaseWork {
  generateCalls: number;
  prompts: number;
  prefillTokens: number;
  /** Of those, the tokens a prompt shares with another of its call, computed once (see Stepper.prefill). */
  reusedTokens: number;
  /** Decode steps at most (every call run to its max tokens), and the rows they carry. */
  decodeSteps: number;
  decodeRows: number;
  trainSteps: number;
  /** Tokens through the student's forward and backward passes (prompt + answer, every step). */
  studentTokens: number;
  /**
   * Tokens through forward passes only: the teacher's (once, when its log-probs are cached across
   * epochs) and the validation after every epoch.
   */
  teacherTokens: number;
}

export interface WorkCounts {
  chunks: number;
  /** Projected (or, with `actual`, real) numbers of questions by kind. */
  questions: { docs: number; heldOut: number; absent: number; general: number; generalHeldOut: number };
  phases: Record<WorkPhase, PhaseWork>;
  /** Whether training caches the teacher's log-probs (teacherCacheK, as the train phase decides). */
  teacherCached: boolean;
  /** A train sample's mean tokens: the student's (prompt + answer), the teacher's, the answer's. */
  sample: { student: number; teacher: number; answer: number };
}

/**
 * How long this model's generations are, sampled as the phases sample them (probeLengths): decode
 * steps per row (a row that stops after n tokens took n steps; one cut at the max took max − 1),
 * the mean and the longest, for the questions and for the teacher's answers to them.
 */
export interface ProbeLengths {
  question: { mean: number; max: number };
  answer: { mean: number; max: number };
  /** The questions the probe sampled (parsed), standing in for questions not written yet. */
  questions: string[];
  /**
   * Questions a passage keeps from its rounds × questionsPerRound samples (parsed, grounded,
   * de-duplicated), projected from how often the probe's samples repeated (mean over its passages).
   */
  keptPerPassage: number;
  /**
   * New questions the paraphrase step keeps per rephrasing asked (same subject, grounded, not a
   * question the passage already had), measured on the probe's questions; absent when it is off.
   */
  paraphraseKept?: number;
  rows: number;
  probeSec: number;
}

/** Seconds per unit of work, measured on the loaded model and device. */
export interface ProbeRates {
  /** Prefill, per prompt token. */
  prefillMsPerToken: number;
  /** A decode step costs stepMs + rowMs × rows (fitted from two batch sizes). */
  decodeStepMs: number;
  decodeRowMs: number;
  /**
   * A train step's fixed cost, and its cost per student token (forward and backward, and the
   * teacher's forward when not cached).
   */
  trainStepMs: number;
  trainMsPerToken: number;
  /** The teacher's forward (caching its top-k log-probs), per token; 0 when the run does not cache. */
  teacherMsPerToken: number;
  /** How long the probe itself took. */
  probeSec: number;
}

export interface Estimate {
  counts: WorkCounts;
  rates: ProbeRates;
  /** Measured generation lengths (absent: every generation counted at its max tokens). */
  lengths?: ProbeLengths;
  seconds: Record<WorkPhase, number>;
  totalSec: number;
  /** The warning threshold in force (seconds), and whether the total is over it. */
  thresholdSec: number;
  long: boolean;
  /** What would make it shorter, when it is long (CLI flags and extension settings both named). */
  suggestions: string[];
}

/** An hour: above this the CLI and the dashboard warn before the user waits. */
export const LONG_RUN_SEC = 3600;

const BATCH = 16;

function emptyWork(): PhaseWork {
  return {
    generateCalls: 0,
    prompts: 0,
    prefillTokens: 0,
    reusedTokens: 0,
    decodeSteps: 0,
    decodeRows: 0,
    trainSteps: 0,
    studentTokens: 0,
    teacherTokens: 0,
  };
}

/**
 * Generate calls of `batch` prompts each. A call runs until its longest row stops: `longest` decode
 * steps when the lengths were measured, else max tokens − 1 (the first token comes from the
 * prefill). Finished rows stay in the batch, so every step carries all of its rows.
 */
function addCalls(w: PhaseWork, prompts: number[][], maxTokens: number, batch: number, longest = Infinity): void {
  const steps = Math.max(0, Math.min(maxTokens - 1, Math.ceil(longest)));
  for (let i = 0; i < prompts.length; i += batch) {
    const b = prompts.slice(i, i + batch);
    w.generateCalls++;
    w.prompts += b.length;
    w.prefillTokens += b.reduce((a, x) => a + x.length, 0);
    for (const g of sharedPrefixes(b)?.groups ?? []) w.reusedTokens += (g.rows.length - 1) * g.length;
    w.decodeSteps += steps;
    w.decodeRows += b.length * steps;
  }
}

const repeat = <T>(n: number, f: (i: number) => T): T[] => Array.from({ length: Math.max(0, n) }, (_, i) => f(i));

function ids(model: CausalLM, messages: ReturnType<typeof studentMessages>): number[] {
  const tok = model.tokenizer;
  return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
}

/** A question and an answer of typical length, for prompts whose text the model has not written yet. */
const TYPICAL_QUESTION = 'What does the passage say about how this setting is configured?';

/** Marks every (1 / heldOutShare)th question held out: the share the answers phase holds out. */
const heldOutBy = (s: DistillSettings) => {
  const every = s.heldOutShare > 0 ? Math.max(1, Math.round(1 / s.heldOutShare)) : 0;
  return (r: QuestionRow, i: number) => (r.split = every && i % every === 0 ? 'heldout' : 'train');
};

/**
 * The work of a run over `chunks` (the fresh ones), counted as the phases do it. `actual`, the
 * questions of a finished run (questions.jsonl after its answers phase), replaces the projected
 * questions with the real ones: then the answers, train and evaluate counts are those of the run.
 */
export function countWork(
  model: CausalLM,
  s: DistillSettings,
  chunks: readonly Chunk[],
  actual?: readonly QuestionRow[],
  lengths?: ProbeLengths,
): WorkCounts {
  const p = s.prompts;
  const qLongest = lengths?.question.max ?? Infinity;
  const aLongest = lengths?.answer.max ?? Infinity;
  const typical = lengths?.questions.length ? lengths.questions : [TYPICAL_QUESTION];
  const per = s.rounds * s.questionsPerRound;
  const phases = { questions: emptyWork(), answers: emptyWork(), train: emptyWork(), evaluate: emptyWork() };
  const text = new Map(chunks.map((c) => [c.hash, c.text]));

  // Questions: per 8 passages, rounds × questionsPerRound prompts each with its passage, by 16.
  const qPrompts = chunks.map((c) => ids(model, questionMessages(c.text, p)));
  for (let i = 0; i < chunks.length; i += 8)
    addCalls(
      phases.questions,
      qPrompts.slice(i, i + 8).flatMap((x) => repeat(per, () => x)),
      s.questionMaxTokens,
      BATCH,
      qLongest,
    );
  // The questions: the run's, or projected (the probe's kept questions per passage; without a
  // probe, one per question prompt).
  let rows: QuestionRow[];
  const holdOut = heldOutBy(s);
  if (actual) rows = [...actual];
  else {
    const kept = Math.max(1, Math.round(lengths?.keptPerPassage ?? per));
    rows = chunks.flatMap((c) =>
      repeat(Math.round(kept * (1 + s.paraphrases * (lengths?.paraphraseKept ?? 1))), (i) => ({
        id: questionId(i < kept ? 'written' : 'paraphrase', c.hash, i),
        chunk: c.hash,
        source: c.source,
        question: `${typical[i % typical.length]!} (${i})`,
        split: 'train' as const,
      })),
    );
    const docs = rows.length;
    const absent = Math.round(s.absentShare * docs);
    const general = s.generalShare > 0 ? Math.round(s.generalShare * s.generalPool * docs) : 0;
    const generalHeld = Math.round((general * s.heldOutShare) / s.generalPool);
    rows.forEach(holdOut);
    rows.push(
      ...repeat(absent, (i) => ({ ...rows[i % docs]!, id: questionId('cross', 'c', i), split: 'absent' as const })),
      ...repeat(general, (i) => ({
        id: questionId('general', '', i),
        chunk: '',
        source: '',
        question: `${typical[i % typical.length]!} [${i}]`,
        split: i < generalHeld ? ('general-heldout' as const) : ('general' as const),
      })),
    );
  }
  const isGen = (r: QuestionRow) => r.split === 'general' || r.split === 'general-heldout';
  const count = (...k: QuestionRow['split'][]) => rows.filter((r) => k.includes(r.split)).length;
  // The questions the paraphrase step saw: the passages' own (not general, cross or paraphrased).
  const docsAll = rows.filter((r) => questionKind(r.id) === 'written').length;
  if (s.paraphrases > 0) {
    const own = repeat(docsAll, (i) => ids(model, paraphraseMessages(typical[i % typical.length]!, p)));
    for (let i = 0; i < own.length; i += BATCH)
      addCalls(
        phases.questions,
        own.slice(i, i + BATCH).flatMap((x) => repeat(s.paraphrases, () => x)),
        s.questionMaxTokens,
        BATCH * s.paraphrases,
        qLongest,
      );
  }
  // General questions: asked for 1.5 × what is still wanted, up to 64 a call, until there are enough.
  const generalAll = count('general', 'general-heldout');
  if (generalAll > 0) {
    const gen = ids(model, generalQuestionMessages(p));
    for (let want = generalAll; want > 0;) {
      const n = Math.min(64, Math.ceil(want * 1.5));
      addCalls(
        phases.questions,
        repeat(n, () => gen),
        s.questionMaxTokens,
        n,
        qLongest,
      );
      want -= n;
    }
  }

  // Answers: every question (the teacher's prompt with its passage; general ones without), by 16,
  // by passage in chunk order, the general ones last.
  const order = new Map(chunks.map((c, i) => [c.hash, i]));
  const rank = (q: QuestionRow) => (isGen(q) ? Infinity : (order.get(q.chunk) ?? -1));
  const sorted = rows
    .map((q, i) => ({ q, i }))
    .sort((x, y) => rank(x.q) - rank(y.q) || x.i - y.i)
    .map((x) => x.q);
  const prompt = (q: QuestionRow) =>
    ids(model, isGen(q) ? studentMessages(q.question, p) : teacherMessages(text.get(q.chunk) ?? '', q.question, p));
  addCalls(phases.answers, sorted.map(prompt), s.answerMaxTokens, BATCH, aLongest);

  // Train: (train + absent + general per epoch) samples, batchSize × gradAccum a step, each with
  // the student's prompt and the answer; the teacher's has the passage (the student's for general).
  // An answer's tokens and its end: measured, or a guess of 48 when not.
  const answerTokens = Math.min(s.answerMaxTokens, Math.round(lengths?.answer.mean ?? 48)) + 1;
  const student = (q: QuestionRow) => ids(model, studentMessages(q.question, p)).length + answerTokens;
  const teacher = (q: QuestionRow) => (isGen(q) ? student(q) : prompt(q).length + answerTokens);
  const sum = (qs: QuestionRow[], f: (q: QuestionRow) => number) => qs.reduce((a, q) => a + f(q), 0);
  const docSamples = rows.filter((r) => r.split === 'train' || r.split === 'absent');
  const general = rows.filter((r) => r.split === 'general');
  const heldOut = rows.filter((r) => r.split === 'heldout');
  const generalHeld = rows.filter((r) => r.split === 'general-heldout');
  const perEpochGeneral = Math.min(general.length, Math.ceil(general.length / s.generalPool));
  const perEpoch = docSamples.length + perEpochGeneral;
  // The train phase's own policy (teacherCacheK): at a large vocabulary and τ > 1, 'auto' keeps
  // the teacher in every step.
  const allSamples = docSamples.length + general.length + heldOut.length + generalHeld.length;
  const cached = teacherCacheK(s, model.config.vocabSize, allSamples * answerTokens) > 0;
  const tw = phases.train;
  const generalShare = general.length ? perEpochGeneral / general.length : 0;
  const epochStudent = sum(docSamples, student) + generalShare * sum(general, student);
  const epochTeacher = sum(docSamples, teacher) + generalShare * sum(general, teacher);
  const perEpochSamples = docSamples.length + generalShare * general.length;
  const sample = {
    student: perEpochSamples ? epochStudent / perEpochSamples : 0,
    teacher: perEpochSamples ? epochTeacher / perEpochSamples : 0,
    answer: answerTokens,
  };
  tw.trainSteps = perEpoch ? Math.ceil(perEpoch / (s.batchSize * s.gradAccum)) * s.epochs : 0;
  tw.studentTokens = Math.round((epochStudent + (cached ? 0 : epochTeacher)) * s.epochs);
  // With the teacher cached: its forward once, over every sample (the whole general pool and the
  // validation samples included). Validation after every epoch: forwards of the student (and of
  // the teacher, when not cached) over the held-out samples.
  const val = sum([...heldOut, ...generalHeld], student) + (cached ? 0 : sum([...heldOut, ...generalHeld], teacher));
  tw.teacherTokens = Math.round(
    (cached ? sum([...docSamples, ...general, ...heldOut, ...generalHeld], teacher) : 0) + val * s.epochs,
  );

  // Evaluate: per 16 held-out questions, the base and the student closed book and the teacher with
  // the passage, up to 64 tokens each.
  const evalMax = Math.min(64, s.answerMaxTokens);
  for (let i = 0; i < heldOut.length; i += BATCH) {
    const b = heldOut.slice(i, i + BATCH);
    const closed = b.map((q) => ids(model, studentMessages(q.question, p)));
    addCalls(phases.evaluate, closed, evalMax, BATCH, aLongest);
    addCalls(phases.evaluate, b.map(prompt), evalMax, BATCH, aLongest);
    addCalls(phases.evaluate, closed, evalMax, BATCH, aLongest);
  }
  return {
    chunks: chunks.length,
    questions: {
      docs: count('train'),
      heldOut: heldOut.length,
      absent: count('absent'),
      general: general.length,
      generalHeldOut: generalHeld.length,
    },
    phases,
    teacherCached: cached,
    sample,
  };
}

/** Seconds per phase from counts and measured rates. */
export function secondsFor(w: PhaseWork, r: ProbeRates): number {
  const ms =
    (w.prefillTokens - w.reusedTokens) * r.prefillMsPerToken +
    w.decodeSteps * r.decodeStepMs +
    w.decodeRows * r.decodeRowMs +
    w.trainSteps * r.trainStepMs +
    w.studentTokens * r.trainMsPerToken +
    w.teacherTokens * (r.teacherMsPerToken || r.prefillMsPerToken);
  return ms / 1000;
}

/** The estimate from counts and rates; pure, so that the threshold and the suggestions are testable. */
export function makeEstimate(
  counts: WorkCounts,
  rates: ProbeRates,
  s: Pick<DistillSettings, 'rounds' | 'epochs' | 'baseQuantization'>,
  o: { thresholdSec?: number; device?: string } = {},
): Estimate {
  const seconds = Object.fromEntries(WORK_PHASES.map((p) => [p, secondsFor(counts.phases[p], rates)])) as Record<
    WorkPhase,
    number
  >;
  const totalSec = WORK_PHASES.reduce((a, p) => a + seconds[p], 0);
  const thresholdSec = o.thresholdSec ?? LONG_RUN_SEC;
  const long = totalSec > thresholdSec;
  const suggestions: string[] = [];
  if (long) {
    if (s.rounds > 1)
      suggestions.push(
        `fewer question rounds (--rounds ${Math.max(1, Math.floor(s.rounds / 2))}, docdistill.distill.rounds)`,
      );
    if (s.epochs > 1)
      suggestions.push(`fewer epochs (--epochs ${Math.max(1, Math.floor(s.epochs / 2))}, docdistill.distill.epochs)`);
    if (s.baseQuantization === 'none' || s.baseQuantization === undefined)
      suggestions.push('a quantized base (--quantize int8 or int4, docdistill.baseQuantization)');
    if (!o.device || o.device === 'cpu') suggestions.push('a GPU (--device cuda|dml|webgpu, docdistill.device)');
  }
  return { counts, rates, seconds, totalSec, thresholdSec, long, suggestions };
}

/** "2 h 10 min", "12 min", "40 s". */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?';
  if (sec < 90) return `${Math.max(1, Math.round(sec))} s`;
  const min = Math.round(sec / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  return min % 60 ? `${h} h ${min % 60} min` : `${h} h`;
}

/** "about 2 h 10 min: questions 12 min, answers 25 min, training 1 h 30 min, evaluation 3 min". */
export function describeEstimate(e: Pick<Estimate, 'totalSec' | 'seconds'>): string {
  const label: Record<WorkPhase, string> = {
    questions: 'questions',
    answers: 'answers',
    train: 'training',
    evaluate: 'evaluation',
  };
  return `about ${formatDuration(e.totalSec)}: ${WORK_PHASES.map((p) => `${label[p]} ${formatDuration(e.seconds[p])}`).join(', ')}`;
}

/**
 * Measures the model on its device: a warm-up (graph creation is not the job's per-token cost),
 * a prefill, decode steps at two batch sizes, and train steps of two sizes (each timed once it has
 * settled) with the run's LoRA settings. A few seconds on small models; longer on large ones on a CPU.
 */
export async function probeRates(
  model: CausalLM,
  s: DistillSettings,
  /** Whether the run caches the teacher (WorkCounts.teacherCached): the probe's step does the same. */
  cached: boolean,
  signal?: AbortSignal,
  /** The run's mean train sample (WorkCounts.sample): the probe's larger step is made of them. */
  sample?: WorkCounts['sample'],
): Promise<ProbeRates> {
  const t0 = performance.now();
  const tok = model.tokenizer;
  const text = 'The quick brown fox jumps over the lazy dog while the documentation explains each setting. ';
  const words = tok.encode(text.repeat(128), { addSpecialTokens: false }).slice(0, 2048);
  const long = words.slice(0, 128);
  const short = long.slice(0, 16);
  const timed = async (prompts: number[][], maxTokens: number) => {
    let t = { prefillMs: 0, prefillTokens: 0, decodeMs: 0, decodeTokens: 0, decodeSteps: 0 };
    await generate(model, prompts, {
      maxTokens,
      temperature: 0,
      signal,
      // The probe measures steps, not text: no stop token may end it early.
      stopTokens: [],
      onTimings: (x) => (t = { ...t, ...x }),
    });
    return t;
  };
  await timed([short], 2); // warm-up: the step graph's session
  const pre = await timed([long], 1);
  const small = await timed([short], 4);
  const big = await timed(
    repeat(8, () => short),
    4,
  );
  const perStep = (t: { decodeMs: number; decodeSteps: number }) => t.decodeMs / Math.max(1, t.decodeSteps);
  const step1 = perStep(small);
  const step8 = perStep(big);
  const decodeRowMs = Math.max(0, (step8 - step1) / 7);
  const decodeStepMs = Math.max(0, step1 - decodeRowMs);

  // A train step on two samples of the shape the run trains (a short prompt and an answer).
  const trainer = new LoraTrainer(model, {
    loss: s.loss,
    lora: { rank: s.loraRank, alpha: s.loraAlpha, targets: s.loraTargets },
    dropout: s.loraDropout,
    temperature: s.distillTemperature,
    lr: s.learningRate,
    weightDecay: s.weightDecay,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    schedule: s.schedule,
    warmupSteps: 0,
    totalSteps: 100,
    microBatch: s.batchSize,
    gradAccum: 1,
    maxGradNorm: s.maxGradNorm,
    seed: s.seed,
    teacherTopK: cached ? s.teacherTopK : 0,
  });
  const mk = (n: number, t = n * 2, a = 8): DistillSample => ({
    student: words.slice(0, n),
    teacher: words.slice(0, t),
    answerLength: Math.min(a, n - 1),
  });
  // Two step sizes, so that the fixed cost of a step (the optimizer, the adapter's copies, the
  // session call) is told apart from the cost per token; the larger one is made of the run's mean
  // sample (2 of them: a step's memory grows with its batch, and this runs before the train
  // phase's memory warning), so that the rate is measured at the run's shapes.
  const one = [mk(16)];
  const clamp = (x: number) => Math.max(24, Math.min(words.length, Math.round(x)));
  const large = sample?.student
    ? repeat(Math.min(2, s.batchSize), () =>
        mk(clamp(sample.student), clamp(sample.teacher), Math.max(1, Math.round(sample.answer))),
      )
    : repeat(Math.min(4, s.batchSize), () => mk(64));
  const tokensOf = (b: DistillSample[]) =>
    b.reduce((a, x) => a + x.student.length + (cached ? 0 : x.teacher.length), 0);
  let teacherMsPerToken = 0;
  try {
    if (cached) {
      await trainer.cacheTeacher([mk(24)]); // warm-up
      const tc = performance.now();
      await trainer.cacheTeacher([...one, ...large]);
      teacherMsPerToken = (performance.now() - tc) / [...one, ...large].reduce((a, x) => a + x.teacher.length, 0);
    }
    // A step's first runs are slow (the session, then buffers and the allocator settling), and a
    // small model's steps vary by 2× from one to the next (the demo model's: 380, 50, 15–35 ms):
    // each shape runs until it has had 2 s and two runs (at most 12), and its time is the median
    // of the runs after the first.
    const settled = async (b: DistillSample[]) => {
      const times: number[] = [];
      const t0 = performance.now();
      while (times.length < 12 && (times.length < 2 || performance.now() - t0 < 2000))
        times.push((await trainer.trainStep(b)).ms);
      const rest = times.slice(1).sort((x, y) => x - y);
      return { ms: rest[Math.floor(rest.length / 2)]! };
    };
    const a = await settled(one);
    const b = await settled(large);
    const trainMsPerToken = Math.max(1e-6, (b.ms - a.ms) / Math.max(1, tokensOf(large) - tokensOf(one)));
    return {
      prefillMsPerToken: pre.prefillMs / Math.max(1, pre.prefillTokens),
      decodeStepMs,
      decodeRowMs,
      trainStepMs: Math.max(0, a.ms - trainMsPerToken * tokensOf(one)),
      trainMsPerToken,
      teacherMsPerToken,
      probeSec: (performance.now() - t0) / 1000,
    };
  } finally {
    await trainer.release();
  }
}

/**
 * How many distinct questions `draws` draws give, from a sample's draws `counts` (how often each
 * distinct question came): Chao's extrapolation (Chao et al. 2014), which reads the forms not seen
 * yet from the ones seen once (f1) and twice (f2). No repeats: every draw counts.
 */
export function projectDistinct(counts: readonly number[], draws: number): number {
  const n = counts.reduce((a, x) => a + x, 0);
  const d = counts.length;
  if (!n) return 0;
  if (draws <= n) return d * (draws / n);
  const f1 = counts.filter((x) => x === 1).length;
  const f2 = counts.filter((x) => x === 2).length;
  if (f1 === d) return draws;
  const f0 = f2 > 0 ? ((n - 1) / n) * ((f1 * f1) / (2 * f2)) : ((n - 1) / n) * ((f1 * (f1 - 1)) / 2);
  if (f0 <= 0 || f1 === 0) return d;
  return d + f0 * (1 - Math.pow(1 - f1 / (n * f0 + f1), draws - n));
}

/**
 * How long this model's questions and answers are, and how many questions a passage keeps: 16
 * questions sampled from the first passage and 16 from the middle one as the questions phase samples them (its prompt,
 * temperature and top-k; parsed, grounded and de-duplicated as there), and the teacher's sampled
 * answers to 4 of each (with the passage, as the answers phase does). A model that writes 10-token
 * questions, 8-token answers and a dozen distinct questions a passage is not counted at 64 and 128
 * tokens a row and one question per prompt.
 */
export async function probeLengths(
  model: CausalLM,
  s: DistillSettings,
  chunks: readonly Chunk[],
  signal?: AbortSignal,
): Promise<ProbeLengths | undefined> {
  if (!chunks.length) return undefined;
  const t0 = performance.now();
  const p = s.prompts;
  const per = s.rounds * s.questionsPerRound;
  const rows = Math.max(1, Math.min(16, per));
  const steps = (g: { ids: number[] }, max: number) => Math.min(g.ids.length, max - 1);
  const stats = (xs: number[]) => ({ mean: xs.reduce((a, x) => a + x, 0) / xs.length, max: Math.max(...xs) });
  // Passages differ in how many questions they give: the first and the middle one.
  const picked = [...new Set([chunks[0]!, chunks[Math.floor(chunks.length / 2)]!])];
  const qLengths: number[] = [];
  const asked: { c: Chunk; q: string }[] = [];
  const had = new Map<Chunk, { words: Set<string>; keys: Set<string> }>();
  let kept = 0,
    done = 0;
  for (const [i, c] of picked.entries()) {
    // A model that wrote no usable question about the first passage (random weights) gets nothing
    // from more samples: its lengths are known already.
    if (i > 0 && !asked.length) break;
    const prompt = ids(model, questionMessages(c.text, p));
    const qs = await generate(
      model,
      repeat(rows, () => prompt),
      {
        maxTokens: s.questionMaxTokens,
        temperature: s.questionTemperature,
        topK: s.questionTopK,
        seed: s.seed + 2 * i,
        signal,
      },
    );
    qLengths.push(...qs.map((g) => steps(g, s.questionMaxTokens)));
    const words = wordSet(c.text);
    const parsed = qs.flatMap((g) => parseQuestions(g.text));
    const grounded = s.groundQuestions ? parsed.filter((q) => isGrounded(q, words)) : parsed;
    const distinct = dedupe(grounded);
    // How often each distinct question came, by dedupe's own key.
    const counts = distinct.map((x) => grounded.filter((q) => questionKey(q) === questionKey(x)).length);
    kept += projectDistinct(counts, (per * grounded.length) / rows);
    done++;
    asked.push(...distinct.slice(0, 4).map((q) => ({ c, q })));
    had.set(c, { words, keys: new Set(distinct.map(questionKey)) });
  }
  if (!asked.length) asked.push({ c: chunks[0]!, q: TYPICAL_QUESTION });
  const as = await generate(
    model,
    asked.map((x) => ids(model, teacherMessages(x.c.text, x.q, p))),
    { maxTokens: s.answerMaxTokens, temperature: s.answerTemperature, topK: s.answerTopK, seed: s.seed + 1, signal },
  );
  // The paraphrase step on the probe's questions, as the questions phase runs it.
  let paraphraseKept: number | undefined;
  if (s.paraphrases > 0 && had.size) {
    const ps = await generate(
      model,
      asked.map((x) => ids(model, paraphraseMessages(x.q, p))),
      {
        maxTokens: s.questionMaxTokens,
        temperature: s.questionTemperature,
        topK: s.questionTopK,
        seed: s.seed + 3,
        signal,
      },
    );
    let made = 0;
    ps.forEach((g, j) => {
      const { c, q } = asked[j]!;
      const { words, keys } = had.get(c)!; // every asked passage was sampled above
      made += keptParaphrases(parseQuestions(g.text), q, words, keys).length;
    });
    paraphraseKept = made / asked.length;
  }
  return {
    question: stats(qLengths),
    answer: stats(as.map((g) => steps(g, s.answerMaxTokens))),
    questions: asked.map((x) => x.q),
    keptPerPassage: kept / Math.max(1, done),
    paraphraseKept,
    rows,
    probeSec: (performance.now() - t0) / 1000,
  };
}

/** The docs chunked as the ingest phase does it, without a run folder (for --estimate-only). */
export async function chunkDocs(
  model: CausalLM,
  inputs: string[],
  root: string,
  budget: number,
  minTokens?: number,
): Promise<Chunk[]> {
  const files = collectMarkdown(inputs, root, () => {});
  if (!files.length) throw new IngestError(`no Markdown files in ${inputs.join(', ')}`);
  const tok = model.tokenizer;
  const out: Chunk[] = [];
  for (const f of files) {
    const source = relative(root, f).split('\\').join('/');
    try {
      const md = await readDocument(root, f, () => {});
      out.push(
        ...chunkMarkdown(source, md, {
          maxTokens: budget,
          minTokens,
          countTokens: (t) => tok.encode(t, { addSpecialTokens: false }).length,
        }),
      );
    } catch (e) {
      if (!(e instanceof IngestError)) throw e;
    }
  }
  if (!out.length) throw new IngestError('no usable text in the given documents');
  return out;
}

/** The estimate again, with the questions the run wrote instead of the projected ones (same rates). */
export function refineEstimate(
  e: Estimate,
  model: CausalLM,
  s: DistillSettings,
  chunks: readonly Chunk[],
  questions: readonly QuestionRow[],
  o: { thresholdSec?: number; device?: string } = {},
): Estimate {
  // The held-out questions are chosen in the answers phase: the same share of them, as there.
  const rows = questions.map((r) => ({ ...r }));
  rows.filter((r) => r.split === 'train').forEach(heldOutBy(s));
  return {
    ...makeEstimate(countWork(model, s, chunks, rows, e.lengths), e.rates, s, { thresholdSec: e.thresholdSec, ...o }),
    lengths: e.lengths,
  };
}

/** Counts, a probe and the estimate, in one call. */
export async function estimateRun(
  model: CausalLM,
  s: DistillSettings,
  chunks: readonly Chunk[],
  o: { device?: string; signal?: AbortSignal; thresholdSec?: number } = {},
): Promise<Estimate> {
  const lengths = await probeLengths(model, s, chunks, o.signal);
  const counts = countWork(model, s, chunks, undefined, lengths);
  const rates = await probeRates(model, s, counts.teacherCached, o.signal, counts.sample);
  return { ...makeEstimate(counts, rates, s, o), lengths };
}
