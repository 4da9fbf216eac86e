// The prompt-distillation pipeline: docs in, adapter out. Phases: ingest → questions → answers →
// train → evaluate, each writing its results atomically into the run folder so that an
// interrupted run resumes where it stopped and a cancelled one leaves nothing half-written.
// Progress goes out as events; the CLI and the worker both consume them.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { generate } from '../engine/generate';
import type { CausalLM, AdapterWeights } from '../engine/models/model';
import { readAdapter, writeAdapter } from '../engine/lora/peft';
import { SafetensorsFile, writeSafetensors } from '../engine/models/safetensors';
import { LoraTrainer, type DistillSample, type TrainerState } from '../engine/train/trainer';
import { chunkMarkdown, IngestError, type Chunk } from './ingest';
import { collectMarkdown, readDocument, recordedSources } from './docFiles';
import { containsAnswer, exactMatch, tokenF1 } from './metrics';
import { generalQuestionMessages, paraphraseMessages, questionMessages, saysDontKnow, studentMessages, teacherMessages, type ChatMessage } from './prompts';
import { chooseHeldOut, crossQuestions, dedupe, heldOutByAnswer, isGrounded, mentionsAny, nameKey, namesIn, parseQuestions, questionKey, wordSet } from './questions';
import { listDirs, newRunId, readJson, readJsonl, runPaths, safeName, writeAtomic, writeJson, writeJsonl } from './runFolder';
import { definedSettings, modelDefaults, resolveSettings, type DistillSettings } from './settings';

export type Phase = 'ingest' | 'questions' | 'answers' | 'train' | 'evaluate';
export const PHASES: readonly Phase[] = ['ingest', 'questions', 'answers', 'train', 'evaluate'];

export interface EvalRow {
  question: string;
  source: string;
  reference: string;
  base: string;
  teacher: string;
  student: string;
}

export interface EvalSummary {
  n: number;
  base: { exact: number; contains: number; f1: number };
  teacher: { exact: number; contains: number; f1: number };
  student: { exact: number; contains: number; f1: number };
}

export type DistillEvent =
  | { type: 'run'; runId: string; dir: string; resumed: boolean }
  | { type: 'phase'; phase: Phase; status: 'start' | 'done' | 'skipped'; detail?: string }
  | { type: 'progress'; phase: Phase; done: number; total: number; etaSec?: number }
  | { type: 'sample'; source: string; question: string; answer: string }
  | { type: 'train'; step: number; totalSteps: number; epoch: number; loss: number; lr: number; tokensPerSec: number; etaSec: number }
  | { type: 'validation'; epoch: number; step: number; loss: number }
  | { type: 'eval'; summary: EvalSummary; rows: EvalRow[] }
  | { type: 'log'; level: 'info' | 'warn'; message: string }
  | { type: 'done'; adapterDir: string; summary?: EvalSummary };

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

export interface DistillOptions {
  onEvent?: (e: DistillEvent) => void;
  signal?: AbortSignal;
}

export class CancelledError extends Error {
  override name = 'CancelledError';
  constructor() {
    super('cancelled; the run resumes from its last saved step when started again');
  }
}

interface RunState {
  id: string;
  name: string;
  model: string;
  created: string;
  inputs: string[];
  settings: DistillSettings;
  phases: Partial<Record<Phase, 'done'>>;
  /** Incremental: the adapter this run continues, and the chunk hashes it already knew. */
  baseAdapter?: string;
  knownHashes?: string[];
  finished?: string;
}

/**
 * general: asked without a passage (target: the base model's own answer); general-heldout: such
 * questions kept for validation; unanswerable: the teacher, reading the passage, said it does not
 * tell, and the question names nothing in the passage (dropped with answerableOnly); absent: about
 * the passage's subjects, and the teacher says the passage does not tell (trained: the student
 * learns where its knowledge ends); absent-answered: a cross question (see crossQuestions) that
 * the teacher answered from the passage after all (dropped: it may be an invented value).
 */
interface QuestionRow {
  id: string;
  chunk: string;
  source: string;
  question: string;
  split: 'train' | 'heldout' | 'general' | 'general-heldout' | 'unanswerable' | 'absent' | 'absent-answered';
}

const isGeneral = (split: QuestionRow['split']): boolean => split === 'general' || split === 'general-heldout';
interface AnswerRow { id: string; answer: string }
interface QaRow { chunk: string; source: string; doc: string; question: string; answer: string; general?: boolean }

export interface AdapterInfo {
  name: string;
  model: string;
  created: string;
  runId: string;
  chunks: { source: string; hash: string }[];
  /** The chunk size in tokens used, so a watcher can re-chunk the sources the same way. */
  chunkBudget: number;
  settings: DistillSettings;
  summary?: EvalSummary;
}

export { collectMarkdown } from './docFiles';

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

export class Distiller {
  private readonly workDir: string;
  private readonly emit: (e: DistillEvent) => void;
  private readonly signal?: AbortSignal;
  private readonly s: DistillSettings;
  private state!: RunState;
  private paths!: ReturnType<typeof runPaths>;

  constructor(
    readonly model: CausalLM,
    readonly req: DistillRequest,
    opts: DistillOptions = {},
  ) {
    this.workDir = req.workDir ?? join(req.root, '.docdistill');
    this.emit = opts.onEvent ?? (() => {});
    this.signal = opts.signal;
    // Undefined entries (options the user did not give) must not mask the model's recommendations.
    this.s = resolveSettings({ ...modelDefaults(model.dir), ...definedSettings(req.settings) });
    safeName(req.name, 'adapter name');
    if (!model.tokenizer.hasChatTemplate) {
      throw new Error(`the model at ${model.dir ?? '(memory)'} has no chat template; DocDistill needs an instruct/chat model (its tokenizer_config.json must have a "chat_template")`);
    }
  }

  get adapterDir(): string {
    return join(this.workDir, 'adapters', this.req.name);
  }

  private check(): void {
    if (this.signal?.aborted) throw new CancelledError();
  }

  private log(message: string, level: 'info' | 'warn' = 'info'): void {
    this.emit({ type: 'log', level, message });
  }

  private chatIds(messages: ChatMessage[]): number[] {
    const tok = this.model.tokenizer;
    return tok.encode(tok.applyChatTemplate(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
  }

  private answerIds(answer: string): number[] {
    const tok = this.model.tokenizer;
    return [...tok.encode(answer, { addSpecialTokens: false }), ...(tok.eosIds.length ? [tok.eosIds[0]!] : [])];
  }

  /** Starts a run, or resumes the given or latest unfinished run of this adapter. */
  private openRun(): boolean {
    const runs = listDirs(join(this.workDir, 'runs'));
    let id = this.req.runId;
    if (!id) {
      for (const r of runs.slice().reverse()) {
        const st = readJson<RunState>(runPaths(this.workDir, r).run);
        if (st && st.name === this.req.name && !st.finished && st.model === this.modelId()) {
          id = r;
          break;
        }
      }
    }
    if (id) {
      safeName(id, 'run id');
      const st = readJson<RunState>(runPaths(this.workDir, id).run);
      if (!st) throw new Error(`no run ${id} in ${join(this.workDir, 'runs')}`);
      this.state = st;
      this.paths = runPaths(this.workDir, id);
      return true;
    }
    id = newRunId();
    this.paths = runPaths(this.workDir, id);
    const prev = this.previousAdapter();
    this.state = {
      id, name: this.req.name, model: this.modelId(), created: new Date().toISOString(), inputs: this.req.inputs, settings: this.s, phases: {},
      baseAdapter: prev ? this.adapterDir : undefined, knownHashes: prev?.chunks.map((c) => c.hash),
    };
    this.save();
    return false;
  }

  private modelId(): string {
    return this.model.dir ? resolve(this.model.dir) : 'memory';
  }

  private previousAdapter(): AdapterInfo | undefined {
    const info = readJson<AdapterInfo>(join(this.adapterDir, 'docdistill.json'));
    if (!info) return undefined;
    if (info.model !== this.modelId()) {
      this.log(`adapter ${this.req.name} was trained on another model (${info.model}); starting it afresh`, 'warn');
      return undefined;
    }
    return info;
  }

  private save(): void {
    writeJson(this.paths.run, this.state);
  }

  private async phase(p: Phase, fn: () => Promise<void>): Promise<void> {
    if (this.state.phases[p] === 'done') {
      this.emit({ type: 'phase', phase: p, status: 'skipped', detail: 'already done in this run folder' });
      return;
    }
    this.check();
    this.emit({ type: 'phase', phase: p, status: 'start' });
    await fn();
    this.state.phases[p] = 'done';
    this.save();
    this.emit({ type: 'phase', phase: p, status: 'done' });
  }

  async run(): Promise<{ runId: string; adapterDir: string; summary?: EvalSummary }> {
    const resumed = this.openRun();
    this.emit({ type: 'run', runId: this.state.id, dir: this.paths.dir, resumed });
    let summary: EvalSummary | undefined;
    await this.phase('ingest', () => this.ingest());
    await this.phase('questions', () => this.questions());
    await this.phase('answers', () => this.answers());
    await this.phase('train', () => this.train());
    if (!this.req.skipEval) {
      await this.phase('evaluate', async () => {
        summary = await this.evaluate();
      });
      summary ??= readJson<{ summary: EvalSummary | null }>(this.paths.eval)?.summary ?? undefined;
    }
    this.publish(summary);
    this.state.finished = new Date().toISOString();
    this.save();
    this.emit({ type: 'done', adapterDir: this.adapterDir, summary });
    return { runId: this.state.id, adapterDir: this.adapterDir, summary };
  }

  /** Evaluates an existing run (its held-out questions, its adapter) again and rewrites eval.json. */
  async evaluateOnly(): Promise<EvalSummary | undefined> {
    if (!this.req.runId) throw new Error('evaluateOnly needs a run id');
    this.openRun();
    if (this.state.phases.answers !== 'done') throw new Error(`run ${this.state.id} has no answers yet; distil it to the end first`);
    return this.evaluate();
  }

  // ── ingest ────────────────────────────────────────────────────────────────────────────────
  private chunkBudget(): number {
    if (this.s.chunkTokens) return this.s.chunkTokens;
    const ctx = this.model.config.maxPositionEmbeddings;
    return Math.max(64, Math.min(1024, ctx - this.s.answerMaxTokens - this.s.questionMaxTokens - 96));
  }

  private async ingest(): Promise<void> {
    // Distilling into an existing adapter adds to what it knows: its earlier sources (those that
    // still exist) are read again, so unchanged passages are recognised and replayed.
    const earlier = this.state.baseAdapter ? recordedSources(readJson<AdapterInfo>(join(this.state.baseAdapter, 'docdistill.json'))?.chunks, this.req.root, (m) => this.log(m, 'warn'), `adapter ${this.req.name}`) : [];
    const files = collectMarkdown([...this.req.inputs, ...earlier], this.req.root, (m) => this.log(m, 'warn'));
    if (!files.length) throw new IngestError(`no Markdown files in ${this.req.inputs.join(', ')}`);
    const tok = this.model.tokenizer;
    const chunks: Chunk[] = [];
    const budget = this.chunkBudget();
    for (const f of files) {
      this.check();
      const source = relative(this.req.root, f).split('\\').join('/');
      try {
        const md = await readDocument(this.req.root, f, () => this.check());
        const cs = chunkMarkdown(source, md, { maxTokens: budget, countTokens: (t) => tok.encode(t, { addSpecialTokens: false }).length });
        if (!cs.length) this.log(`${source}: empty, nothing to learn`, 'warn');
        for (const c of cs) if (c.tokens > budget) this.log(`${source}: a passage of ${c.tokens} tokens could not be split below ${budget} (one very long word or line); it is kept whole`, 'warn');
        chunks.push(...cs);
      } catch (e) {
        if (e instanceof IngestError) this.log(`${e.message} — skipped`, 'warn');
        else throw e;
      }
      this.emit({ type: 'progress', phase: 'ingest', done: chunks.length, total: chunks.length });
    }
    if (!chunks.length) throw new IngestError('no usable text in the given documents');
    const known = new Set(this.state.knownHashes ?? []);
    const fresh = chunks.filter((c) => !known.has(c.hash));
    if (known.size) this.log(`${chunks.length} chunks, ${fresh.length} new or changed since adapter ${this.req.name} was trained`);
    else this.log(`${chunks.length} chunks from ${files.length} file(s)`);
    writeJsonl(this.paths.chunks, chunks);
  }

  private chunks(): Chunk[] {
    return readJsonl<Chunk>(this.paths.chunks);
  }

  private freshChunks(): Chunk[] {
    const known = new Set(this.state.knownHashes ?? []);
    return this.chunks().filter((c) => !known.has(c.hash));
  }

  // ── questions ─────────────────────────────────────────────────────────────────────────────
  private async questions(): Promise<void> {
    const s = this.s;
    const rows = readJsonl<QuestionRow>(this.paths.questions);
    const doneChunks = new Set(rows.map((r) => r.chunk));
    const todo = this.freshChunks().filter((c) => !doneChunks.has(c.hash));
    const all = this.freshChunks().length;
    const seen = new Set(rows.map((r) => questionKey(r.question)));
    const batch = 8;
    const per = s.rounds * s.questionsPerRound;
    let seed = s.seed * 1000 + rows.length;
    let ungrounded = 0;
    let aboutDocs = 0;
    const t0 = performance.now();
    for (let i = 0; i < todo.length; i += batch) {
      this.check();
      const cs = todo.slice(i, i + batch);
      const prompts = cs.flatMap((c) => Array.from({ length: per }, () => this.chatIds(questionMessages(c.text, s.prompts))));
      const outs: string[] = [];
      for (let k = 0; k < prompts.length; k += 16) {
        this.check();
        const res = await generate(this.model, prompts.slice(k, k + 16), { maxTokens: s.questionMaxTokens, temperature: s.questionTemperature, topK: s.questionTopK, seed: seed++, signal: this.signal });
        outs.push(...res.map((r) => r.text));
      }
      this.check();
      cs.forEach((c, j) => {
        const parsed = outs.slice(j * per, (j + 1) * per).flatMap((t) => parseQuestions(t));
        const words = wordSet(c.text);
        const grounded = s.groundQuestions ? parsed.filter((q) => isGrounded(q, words)) : parsed;
        ungrounded += parsed.length - grounded.length;
        const qs = dedupe(grounded, seen);
        qs.forEach((q, n) => rows.push({ id: `${c.hash.slice(0, 12)}-${n}`, chunk: c.hash, source: c.source, question: q, split: 'train' }));  // held out later, once answers are known
        if (!qs.length) this.log(`${c.source}: the model wrote no usable question for one passage`, 'warn');
      });
      writeJsonl(this.paths.questions, rows);
      const done = all - todo.length + Math.min(todo.length, i + batch);
      const rate = (performance.now() - t0) / 1000 / Math.min(todo.length, i + batch);
      this.emit({ type: 'progress', phase: 'questions', done, total: all, etaSec: rate * (todo.length - i - batch) });
    }
    // The paraphrase step: the model says each of its questions in other words, so that a fact is
    // trained under more than the phrasing the question writer happened to pick.
    if (s.paraphrases > 0 && !rows.some((r) => /-p\d+$/.test(r.id))) {
      const own = rows.filter((r) => r.split === 'train');
      const words = new Map(this.freshChunks().map((c) => [c.hash, wordSet(c.text)]));
      let made = 0;
      for (let i = 0; i < own.length; i += 16) {
        this.check();
        const b = own.slice(i, i + 16);
        const prompts = b.flatMap((r) => Array.from({ length: s.paraphrases }, () => this.chatIds(paraphraseMessages(r.question, s.prompts))));
        const res = await generate(this.model, prompts, { maxTokens: s.questionMaxTokens, temperature: s.questionTemperature, topK: s.questionTopK, seed: seed++, signal: this.signal });
        b.forEach((r, j) => {
          const parsed = res.slice(j * s.paraphrases, (j + 1) * s.paraphrases).flatMap((x) => parseQuestions(x.text));
          // Same subject as the original, and nothing the passage does not mention.
          const same = parsed.filter((q) => isGrounded(q, words.get(r.chunk)!) && nameKey(q) === nameKey(r.question));
          for (const q of dedupe(same, seen)) rows.push({ id: `${r.chunk.slice(0, 12)}-p${made++}`, chunk: r.chunk, source: r.source, question: q, split: 'train' });
        });
        this.emit({ type: 'progress', phase: 'questions', done: Math.min(own.length, i + 16), total: own.length });
      }
      writeJsonl(this.paths.questions, rows);
      this.log(`paraphrases: ${made} new phrasings of ${own.length} questions`);
    }
    // Questions about the passages' subjects that the passages may not answer (kept only where the
    // teacher says so; see splitByAnswer). Made once, from the questions of this run's passages.
    if (s.absentShare > 0 && !rows.some((r) => r.split === 'absent' || r.split === 'absent-answered')) {
      const text = new Map(this.freshChunks().map((c) => [c.hash, c]));
      const passages = [...text.values()].map((c) => ({ id: c.hash, text: c.text, questions: rows.filter((r) => r.chunk === c.hash && r.split === 'train').map((r) => r.question) }));
      const cross = crossQuestions(passages, s.absentShare, s.seed, new Set(rows.map((r) => questionKey(r.question))));
      cross.forEach((x, n) => rows.push({ id: `${x.id.slice(0, 12)}-x${n}`, chunk: x.id, source: text.get(x.id)!.source, question: x.question, split: 'absent' }));
      writeJsonl(this.paths.questions, rows);
    }
    // The guard against over-generalising: questions the docs do not answer, written by the model itself.
    // Per question about the docs (the held-out ones are chosen later, after the answers).
    // With a pool (generalPool > 1), more are written than one epoch trains on; see train().
    const nDocs = rows.filter((r) => r.split === 'train').length;
    const want = Math.round(s.generalShare * s.generalPool * nDocs) - rows.filter((r) => isGeneral(r.split)).length;
    if (want > 0 && s.generalShare > 0) {
      const docKeys = new Set(rows.map((r) => questionKey(r.question)));
      const docWords = wordSet(this.chunks().map((c) => c.text).join('\n'));
      let got = 0;
      // One general question per name: what the guard teaches is "these names I do not know", and
      // a model's own questions keep coming back to a few favourite names.
      const named = new Set(rows.filter((r) => isGeneral(r.split)).map((r) => nameKey(r.question)).filter(Boolean));
      for (let tries = 0, maxTries = 8 + Math.ceil(want / 64); got < want && tries < maxTries; tries++) {
        this.check();
        const n = Math.min(64, Math.ceil((want - got) * 1.5));
        const res = await generate(this.model, Array.from({ length: n }, () => this.chatIds(generalQuestionMessages(s.prompts))), { maxTokens: s.questionMaxTokens, temperature: s.generalTemperature, topK: s.generalTopK, seed: seed++, signal: this.signal });
        // A general question must not be about the docs: its target is the base model's answer.
        const parsed = res.flatMap((r) => parseQuestions(r.text));
        const other = s.groundQuestions ? parsed.filter((q) => !mentionsAny(q, docWords)) : parsed;
        aboutDocs += parsed.length - other.length;
        for (const q of dedupe(other, docKeys)) {
          if (got >= want) break;
          const k = nameKey(q);
          if (k && named.has(k)) continue;
          if (k) named.add(k);
          rows.push({ id: `general-${rows.length}`, chunk: '', source: '', question: q, split: 'general' });
          got++;
        }
      }
      // Some are held out too: validation then also measures how far the student drifts from the
      // base model on questions the docs do not answer, and the best epoch is chosen for both.
      const general = rows.filter((r) => isGeneral(r.split));
      // As many as one epoch's worth of general questions would give: a larger pool is for training.
      const held = chooseHeldOut(general.map((r) => r.question), s.heldOutShare / s.generalPool, s.seed);
      general.forEach((r, i) => (r.split = held.has(i) ? 'general-heldout' : 'general'));
      writeJsonl(this.paths.questions, rows);
    }
    const count = (...k: QuestionRow['split'][]) => rows.filter((r) => k.includes(r.split)).length;
    const dropped = [ungrounded && `${ungrounded} naming something the passage does not mention`, aboutDocs && `${aboutDocs} general ones about the docs`].filter(Boolean);
    this.log(`questions: ${count('train', 'heldout')} about the docs, ${count('absent')} about their subjects that they may not answer, ${count('general', 'general-heldout')} general (${count('general-heldout')} of them held out)${dropped.length ? `; dropped ${dropped.join(' and ')}` : ''}`);
    if (!count('train') && !this.state.knownHashes?.length) throw new Error('the model wrote no usable questions; try a larger model or more rounds');
  }

  // ── answers ───────────────────────────────────────────────────────────────────────────────
  private async answers(): Promise<void> {
    const s = this.s;
    const qs = readJsonl<QuestionRow>(this.paths.questions);
    const chunkText = new Map(this.chunks().map((c) => [c.hash, c.text]));
    const rows = readJsonl<AnswerRow>(this.paths.answers);
    const done = new Set(rows.map((r) => r.id));
    const todo = qs.filter((q) => !done.has(q.id));
    const t0 = performance.now();
    let seed = s.seed * 7777 + rows.length;
    for (let i = 0; i < todo.length; i += 16) {
      this.check();
      const b = todo.slice(i, i + 16);
      const prompts = b.map((q) => this.chatIds(isGeneral(q.split) ? studentMessages(q.question, s.prompts) : teacherMessages(chunkText.get(q.chunk) ?? '', q.question, s.prompts)));
      const res = await generate(this.model, prompts, { maxTokens: s.answerMaxTokens, temperature: s.answerTemperature, topK: s.answerTopK, seed: seed++, signal: this.signal });
      this.check();
      res.forEach((r, j) => {
        rows.push({ id: b[j]!.id, answer: r.text.trim() });
        if (b[j]!.split === 'train' && (i + j) % 5 === 0) this.emit({ type: 'sample', source: b[j]!.source, question: b[j]!.question, answer: r.text.trim() });
      });
      writeJsonl(this.paths.answers, rows);
      const n = Math.min(todo.length, i + 16);
      this.emit({ type: 'progress', phase: 'answers', done: qs.length - todo.length + n, total: qs.length, etaSec: ((performance.now() - t0) / 1000 / n) * (todo.length - n) });
    }
    this.splitByAnswer(qs, rows);
  }

  /** The final held-out split of the questions about the docs, per passage (see heldOutByAnswer). */
  private splitByAnswer(qs: QuestionRow[], answers: AnswerRow[]): void {
    const ans = new Map(answers.map((a) => [a.id, a.answer]));
    const byChunk = new Map<string, QuestionRow[]>();
    const chunkWords = new Map(this.chunks().map((c) => [c.hash, c.text]));
    let unanswerable = 0, abstained = 0, answeredCross = 0;
    for (const q of qs) {
      const a = ans.get(q.id);
      if (isGeneral(q.split) || !a) continue;
      if (q.split === 'absent' || q.split === 'absent-answered') {
        q.split = saysDontKnow(a) ? 'absent' : 'absent-answered';
        if (q.split === 'absent') abstained++;
        else answeredCross++;
        continue;
      }
      if (saysDontKnow(a)) {
        // About the passage's subjects: "the document does not say" is the answer to learn.
        const words = wordSet(chunkWords.get(q.chunk) ?? '');
        if (namesIn(q.question).some((n) => words.has(n.toLowerCase()))) {
          q.split = 'absent';
          abstained++;
          continue;
        }
        if (this.s.answerableOnly) {
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
      const h = heldOutByAnswer(group.map((q) => ({ question: q.question, answer: ans.get(q.id)! })), this.s.heldOutShare, this.s.seed, (a, b) => tokenF1(a, b) >= 0.8);
      group.forEach((q, i) => (q.split = h.has(i) ? 'heldout' : 'train'));
      held += h.size;
    }
    writeJsonl(this.paths.questions, qs);
    const n = [...byChunk.values()].reduce((a, g) => a + g.length, 0);
    this.log(`held out ${held} of ${n} questions about the docs, each with an answer that a training question also gives${unanswerable ? `; dropped ${unanswerable} that name nothing in their passage, which the teacher says it does not answer` : ''}`);
    if (abstained || answeredCross) this.log(`about the passages' subjects, the teacher says ${abstained} are not answered by the passage (trained so), and answered ${answeredCross} cross questions after all (dropped)`);
  }

  /** Question/answer pairs of this run joined with their documents. */
  private qaRows(split: QuestionRow['split'] | 'all'): QaRow[] {
    const chunkText = new Map(this.chunks().map((c) => [c.hash, c.text]));
    const ans = new Map(readJsonl<AnswerRow>(this.paths.answers).map((a) => [a.id, a.answer]));
    return readJsonl<QuestionRow>(this.paths.questions)
      .filter((q) => (split === 'all' || q.split === split) && (ans.get(q.id) ?? '').length > 0)
      .map((q) => ({ chunk: q.chunk, source: q.source, doc: chunkText.get(q.chunk) ?? '', question: q.question, answer: ans.get(q.id)!, general: isGeneral(q.split) }));
  }

  private sample(r: QaRow, weight = 1): DistillSample {
    const p = this.s.prompts;
    const answer = this.answerIds(r.answer);
    const student = [...this.chatIds(studentMessages(r.question, p)), ...answer];
    const teacher = r.general ? student : [...this.chatIds(teacherMessages(r.doc, r.question, p)), ...answer];
    return { teacher, student, answerLength: answer.length, weight: r.general ? this.s.generalWeight * weight : weight };
  }

  // ── train ─────────────────────────────────────────────────────────────────────────────────
  private async train(): Promise<void> {
    const s = this.s;
    const current = new Set(this.chunks().map((c) => c.hash));
    const fresh = [...this.qaRows('train'), ...this.qaRows('absent')];
    const general = this.qaRows('general');
    // Incremental: replay QA pairs of chunks that are unchanged, so the adapter keeps them.
    let replay: QaRow[] = [];
    if (this.state.baseAdapter) {
      const old = readJsonl<QaRow>(join(this.state.baseAdapter, 'docdistill-qa.jsonl')).filter((r) => r.general || current.has(r.chunk));
      const rng = mulberry(s.seed + 17);
      replay = old.filter((r) => !r.general).sort(() => rng() - 0.5).slice(0, Math.max(Math.round(s.replayShare * fresh.length), Math.min(old.length, 8)));
      this.log(`incremental: ${fresh.length} new QA pairs, ${replay.length} replayed from unchanged chunks`);
    }
    // The general questions: all of them in every epoch, or with a pool (generalPool > 1) the next
    // slice of it in each epoch, so that over the run the student sees every one.
    const docSamples = [...fresh, ...replay].map((r) => this.sample(r));
    const pool = general.map((r) => this.sample(r));
    const perEpoch = Math.min(pool.length, Math.ceil(pool.length / s.generalPool));
    const poolOrder = shuffled(pool.length, s.seed * 31 + 5);
    const epochSamples = (epoch: number): DistillSample[] =>
      perEpoch === pool.length ? [...docSamples, ...pool] : [...docSamples, ...Array.from({ length: perEpoch }, (_, i) => pool[poolOrder[(epoch * perEpoch + i) % pool.length]!]!)];
    if (!docSamples.length && !pool.length) {
      this.log('nothing new to learn: the adapter is up to date');
      return;
    }
    // Validation: held-out questions about the docs (the student should match the teacher) and
    // held-out general ones (it should still match the base model), weighted as in training.
    const valDocs = this.qaRows('heldout').map((r) => this.sample(r));
    const valGeneral = this.qaRows('general-heldout').map((r) => this.sample(r));
    const stepsPerEpoch = Math.ceil((docSamples.length + perEpoch) / (s.batchSize * s.gradAccum));
    const totalSteps = stepsPerEpoch * s.epochs;
    const lora = { rank: s.loraRank, alpha: s.loraAlpha, targets: s.loraTargets };
    const trainerState = this.loadCheckpoint();
    let start: TrainerState | undefined = trainerState?.state;
    if (!start && this.state.baseAdapter) {
      // Continue from the existing adapter (fresh optimizer state).
      const prev = readAdapter(this.state.baseAdapter, this.model.config);
      const same = prev.spec.rank === lora.rank && prev.spec.alpha === lora.alpha && prev.spec.targets.join() === lora.targets.join();
      if (same) start = { step: 0, params: prev.tensors, m: new Map(), v: new Map(), rng: s.seed };
      else this.log('the existing adapter has other LoRA settings; training a new one', 'warn');
    }
    const trainer = new LoraTrainer(this.model, {
      loss: s.loss, lora, dropout: s.loraDropout, temperature: s.distillTemperature, lr: s.learningRate, weightDecay: s.weightDecay,
      beta1: 0.9, beta2: 0.999, eps: 1e-8, schedule: s.schedule, warmupSteps: Math.round(s.warmupRatio * totalSteps), totalSteps,
      microBatch: s.batchSize, gradAccum: s.gradAccum, maxGradNorm: s.maxGradNorm, seed: s.seed,
    }, start ? { ...start, step: trainerState ? start.step : 0 } : undefined);
    const metrics: Record<string, unknown>[] = trainerState?.metrics ?? [];
    let best = trainerState?.best ?? { loss: Infinity, epoch: -1, params: undefined as Map<string, Float32Array> | undefined };
    let bad = trainerState?.bad ?? 0;
    const stepsDone = trainer.step;
    const t0 = performance.now();
    let tokens = 0;
    const firstEpoch = Math.floor(stepsDone / stepsPerEpoch);
    for (let epoch = firstEpoch; epoch < s.epochs; epoch++) {
      const samples = epochSamples(epoch);
      const order = shuffled(samples.length, s.seed * 1009 + epoch);
      const from = epoch === firstEpoch ? stepsDone - epoch * stepsPerEpoch : 0;
      for (let k = from; k < stepsPerEpoch; k++) {
        if (this.signal?.aborted) {
          // Stop at a step boundary with everything saved: the next run continues from this step.
          if (trainer.step > stepsDone) {
            await trainer.sync();
            this.saveCheckpoint(trainer, metrics, best, bad);
          }
          throw new CancelledError();
        }
        const per = s.batchSize * s.gradAccum;
        const batch = order.slice(k * per, (k + 1) * per).map((i) => samples[i]!);
        const r = await trainer.trainStep(batch);
        tokens += r.tokens;
        const secs = (performance.now() - t0) / 1000;
        const done = r.step - stepsDone;
        const ev = { type: 'train' as const, step: r.step, totalSteps, epoch: epoch + (k + 1) / stepsPerEpoch, loss: r.loss, lr: r.lr, tokensPerSec: tokens / secs, etaSec: (secs / done) * (totalSteps - r.step) };
        metrics.push({ step: r.step, epoch: ev.epoch, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSec: ev.tokensPerSec });
        this.emit(ev);
        if (r.step % 25 === 0 && k < stepsPerEpoch - 1) {
          await trainer.sync();
          this.saveCheckpoint(trainer, metrics, best, bad);
        }
      }
      await trainer.sync(); // the adapter from device memory (GPU providers), for the best copy and the checkpoint
      // Validation KL on held-out questions; keep the best adapter; stop when it stops improving.
      if (valDocs.length || valGeneral.length) {
        this.check();
        const vDocs = valDocs.length ? await trainer.evalLoss(valDocs) : undefined;
        const vGeneral = valGeneral.length ? await trainer.evalLoss(valGeneral) : undefined;
        const wDocs = valDocs.reduce((a, x) => a + (x.weight ?? 1), 0);
        const wGeneral = valGeneral.reduce((a, x) => a + (x.weight ?? 1), 0);
        const v = ((vDocs ?? 0) * wDocs + (vGeneral ?? 0) * wGeneral) / (wDocs + wGeneral || 1);
        metrics.push({ step: trainer.step, epoch: epoch + 1, validationLoss: v, validationDocs: vDocs, validationGeneral: vGeneral });
        this.emit({ type: 'validation', epoch: epoch + 1, step: trainer.step, loss: v });
        if (v < best.loss - 1e-6) {
          best = { loss: v, epoch: epoch + 1, params: new Map([...trainer.params].map(([k2, t]) => [k2, t.slice()])) };
          bad = 0;
        } else bad++;
      }
      this.saveCheckpoint(trainer, metrics, best, bad);
      if (s.earlyStopPatience && bad >= s.earlyStopPatience) {
        this.log(`early stop after epoch ${epoch + 1}: validation loss has not improved for ${bad} epochs (best ${best.loss.toFixed(4)} at epoch ${best.epoch})`);
        break;
      }
    }
    const final: AdapterWeights = { spec: lora, tensors: best.params ?? trainer.params };
    // The trained adapter goes into the run folder first; publish() moves it into place at the end.
    writeAdapter(join(this.paths.dir, 'adapter'), this.model.config, final, { baseModel: this.modelId(), dropout: s.loraDropout });
    writeJsonl(join(this.paths.dir, 'adapter-qa.jsonl'), [...fresh, ...replay.filter((r) => current.has(r.chunk)), ...general]);
  }

  private saveCheckpoint(t: LoraTrainer, metrics: Record<string, unknown>[], best: { loss: number; epoch: number; params?: Map<string, Float32Array> }, bad: number): void {
    const dir = this.paths.checkpoint;
    const tmp = `${dir}.tmp`;
    rmSync(tmp, { recursive: true, force: true });
    const st = t.state();
    const tensors = [...st.params].flatMap(([k, p]) => [
      { name: `p.${k}`, dtype: 'F32' as const, shape: [p.length], data: p },
      { name: `m.${k}`, dtype: 'F32' as const, shape: [p.length], data: st.m.get(k) ?? new Float32Array(p.length) },
      { name: `v.${k}`, dtype: 'F32' as const, shape: [p.length], data: st.v.get(k) ?? new Float32Array(p.length) },
      ...(best.params ? [{ name: `best.${k}`, dtype: 'F32' as const, shape: [p.length], data: best.params.get(k)! }] : []),
    ]);
    mkdirSync(tmp, { recursive: true });
    writeSafetensors(join(tmp, 'state.safetensors'), tensors);
    writeJson(join(tmp, 'trainer.json'), { step: st.step, rng: st.rng, best: { loss: best.loss, epoch: best.epoch, has: !!best.params }, bad });
    writeJsonl(this.paths.metrics, metrics);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  }

  private loadCheckpoint(): { state: TrainerState; metrics: Record<string, unknown>[]; best: { loss: number; epoch: number; params?: Map<string, Float32Array> }; bad: number } | undefined {
    const dir = this.paths.checkpoint;
    const meta = readJson<{ step: number; rng: number; best: { loss: number | null; epoch: number; has: boolean }; bad: number }>(join(dir, 'trainer.json'));
    if (!meta) return undefined;
    const f = SafetensorsFile.open(join(dir, 'state.safetensors'));
    try {
      const params = new Map<string, Float32Array>();
      const m = new Map<string, Float32Array>();
      const v = new Map<string, Float32Array>();
      const bestP = new Map<string, Float32Array>();
      for (const n of f.names()) {
        const [kind, ...rest] = n.split('.');
        const key = rest.join('.');
        const data = f.float32(n);
        if (kind === 'p') params.set(key, data);
        else if (kind === 'm') m.set(key, data);
        else if (kind === 'v') v.set(key, data);
        else if (kind === 'best') bestP.set(key, data);
      }
      this.log(`resuming training at step ${meta.step}`);
      return {
        state: { step: meta.step, params, m, v, rng: meta.rng },
        metrics: readJsonl<Record<string, unknown>>(this.paths.metrics),
        best: { loss: meta.best.loss ?? Infinity, epoch: meta.best.epoch, params: meta.best.has ? bestP : undefined },
        bad: meta.bad,
      };
    } finally {
      f.close();
    }
  }

  // ── evaluate ──────────────────────────────────────────────────────────────────────────────
  private async evaluate(): Promise<EvalSummary | undefined> {
    const held = this.qaRows('heldout');
    if (!held.length) {
      this.log('no held-out questions to evaluate on (too few questions; raise rounds or the held-out share)', 'warn');
      writeJson(this.paths.eval, { summary: null, rows: [], note: 'no held-out questions' });
      return undefined;
    }
    const adapterDir = join(this.paths.dir, 'adapter');
    const adapter = existsSync(adapterDir) ? readAdapter(adapterDir, this.model.config) : this.state.baseAdapter ? readAdapter(this.state.baseAdapter, this.model.config) : undefined;
    const p = this.s.prompts;
    const rows: EvalRow[] = [];
    const max = Math.min(64, this.s.answerMaxTokens);
    for (let i = 0; i < held.length; i += 16) {
      this.check();
      const b = held.slice(i, i + 16);
      const closed = b.map((r) => this.chatIds(studentMessages(r.question, p)));
      const base = await generate(this.model, closed, { maxTokens: max, signal: this.signal });
      const teacher = await generate(this.model, b.map((r) => this.chatIds(teacherMessages(r.doc, r.question, p))), { maxTokens: max, signal: this.signal });
      const student = adapter ? await generate(this.model, closed, { maxTokens: max, adapter, signal: this.signal }) : base;
      b.forEach((r, j) => rows.push({ question: r.question, source: r.source, reference: r.answer, base: base[j]!.text.trim(), teacher: teacher[j]!.text.trim(), student: student[j]!.text.trim() }));
      this.emit({ type: 'progress', phase: 'evaluate', done: rows.length, total: held.length });
    }
    const score = (k: 'base' | 'teacher' | 'student') => ({
      exact: mean(rows.map((r) => (exactMatch(r[k], r.reference) ? 1 : 0))),
      contains: mean(rows.map((r) => (containsAnswer(r[k], r.reference) ? 1 : 0))),
      f1: mean(rows.map((r) => tokenF1(r[k], r.reference))),
    });
    const summary: EvalSummary = { n: rows.length, base: score('base'), teacher: score('teacher'), student: score('student') };
    writeJson(this.paths.eval, { summary, rows });
    this.emit({ type: 'eval', summary, rows });
    return summary;
  }

  /** Moves the trained adapter into adapters/<name>/ with the chunk hashes it knows. */
  private publish(summary?: EvalSummary): void {
    const trained = join(this.paths.dir, 'adapter');
    if (!existsSync(trained)) return;
    const adapter = readAdapter(trained, this.model.config);
    const info: AdapterInfo = {
      name: this.req.name, model: this.modelId(), created: new Date().toISOString(), runId: this.state.id,
      chunks: this.chunks().map((c) => ({ source: c.source, hash: c.hash })), chunkBudget: this.chunkBudget(), settings: this.s, summary,
    };
    const qa = readJsonl<QaRow>(join(this.paths.dir, 'adapter-qa.jsonl'));
    writeAdapter(this.adapterDir, this.model.config, adapter, { baseModel: this.modelId(), dropout: this.s.loraDropout }, { 'docdistill.json': info });
    writeJsonl(join(this.adapterDir, 'docdistill-qa.jsonl'), qa);
    writeAtomic(join(this.paths.dir, 'published'), this.adapterDir + '\n');
  }
}

function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(n: number, seed: number): number[] {
  const r = mulberry(seed);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

/** Adapters in a .docdistill folder, with what they know. */
export function listAdapters(workDir: string): AdapterInfo[] {
  return listDirs(join(workDir, 'adapters'))
    .map((n) => readJson<AdapterInfo>(join(workDir, 'adapters', n, 'docdistill.json')))
    .filter((x): x is AdapterInfo => !!x);
}

/** Which adapters are stale for the current chunks of their sources (hash sets differ). */
export function staleness(info: AdapterInfo, currentChunks: { source: string; hash: string }[]): { stale: boolean; changed: number; removed: number } {
  const known = new Set(info.chunks.map((c) => c.hash));
  const sources = new Set(info.chunks.map((c) => c.source));
  const cur = currentChunks.filter((c) => sources.has(c.source));
  const curSet = new Set(cur.map((c) => c.hash));
  const changed = cur.filter((c) => !known.has(c.hash)).length;
  const removed = info.chunks.filter((c) => !curSet.has(c.hash)).length;
  return { stale: changed > 0 || removed > 0, changed, removed };
}
