// The context of the extension: the workspace folder DocDistill works in, its settings, the worker
// (started on the first request, restarted when the model, device or thread settings change) and
// the state the views and panels show (jobs, adapters, model). Commands, jobs, the status bar, the
// model picker, the adapter menu and the panels are modules of their own (see ../extension.ts).
// The extension host never runs model code; everything heavy goes to the worker.
import * as vscode from 'vscode';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as P from '../protocol';
import type { DashboardState, JobView } from '../protocol/webview';
import { WorkerClient } from './workerClient';
import { checkModelFolder } from './modelFolder';
import { looksLikeHubId } from './hub';

const t = vscode.l10n.t;

/** The job that runs now (one at a time), and how to stop it. */
export interface RunningJob {
  job: JobView;
  abort: AbortController;
}

export class DocDistill implements vscode.Disposable {
  readonly log: vscode.LogOutputChannel;
  private worker?: WorkerClient;
  private workerKey = '';
  private readonly disposables: vscode.Disposable[] = [];
  readonly jobs: JobView[] = [];
  /** Set by the job runner while a job runs. */
  running?: RunningJob;
  adapters: P.AdapterSummary[] = [];
  model?: P.ModelInfo;
  private readonly changed = new vscode.EventEmitter<{ jobId?: string; event?: P.JobEvent }>();
  /** Fires when jobs, adapters or the model change (panels re-render), and on each job event. */
  readonly onDidChange = this.changed.event;
  private readonly statusChanged = new vscode.EventEmitter<void>();
  /** Fires when only the worker's state changed (stopped, restarted): the status bar redraws. */
  readonly onDidChangeStatus = this.statusChanged.event;
  private readonly folderChanged = new vscode.EventEmitter<void>();
  /** Fires when DocDistill moves to another workspace folder (the docs watcher follows). */
  readonly onDidChangeFolder = this.folderChanged.event;

  constructor(readonly ctx: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('DocDistill', { log: true });
    this.jobs.push(
      ...(ctx.workspaceState.get<JobView[]>('docdistill.jobs') ?? []).map((j) =>
        j.state === 'running' || j.state === 'restarting' ? { ...j, state: 'cancelled' as const } : j,
      ),
    );
  }

  get extensionUri(): vscode.Uri {
    return this.ctx.extensionUri;
  }

  /** Disposed with the context, before the worker and the log. */
  own(...d: vscode.Disposable[]): void {
    this.disposables.push(...d);
  }

  /** Tells the views, panels and status bar that something changed (a job event, or anything). */
  fire(e: { jobId?: string; event?: P.JobEvent } = {}): void {
    this.changed.fire(e);
  }

  /** The workspace folder DocDistill works in: the one of the last docs distilled, else the first. */
  private folderUri?: vscode.Uri;

  get folder(): vscode.WorkspaceFolder | undefined {
    return (
      (this.folderUri && vscode.workspace.getWorkspaceFolder(this.folderUri)) || vscode.workspace.workspaceFolders?.[0]
    );
  }

  get root(): string | undefined {
    return this.folder?.uri.fsPath;
  }

  /**
   * Multi-root: each folder has its own docs, .docdistill/ and settings. Switching folder restarts
   * the worker on the next request (its key holds the root) and the watcher now.
   */
  useFolder(f: vscode.WorkspaceFolder): boolean {
    if (this.folder?.uri.toString() === f.uri.toString()) return true;
    if (this.running) {
      void vscode.window.showWarningMessage(
        t('DocDistill: "{0}" is still running in another folder. Cancel it first, or wait.', this.running.job.name),
      );
      return false;
    }
    this.folderUri = f.uri;
    this.adapters = [];
    this.folderChanged.fire();
    this.changed.fire({});
    return true;
  }

  cfg(): vscode.WorkspaceConfiguration {
    // With the folder as resource, so folder-level settings (multi-root) are read, not skipped.
    return vscode.workspace.getConfiguration('docdistill', this.folder?.uri);
  }

  /** The configured model folder (empty setting = the built-in demo model). */
  modelDir(): string {
    const m = this.cfg().get<string>('model', '').trim();
    if (!m) return this.ctx.asAbsolutePath(join('media', 'demo-model'));
    if (looksLikeHubId(m) && !existsSync(m))
      return join(this.ctx.globalStorageUri.fsPath, 'models', m.replace('/', '--'));
    return this.root && !m.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(m) ? join(this.root, m) : m;
  }

  // ── worker ──────────────────────────────────────────────────────────────────────────────
  async client(): Promise<WorkerClient> {
    const root = this.root;
    if (!root) throw new Error(t('open a folder first: DocDistill works on the docs of a workspace'));
    const device = this.cfg().get<P.Device>('device', 'auto');
    const threads = this.cfg().get<number>('threads', 0) || undefined;
    const modelDir = this.modelDir();
    const key = JSON.stringify([root, device, threads, modelDir]);
    if (this.worker && this.workerKey === key) {
      await this.worker.start();
      return this.worker;
    }
    await this.worker?.dispose();
    const problem = checkModelFolder(modelDir);
    if (problem) throw new Error(t('{0} — run "DocDistill: Select Base Model"', problem));
    const w = new WorkerClient({
      workerPath: this.ctx.asAbsolutePath(join('dist', 'worker.js')),
      init: { workspaceRoot: root, modelDir, device, threads },
    });
    w.on('stderr', (d: string) =>
      d
        .split('\n')
        .filter(Boolean)
        .forEach((l) => this.log.debug(`[worker] ${l}`)),
    );
    w.on('log', (p: { level: string; message: string }) =>
      p.level === 'error'
        ? this.log.error(p.message)
        : p.level === 'warn'
          ? this.log.warn(p.message)
          : this.log.info(p.message),
    );
    w.on(
      'exited',
      (e: { code: number | null; signal: string | null; stderr: string; expected: boolean; willRestart: boolean }) => {
        if (e.expected) return;
        this.log.error(
          `the worker stopped (code ${e.code}, signal ${e.signal})${e.willRestart ? '; restarting it' : ''}\n${e.stderr.slice(-2000)}`,
        );
        if (this.running) this.running.job.state = 'restarting';
        this.statusChanged.fire();
        if (!e.willRestart)
          void vscode.window
            .showErrorMessage(t('The DocDistill worker keeps stopping. See the log.'), t('Show Log'))
            .then((a) => a && this.log.show());
      },
    );
    w.on('restarted', () => {
      this.log.info('worker restarted');
      if (this.running) this.running.job.state = 'running';
      this.statusChanged.fire();
    });
    w.on('jobEvent', (p: { jobId: string; event: P.JobEvent }) => this.jobEvent(p.jobId, p.event));
    this.worker = w;
    this.workerKey = key;
    const init = await w.start();
    this.model = init.model;
    this.log.info(`worker ${init.pid}: ${init.model?.architecture ?? 'no model'} on ${init.provider ?? '?'}`);
    void this.refreshAdapters();
    return w;
  }

  /** True once a worker was started in this session (its adapter list is worth refreshing). */
  get hasWorker(): boolean {
    return !!this.worker;
  }

  /** Set by the job runner: folds a job event into its job (the one reducer of src/protocol). */
  jobEvent: (jobId: string, e: P.JobEvent) => void = () => {};

  async restartWorker(): Promise<void> {
    if (this.running) {
      void vscode.window.showWarningMessage(
        t('DocDistill: the new model/device setting applies after the running job.'),
      );
      return;
    }
    const w = this.worker;
    this.worker = undefined;
    this.workerKey = '';
    await w?.dispose();
    this.model = undefined;
    this.changed.fire({});
  }

  async refreshAdapters(): Promise<void> {
    try {
      this.adapters = await (await this.client()).request(P.ListAdapters.type, undefined);
      this.changed.fire({});
    } catch (e) {
      this.log.warn(`adapters: ${(e as Error).message}`);
    }
  }

  dashboardState(): DashboardState {
    return { model: this.model, jobs: this.jobs, adapters: this.adapters };
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
    this.changed.dispose();
    this.statusChanged.dispose();
    this.folderChanged.dispose();
    void this.worker?.dispose(3000);
    this.log.dispose();
  }

  async shutdown(): Promise<void> {
    await this.worker?.dispose(3000);
  }
}
