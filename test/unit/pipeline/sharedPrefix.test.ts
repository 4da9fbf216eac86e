// A real run's questions and teacher answers are the same with shared prefixes on and off
// (DOCDISTILL_SHARED_PREFIX=0), and the prefill computes fewer positions with them on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import { CancelledError, Distiller, type DistillEvent } from '../../../src/pipeline/distill';

const repo = resolve(__dirname, '..', '..', '..');
const modelDir = process.env.DOCDISTILL_TEST_MODEL ?? join(repo, 'media', 'demo-model');
const docs = join(repo, 'examples', 'docs');

/** Runs the pipeline up to the start of training; returns the run folder's files and the logs. */
async function upToTraining(model: CausalLM, share: boolean) {
  const root = mkdtempSync(join(tmpdir(), 'dd-prefix-'));
  const before = process.env.DOCDISTILL_SHARED_PREFIX;
  try {
    for (const f of readdirSync(docs)
      .filter((f) => f.endsWith('.md'))
      .sort()
      .slice(0, 3))
      cpSync(join(docs, f), join(root, 'docs', f));
    if (share) delete process.env.DOCDISTILL_SHARED_PREFIX;
    else process.env.DOCDISTILL_SHARED_PREFIX = '0';
    const ac = new AbortController();
    const logs: string[] = [];
    const d = new Distiller(
      model,
      {
        inputs: ['docs'],
        root,
        name: 'p',
        settings: { rounds: 1, questionsPerRound: 4, paraphrases: 1, epochs: 1, generalShare: 0.3, seed: 5 },
      },
      {
        signal: ac.signal,
        onEvent: (e: DistillEvent) => {
          if (e.type === 'log') logs.push(e.message);
          if (e.type === 'phase' && e.phase === 'train' && e.status === 'start') ac.abort();
        },
      },
    );
    await assert.rejects(d.run(), CancelledError);
    const runs = join(root, '.docdistill', 'runs');
    const [id] = readdirSync(runs);
    const read = (f: string) => readFileSync(join(runs, id!, f), 'utf8');
    return { questions: read('questions.jsonl'), answers: read('answers.jsonl'), logs };
  } finally {
    if (before === undefined) delete process.env.DOCDISTILL_SHARED_PREFIX;
    else process.env.DOCDISTILL_SHARED_PREFIX = before;
    rmSync(root, { recursive: true, force: true });
  }
}

const figures = (logs: string[], prefix: string) => {
  const line = logs.find((l) => l.startsWith(prefix));
  assert.ok(line, `no "${prefix}" log line`);
  const m = /(\d+) prompt tokens, of which (\d+)[^;]*; the prefill computed (\d+) positions/.exec(line)!;
  return { tokens: +m[1]!, shared: +m[2]!, positions: +m[3]! };
};

test('questions.jsonl and answers.jsonl are identical with shared prefixes on and off', async () => {
  const model = await CausalLM.load(modelDir, await Backend.create({ device: 'cpu', threads: 2 }));
  const on = await upToTraining(model, true);
  const off = await upToTraining(model, false);
  assert.ok(on.answers.split('\n').length > 10, 'a run with answers');
  assert.equal(on.questions, off.questions);
  assert.equal(on.answers, off.answers);
  for (const phase of ['question writer:', 'answers:']) {
    const a = figures(on.logs, phase),
      b = figures(off.logs, phase);
    assert.equal(a.tokens, b.tokens, phase);
    assert.equal(b.shared, 0);
    assert.ok(a.shared > 0.3 * a.tokens, `${phase} ${a.shared} of ${a.tokens} prompt tokens shared`);
    assert.ok(a.positions < 0.7 * b.positions, `${phase} ${a.positions} positions against ${b.positions}`);
    console.log(
      `${phase} prompt tokens ${a.tokens}, shared ${a.shared}, positions ${a.positions} (off: ${b.positions})`,
    );
  }
});
