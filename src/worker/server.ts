// The worker's side of the protocol, a router: one handler per protocol message, each checking its
// params and calling the pipeline or the engine (the distillation in ../pipeline/distill.ts, the
// adapter catalogue in ../pipeline/adapters.ts, the chat prompt in ../pipeline/prompts.ts). What is
// the worker's own: the loaded model, one heavy job (distillation) at a time, the chat queue,
// the active adapter and a cache of adapter weights, cancellation and shutdown.
//
// Chat while training: Node runs the job and the chats on one event loop, and every model call is
// an asynchronous ONNX Runtime run, so a chat request is served as soon as it arrives, its decode
// steps interleaved with the training steps (both slow down a little; neither waits for the other
// to finish). Chat requests are queued and answered one by one in arrival order, so a burst of
// them loses none.
import { existsSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ResponseError, NotificationType, type MessageConnection, type CancellationToken } from 'vscode-jsonrpc/node';
import * as P from '../protocol';
import { Backend } from '../engine/backend';
import { CausalLM, type AdapterWeights } from '../engine/models/model';
import { expectedTensors } from '../engine/models/folder';
import { generate } from '../engine/generate';
import { readAdapter } from '../engine/lora/peft';
import { mergeAdapter } from '../engine/lora/merge';
import { Distiller, CancelledError } from '../pipeline/distill';
import type { DistillEvent } from '../pipeline/events';
import { adapterPrompts, adapterSources, adapterStatus, listAdapters, readAdapterInfo } from '../pipeline/adapters';
import { IngestError, readDocumentSync } from '../pipeline/docFiles';
import { checkDestination, exportFolder } from './destinations';
import { framedConnection } from './framing';
import { safeName, insideRoot } from '../pipeline/runFolder';
import { chatMessages } from '../pipeline/prompts';
import { version } from '../../package.json';

/** Refuses params that are not an object with the given fields of the given types. */
function check(
  p: unknown,
  fields: Record<string, 'string' | 'array' | 'string?' | 'object?' | 'string|null'>,
  method: string,
): void {
  const bad = (m: string): never => {
    throw new ResponseError(P.ErrorCodes.BadInput, `${method}: ${m}`);
  };
  if (typeof p !== 'object' || p === null || Array.isArray(p)) bad('params must be an object');
  const o = p as Record<string, unknown>;
  for (const [k, t] of Object.entries(fields)) {
    const v = o[k];
    if (t === 'string' && typeof v !== 'string') bad(`"${k}" must be a string`);
    if (t === 'string?' && v !== undefined && typeof v !== 'string') bad(`"${k}" must be a string`);
    if (t === 'string|null' && v !== null && typeof v !== 'string') bad(`"${k}" must be a string or null`);
    if (t === 'array' && !Array.isArray(v)) bad(`"${k}" must be an array`);
    if (t === 'object?' && v !== undefined && (typeof v !== 'object' || v === null)) bad(`"${k}" must be an object`);
  }
}

const note = <Pa>(d: P.NotificationDef<Pa>) => new NotificationType<Pa>(d.method);

interface Job {
  id: string;
  name: string;
  abort: AbortController;
  phase?: string;
  runId?: string;
  done: Promise<unknown>;
}

export class WorkerServer {
  private backend?: Backend;
  private model?: CausalLM;
  private root = process.cwd();
  private workDir = join(process.cwd(), '.docdistill');
  private device: P.Device = 'auto';
  private threads?: number;
  private job?: Job;
  private activeAdapter?: string;
  private readonly adapters = new Map<string, { mtime: number; w: AdapterWeights }>();
  private chatChain: Promise<unknown> = Promise.resolve();
  private queuedChats = 0;

  constructor(
    readonly conn: MessageConnection,
    private readonly exit: (code: number) => void,
  ) {
    this.on(
      P.Initialize.type,
      (p) => (check(p, { workspaceRoot: 'string', modelDir: 'string?' }, 'initialize'), this.initialize(p)),
    );
    this.on(
      P.SetModel.type,
      (p) => (check(p, { modelDir: 'string' }, 'model/set'), this.loadModel(p.modelDir, p.device)),
    );
    this.on(P.Status.type, () => this.status());
    this.on(
      P.Distill.type,
      (p, token) => (
        check(
          p,
          { jobId: 'string', inputs: 'array', name: 'string', settings: 'object?', runId: 'string?' },
          'distill',
        ),
        this.distill(p, token)
      ),
    );
    this.on(
      P.Chat.type,
      (p, token) => (
        check(p, { streamId: 'string', messages: 'array', adapter: 'string?' }, 'chat'),
        this.enqueueChat(p, token)
      ),
    );
    this.on(P.ListAdapters.type, () => this.listAdapters());
    this.on(P.ActivateAdapter.type, (p) => (check(p, { name: 'string|null' }, 'adapters/activate'), this.activate(p)));
    this.on(P.DeleteAdapter.type, (p) => (check(p, { name: 'string' }, 'adapters/delete'), this.deleteAdapter(p)));
    this.on(
      P.ExportAdapter.type,
      (p) => (check(p, { name: 'string', dest: 'string' }, 'adapters/export'), this.exportAdapter(p)),
    );
    this.on(
      P.MergeAdapter.type,
      (p) => (check(p, { name: 'string', dest: 'string' }, 'adapters/merge'), this.mergeAdapter(p)),
    );
    this.on(P.Shutdown.type, () => this.shutdown());
  }

  /**
   * Registers a handler by method name, so that requests with missing or malformed params reach it
   * (and get a JSON-RPC error) instead of being refused by a fixed parameter count.
   */
  private on<Pa, R>(d: P.RequestDef<Pa, R>, handler: (params: Pa, token: CancellationToken) => R | Promise<R>): void {
    this.conn.onRequest(d.method, (...args: unknown[]) => {
      const token = args[args.length - 1] as CancellationToken;
      const params = args.length > 1 ? args[0] : undefined;
      return handler(params as Pa, token);
    });
  }

  private log(level: 'debug' | 'info' | 'warn' | 'error', message: string): void {
    void this.conn.sendNotification(note(P.Log.type), { level, message });
  }

  private async initialize(p: P.InitializeParams): Promise<P.InitializeResult> {
    if (p.protocolVersion !== P.PROTOCOL_VERSION)
      throw new ResponseError(
        P.ErrorCodes.BadInput,
        `protocol version ${p.protocolVersion} is not ${P.PROTOCOL_VERSION}; reinstall the extension`,
      );
    this.root = resolve(p.workspaceRoot);
    this.workDir = p.workDir ? resolve(p.workDir) : join(this.root, '.docdistill');
    this.device = p.device;
    this.threads = p.threads;
    let model: P.ModelInfo | undefined;
    if (p.modelDir) model = await this.loadModel(p.modelDir, p.device);
    return { protocolVersion: P.PROTOCOL_VERSION, version, pid: process.pid, provider: this.backend?.provider, model };
  }

  private async loadModel(dir: string, device?: P.Device): Promise<P.ModelInfo> {
    if (this.job)
      throw new ResponseError(
        P.ErrorCodes.JobBusy,
        'a distillation is running; change the model after it finishes or is cancelled',
      );
    if (device) this.device = device;
    if (!this.backend || (device && device !== 'auto' && this.backend.provider !== device)) {
      await this.backend?.dispose();
      this.backend = await Backend.create({ device: this.device, threads: this.threads });
      this.log('info', this.backend.describeDevice());
    }
    try {
      this.model = await CausalLM.load(resolve(this.root, dir), this.backend);
    } catch (e) {
      throw new ResponseError(P.ErrorCodes.BadInput, (e as Error).message);
    }
    this.adapters.clear();
    this.log('info', `model ${this.model.dir} on ${this.backend.provider} (${this.model.dtype})`);
    return this.modelInfo();
  }

  private modelInfo(): P.ModelInfo {
    const m = this.requireModel();
    const c = m.config;
    // Every tensor the engine requires of a model folder with this config.
    const params = expectedTensors(c).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    return {
      dir: m.dir!,
      architecture: c.architecture,
      parameters: params,
      dtype: m.dtype,
      provider: m.backend.provider,
      vocabSize: c.vocabSize,
      contextLength: c.maxPositionEmbeddings,
      hasChatTemplate: m.tokenizer.hasChatTemplate,
    };
  }

  private requireModel(): CausalLM {
    if (!this.model)
      throw new ResponseError(P.ErrorCodes.NoModel, 'no model selected; run "DocDistill: Select Base Model" first');
    return this.model;
  }

  private status(): P.WorkerStatus {
    const mem = process.memoryUsage();
    return {
      pid: process.pid,
      provider: this.backend?.provider,
      model: this.model ? this.modelInfo() : undefined,
      memory: { rssMB: Math.round(mem.rss / 2 ** 20), heapMB: Math.round(mem.heapUsed / 2 ** 20) },
      job: this.job
        ? { id: this.job.id, kind: 'distill', name: this.job.name, phase: this.job.phase, runId: this.job.runId }
        : undefined,
      queuedChats: this.queuedChats,
      activeAdapter: this.activeAdapter,
    };
  }

  private adapterDir(name: string, mustExist: boolean): string {
    try {
      safeName(name, 'adapter name');
    } catch (e) {
      throw new ResponseError(P.ErrorCodes.BadInput, (e as Error).message);
    }
    const dir = join(this.workDir, 'adapters', name);
    if (mustExist && !existsSync(join(dir, 'adapter_config.json')))
      throw new ResponseError(P.ErrorCodes.BadInput, `no adapter named ${name}`);
    return dir;
  }

  private async distill(p: P.DistillParams, token: CancellationToken): Promise<P.DistillResult> {
    const model = this.requireModel();
    this.adapterDir(p.name, false);
    if (this.job)
      throw new ResponseError(
        P.ErrorCodes.JobBusy,
        `a distillation (${this.job.name}) is already running; wait for it or cancel it`,
      );
    const abort = new AbortController();
    token.onCancellationRequested(() => abort.abort());
    const job: Job = { id: p.jobId, name: p.name, abort, done: Promise.resolve() };
    this.job = job;
    const send = (e: DistillEvent) => {
      if (e.type === 'run') job.runId = e.runId;
      if (e.type === 'phase' && e.status === 'start') job.phase = e.phase;
      void this.conn.sendNotification(note(P.JobEventNotification.type), { jobId: p.jobId, event: e });
    };
    const run = (async () => {
      try {
        const inputs = p.inputs.map((i) => insideRoot(this.root, i, 'input'));
        const d = new Distiller(
          model,
          {
            inputs,
            root: this.root,
            workDir: this.workDir,
            name: p.name,
            settings: p.settings,
            runId: p.runId,
            skipEval: p.skipEval,
          },
          { onEvent: send, signal: abort.signal },
        );
        const { runId, adapterDir, summary, adapter } = await d.run();
        // The adapter just published, as trained: chat with the student needs no read of it.
        if (adapter)
          this.adapters.set(p.name, {
            mtime: statSync(join(adapterDir, 'adapter_model.safetensors')).mtimeMs,
            w: adapter,
          });
        else this.adapters.delete(p.name);
        return { runId, adapterDir, summary };
      } catch (e) {
        if (e instanceof CancelledError) throw new ResponseError(P.ErrorCodes.Cancelled, e.message);
        if (e instanceof ResponseError) throw e;
        throw new ResponseError(P.ErrorCodes.Internal, (e as Error).message, { stack: (e as Error).stack });
      } finally {
        if (this.job === job) this.job = undefined;
      }
    })();
    job.done = run;
    return run;
  }

  private enqueueChat(p: P.ChatParams, token: CancellationToken): Promise<P.ChatResult> {
    this.queuedChats++;
    const next = this.chatChain.then(() => this.chat(p, token)).finally(() => this.queuedChats--);
    this.chatChain = next.catch(() => {});
    return next;
  }

  private adapterWeights(name: string): AdapterWeights {
    const dir = this.adapterDir(name, true);
    const st = statSync(join(dir, 'adapter_model.safetensors'));
    const hit = this.adapters.get(name);
    if (hit && hit.mtime === st.mtimeMs) return hit.w;
    const w = readAdapter(dir, this.requireModel().config);
    this.adapters.set(name, { mtime: st.mtimeMs, w });
    return w;
  }

  private async chat(p: P.ChatParams, token: CancellationToken): Promise<P.ChatResult> {
    const model = this.requireModel();
    if (!['base', 'student', 'teacher'].includes(p.mode))
      throw new ResponseError(
        P.ErrorCodes.BadInput,
        `chat: mode must be base, student or teacher (got ${String(p.mode)})`,
      );
    if (
      !p.messages.length ||
      p.messages.some((m) => !m || typeof m.content !== 'string' || !['system', 'user', 'assistant'].includes(m.role))
    ) {
      throw new ResponseError(
        P.ErrorCodes.BadInput,
        'chat: messages must be a non-empty list of {role: system|user|assistant, content}',
      );
    }
    if (token.isCancellationRequested) return { text: '', finishReason: 'aborted', tokens: 0, ms: 0 };
    const abort = new AbortController();
    token.onCancellationRequested(() => abort.abort());
    // The prompts of the adapter in question (the student's, or the one whose docs the teacher reads):
    // the chat asks as the distillation asked.
    const name = p.adapter ?? this.activeAdapter;
    const info = name === undefined ? undefined : readAdapterInfo(this.adapterDir(name, false));
    let adapter: AdapterWeights | undefined;
    let doc: string | undefined;
    if (p.mode === 'student') {
      if (!name)
        throw new ResponseError(
          P.ErrorCodes.BadInput,
          'no adapter chosen for the student; distil some docs or pick an adapter',
        );
      adapter = this.adapterWeights(name);
    } else if (p.mode === 'teacher') {
      try {
        doc = (p.docs ?? adapterSources(info)).map((d) => readDocumentSync(this.root, d).trim()).join('\n\n');
      } catch (e) {
        // A document outside the workspace, a special file, one too big: bad input, said as such.
        if (e instanceof IngestError) throw new ResponseError(P.ErrorCodes.BadInput, `chat: ${e.message}`);
        throw e;
      }
    }
    const tok = model.tokenizer;
    const ids = tok.encode(
      tok.applyChatTemplate(chatMessages(p.messages, adapterPrompts(info), doc), { addGenerationPrompt: true }),
      { addSpecialTokens: false },
    );
    const t0 = performance.now();
    const room = model.config.maxPositionEmbeddings - ids.length;
    if (room < 1)
      throw new ResponseError(
        P.ErrorCodes.BadInput,
        `the conversation (${ids.length} tokens) does not fit the model's context of ${model.config.maxPositionEmbeddings}`,
      );
    const [r] = await generate(model, [ids], {
      maxTokens: Math.min(p.maxTokens ?? 256, room),
      temperature: p.temperature ?? 0,
      seed: p.seed,
      adapter,
      signal: abort.signal,
      onText: (_, text) => void this.conn.sendNotification(note(P.ChatDelta.type), { streamId: p.streamId, text }),
    });
    return { text: r!.text, finishReason: r!.finishReason, tokens: r!.ids.length, ms: performance.now() - t0 };
  }

  private listAdapters(): P.AdapterSummary[] {
    const model = this.model;
    const count = model ? (t: string) => model.tokenizer.encode(t, { addSpecialTokens: false }).length : undefined;
    return listAdapters(this.workDir).map((a) => {
      const st = adapterStatus(a, this.root, count);
      return {
        name: a.name,
        dir: join(this.workDir, 'adapters', a.name),
        model: a.model,
        created: a.created,
        runId: a.runId,
        chunks: a.chunks.length,
        ...st,
        active: a.name === this.activeAdapter,
        summary: a.summary,
      };
    });
  }

  private activate(p: { name: string | null }): void {
    if (p.name !== null) this.adapterDir(p.name, true);
    this.activeAdapter = p.name ?? undefined;
  }

  private deleteAdapter(p: { name: string }): void {
    const dir = this.adapterDir(p.name, true);
    if (this.job?.name === p.name)
      throw new ResponseError(P.ErrorCodes.JobBusy, `adapter ${p.name} is being trained; cancel the job first`);
    rmSync(dir, { recursive: true, force: true });
    this.adapters.delete(p.name);
    if (this.activeAdapter === p.name) this.activeAdapter = undefined;
  }

  private exportAdapter(p: { name: string; dest: string }): { dir: string } {
    return { dir: exportFolder(this.adapterDir(p.name, true), p.dest, this.workFolders()) };
  }

  private mergeAdapter(p: { name: string; dest: string }): { dir: string } {
    const m = this.requireModel();
    const dest = checkDestination(p.dest, this.workFolders(), 'adapters/merge');
    mergeAdapter(m.dir!, this.adapterDir(p.name, true), dest);
    return { dir: dest };
  }

  /** The folders export and merge must not write into. */
  private workFolders(): string[] {
    return [this.workDir, join(this.root, '.docdistill')];
  }

  private async shutdown(): Promise<{ checkpointed: boolean }> {
    const had = !!this.job;
    if (this.job) {
      this.job.abort.abort();
      await this.job.done.catch(() => {});
    }
    setImmediate(() => void this.dispose().then(() => this.exit(0)));
    return { checkpointed: had };
  }

  async dispose(): Promise<void> {
    this.job?.abort.abort();
    await this.job?.done.catch(() => {});
    await this.backend?.dispose();
  }
}

/** Starts serving the protocol on a pair of streams. */
export function serve(input: Readable, output: Writable, exit: (code: number) => void): WorkerServer {
  const conn = framedConnection(input, output);
  const server = new WorkerServer(conn, exit);
  conn.listen();
  return server;
}
