// Phase 2, questions: the model, reading each new passage, writes questions about it; then says
// them in other words (paraphrases), adds questions about the passages' subjects that the passages
// may not answer (cross questions), and writes general questions the docs do not answer (the guard
// against over-generalising). All of them go to questions.jsonl, rewritten after every batch.
import { generate, type GenerateTimings } from '../../engine/generate';
import { generalQuestionMessages, paraphraseMessages, questionMessages } from '../prompts';
import {
  chooseHeldOut,
  crossQuestions,
  dedupe,
  isGrounded,
  keptParaphrases,
  mentionsAny,
  nameKey,
  parseQuestions,
  questionId,
  questionKey,
  questionKind,
  wordSet,
} from '../questions';
import { readJsonl, writeJsonl } from '../runFolder';
import { chatIds, check, chunks, freshChunks, isGeneral, log, type QuestionRow, type RunContext } from './context';

export async function questions(run: RunContext): Promise<void> {
  const s = run.s;
  const rows = readJsonl<QuestionRow>(run.paths.questions);
  const doneChunks = new Set(rows.map((r) => r.chunk));
  const todo = freshChunks(run).filter((c) => !doneChunks.has(c.hash));
  const all = freshChunks(run).length;
  const seen = new Set(rows.map((r) => questionKey(r.question)));
  const batch = 8;
  const per = s.rounds * s.questionsPerRound;
  let seed = s.seed * 1000 + rows.length;
  let ungrounded = 0;
  let aboutDocs = 0;
  // What the prefill computed: the samples of one passage's prompt share it (see Stepper.prefill).
  const prefill = { tokens: 0, shared: 0, positions: 0 };
  const tally = (t: GenerateTimings) => {
    prefill.tokens += t.prefillTokens;
    prefill.shared += t.prefixReusedTokens;
    prefill.positions += t.prefillPositions;
  };
  const t0 = performance.now();
  for (let i = 0; i < todo.length; i += batch) {
    check(run);
    const cs = todo.slice(i, i + batch);
    const prompts = cs.flatMap((c) =>
      Array.from({ length: per }, () => chatIds(run, questionMessages(c.text, s.prompts))),
    );
    const outs: string[] = [];
    for (let k = 0; k < prompts.length; k += 16) {
      check(run);
      const res = await generate(run.model, prompts.slice(k, k + 16), {
        maxTokens: s.questionMaxTokens,
        temperature: s.questionTemperature,
        topK: s.questionTopK,
        seed: seed++,
        signal: run.signal,
        onTimings: tally,
      });
      outs.push(...res.map((r) => r.text));
    }
    check(run);
    cs.forEach((c, j) => {
      const parsed = outs.slice(j * per, (j + 1) * per).flatMap((t) => parseQuestions(t));
      const words = wordSet(c.text);
      const grounded = s.groundQuestions ? parsed.filter((q) => isGrounded(q, words)) : parsed;
      ungrounded += parsed.length - grounded.length;
      const qs = dedupe(grounded, seen);
      qs.forEach((q, n) =>
        rows.push({
          id: questionId('written', c.hash, n),
          chunk: c.hash,
          source: c.source,
          question: q,
          split: 'train',
        }),
      ); // held out later, once answers are known
      if (!qs.length) log(run, `${c.source}: the model wrote no usable question for one passage`, 'warn');
    });
    writeJsonl(run.paths.questions, rows);
    const done = all - todo.length + Math.min(todo.length, i + batch);
    const rate = (performance.now() - t0) / 1000 / Math.min(todo.length, i + batch);
    run.emit({ type: 'progress', phase: 'questions', done, total: all, etaSec: rate * (todo.length - i - batch) });
  }
  if (todo.length)
    log(
      run,
      `question writer: ${prefill.tokens} prompt tokens, of which ${prefill.shared} shared with another prompt of their batch and computed once; the prefill computed ${prefill.positions} positions (padding included)`,
    );
  // The paraphrase step: the model says each of its questions in other words, so that a fact is
  // trained under more than the phrasing the question writer happened to pick.
  if (s.paraphrases > 0 && !rows.some((r) => questionKind(r.id) === 'paraphrase')) {
    const own = rows.filter((r) => r.split === 'train');
    const words = new Map(freshChunks(run).map((c) => [c.hash, wordSet(c.text)]));
    let made = 0;
    for (let i = 0; i < own.length; i += 16) {
      check(run);
      const b = own.slice(i, i + 16);
      const prompts = b.flatMap((r) =>
        Array.from({ length: s.paraphrases }, () => chatIds(run, paraphraseMessages(r.question, s.prompts))),
      );
      const res = await generate(run.model, prompts, {
        maxTokens: s.questionMaxTokens,
        temperature: s.questionTemperature,
        topK: s.questionTopK,
        seed: seed++,
        signal: run.signal,
      });
      b.forEach((r, j) => {
        const parsed = res.slice(j * s.paraphrases, (j + 1) * s.paraphrases).flatMap((x) => parseQuestions(x.text));
        for (const q of keptParaphrases(parsed, r.question, words.get(r.chunk)!, seen))
          rows.push({
            id: questionId('paraphrase', r.chunk, made++),
            chunk: r.chunk,
            source: r.source,
            question: q,
            split: 'train',
          });
      });
      run.emit({ type: 'progress', phase: 'questions', done: Math.min(own.length, i + 16), total: own.length });
    }
    writeJsonl(run.paths.questions, rows);
    log(run, `paraphrases: ${made} new phrasings of ${own.length} questions`);
  }
  // Questions about the passages' subjects that the passages may not answer (kept only where the
  // teacher says so; see splitByAnswer). Made once, from the questions of this run's passages.
  if (s.absentShare > 0 && !rows.some((r) => questionKind(r.id) === 'cross')) {
    const text = new Map(freshChunks(run).map((c) => [c.hash, c]));
    const passages = [...text.values()].map((c) => ({
      id: c.hash,
      text: c.text,
      questions: rows.filter((r) => r.chunk === c.hash && r.split === 'train').map((r) => r.question),
    }));
    const cross = crossQuestions(passages, s.absentShare, s.seed, new Set(rows.map((r) => questionKey(r.question))));
    cross.forEach((x, n) =>
      rows.push({
        id: questionId('cross', x.id, n),
        chunk: x.id,
        source: text.get(x.id)!.source,
        question: x.question,
        split: 'absent',
      }),
    );
    writeJsonl(run.paths.questions, rows);
  }
  // The guard against over-generalising: questions the docs do not answer, written by the model itself.
  // Per question about the docs (the held-out ones are chosen later, after the answers).
  // With a pool (generalPool > 1), more are written than one epoch trains on; see train().
  const nDocs = rows.filter((r) => r.split === 'train').length;
  const want = Math.round(s.generalShare * s.generalPool * nDocs) - rows.filter((r) => isGeneral(r.split)).length;
  if (want > 0 && s.generalShare > 0) {
    const docKeys = new Set(rows.map((r) => questionKey(r.question)));
    const docWords = wordSet(
      chunks(run)
        .map((c) => c.text)
        .join('\n'),
    );
    let got = 0;
    // One general question per name: what the guard teaches is "these names I do not know", and
    // a model's own questions keep coming back to a few favourite names.
    const named = new Set(
      rows
        .filter((r) => isGeneral(r.split))
        .map((r) => nameKey(r.question))
        .filter(Boolean),
    );
    for (let tries = 0, maxTries = 8 + Math.ceil(want / 64); got < want && tries < maxTries; tries++) {
      check(run);
      const n = Math.min(64, Math.ceil((want - got) * 1.5));
      const res = await generate(
        run.model,
        Array.from({ length: n }, () => chatIds(run, generalQuestionMessages(s.prompts))),
        {
          maxTokens: s.questionMaxTokens,
          temperature: s.generalTemperature,
          topK: s.generalTopK,
          seed: seed++,
          signal: run.signal,
        },
      );
      // A general question must not be about the docs: its target is the base model's answer.
      const parsed = res.flatMap((r) => parseQuestions(r.text));
      const other = s.groundQuestions ? parsed.filter((q) => !mentionsAny(q, docWords)) : parsed;
      aboutDocs += parsed.length - other.length;
      for (const q of dedupe(other, docKeys)) {
        if (got >= want) break;
        const k = nameKey(q);
        if (k && named.has(k)) continue;
        if (k) named.add(k);
        rows.push({ id: questionId('general', '', rows.length), chunk: '', source: '', question: q, split: 'general' });
        got++;
      }
    }
    // Some are held out too: validation then also measures how far the student drifts from the
    // base model on questions the docs do not answer, and the best epoch is chosen for both.
    const general = rows.filter((r) => isGeneral(r.split));
    // As many as one epoch's worth of general questions would give: a larger pool is for training.
    const held = chooseHeldOut(
      general.map((r) => r.question),
      s.heldOutShare / s.generalPool,
      s.seed,
    );
    general.forEach((r, i) => (r.split = held.has(i) ? 'general-heldout' : 'general'));
    writeJsonl(run.paths.questions, rows);
  }
  const count = (...k: QuestionRow['split'][]) => rows.filter((r) => k.includes(r.split)).length;
  const dropped = [
    ungrounded && `${ungrounded} naming something the passage does not mention`,
    aboutDocs && `${aboutDocs} general ones about the docs`,
  ].filter(Boolean);
  log(
    run,
    `questions: ${count('train', 'heldout')} about the docs, ${count('absent')} about their subjects that they may not answer, ${count('general', 'general-heldout')} general (${count('general-heldout')} of them held out)${dropped.length ? `; dropped ${dropped.join(' and ')}` : ''}`,
  );
  if (!count('train') && !run.state.knownHashes?.length)
    throw new Error('the model wrote no usable questions; try a larger model or more rounds');
}
