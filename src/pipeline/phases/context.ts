// The run context: everything a phase needs (the model, the request, the resolved settings, the
// run's state and paths, the event sink and the cancellation signal), and the few helpers that
// several phases share. Each phase is a function of one of these; the orchestrator (../distill.ts)
// makes it, runs the phases in order and publishes the result.
import type { CausalLM, AdapterWeights } from '../../engine/models/model';
import type { DistillSample } from '../../engine/train/trainer';
import type { Chunk } from '../ingest';
import type { DistillEvent } from '../events';
import { studentMessages, teacherMessages, type ChatMessage } from '../prompts';
import { readJsonl, type RunPaths, type RunState } from '../runFolder';
import type { DistillSettings } from '../settings';

export interface DistillRequest {
  /** Markdown files or folders (absolute, or relative to root). */
  inputs: string[];
  /** The workspace root: sources are recorded relative to it. */
  root: string;
  /** The .docdistill folder (default root/.docdistill). */
  workDir?: string;
  /** Adapter name (folder under adapters/). */
  name: string;
  settings?: Partial<DistillSettings>;
  /** Resume this run instead of starting one (default: the latest unfinished run of this adapter). */
  runId?: string;
  /** Skip evaluation. */
  skipEval?: boolean;
}

export class CancelledError extends Error {
  override name = 'CancelledError';
  constructor() {
    super('cancelled; the run resumes from its last saved step when started again');
  }
}

/**
 * general: asked without a passage (target: the base model's own answer); general-heldout: such
 * questions kept for validation; unanswerable: the teacher, reading the passage, said it does not
 * tell, and the question names nothing in the passage (dropped with answerableOnly); absent: about
 * the passage's subjects, and the teacher says the passage does not tell (trained: the student
 * learns where its knowledge ends); absent-answered: a cross question (see crossQuestions) that
 * the teacher answered with words the passage does not have (dropped: it may be an invented value;
 * one answered from the passage joins the passage's questions, train or held out).
 */
export interface QuestionRow {
  id: string;
  chunk: string;
  source: string;
  question: string;
  split: 'train' | 'heldout' | 'general' | 'general-heldout' | 'unanswerable' | 'absent' | 'absent-answered';
}

export const isGeneral = (split: QuestionRow['split']): boolean => split === 'general' || split === 'general-heldout';
export interface AnswerRow {
  id: string;
  answer: string;
}
export interface QaRow {
  chunk: string;
  source: string;
  doc: string;
  question: string;
  answer: string;
  general?: boolean;
}

export interface RunContext {
  readonly model: CausalLM;
  readonly req: DistillRequest;
  /** The resolved settings of this run. */
  readonly s: DistillSettings;
  readonly state: RunState;
  readonly paths: RunPaths;
  /** adapters/<name>/ in the work folder: where the run publishes. */
  readonly adapterDir: string;
  /** The model as recorded in run.json and docdistill.json (its resolved folder, or "memory"). */
  readonly modelId: string;
  readonly signal?: AbortSignal;
  emit(e: DistillEvent): void;
  /** Saves run.json. */
  save(): void;
  /**
   * The adapter the train phase made, when it ran in this process: evaluate and the caller use it
   * as it is, so that the adapter is written once (into the run folder) and read back only by a
   * later process (a resumed run, another worker).
   */
  trained?: AdapterWeights;
}

export function check(run: RunContext): void {
  if (run.signal?.aborted) throw new CancelledError();
}

export function log(run: RunContext, message: string, level: 'info' | 'warn' = 'info'): void {
  run.emit({ type: 'log', level, message });
}

/** The token ids of a chat prompt, ready for the assistant's reply. */
export function chatIds(run: RunContext, messages: ChatMessage[]): number[] {
  const tok = run.model.tokenizer;
  return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
}

function answerIds(run: RunContext, answer: string): number[] {
  const tok = run.model.tokenizer;
  return [...tok.encode(answer, { addSpecialTokens: false }), ...(tok.eosIds.length ? [tok.eosIds[0]!] : [])];
}

/** Below this many tokens a section is merged with its neighbours: 0 (never) with sectionPassages, else the default. */
export const chunkMinTokens = (s: Pick<DistillSettings, 'sectionPassages'>): number | undefined =>
  s.sectionPassages ? 0 : undefined;

/** The chunk size in tokens: the setting, or what the model's context leaves room for. */
export function chunkBudget(model: CausalLM, s: DistillSettings): number {
  if (s.chunkTokens) return s.chunkTokens;
  const ctx = model.config.maxPositionEmbeddings;
  return Math.max(64, Math.min(1024, ctx - s.answerMaxTokens - s.questionMaxTokens - 96));
}

export function chunks(run: RunContext): Chunk[] {
  return readJsonl<Chunk>(run.paths.chunks);
}

/** The chunks the adapter this run continues did not know yet (all of them for a new adapter). */
export function freshChunks(run: RunContext): Chunk[] {
  const known = new Set(run.state.knownHashes ?? []);
  return chunks(run).filter((c) => !known.has(c.hash));
}

/** Question/answer pairs of this run joined with their documents. */
export function qaRows(run: RunContext, split: QuestionRow['split'] | 'all'): QaRow[] {
  const chunkText = new Map(chunks(run).map((c) => [c.hash, c.text]));
  const ans = new Map(readJsonl<AnswerRow>(run.paths.answers).map((a) => [a.id, a.answer]));
  return readJsonl<QuestionRow>(run.paths.questions)
    .filter((q) => (split === 'all' || q.split === split) && (ans.get(q.id) ?? '').length > 0)
    .map((q) => ({
      chunk: q.chunk,
      source: q.source,
      doc: chunkText.get(q.chunk) ?? '',
      question: q.question,
      answer: ans.get(q.id)!,
      general: isGeneral(q.split),
    }));
}

/** The student's side of a sample: the question without the passage, then the answer. */
const studentIds = (run: RunContext, question: string, answer: number[]): number[] => [
  ...chatIds(run, studentMessages(question, run.s.prompts)),
  ...answer,
];

/** A training or validation sample: the teacher's and the student's prompt, each with the answer. */
export function sample(run: RunContext, r: QaRow, weight = 1): DistillSample {
  const answer = answerIds(run, r.answer);
  const student = studentIds(run, r.question, answer);
  const teacher = r.general ? student : [...chatIds(run, teacherMessages(r.doc, r.question, run.s.prompts)), ...answer];
  return { teacher, student, answerLength: answer.length, weight: r.general ? run.s.generalWeight * weight : weight };
}

/** `x` with the student asked `question` instead (same answer, same teacher side and cached teacher distribution). */
export function withQuestion(run: RunContext, x: DistillSample, question: string): DistillSample {
  return { ...x, student: studentIds(run, question, x.student.slice(x.student.length - x.answerLength)) };
}
