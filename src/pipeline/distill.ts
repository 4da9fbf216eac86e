// The prompt-distillation pipeline: docs in, adapter out. Phases: ingest → questions → answers →
// train → evaluate (one module each, in phases/, each a function of the run context), each writing
// its results atomically into the run folder so that an interrupted run resumes where it stopped
// and a cancelled one leaves nothing half-written; then the adapter is published (adapters.ts).
// Progress goes out as events (events.ts); the CLI and the worker both consume them.
import { join, resolve } from 'node:path';
import type { AdapterWeights, CausalLM } from '../engine/models/model';
import type { DistillEvent, EvalSummary, Phase } from './events';
import { publishAdapter, readAdapterInfo, type AdapterInfo } from './adapters';
import {
  latestUnfinishedRun,
  newRunId,
  readJson,
  readJsonl,
  runPaths,
  safeName,
  writeJson,
  type RunPaths,
  type RunState,
} from './runFolder';
import { definedSettings, modelDefaults, resolveSettings, type DistillSettings } from './settings';
import {
  check,
  chunkBudget,
  chunkMinTokens,
  freshChunks,
  log,
  type QuestionRow,
  type DistillRequest,
  type RunContext,
} from './phases/context';
import { ingest } from './phases/ingest';
import { questions } from './phases/questions';
import { answers } from './phases/answers';
import { train } from './phases/train';
import { evaluate } from './phases/evaluate';
import {
  chunkDocs,
  estimateRun,
  formatDuration,
  refineEstimate as refined,
  WORK_PHASES,
  type Estimate,
  type WorkPhase,
} from './estimate';

export { PHASES, type Phase, type EvalRow, type EvalScores, type EvalSummary, type DistillEvent } from './events';
export { CancelledError, type DistillRequest } from './phases/context';
export { describeEstimate, formatDuration, type Estimate } from './estimate';
export { listAdapters, staleness, type AdapterInfo } from './adapters';
export { collectMarkdown } from './docFiles';

export interface DistillOptions {
  onEvent?: (e: DistillEvent) => void;
  signal?: AbortSignal;
}

export class Distiller {
  private readonly workDir: string;
  private readonly emit: (e: DistillEvent) => void;
  private readonly signal?: AbortSignal;
  private readonly s: DistillSettings;
  /** Wall time of each phase run in this call, for the estimate-vs-actual line at the end. */
  private readonly took: Partial<Record<Phase, number>> = {};
  private estimate?: Estimate;

  /** The model with the base quantization the settings ask for (teacher and student share it). */
  readonly model: CausalLM;

  constructor(
    model: CausalLM,
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
      throw new Error(
        `the model at ${model.dir ?? '(memory)'} has no chat template; DocDistill needs an instruct/chat model (its tokenizer_config.json must have a "chat_template")`,
      );
    }
    this.model = model.withQuantization(this.s.baseQuantization);
  }

  get adapterDir(): string {
    return join(this.workDir, 'adapters', this.req.name);
  }

  private modelId(): string {
    return this.model.dir ? resolve(this.model.dir) : 'memory';
  }

  /** Starts a run, or resumes the given or latest unfinished run of this adapter. */
  private openRun(): { run: RunContext; resumed: boolean } {
    let id = this.req.runId ?? latestUnfinishedRun(this.workDir, this.req.name, this.modelId());
    let state: RunState;
    let resumed = false;
    if (id) {
      safeName(id, 'run id');
      const st = readJson<RunState>(runPaths(this.workDir, id).run);
      if (!st) throw new Error(`no run ${id} in ${join(this.workDir, 'runs')}`);
      state = st;
      resumed = true;
    } else {
      id = newRunId();
      const prev = this.previousAdapter();
      state = {
        id,
        name: this.req.name,
        model: this.modelId(),
        created: new Date().toISOString(),
        inputs: this.req.inputs,
        settings: this.s,
        phases: {},
        baseAdapter: prev ? this.adapterDir : undefined,
        knownHashes: prev?.chunks.map((c) => c.hash),
      };
    }
    const paths: RunPaths = runPaths(this.workDir, id);
    const run: RunContext = {
      model: this.model,
      req: this.req,
      s: this.s,
      state,
      paths,
      adapterDir: this.adapterDir,
      modelId: this.modelId(),
      signal: this.signal,
      emit: this.emit,
      save: () => writeJson(paths.run, state),
    };
    if (!resumed) run.save();
    return { run, resumed };
  }

  private previousAdapter(): AdapterInfo | undefined {
    const info = readAdapterInfo(this.adapterDir);
    if (!info) return undefined;
    if (info.model !== this.modelId()) {
      this.emit({
        type: 'log',
        level: 'warn',
        message: `adapter ${this.req.name} was trained on another model (${info.model}); starting it afresh`,
      });
      return undefined;
    }
    return info;
  }

  private async phase(run: RunContext, p: Phase, fn: (run: RunContext) => Promise<unknown>): Promise<void> {
    if (run.state.phases[p] === 'done') {
      run.emit({ type: 'phase', phase: p, status: 'skipped', detail: 'already done in this run folder' });
      return;
    }
    check(run);
    run.emit({ type: 'phase', phase: p, status: 'start' });
    const t0 = performance.now();
    await fn(run);
    this.took[p] = (performance.now() - t0) / 1000;
    run.state.phases[p] = 'done';
    run.save();
    run.emit({ type: 'phase', phase: p, status: 'done' });
  }

  /** Runs (or resumes) the distillation; `adapter` is the published adapter when it was trained in this call. */
  async run(): Promise<{ runId: string; adapterDir: string; summary?: EvalSummary; adapter?: AdapterWeights }> {
    const { run, resumed } = this.openRun();
    run.emit({ type: 'run', runId: run.state.id, dir: run.paths.dir, resumed });
    let summary: EvalSummary | undefined;
    await this.phase(run, 'ingest', ingest);
    if (run.state.phases.questions !== 'done') await this.estimateRun(run);
    await this.phase(run, 'questions', questions);
    if (this.estimate && this.took.questions !== undefined) this.refineEstimate(run);
    await this.phase(run, 'answers', answers);
    await this.phase(run, 'train', train);
    if (!this.req.skipEval) {
      await this.phase(run, 'evaluate', async () => {
        summary = await evaluate(run);
      });
      summary ??= readJson<{ summary: EvalSummary | null }>(run.paths.eval)?.summary ?? undefined;
    }
    publishAdapter(run, summary);
    this.compareEstimate(run);
    run.state.finished = new Date().toISOString();
    run.save();
    run.emit({ type: 'done', adapterDir: this.adapterDir, summary });
    return { runId: run.state.id, adapterDir: this.adapterDir, summary, adapter: run.trained };
  }

  /** The estimate before the questions phase: emitted, and written to estimate.json in the run folder. */
  private async estimateRun(run: RunContext): Promise<void> {
    check(run);
    const e = await estimateRun(this.model, this.s, freshChunks(run), {
      device: this.model.backend.provider,
      signal: this.signal,
    });
    this.estimate = e;
    writeJson(join(run.paths.dir, 'estimate.json'), { made: new Date().toISOString(), ...e });
    run.emit({
      type: 'estimate',
      totalSec: e.totalSec,
      seconds: e.seconds,
      long: e.long,
      suggestions: e.suggestions,
      probeSec: e.rates.probeSec + (e.lengths?.probeSec ?? 0),
    });
  }

  /**
   * After the questions phase, the estimate with the questions the model actually wrote (how many
   * it keeps is known only now): emitted again, so that the dashboard and the CLI show the better one.
   */
  private refineEstimate(run: RunContext): void {
    const prev = this.estimate!;
    const qs = readJsonl<QuestionRow>(run.paths.questions);
    const e = refined(prev, this.model, this.s, freshChunks(run), qs, { device: this.model.backend.provider });
    // The questions phase is over: its estimate stays in the total as it was, for the comparison at the end.
    const seconds = { ...e.seconds, questions: prev.seconds.questions };
    const totalSec = WORK_PHASES.reduce((a, p) => a + seconds[p], 0);
    this.estimate = { ...e, seconds, totalSec };
    run.emit({
      type: 'estimate',
      totalSec,
      seconds,
      long: totalSec - seconds.questions > e.thresholdSec,
      suggestions: e.suggestions,
      probeSec: e.rates.probeSec + (e.lengths?.probeSec ?? 0),
      refined: true,
    });
    const file = join(run.paths.dir, 'estimate.json');
    const saved = readJson<Record<string, unknown>>(file);
    if (saved) writeJson(file, { ...saved, refined: { seconds, totalSec, counts: e.counts } });
  }

  /** Logs the estimate against the actual time of each phase that ran in this call. */
  private compareEstimate(run: RunContext): void {
    const e = this.estimate;
    if (!e) return;
    const ran = WORK_PHASES.filter((p): p is WorkPhase => this.took[p] !== undefined);
    if (!ran.length) return;
    const parts = ran.map((p) => `${p} ${formatDuration(e.seconds[p])} → ${formatDuration(this.took[p]!)}`);
    const actual = ran.reduce((a, p) => a + this.took[p]!, 0);
    log(
      run,
      `estimate vs actual: ${parts.join(', ')}; total ${formatDuration(e.totalSec)} → ${formatDuration(actual)}`,
    );
    const file = join(run.paths.dir, 'estimate.json');
    const saved = readJson<Record<string, unknown>>(file);
    if (saved) writeJson(file, { ...saved, actualSec: Object.fromEntries(ran.map((p) => [p, this.took[p]])) });
  }

  /**
   * The estimate alone, with nothing written: the docs chunked as the ingest phase would (the
   * passages an existing adapter already knows left out), the work counted, the model probed.
   */
  async estimateOnly(): Promise<Estimate> {
    const chunks = await chunkDocs(
      this.model,
      this.req.inputs,
      this.req.root,
      chunkBudget(this.model, this.s),
      chunkMinTokens(this.s),
    );
    const known = new Set(this.previousAdapter()?.chunks.map((c) => c.hash) ?? []);
    return estimateRun(
      this.model,
      this.s,
      chunks.filter((c) => !known.has(c.hash)),
      { device: this.model.backend.provider, signal: this.signal },
    );
  }

  /** Evaluates an existing run (its held-out questions, its adapter) again and rewrites eval.json. */
  async evaluateOnly(): Promise<EvalSummary | undefined> {
    if (!this.req.runId) throw new Error('evaluateOnly needs a run id');
    const { run } = this.openRun();
    if (run.state.phases.answers !== 'done')
      throw new Error(`run ${run.state.id} has no answers yet; distil it to the end first`);
    return evaluate(run);
  }
}
