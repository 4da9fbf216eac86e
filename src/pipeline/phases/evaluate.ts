// Phase 5, evaluate: the held-out questions asked of the base model (closed book), the teacher
// (the passage in its prompt) and the student (the adapter, no passage), scored against the
// teacher's answers from the answers phase; written to eval.json.
import { generate } from '../../engine/generate';
import { readAdapter } from '../../engine/lora/peft';
import type { EvalRow, EvalSummary } from '../events';
import { containsAnswer, exactMatch, tokenF1 } from '../metrics';
import { studentMessages, teacherMessages } from '../prompts';
import { runAdapterDir } from '../adapters';
import { writeJson } from '../runFolder';
import { chatIds, check, log, qaRows, type RunContext } from './context';

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export async function evaluate(run: RunContext): Promise<EvalSummary | undefined> {
  const held = qaRows(run, 'heldout');
  if (!held.length) {
    log(run, 'no held-out questions to evaluate on (too few questions; raise rounds or the held-out share)', 'warn');
    writeJson(run.paths.eval, { summary: null, rows: [], note: 'no held-out questions' });
    return undefined;
  }
  const dir = run.trained ? undefined : runAdapterDir(run);
  const adapter = run.trained ?? (dir ? readAdapter(dir, run.model.config) : undefined);
  const p = run.s.prompts;
  const rows: EvalRow[] = [];
  const max = Math.min(64, run.s.answerMaxTokens);
  for (let i = 0; i < held.length; i += 16) {
    check(run);
    const b = held.slice(i, i + 16);
    const closed = b.map((r) => chatIds(run, studentMessages(r.question, p)));
    const base = await generate(run.model, closed, { maxTokens: max, signal: run.signal });
    const teacher = await generate(
      run.model,
      b.map((r) => chatIds(run, teacherMessages(r.doc, r.question, p))),
      { maxTokens: max, signal: run.signal },
    );
    const student = adapter ? await generate(run.model, closed, { maxTokens: max, adapter, signal: run.signal }) : base;
    b.forEach((r, j) =>
      rows.push({
        question: r.question,
        source: r.source,
        reference: r.answer,
        base: base[j]!.text.trim(),
        teacher: teacher[j]!.text.trim(),
        student: student[j]!.text.trim(),
      }),
    );
    run.emit({ type: 'progress', phase: 'evaluate', done: rows.length, total: held.length });
  }
  const score = (k: 'base' | 'teacher' | 'student') => ({
    exact: mean(rows.map((r) => (exactMatch(r[k], r.reference) ? 1 : 0))),
    contains: mean(rows.map((r) => (containsAnswer(r[k], r.reference) ? 1 : 0))),
    f1: mean(rows.map((r) => tokenF1(r[k], r.reference))),
  });
  const summary: EvalSummary = {
    n: rows.length,
    base: score('base'),
    teacher: score('teacher'),
    student: score('student'),
  };
  writeJson(run.paths.eval, { summary, rows });
  run.emit({ type: 'eval', summary, rows });
  return summary;
}
