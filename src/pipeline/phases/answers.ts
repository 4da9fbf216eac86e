// Phase 3, answers: the teacher (the model with the passage in its prompt) answers every question
// about the docs; the base model, without a passage, answers the general ones. Then the held-out
// split is made per passage, from the answers (see heldOutByAnswer), and questions the teacher
// says its passage does not answer are sorted out.
import { generate } from '../../engine/generate';
import { tokenF1 } from '../metrics';
import { saysDontKnow, studentMessages, teacherMessages } from '../prompts';
import { answeredFromPassage, heldOutByAnswer, namesIn, wordSet } from '../questions';
import { readJsonl, writeJsonl } from '../runFolder';
import { chatIds, check, chunks, isGeneral, log, type AnswerRow, type QuestionRow, type RunContext } from './context';

export async function answers(run: RunContext): Promise<void> {
  const s = run.s;
  const qs = readJsonl<QuestionRow>(run.paths.questions);
  const chunkText = new Map(chunks(run).map((c) => [c.hash, c.text]));
  const rows = readJsonl<AnswerRow>(run.paths.answers);
  const done = new Set(rows.map((r) => r.id));
  // By passage, so that a batch holds questions about one passage and computes it once (the
  // teacher prompts share it: see Stepper.prefill); the general questions last.
  const order = new Map(chunks(run).map((c, i) => [c.hash, i]));
  const rank = (q: QuestionRow) => (isGeneral(q.split) ? Infinity : (order.get(q.chunk) ?? -1));
  const todo = qs
    .filter((q) => !done.has(q.id))
    .map((q, i) => ({ q, i }))
    .sort((a, b) => rank(a.q) - rank(b.q) || a.i - b.i)
    .map((x) => x.q);
  const t0 = performance.now();
  let seed = s.seed * 7777 + rows.length;
  let promptTokens = 0,
    sharedTokens = 0,
    positions = 0,
    decodeSteps = 0;
  for (let i = 0; i < todo.length; i += 16) {
    check(run);
    const b = todo.slice(i, i + 16);
    const prompts = b.map((q) =>
      chatIds(
        run,
        isGeneral(q.split)
          ? studentMessages(q.question, s.prompts)
          : teacherMessages(chunkText.get(q.chunk) ?? '', q.question, s.prompts),
      ),
    );
    const res = await generate(run.model, prompts, {
      maxTokens: s.answerMaxTokens,
      temperature: s.answerTemperature,
      topK: s.answerTopK,
      seed: seed++,
      signal: run.signal,
      onTimings: (t) => {
        promptTokens += t.prefillTokens;
        sharedTokens += t.prefixReusedTokens;
        positions += t.prefillPositions;
        decodeSteps += t.decodeSteps;
      },
    });
    check(run);
    res.forEach((r, j) => {
      rows.push({ id: b[j]!.id, answer: r.text.trim() });
      if (b[j]!.split === 'train' && (i + j) % 5 === 0)
        run.emit({ type: 'sample', source: b[j]!.source, question: b[j]!.question, answer: r.text.trim() });
    });
    writeJsonl(run.paths.answers, rows);
    const n = Math.min(todo.length, i + 16);
    run.emit({
      type: 'progress',
      phase: 'answers',
      done: qs.length - todo.length + n,
      total: qs.length,
      etaSec: ((performance.now() - t0) / 1000 / n) * (todo.length - n),
    });
  }
  if (todo.length)
    log(
      run,
      `answers: ${todo.length} prompts, ${promptTokens} prompt tokens, of which ${sharedTokens} (${((100 * sharedTokens) / Math.max(1, promptTokens)).toFixed(0)} %) shared with another prompt of their batch and computed once; the prefill computed ${positions} positions (padding included); ${decodeSteps} decode steps`,
    );
  splitByAnswer(run, qs, rows);
}

/** The final held-out split of the questions about the docs, per passage (see heldOutByAnswer). */
function splitByAnswer(run: RunContext, qs: QuestionRow[], answers: AnswerRow[]): void {
  const ans = new Map(answers.map((a) => [a.id, a.answer]));
  const byChunk = new Map<string, QuestionRow[]>();
  const chunkWords = new Map(chunks(run).map((c) => [c.hash, wordSet(c.text)]));
  const wordsOf = (q: QuestionRow) => chunkWords.get(q.chunk) ?? new Set<string>();
  let unanswerable = 0,
    abstained = 0,
    answeredCross = 0,
    crossKept = 0;
  for (const q of qs) {
    const a = ans.get(q.id);
    if (isGeneral(q.split) || !a) continue;
    if (q.split === 'absent' || q.split === 'absent-answered') {
      if (saysDontKnow(a)) {
        q.split = 'absent';
        abstained++;
        continue;
      }
      if (!answeredFromPassage(q.question, a, wordsOf(q))) {
        q.split = 'absent-answered';
        answeredCross++;
        continue;
      }
      // Answered from the passage: a question the writer missed; it joins the passage's questions.
      crossKept++;
    }
    if (saysDontKnow(a)) {
      // About the passage's subjects: "the document does not say" is the answer to learn.
      const words = wordsOf(q);
      if (namesIn(q.question).some((n) => words.has(n.toLowerCase()))) {
        q.split = 'absent';
        abstained++;
        continue;
      }
      if (run.s.answerableOnly) {
        q.split = 'unanswerable';
        unanswerable++;
        continue;
      }
    }
    const group = byChunk.get(q.chunk);
    if (group) group.push(q);
    else byChunk.set(q.chunk, [q]);
  }
  let held = 0;
  for (const group of byChunk.values()) {
    const h = heldOutByAnswer(
      group.map((q) => ({ question: q.question, answer: ans.get(q.id)! })),
      run.s.heldOutShare,
      run.s.seed,
      (a, b) => tokenF1(a, b) >= 0.8,
    );
    group.forEach((q, i) => (q.split = h.has(i) ? 'heldout' : 'train'));
    held += h.size;
  }
  writeJsonl(run.paths.questions, qs);
  const n = [...byChunk.values()].reduce((a, g) => a + g.length, 0);
  log(
    run,
    `held out ${held} of ${n} questions about the docs, each with an answer that a training question also gives${unanswerable ? `; dropped ${unanswerable} that name nothing in their passage, which the teacher says it does not answer` : ''}`,
  );
  if (abstained || answeredCross || crossKept)
    log(
      run,
      `about the passages' subjects, the teacher says ${abstained} are not answered by the passage (trained so); it answered ${crossKept} cross questions from the passage (kept with the passage's questions) and ${answeredCross} with words the passage does not have (dropped)`,
    );
}
