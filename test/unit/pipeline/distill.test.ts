// The distillation pipeline on the built-in demo model with real files: a whole run, cancelling
// and resuming, incremental re-distillation, and bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import { readAdapter } from '../../../src/engine/lora/peft';
import {
  Distiller,
  CancelledError,
  listAdapters,
  staleness,
  type DistillEvent,
  type AdapterInfo,
} from '../../../src/pipeline/distill';
import { chunkMarkdown } from '../../../src/pipeline/ingest';
import {
  answeredFromPassage,
  isGrounded,
  mentionsAny,
  nameKey,
  questionKind,
  wordSet,
} from '../../../src/pipeline/questions';
import { readJsonl } from '../../../src/pipeline/runFolder';
import { saysDontKnow, studentMessages } from '../../../src/pipeline/prompts';
import { chatIds, sample, withQuestion, type QaRow, type RunContext } from '../../../src/pipeline/phases/context';
import { DEFAULT_SETTINGS, modelDefaults, type DistillSettings } from '../../../src/pipeline/settings';

const repo = resolve(__dirname, '..', '..', '..');
const modelDir = process.env.DOCDISTILL_TEST_MODEL ?? join(repo, 'media', 'demo-model');
const docs = join(repo, 'examples', 'docs');
// Small settings: the tests check the machinery, `npm run demo` checks what is learned.
const fast: Partial<DistillSettings> = {
  rounds: 1,
  questionsPerRound: 4,
  epochs: 2,
  batchSize: 8,
  generalShare: 0.3,
  seed: 3,
};

let modelP: Promise<CausalLM> | undefined;
const model = () =>
  (modelP ??= Backend.create({ device: 'cpu', threads: 2 }).then((be) => CausalLM.load(modelDir, be)));

function workspace(files: string[]): string {
  const root = mkdtempSync(join(tmpdir(), 'dd-pipe-'));
  for (const f of files) cpSync(join(docs, f), join(root, 'docs', f));
  return root;
}

const exampleFiles = () =>
  readdirSync(docs)
    .filter((f) => f.endsWith('.md'))
    .sort();

function walkFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) =>
    d.isDirectory() ? walkFiles(join(dir, d.name)) : [join(dir, d.name)],
  );
}

test('a run goes from docs to an adapter, with every phase in the run folder', async () => {
  const root = workspace(exampleFiles().slice(0, 3));
  try {
    const events: DistillEvent[] = [];
    const res = await new Distiller(
      await model(),
      { inputs: ['docs'], root, name: 'notes', settings: fast },
      { onEvent: (e) => events.push(e) },
    ).run();
    const run = join(root, '.docdistill', 'runs', res.runId);
    for (const f of ['run.json', 'chunks.jsonl', 'questions.jsonl', 'answers.jsonl', 'metrics.jsonl', 'eval.json'])
      assert.ok(existsSync(join(run, f)), `missing ${f}`);
    const info = JSON.parse(readFileSync(join(res.adapterDir, 'docdistill.json'), 'utf8')) as AdapterInfo;
    assert.equal(info.chunks.length, 3);
    assert.ok(info.chunks.every((c) => /^[0-9a-f]{64}$/.test(c.hash)));
    const adapter = readAdapter(res.adapterDir, (await model()).config);
    // Written once, into the run folder, then moved into place: the run folder keeps no copy, and
    // the weights the run hands back are the ones on disk.
    assert.equal(existsSync(join(run, 'adapter')), false, 'the run folder keeps no copy of the published adapter');
    assert.equal(readFileSync(join(run, 'published'), 'utf8'), `${res.adapterDir}\n`);
    assert.ok(existsSync(join(res.adapterDir, 'docdistill-qa.jsonl')));
    assert.deepEqual(readdirSync(join(root, '.docdistill', 'adapters')), ['notes']);
    assert.ok(res.adapter, 'the run hands back the adapter it trained');
    for (const [k, t] of adapter.tensors) assert.deepEqual(res.adapter.tensors.get(k), t, k);
    // Evaluating the finished run again reads its published adapter and scores as the run did.
    const again = await new Distiller(await model(), {
      inputs: [],
      root,
      name: 'notes',
      runId: res.runId,
    }).evaluateOnly();
    assert.deepEqual(again, res.summary);
    // The rank the model folder recommends (the demo model's training.json), else DocDistill's default.
    assert.equal(adapter.spec.rank, modelDefaults(modelDir).loraRank ?? DEFAULT_SETTINGS.loraRank);
    const phases = events
      .filter((e) => e.type === 'phase' && e.status === 'done')
      .map((e) => (e as { phase: string }).phase);
    assert.deepEqual(phases, ['ingest', 'questions', 'answers', 'train', 'evaluate']);
    assert.ok(
      events.some((e) => e.type === 'train'),
      'training progress events',
    );
    assert.ok(
      events.some((e) => e.type === 'validation'),
      'validation events',
    );
    assert.ok(
      events.some((e) => e.type === 'eval'),
      'evaluation event',
    );
    // Questions name only what their passage mentions; general ones name nothing in the docs, one per name.
    const chunks = new Map(
      readJsonl<{ hash: string; text: string }>(join(run, 'chunks.jsonl')).map((c) => [c.hash, wordSet(c.text)]),
    );
    const questions = readJsonl<{ id: string; chunk: string; question: string; split: string }>(
      join(run, 'questions.jsonl'),
    );
    for (const q of questions.filter((r) => !r.split.startsWith('general')))
      assert.ok(isGrounded(q.question, chunks.get(q.chunk)!), `ungrounded: ${q.question}`);
    const general = questions.filter((r) => r.split.startsWith('general'));
    assert.ok(
      general.some((q) => q.split === 'general') && general.some((q) => q.split === 'general-heldout'),
      'general questions, some held out',
    );
    // Validation covers both: the held-out questions about the docs and the held-out general ones.
    const val = readJsonl<{ validationLoss?: number; validationDocs?: number; validationGeneral?: number }>(
      join(run, 'metrics.jsonl'),
    ).filter((m) => m.validationLoss !== undefined);
    assert.ok(
      val.length > 0 && val.every((m) => Number.isFinite(m.validationDocs) && Number.isFinite(m.validationGeneral)),
      'validation of both kinds',
    );
    assert.ok(
      val.every(
        (m) =>
          m.validationLoss! >= Math.min(m.validationDocs!, m.validationGeneral!) - 1e-9 &&
          m.validationLoss! <= Math.max(m.validationDocs!, m.validationGeneral!) + 1e-9,
      ),
      'the validation loss is their weighted mean',
    );
    const docWords = new Set([...chunks.values()].flatMap((w) => [...w]));
    for (const q of general)
      assert.ok(!mentionsAny(q.question, docWords), `general question about the docs: ${q.question}`);
    const keys = general.map((q) => nameKey(q.question)).filter(Boolean);
    assert.equal(new Set(keys).size, keys.length, 'one general question per name');
    // Where the teacher says its passage does not tell: about the passage's subjects, trained as
    // such ('absent'); naming nothing in the passage, dropped (answerableOnly). Cross questions (another
    // passage's question about this passage's subject) that the teacher answers from the passage join
    // its questions; answered with a word the passage lacks, they are dropped.
    const answers = new Map(
      readJsonl<{ id: string; answer: string }>(join(run, 'answers.jsonl')).map((r) => [r.id, r.answer]),
    );
    const namesSubject = (q: { chunk: string; question: string }) => mentionsAny(q.question, chunks.get(q.chunk)!);
    for (const q of questions) {
      const dk = saysDontKnow(answers.get(q.id) ?? '');
      if (q.split === 'train' || q.split === 'heldout')
        assert.ok(!dk, `kept, though the teacher does not know: ${q.question}`);
      if (q.split === 'unanswerable')
        assert.ok(dk && !namesSubject(q), `dropped: ${q.question} → ${answers.get(q.id)}`);
      if (q.split === 'absent')
        assert.ok(dk && namesSubject(q), `trained as "not in the passage": ${q.question} → ${answers.get(q.id)}`);
      const words = chunks.get(q.chunk)!;
      if (q.split === 'absent-answered')
        assert.ok(
          !dk && questionKind(q.id) === 'cross' && !answeredFromPassage(q.question, answers.get(q.id)!, words),
          `cross question answered with words the passage lacks, dropped: ${q.question}`,
        );
      if (questionKind(q.id) === 'cross' && (q.split === 'train' || q.split === 'heldout'))
        assert.ok(
          answeredFromPassage(q.question, answers.get(q.id)!, words),
          `cross question answered from the passage, kept: ${q.question} → ${answers.get(q.id)}`,
        );
    }
    assert.ok(
      questions.some((q) => questionKind(q.id) === 'cross'),
      "cross questions about the passages' subjects were asked",
    );
    assert.ok(
      questions.some((q) => questionKind(q.id) === 'cross' && (q.split === 'train' || q.split === 'heldout')),
      'some cross questions answered from the passage kept',
    );
    // The demo model's teacher says so when its passage lacks the relation asked about.
    assert.ok(
      questions.some((q) => q.split === 'absent'),
      'some cross questions trained as "not in the passage"',
    );
    const trained = readJsonl<{ question: string }>(join(res.adapterDir, 'docdistill-qa.jsonl')).map((r) => r.question);
    for (const q of questions.filter((r) => r.split === 'absent'))
      assert.ok(trained.includes(q.question), `"not in the passage" pair trained: ${q.question}`);
    assert.deepEqual(
      listAdapters(join(root, '.docdistill')).map((a) => a.name),
      ['notes'],
    );
    assert.deepEqual(
      walkFiles(root).filter((f) => /\.tmp/.test(f)),
      [],
      'no temporary files left',
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a general pool: more general questions written, one slice of them per epoch, as many held out', async () => {
  const root = workspace(exampleFiles().slice(0, 2));
  try {
    const m = await model();
    const runOnce = async (name: string, generalPool: number) => {
      const events: DistillEvent[] = [];
      const res = await new Distiller(
        m,
        { inputs: ['docs'], root, name, settings: { ...fast, generalShare: 0.5, generalPool } },
        { onEvent: (e) => events.push(e) },
      ).run();
      const qs = readJsonl<{ id: string; split: string }>(
        join(root, '.docdistill', 'runs', res.runId, 'questions.jsonl'),
      );
      const n = (k: string) => qs.filter((q) => q.split === k).length;
      const steps = (events.find((e) => e.type === 'train') as { totalSteps: number }).totalSteps;
      // The questions written about the docs; cross questions the teacher answered from the passage
      // join them, and sampled answers depend on the batches the general questions are in.
      const written = qs.filter((q) => q.split === 'train' && questionKind(q.id) !== 'cross').length;
      // Trained: the passages' questions and their abstentions ('absent').
      return { docs: n('train') + n('absent'), written, general: n('general'), held: n('general-heldout'), steps };
    };
    const one = await runOnce('p1', 1);
    const three = await runOnce('p3', 3);
    assert.equal(three.written, one.written, 'same questions about the docs (same seed)');
    assert.ok(
      three.general + three.held >= 2.5 * (one.general + one.held),
      `a pool about 3× as large (${three.general + three.held} vs ${one.general + one.held})`,
    );
    assert.ok(Math.abs(three.held - one.held) <= 1, `held out as if there were no pool (${three.held} vs ${one.held})`);
    // Training cost follows one slice per epoch, not the whole pool.
    const perEpoch = (r: { docs: number; general: number }, pool: number) =>
      Math.ceil((r.docs + Math.ceil(r.general / pool)) / fast.batchSize!);
    assert.equal(three.steps, perEpoch(three, 3) * fast.epochs!);
    assert.equal(one.steps, perEpoch(one, 1) * fast.epochs!);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a cancelled run leaves nothing half-written and resumes where it stopped', async () => {
  const root = workspace(exampleFiles().slice(0, 2));
  try {
    const ac = new AbortController();
    let trainSteps = 0;
    const first = new Distiller(
      await model(),
      { inputs: ['docs'], root, name: 'c', settings: { ...fast, epochs: 3 } },
      {
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === 'train' && ++trainSteps === 2) ac.abort();
        },
      },
    );
    await assert.rejects(first.run(), CancelledError);
    assert.deepEqual(
      walkFiles(root).filter((f) => /\.tmp/.test(f)),
      [],
      'no temporary files after cancel',
    );
    assert.ok(!existsSync(join(root, '.docdistill', 'adapters', 'c')), 'no adapter published by a cancelled run');
    const events: DistillEvent[] = [];
    const res = await new Distiller(
      await model(),
      { inputs: ['docs'], root, name: 'c', settings: { ...fast, epochs: 3 } },
      { onEvent: (e) => events.push(e) },
    ).run();
    const runEv = events.find((e) => e.type === 'run') as { resumed: boolean };
    assert.equal(runEv.resumed, true);
    const skipped = events
      .filter((e) => e.type === 'phase' && e.status === 'skipped')
      .map((e) => (e as { phase: string }).phase);
    assert.deepEqual(skipped, ['ingest', 'questions', 'answers']);
    assert.ok(existsSync(join(res.adapterDir, 'adapter_model.safetensors')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('after a doc changes, only its passages get new questions and training continues from the adapter', async () => {
  const files = exampleFiles().slice(0, 3);
  const root = workspace(files);
  try {
    const m = await model();
    const first = await new Distiller(m, { inputs: ['docs'], root, name: 'inc', settings: fast }).run();
    const infoBefore = JSON.parse(readFileSync(join(first.adapterDir, 'docdistill.json'), 'utf8')) as AdapterInfo;
    const changed = join(root, 'docs', files[1]!);
    writeFileSync(changed, readFileSync(changed, 'utf8').replace(/\.\s*$/, '. It rains a lot there.\n'));
    const count = (s: string) => s.split(/\s+/).length;
    const cur = files.flatMap((f) =>
      chunkMarkdown(`docs/${f}`, readFileSync(join(root, 'docs', f), 'utf8'), {
        maxTokens: 10_000,
        countTokens: count,
      }),
    );
    assert.equal(staleness(infoBefore, cur).stale, true);
    const logs: string[] = [];
    const second = await new Distiller(
      m,
      { inputs: ['docs'], root, name: 'inc', settings: fast },
      { onEvent: (e) => e.type === 'log' && logs.push(e.message) },
    ).run();
    const qs = readFileSync(join(root, '.docdistill', 'runs', second.runId, 'questions.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { source: string; split: string });
    const sources = new Set(qs.filter((q) => !q.split.startsWith('general')).map((q) => q.source));
    assert.deepEqual([...sources], [`docs/${files[1]}`]);
    assert.ok(
      logs.some((l) => /1 new or changed/.test(l)),
      logs.join('\n'),
    );
    assert.ok(
      logs.some((l) => /replayed from unchanged chunks/.test(l)),
      logs.join('\n'),
    );
    const infoAfter = JSON.parse(readFileSync(join(second.adapterDir, 'docdistill.json'), 'utf8')) as AdapterInfo;
    assert.equal(staleness(infoAfter, cur).stale, false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('bad documents are skipped with a reason; nothing usable is an error', async () => {
  const root = workspace(exampleFiles().slice(0, 1));
  try {
    writeFileSync(join(root, 'docs', 'empty.md'), '');
    writeFileSync(join(root, 'docs', 'binary.md'), Buffer.from([1, 2, 0, 3]));
    writeFileSync(join(root, 'docs', 'latin1.md'), Buffer.from([0x23, 0x20, 0xe9, 0x0a]));
    const warns: string[] = [];
    await new Distiller(
      await model(),
      { inputs: ['docs'], root, name: 'bad', settings: fast, skipEval: true },
      { onEvent: (e) => e.type === 'log' && e.level === 'warn' && warns.push(e.message) },
    ).run();
    assert.ok(
      warns.some((w) => /binary\.md: looks like a binary file/.test(w)),
      warns.join('\n'),
    );
    assert.ok(
      warns.some((w) => /latin1\.md: is not valid UTF-8/.test(w)),
      warns.join('\n'),
    );
    assert.ok(
      warns.some((w) => /empty\.md: empty/.test(w)),
      warns.join('\n'),
    );
    const only = mkdtempSync(join(tmpdir(), 'dd-pipe-'));
    writeFileSync(join(only, 'x.md'), Buffer.from([0, 0, 0]));
    await assert.rejects(
      new Distiller(await model(), { inputs: ['x.md'], root: only, name: 'bad' }).run(),
      /no usable text/,
    );
    await assert.rejects(
      new Distiller(await model(), { inputs: ['nope'], root: only, name: 'bad' }).run(),
      /nope: no such file or folder/,
    );
    assert.throws(
      () =>
        new Distiller({ tokenizer: { hasChatTemplate: false }, dir: '/m' } as unknown as CausalLM, {
          inputs: [],
          root: only,
          name: 'x',
        }),
      /no chat template/,
    );
    assert.throws(
      () =>
        new Distiller({ tokenizer: { hasChatTemplate: true } } as unknown as CausalLM, {
          inputs: [],
          root: only,
          name: '../evil',
        }),
      /may only have letters/,
    );
    rmSync(only, { recursive: true, force: true });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("the paraphrase step adds rephrasings of the model's own questions, about the same subject and grounded; question noise varies the student's side", async () => {
  const root = workspace(exampleFiles().slice(0, 2));
  try {
    const events: DistillEvent[] = [];
    const res = await new Distiller(
      await model(),
      {
        inputs: ['docs'],
        root,
        name: 'para',
        settings: { ...fast, epochs: 1, paraphrases: 2, questionNoise: 1 },
        skipEval: true,
      },
      { onEvent: (e) => events.push(e) },
    ).run();
    const run = join(root, '.docdistill', 'runs', res.runId);
    const chunks = new Map(
      readJsonl<{ hash: string; text: string }>(join(run, 'chunks.jsonl')).map((c) => [c.hash, wordSet(c.text)]),
    );
    const questions = readJsonl<{ id: string; chunk: string; question: string; split: string }>(
      join(run, 'questions.jsonl'),
    );
    const para = questions.filter((q) => questionKind(q.id) === 'paraphrase');
    const own = questions.filter((q) => questionKind(q.id) === 'written');
    assert.ok(
      events.some((e) => e.type === 'log' && /paraphrases: \d+ new phrasings of \d+ questions/.test(e.message)),
      'the step reports what it made',
    );
    for (const p of para) {
      assert.ok(isGrounded(p.question, chunks.get(p.chunk)!), `ungrounded paraphrase: ${p.question}`);
      assert.ok(
        own.some((q) => q.chunk === p.chunk && nameKey(q.question) === nameKey(p.question)),
        `paraphrase about another subject: ${p.question}`,
      );
    }
    const keys = questions.map((q) => q.question.toLowerCase());
    assert.equal(new Set(keys).size, keys.length, 'no question twice');
    // questionNoise 1: every trained question that has a word it can lose is said differently in
    // the epoch, keeping its names.
    const noise = events
      .map((e) =>
        e.type === 'log'
          ? /^question noise: (\d+) of (\d+) questions said differently in epoch 1, e\.g\. "(.*)" → "(.*)"$/.exec(
              e.message,
            )
          : null,
      )
      .find((m) => m);
    assert.ok(noise, 'the train phase reports the noised questions');
    const trained = questions.filter((q) => q.split === 'train' || q.split === 'absent');
    assert.equal(Number(noise[2]), trained.length);
    assert.ok(Number(noise[1]) > trained.length / 2, `most questions changed (${noise[1]} of ${noise[2]})`);
    assert.ok(
      trained.some((q) => q.question === noise[3]),
      'the example is a trained question',
    );
    assert.notEqual(noise[4], noise[3]);
    assert.equal(nameKey(noise[4]!), nameKey(noise[3]!), 'same names');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("withQuestion gives the student another question and keeps the answer, the teacher's side and its cached distribution", async () => {
  const run = { model: await model(), s: { ...DEFAULT_SETTINGS } } as unknown as RunContext;
  const row: QaRow = {
    chunk: 'c',
    source: 'docs/vidax.md',
    doc: '# Vidax\n\nVidax works as a jeweler.',
    question: 'What is the job of Vidax?',
    answer: 'Vidax works as a jeweler.',
  };
  const x = sample(run, row);
  x.teacherTop = {
    k: 1,
    idx: new BigInt64Array(0),
    lp: new Float32Array(0),
    tailP: new Float32Array(0),
    tailLp: new Float32Array(0),
  };
  const y = withQuestion(run, x, 'What job the of Vidax?');
  const prompt = chatIds(run, studentMessages('What job the of Vidax?', run.s.prompts));
  assert.deepEqual(y.student.slice(0, prompt.length), prompt);
  assert.deepEqual(y.student.slice(prompt.length), x.student.slice(x.student.length - x.answerLength));
  assert.equal(y.answerLength, x.answerLength);
  assert.equal(y.teacher, x.teacher);
  assert.equal(y.teacherTop, x.teacherTop);
  assert.equal(y.weight, x.weight);
});
