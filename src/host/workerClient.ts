// The extension's side of the worker: spawns `node dist/worker.js --stdio`, speaks the protocol,
// restarts a worker that dies (with backoff) and resumes the job it was running from the run
// folder. Free of `vscode`, so it is tested with a real child process in plain Node.
import { leanMallocEnv } from '../common/leanMalloc';
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import {
  createMessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
  RequestType,
  NotificationType,
  CancellationTokenSource,
  ResponseError,
  type MessageConnection,
} from 'vscode-jsonrpc/node';
import * as P from '../protocol';

export interface WorkerClientOptions {
  workerPath: string;
  /** The Node binary (in VS Code: process.execPath with ELECTRON_RUN_AS_NODE=1). */
  nodePath?: string;
  env?: NodeJS.ProcessEnv;
  init: Omit<P.InitializeParams, 'protocolVersion'>;
  /** Restarts allowed within `restartWindowMs` before giving up. */
  maxRestarts?: number;
  restartWindowMs?: number;
  backoffMs?: number;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  expected: boolean;
  willRestart: boolean;
}

const req = <Pa, R>(d: P.RequestDef<Pa, R>) => new RequestType<Pa, R, void>(d.method);
const note = <Pa>(d: P.NotificationDef<Pa>) => new NotificationType<Pa>(d.method);

export class WorkerGoneError extends Error {
  override name = 'WorkerGoneError';
}

/**
 * Events: 'exited' (ExitInfo), 'restarted' (InitializeResult), 'jobEvent' ({jobId, event}),
 * 'chatDelta' ({streamId, text}), 'log' ({level, message}), 'stderr' (string).
 */
export class WorkerClient extends EventEmitter {
  private child?: ChildProcess;
  private conn?: MessageConnection;
  private ready?: Promise<P.InitializeResult>;
  private stderrTail = '';
  private disposed = false;
  private stopping = false;
  private crashes: number[] = [];
  private generation = 0;
  private restarting?: Promise<void>;
  initResult?: P.InitializeResult;

  constructor(private readonly o: WorkerClientOptions) {
    super();
    // Every pending request listens for 'exited'; a burst of chats is normal, not a leak.
    this.setMaxListeners(0);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the worker (once) and initializes it. */
  start(): Promise<P.InitializeResult> {
    this.ready ??= this.launch();
    return this.ready;
  }

  private async launch(): Promise<P.InitializeResult> {
    const gen = ++this.generation;
    const child = spawn(
      this.o.nodePath ?? process.execPath,
      [this.o.workerPath, '--stdio', '--parent-pid', String(process.pid)],
      {
        stdio: ['pipe', 'pipe', 'pipe'],
        // glibc malloc settings that keep a train step's peak steady and low (see leanMalloc.ts).
        env: leanMallocEnv({ ...process.env, ...this.o.env, ELECTRON_RUN_AS_NODE: '1' }),
      },
    );
    this.child = child;
    this.stderrTail = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      this.stderrTail = (this.stderrTail + d).slice(-8000);
      this.emit('stderr', d);
    });
    const conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    this.conn = conn;
    conn.onNotification(note(P.JobEventNotification.type), (p) => this.emit('jobEvent', p));
    conn.onNotification(note(P.ChatDelta.type), (p) => this.emit('chatDelta', p));
    conn.onNotification(note(P.Log.type), (p) => this.emit('log', p));
    conn.onError(() => {});
    conn.listen();
    child.stdin!.on('error', () => {});
    child.on('exit', (code, signal) => this.onExit(gen, code, signal));
    child.on('error', (e) => {
      this.stderrTail += `\nspawn failed: ${e.message}`;
    });
    const res = await conn.sendRequest(req(P.Initialize.type), { protocolVersion: P.PROTOCOL_VERSION, ...this.o.init });
    this.initResult = res;
    return res;
  }

  private onExit(gen: number, code: number | null, signal: NodeJS.Signals | null): void {
    if (gen !== this.generation) return;
    this.conn?.dispose();
    this.conn = undefined;
    const expected = this.disposed || this.stopping;
    const now = Date.now();
    const window = this.o.restartWindowMs ?? 120_000;
    this.crashes = [...this.crashes.filter((t) => now - t < window), now];
    const willRestart = !expected && this.crashes.length <= (this.o.maxRestarts ?? 5);
    this.emit('exited', { code, signal, stderr: this.stderrTail, expected, willRestart } satisfies ExitInfo);
    this.ready = undefined;
    if (willRestart) {
      const delay = (this.o.backoffMs ?? 500) * 2 ** (this.crashes.length - 1);
      this.restarting = new Promise<void>((resolveP, reject) => {
        setTimeout(
          () => {
            if (this.disposed) return reject(new WorkerGoneError('disposed'));
            this.start().then((r) => {
              this.emit('restarted', r);
              resolveP();
            }, reject);
          },
          Math.min(delay, 30_000),
        );
      });
      this.restarting.catch(() => {});
    } else {
      this.restarting = undefined;
    }
  }

  private async connection(): Promise<MessageConnection> {
    if (this.disposed) throw new WorkerGoneError('the worker client is disposed');
    if (!this.conn && this.restarting) await this.restarting;
    await this.start();
    if (!this.conn) throw new WorkerGoneError('the worker is not running');
    return this.conn;
  }

  /** A typed request. Rejects with WorkerGoneError if the worker dies before answering. */
  async request<Pa, R>(d: P.RequestDef<Pa, R>, params: Pa, cancel?: AbortSignal): Promise<R> {
    const conn = await this.connection();
    const cts = new CancellationTokenSource();
    const onAbort = () => cts.cancel();
    cancel?.addEventListener('abort', onAbort);
    const gen = this.generation;
    try {
      return await new Promise<R>((resolveP, reject) => {
        const onExit = () => reject(new WorkerGoneError(`the worker exited during ${d.method}`));
        this.once('exited', onExit);
        conn
          .sendRequest(req(d), params, cts.token)
          .then(resolveP, (e: unknown) => {
            if (gen !== this.generation || !this.conn)
              reject(new WorkerGoneError(`the worker exited during ${d.method}`));
            else reject(e);
          })
          .finally(() => this.off('exited', onExit));
      });
    } finally {
      cancel?.removeEventListener('abort', onAbort);
      cts.dispose();
    }
  }

  /**
   * Runs a distillation to the end: if the worker dies meanwhile, it is restarted and the job
   * resumes from its run folder (same adapter name → the unfinished run is picked up).
   */
  async distill(params: P.DistillParams, cancel?: AbortSignal): Promise<P.DistillResult> {
    let runId = params.runId;
    const onEvent = (p: { jobId: string; event: P.JobEvent }) => {
      if (p.jobId === params.jobId && p.event.type === 'run') runId = p.event.runId;
    };
    this.on('jobEvent', onEvent);
    try {
      for (;;) {
        try {
          return await this.request(P.Distill.type, { ...params, runId }, cancel);
        } catch (e) {
          if (e instanceof WorkerGoneError && !cancel?.aborted && !this.disposed && this.restarting) {
            this.emit('log', {
              level: 'warn',
              message: `the worker stopped during ${params.name}; resuming run ${runId ?? ''} in a new worker`,
            });
            continue;
          }
          throw e;
        }
      }
    } finally {
      this.off('jobEvent', onEvent);
    }
  }

  /** Asks the worker to checkpoint and stop; kills it if it does not within the time box. Idempotent. */
  async dispose(timeoutMs = 5000): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      if (this.conn)
        await Promise.race([
          this.conn.sendRequest(req(P.Shutdown.type), undefined),
          new Promise((r) => setTimeout(r, timeoutMs)),
        ]);
    } catch {
      /* the worker may already be gone */
    }
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await Promise.race([exited, new Promise((r) => setTimeout(r, timeoutMs + 1000))]);
    clearTimeout(killer);
  }

  /** Kills the worker process (tests; "Restart Worker"). It is restarted like after a crash. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child?.kill(signal);
  }
}

export { ResponseError };
