// The estimate before a run: its counts against what a real run on the demo model did, its rates
// from a real probe, the warning threshold, and the job reducer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import { Distiller, type DistillEvent } from '../../../src/pipeline/distill';
import {
  chunkDocs,
  countWork,
  describeEstimate,
  formatDuration,
  makeEstimate,
  probeLengths,
  probeRates,
  projectDistinct,
  type ProbeLengths,
  type ProbeRates,
} from '../../../src/pipeline/estimate';
import type { Chunk } from '../../../src/pipeline/ingest';
import type { QuestionRow } from '../../../src/pipeline/phases/context';
import { readJsonl } from '../../../src/pipeline/runFolder';
import { resolveSettings, type DistillSettings } from '../../../src/pipeline/settings';
import { applyJobEvent } from '../../../src/protocol/jobs';
import type { JobView } from '../../../src/protocol/webview';
import { DEMO_SETTINGS } from '../../../src/demo/demo';
import { generate } from '../../../src/engine/generate';
import { questionMessages } from '../../../src/pipeline/prompts';
import { dedupe, isGrounded, parseQuestions, wordSet } from '../../../src/pipeline/questions';

const repo = resolve(__dirname, '..', '..', '..');
const modelDir = join(repo, 'media', 'demo-model');
const docs = join(repo, 'examples', 'docs');
const fast: Partial<DistillSettings> = {
  rounds: 1,
  questionsPerRound: 3,
  epochs: 2,
  batchSize: 4,
  generalShare: 0.3,
  earlyStopPatience: 0,
  // The kept-questions projection is checked without the paraphrase step; its share is tested below.
  paraphrases: 0,
  seed: 5,
};

let modelP: Promise<CausalLM> | undefined;
const model = () =>
  (modelP ??= Backend.create({ device: 'cpu', threads: 2 }).then((be) => CausalLM.load(modelDir, be)));

test('the counted work is the work a real run does', async () => {
  const root = mkdtempSync(join(tmpdir(), 'dd-est-'));
  try {
    for (const f of readdirSync(docs)
      .filter((x) => x.endsWith('.md'))
      .sort()
      .slice(0, 2))
      cpSync(join(docs, f), join(root, 'docs', f));
    const events: DistillEvent[] = [];
    const m = await model();
    const res = await new Distiller(
      m,
      { inputs: ['docs'], root, name: 'est', settings: fast },
      { onEvent: (e) => events.push(e) },
    ).run();
    const dir = join(root, '.docdistill', 'runs', res.runId);
    // The estimate came before the questions phase started, and is in the run folder.
    const iEst = events.findIndex((e) => e.type === 'estimate');
    const iQ = events.findIndex((e) => e.type === 'phase' && e.phase === 'questions' && e.status === 'start');
    assert.ok(iEst >= 0 && iEst < iQ, 'the estimate is emitted before the questions phase');
    const saved = JSON.parse(readFileSync(join(dir, 'estimate.json'), 'utf8')) as {
      totalSec: number;
      rates: ProbeRates;
      lengths?: ProbeLengths;
      actualSec: Record<string, number>;
    };
    assert.ok(saved.totalSec > 0 && saved.rates.prefillMsPerToken > 0 && saved.rates.trainMsPerToken > 0);
    assert.ok(saved.actualSec.train! > 0, 'the actual times are recorded at the end');
    assert.ok(events.some((e) => e.type === 'log' && e.message.startsWith('estimate vs actual: questions')));
    // Sent again once the questions are written, counted with them.
    const ests = events.filter((e) => e.type === 'estimate');
    assert.equal(ests.length, 2);
    assert.ok(ests[1]!.type === 'estimate' && ests[1]!.refined);

    // With the run's questions, the answers, train and evaluate counts are the run's, exactly.
    const s = (JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8')) as { settings: DistillSettings }).settings;
    const chunks = readJsonl<Chunk>(join(dir, 'chunks.jsonl'));
    const qs = readJsonl<QuestionRow>(join(dir, 'questions.jsonl'));
    const c = countWork(m, s, chunks, qs);
    const said = events.find((e) => e.type === 'log' && e.message.startsWith('answers: '));
    assert.ok(said && said.type === 'log');
    const [, prompts, tokens, shared] = /answers: (\d+) prompts, (\d+) prompt tokens, of which (\d+)/.exec(
      said.message,
    )!;
    assert.equal(c.phases.answers.prompts, Number(prompts));
    assert.equal(c.phases.answers.prefillTokens, Number(tokens));
    assert.equal(c.phases.answers.reusedTokens, Number(shared));
    // Decode steps: counted at the longest answers the probe sampled, near the run's; at the max
    // tokens without them (the upper bound the estimate used to give).
    const ranSteps = Number(/(\d+) decode steps/.exec(said.message)![1]);
    assert.ok(saved.lengths && saved.lengths.answer.max <= s.answerMaxTokens - 1 && saved.lengths.questions.length > 0);
    const measured = countWork(m, s, chunks, qs, saved.lengths).phases.answers.decodeSteps;
    assert.ok(
      measured >= ranSteps / 2 && measured <= ranSteps * 2,
      `answers' decode steps: ${measured} counted, ${ranSteps} in the run`,
    );
    assert.equal(c.phases.answers.decodeSteps, c.phases.answers.generateCalls * (s.answerMaxTokens - 1));
    assert.ok(c.phases.answers.decodeSteps > ranSteps);
    const trains = events.filter((e) => e.type === 'train');
    assert.equal(c.phases.train.trainSteps, trains[0]!.type === 'train' ? trains[0]!.totalSteps : -1);
    assert.equal(c.phases.train.trainSteps, trains.length, 'every planned step ran (no early stop)');
    const evalRows = (JSON.parse(readFileSync(join(dir, 'eval.json'), 'utf8')) as { rows: unknown[] }).rows;
    assert.equal(c.questions.heldOut, evalRows.length);
    assert.equal(c.phases.evaluate.generateCalls, 3 * Math.ceil(evalRows.length / 16));
    // The questions phase: rounds × questionsPerRound prompts per passage, whatever the model wrote.
    const per = s.rounds * s.questionsPerRound;
    assert.ok(c.phases.questions.prompts >= chunks.length * per);

    // The projection (no questions yet) counts the same question prompts, and the other phases
    // within a factor of the run's: with the probe's lengths and kept questions per passage, the
    // questions the run kept within 1.6×.
    const proj = countWork(m, s, chunks, undefined, saved.lengths);
    const keptRatio = proj.questions.docs / c.questions.docs;
    assert.ok(
      keptRatio > 1 / 1.6 && keptRatio < 1.6,
      `projected questions ${proj.questions.docs} vs ${c.questions.docs}`,
    );
    const ownCalls = Math.ceil((chunks.length * per) / 16);
    assert.ok(proj.phases.questions.generateCalls >= ownCalls);
    const ratio = proj.phases.answers.prompts / c.phases.answers.prompts;
    assert.ok(
      ratio > 0.5 && ratio < 3,
      `projected answers ${proj.phases.answers.prompts} vs ${c.phases.answers.prompts}`,
    );
    // The paraphrase step adds the share of new phrasings the probe kept per question; the probe
    // measures that share only when the step is on.
    const all = (w: ReturnType<typeof countWork>) => w.questions.docs + w.questions.heldOut;
    const half = countWork(m, { ...s, paraphrases: 1 }, chunks, undefined, { ...saved.lengths!, paraphraseKept: 0.5 });
    // Per passage: the kept questions (a whole number, at least one), then half as many again.
    const keptEach = Math.max(1, Math.round(saved.lengths!.keptPerPassage));
    assert.equal(all(half), chunks.length * Math.round(keptEach * 1.5));
    assert.equal(all(proj), chunks.length * keptEach);
    assert.equal(saved.lengths!.paraphraseKept, undefined);
    const probed = await probeLengths(m, { ...s, paraphrases: 1 }, chunks);
    assert.ok(probed?.paraphraseKept !== undefined && probed.paraphraseKept >= 0 && probed.paraphraseKept <= 4);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('distinct questions are projected from the repeats seen in a sample', () => {
  assert.equal(projectDistinct([1, 1, 1, 1], 30), 30, 'no repeats: every draw counts');
  assert.equal(projectDistinct([], 30), 0);
  assert.equal(projectDistinct([4, 4, 4, 4], 30), 4, 'every form seen often: no more to come');
  // Against simulation: draws from 20 forms of unequal weight (half of them 4 times as likely).
  let x = 12345;
  const rand = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
  const w = Array.from({ length: 20 }, (_, i) => (i < 10 ? 4 : 1));
  const total = w.reduce((a, b) => a + b, 0);
  const draw = () => {
    let r = rand() * total;
    for (let i = 0; i < w.length; i++) if ((r -= w[i]!) < 0) return i;
    return w.length - 1;
  };
  let err = 0,
    truth = 0;
  const trials = 400;
  for (let t = 0; t < trials; t++) {
    const sample = Array.from({ length: 16 }, draw);
    const counts = [...new Set(sample)].map((f) => sample.filter((y) => y === f).length);
    const more = [...sample, ...Array.from({ length: 14 }, draw)];
    truth += new Set(more).size;
    err += projectDistinct(counts, 30) - new Set(more).size;
  }
  assert.ok(Math.abs(err / trials) < 0.1 * (truth / trials), `mean error ${err / trials} of ${truth / trials}`);
});

test('the estimate caches the teacher exactly when the train phase will (teacherCache)', async () => {
  const m = await model();
  const chunks = await chunkDocs(m, [docs], repo, 600);
  const counts = (o: Partial<DistillSettings>) => countWork(m, resolveSettings({ ...fast, ...o }), chunks);
  const on = counts({ teacherCache: 'auto', epochs: 3 });
  const off = counts({ teacherCache: 'off', epochs: 3 });
  assert.equal(on.teacherCached, true, 'auto, several epochs, a small vocabulary: exact cache');
  assert.equal(off.teacherCached, false);
  assert.equal(counts({ teacherCache: 'auto', epochs: 1 }).teacherCached, false, 'one epoch: no cache');
  // At τ = 2 with a vocabulary whose exact cache does not fit, auto keeps the teacher in the step:
  // the same function decides for the estimate and the train phase (teacherCacheK, tested there).
  assert.equal(counts({ teacherCache: 'topk', epochs: 1 }).teacherCached, true, 'asked for: cached');
  // Without the cache every step carries the teacher: more tokens through the train steps.
  assert.ok(off.phases.train.studentTokens > on.phases.train.studentTokens);
});

test('the rates come from a probe of the model: more work measures more time', async () => {
  const m = await model();
  const s = resolveSettings(fast);
  const r = await probeRates(m, s, true);
  assert.ok(r.trainStepMs >= 0);
  for (const k of ['prefillMsPerToken', 'trainMsPerToken', 'probeSec'] as const)
    assert.ok(Number.isFinite(r[k]) && r[k] > 0, `${k} = ${r[k]}`);
  assert.ok(r.decodeStepMs + r.decodeRowMs > 0);
  assert.ok(r.teacherMsPerToken > 0, 'with epochs > 1 the teacher cache is probed too');
  assert.ok(r.probeSec < 60, `the probe took ${r.probeSec} s`);
});

test('the estimate warns above its threshold, with concrete suggestions', () => {
  const work = (n: number) => ({
    generateCalls: 1,
    prompts: n,
    prefillTokens: 100 * n,
    reusedTokens: 0,
    decodeSteps: 10,
    decodeRows: 10 * n,
    trainSteps: n,
    studentTokens: 100 * n,
    teacherTokens: 0,
  });
  const counts = {
    chunks: 1,
    questions: { docs: 1, heldOut: 0, absent: 0, general: 0, generalHeldOut: 0 },
    phases: { questions: work(10), answers: work(20), train: work(50), evaluate: work(1) },
    teacherCached: false,
    sample: { student: 40, teacher: 200, answer: 9 },
  };
  const rates: ProbeRates = {
    prefillMsPerToken: 1,
    decodeStepMs: 10,
    decodeRowMs: 1,
    trainStepMs: 100,
    trainMsPerToken: 20,
    teacherMsPerToken: 0,
    probeSec: 1,
  };
  const settings = { rounds: 6, epochs: 10, baseQuantization: 'none' as const };
  const e = makeEstimate(counts, rates, settings, { thresholdSec: 60 });
  // train: 50 × 100 prefill + 10 steps + 500 rows + 50 steps × 100 + 5000 × 20 = 110.6 s
  assert.equal(Math.round(e.seconds.train * 10), 1106);
  assert.equal(e.totalSec, e.seconds.questions + e.seconds.answers + e.seconds.train + e.seconds.evaluate);
  assert.ok(e.long);
  assert.ok(e.suggestions.some((x) => x.includes('--rounds 3')));
  assert.ok(e.suggestions.some((x) => x.includes('--epochs 5')));
  assert.ok(e.suggestions.some((x) => x.includes('--quantize int8')));
  assert.ok(e.suggestions.some((x) => x.includes('--device')));
  const short = makeEstimate(counts, rates, settings, { thresholdSec: 3600 });
  assert.equal(short.long, false);
  assert.deepEqual(short.suggestions, []);
  assert.equal(
    makeEstimate(
      counts,
      rates,
      { ...settings, baseQuantization: 'int8' },
      { thresholdSec: 1, device: 'cuda' },
    ).suggestions.some((x) => x.includes('quantize') || x.includes('GPU')),
    false,
  );
  assert.equal(formatDuration(7800), '2 h 10 min');
  assert.equal(formatDuration(40), '40 s');
  assert.match(describeEstimate(e), /^about \d+ min: questions .*, answers .*, training .*, evaluation /);
});

test('the job reducer keeps the estimate for the dashboard', () => {
  const job: JobView = {
    jobId: 'j',
    name: 'n',
    state: 'running',
    started: 0,
    loss: [],
    validation: [],
    samples: [],
    log: [],
  };
  const seconds = { questions: 600, answers: 1200, train: 5400, evaluate: 60 };
  applyJobEvent(job, { type: 'estimate', totalSec: 7260, seconds, long: true, suggestions: ['x'], probeSec: 2 });
  assert.deepEqual(job.estimate, { totalSec: 7260, seconds, long: true, suggestions: ['x'] });
});

test("at the demo's settings (30 questions sampled a passage) the probe projects the questions a passage keeps within 1.6×", async () => {
  const m = await model();
  const s = resolveSettings({ ...DEMO_SETTINGS, seed: 7 });
  const chunks = (await chunkDocs(m, [docs], repo, s.chunkTokens || 600)).slice(0, 6);
  const probed = await probeLengths(m, s, chunks);
  // What the questions phase keeps: every sample of every round, parsed, grounded, de-duplicated.
  const per = s.rounds * s.questionsPerRound;
  let kept = 0;
  for (const [i, c] of chunks.entries()) {
    const prompt = m.tokenizer.encode(
      m.tokenizer.applyChatTemplate(questionMessages(c.text, s.prompts), { addGenerationPrompt: true }),
      { addSpecialTokens: false },
    );
    const gs = await generate(
      m,
      Array.from({ length: per }, () => prompt),
      { maxTokens: s.questionMaxTokens, temperature: s.questionTemperature, topK: s.questionTopK, seed: 100 + i },
    );
    const words = wordSet(c.text);
    kept += dedupe(gs.flatMap((g) => parseQuestions(g.text)).filter((q) => isGrounded(q, words))).length;
  }
  assert.equal(probed!.rows, 16, 'the probe samples 16 questions a passage');
  const actual = kept / chunks.length;
  const ratio = probed!.keptPerPassage / actual;
  assert.ok(
    ratio > 1 / 1.6 && ratio < 1.6,
    `projected ${probed!.keptPerPassage.toFixed(1)} a passage, kept ${actual.toFixed(1)}`,
  );
});

test('16 sampled questions a passage project the distinct ones twice as well as 8 (why the probe samples 16)', () => {
  let x = 12345;
  const rand = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
  // A small model's question space: 14 equally likely questions a passage (7 facts, 2 phrasings).
  const err = (n: number) => {
    let sum = 0;
    for (let t = 0; t < 2000; t++) {
      const draw = () => Math.floor(rand() * 14);
      const sample = Array.from({ length: n }, draw);
      const counts = [...new Set(sample)].map((f) => sample.filter((y) => y === f).length);
      const truth = new Set([...sample, ...Array.from({ length: 30 - n }, draw)]).size;
      sum += Math.abs(Math.log(projectDistinct(counts, 30) / truth));
    }
    return sum / 2000;
  };
  const [e8, e16] = [err(8), err(16)];
  assert.ok(
    e16 < 0.2 && e16 < e8 / 2,
    `mean |log(projected / kept)|: 8 samples ${e8.toFixed(3)}, 16 samples ${e16.toFixed(3)}`,
  );
});
