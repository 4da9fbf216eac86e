// The extension: commands, the worker, jobs with progress, the status bar, the docs watcher and
// the panels. The extension host never runs model code; everything heavy goes to the worker.
import * as vscode from 'vscode';
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as P from '../protocol';
import type { DashboardState, JobView } from '../protocol/webview';
import { WorkerClient, WorkerGoneError } from './workerClient';
import { checkModelFolder } from './modelFolder';
import { DocsWatcher } from './watcher';
import { DashboardPanel, ChatPanel } from './panels';
import { downloadFromHub, looksLikeHubId } from './hub';
import { registerViews } from './views';
import { registerChatParticipant } from './chatParticipant';
import { ensureGitignore, hfToken, registerHousekeeping } from './housekeeping';

export class DocDistill implements vscode.Disposable {
  readonly log: vscode.LogOutputChannel;
  private worker?: WorkerClient;
  private workerKey = '';
  private readonly status: vscode.StatusBarItem;
  private readonly disposables: vscode.Disposable[] = [];
  readonly jobs: JobView[] = [];
  adapters: P.AdapterSummary[] = [];
  model?: P.ModelInfo;
  private running?: { job: JobView; abort: AbortController };
  private watcher?: DocsWatcher;
  private readonly changed = new vscode.EventEmitter<{ jobId?: string; event?: P.JobEvent }>();
  /** Fires when jobs, adapters or the model change (panels re-render). */
  readonly onDidChange = this.changed.event;

  constructor(readonly ctx: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel('DocDistill', { log: true });
    this.status = vscode.window.createStatusBarItem('docdistill.status', vscode.StatusBarAlignment.Left, 50);
    this.status.name = 'DocDistill';
    this.status.command = 'docdistill.openDashboard';
    this.jobs.push(...(ctx.workspaceState.get<JobView[]>('docdistill.jobs') ?? []).map((j) => (j.state === 'running' || j.state === 'restarting' ? { ...j, state: 'cancelled' as const } : j)));
  }

  /** The workspace folder DocDistill works in: the one of the last docs distilled, else the first. */
  private folderUri?: vscode.Uri;

  get folder(): vscode.WorkspaceFolder | undefined {
    return (this.folderUri && vscode.workspace.getWorkspaceFolder(this.folderUri)) || vscode.workspace.workspaceFolders?.[0];
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
      void vscode.window.showWarningMessage(vscode.l10n.t('DocDistill: "{0}" is still running in another folder. Cancel it first, or wait.', this.running.job.name));
      return false;
    }
    this.folderUri = f.uri;
    this.adapters = [];
    this.startWatcher();
    this.changed.fire({});
    return true;
  }

  private cfg() {
    // With the folder as resource, so folder-level settings (multi-root) are read, not skipped.
    return vscode.workspace.getConfiguration('docdistill', this.folder?.uri);
  }

  /** The configured model folder (empty setting = the built-in demo model). */
  modelDir(): string {
    const m = this.cfg().get<string>('model', '').trim();
    if (!m) return this.ctx.asAbsolutePath(join('media', 'demo-model'));
    if (looksLikeHubId(m) && !existsSync(m)) return join(this.ctx.globalStorageUri.fsPath, 'models', m.replace('/', '--'));
    return this.root && !m.startsWith('/') && !/^[A-Za-z]:[\\/]/.test(m) ? join(this.root, m) : m;
  }

  async activate(): Promise<void> {
    const version = (this.ctx.extension.packageJSON as { version: string }).version;
    this.log.info(`DocDistill ${version} activated`);
    const c = (id: string, fn: (...a: never[]) => unknown) => this.disposables.push(vscode.commands.registerCommand(id, fn));
    c('docdistill.showLog', () => this.log.show());
    c('docdistill.selectModel', () => this.selectModel());
    c('docdistill.distill', (uri?: vscode.Uri, uris?: vscode.Uri[]) => this.distillUris(uris?.length ? uris : uri ? [uri] : []));
    c('docdistill.distillDocsFolder', () => this.distillDocsFolder());
    c('docdistill.distillDemo', () => this.distillDemo());
    c('docdistill.openDashboard', () => DashboardPanel.show(this));
    c('docdistill.chat', () => ChatPanel.show(this));
    c('docdistill.cancelJob', () => this.cancel());
    c('docdistill.manageAdapters', () => this.manageAdapters());
    this.disposables.push(vscode.window.registerWebviewPanelSerializer(DashboardPanel.viewType, { deserializeWebviewPanel: async (panel) => DashboardPanel.revive(this, panel) }));
    this.disposables.push(vscode.window.registerWebviewPanelSerializer(ChatPanel.viewType, { deserializeWebviewPanel: async (panel) => ChatPanel.revive(this, panel) }));
    this.disposables.push(vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('docdistill.docsGlob')) this.startWatcher();
      if (e.affectsConfiguration('docdistill.model') || e.affectsConfiguration('docdistill.device') || e.affectsConfiguration('docdistill.threads')) void this.restartWorker();
    }));
    this.disposables.push(registerViews(this), registerChatParticipant(this), registerHousekeeping(this.ctx));
    this.updateStatus();
    this.startWatcher();
  }

  // ── worker ──────────────────────────────────────────────────────────────────────────────
  async client(): Promise<WorkerClient> {
    const root = this.root;
    if (!root) throw new Error('open a folder first: DocDistill works on the docs of a workspace');
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
    if (problem) throw new Error(`${problem} — run "DocDistill: Select Base Model"`);
    const w = new WorkerClient({ workerPath: this.ctx.asAbsolutePath(join('dist', 'worker.js')), init: { workspaceRoot: root, modelDir, device, threads } });
    w.on('stderr', (d: string) => d.split('\n').filter(Boolean).forEach((l) => this.log.debug(`[worker] ${l}`)));
    w.on('log', (p: { level: string; message: string }) => (p.level === 'error' ? this.log.error(p.message) : p.level === 'warn' ? this.log.warn(p.message) : this.log.info(p.message)));
    w.on('exited', (e: { code: number | null; signal: string | null; stderr: string; expected: boolean; willRestart: boolean }) => {
      if (e.expected) return;
      this.log.error(`the worker stopped (code ${e.code}, signal ${e.signal})${e.willRestart ? '; restarting it' : ''}\n${e.stderr.slice(-2000)}`);
      if (this.running) this.running.job.state = 'restarting';
      this.updateStatus();
      if (!e.willRestart) void vscode.window.showErrorMessage('The DocDistill worker keeps stopping. See the log.', 'Show Log').then((a) => a && this.log.show());
    });
    w.on('restarted', () => {
      this.log.info('worker restarted');
      if (this.running) this.running.job.state = 'running';
      this.updateStatus();
    });
    w.on('jobEvent', (p: { jobId: string; event: P.JobEvent }) => this.onJobEvent(p.jobId, p.event));
    this.worker = w;
    this.workerKey = key;
    const init = await w.start();
    this.model = init.model;
    this.log.info(`worker ${init.pid}: ${init.model?.architecture ?? 'no model'} on ${init.provider ?? '?'}`);
    void this.refreshAdapters();
    return w;
  }

  private async restartWorker(): Promise<void> {
    if (this.running) {
      void vscode.window.showWarningMessage('DocDistill: the new model/device setting applies after the running job.');
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
      this.updateStatus();
    } catch (e) {
      this.log.warn(`adapters: ${(e as Error).message}`);
    }
  }

  // ── jobs ────────────────────────────────────────────────────────────────────────────────
  /**
   * The distillation settings the user chose (user, workspace or folder level). Unset ones are left
   * out, so the worker applies the model's recommended defaults (the demo model's, from its
   * training.json) and then DocDistill's; package.json shows the latter.
   */
  private settings(): Record<string, unknown> {
    const d = this.cfg();
    const keys = ['questionsPerRound', 'rounds', 'questionTemperature', 'answerTemperature', 'distillTemperature', 'loss', 'loraRank', 'loraAlpha', 'loraTargets', 'learningRate', 'epochs', 'generalShare'];
    const out: Record<string, unknown> = {};
    for (const k of keys) {
      const i = d.inspect(`distill.${k}`);
      const v = i?.workspaceFolderValue ?? i?.workspaceValue ?? i?.globalValue;
      if (v !== undefined) out[k] = v;
    }
    const q = d.get<string>('baseQuantization');
    if (q && q !== 'none') out.baseQuantization = q;
    return out;
  }

  async distillUris(uris: vscode.Uri[]): Promise<void> {
    const folders = new Set(uris.map((u) => vscode.workspace.getWorkspaceFolder(u)?.uri.toString()));
    if (folders.size > 1) return void vscode.window.showErrorMessage(vscode.l10n.t('DocDistill: pick docs of one workspace folder at a time (each folder has its own adapters).'));
    const target = uris[0] && vscode.workspace.getWorkspaceFolder(uris[0]);
    if (target && !this.useFolder(target)) return;
    const root = this.root;
    if (!root) return void vscode.window.showErrorMessage('DocDistill: open a folder first.');
    if (!uris.length) {
      const picked = await vscode.window.showOpenDialog({ canSelectMany: true, canSelectFolders: true, filters: { Markdown: ['md', 'markdown'] }, defaultUri: vscode.Uri.file(root), openLabel: 'Distill' });
      if (!picked?.length) return;
      uris = picked;
    }
    const inputs = uris.map((u) => relative(root, u.fsPath)).filter((r) => r && !r.startsWith('..'));
    if (inputs.length !== uris.length) return void vscode.window.showErrorMessage('DocDistill: only files inside the workspace folder can be distilled.');
    await this.runJob(inputs, this.cfg().get<string>('adapterName', 'docs'));
  }

  async distillDocsFolder(): Promise<void> {
    const all = vscode.workspace.workspaceFolders ?? [];
    const picked = all.length > 1 ? await vscode.window.showWorkspaceFolderPick({ placeHolder: vscode.l10n.t('Distill the docs of which folder?') }) : all[0];
    if (!picked) return;
    if (!this.useFolder(picked)) return;
    const glob = this.cfg().get<string>('docsGlob', 'docs/**/*.md');
    const files = await vscode.workspace.findFiles(new vscode.RelativePattern(picked, glob), '**/{node_modules,.docdistill}/**');
    if (!files.length) return void vscode.window.showWarningMessage(`DocDistill: no Markdown files match "${glob}" (setting docdistill.docsGlob).`, 'Open Settings').then((a) => a && vscode.commands.executeCommand('workbench.action.openSettings', 'docdistill.docsGlob'));
    await this.distillUris(files);
  }

  async distillDemo(): Promise<void> {
    const root = this.root;
    if (!root) return void vscode.window.showErrorMessage('DocDistill: open a folder first.');
    const dest = vscode.Uri.file(join(root, 'docdistill-demo'));
    const src = vscode.Uri.file(this.ctx.asAbsolutePath(join('examples', 'docs')));
    for (const [name] of await vscode.workspace.fs.readDirectory(src)) {
      if (name.endsWith('.md')) await vscode.workspace.fs.copy(vscode.Uri.joinPath(src, name), vscode.Uri.joinPath(dest, name), { overwrite: true });
    }
    if (this.cfg().get<string>('model', '')) {
      const use = await vscode.window.showInformationMessage('The demo docs are about the demo model\'s world. Use the built-in demo model for this workspace?', 'Use Demo Model', 'Keep My Model');
      if (use === 'Use Demo Model') await this.cfg().update('model', '', vscode.ConfigurationTarget.Global);
    }
    await this.runJob(['docdistill-demo'], 'demo');
  }

  async runJob(inputs: string[], name: string): Promise<P.DistillResult | undefined> {
    if (this.running) {
      void vscode.window.showWarningMessage(`DocDistill: "${this.running.job.name}" is still running. Cancel it first, or wait.`, 'Cancel Job').then((a) => a && this.cancel());
      return undefined;
    }
    if (this.root && ensureGitignore(this.root)) this.log.info('wrote .docdistill/.gitignore (run folders stay out of git)');
    const jobId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
    const job: JobView = { jobId, name, state: 'running', started: Date.now(), loss: [], validation: [], samples: [], log: [] };
    this.jobs.push(job);
    while (this.jobs.length > 20) this.jobs.shift();
    const abort = new AbortController();
    this.running = { job, abort };
    void vscode.commands.executeCommand('setContext', 'docdistill.jobRunning', true);
    this.updateStatus();
    this.changed.fire({});
    try {
      return await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `DocDistill: distilling into "${name}"`, cancellable: true }, async (progress, token) => {
        token.onCancellationRequested(() => abort.abort());
        let last = 0;
        const sub = this.onDidChange((e) => {
          if (e.jobId !== jobId || !e.event) return;
          const pct = this.percent(job);
          if (pct !== undefined && pct > last) {
            progress.report({ increment: pct - last, message: this.describe(job) });
            last = pct;
          } else if (e.event.type === 'phase') progress.report({ message: this.describe(job) });
        });
        try {
          const w = await this.client();
          const res = await w.distill({ jobId, inputs, name, settings: this.settings() }, abort.signal);
          job.state = 'done';
          const s = res.summary;
          void vscode.window.showInformationMessage(
            s ? `DocDistill: "${name}" learned its docs — held-out answers (F1): base ${pct(s.base.f1)}, student ${pct(s.student.f1)}, teacher with docs ${pct(s.teacher.f1)}.` : `DocDistill: "${name}" is ready.`,
            'Chat', 'Dashboard',
          ).then((a) => a === 'Chat' ? ChatPanel.show(this) : a === 'Dashboard' ? DashboardPanel.show(this) : undefined);
          await this.refreshAdapters();
          return res;
        } finally {
          sub.dispose();
        }
      });
    } catch (e) {
      const err = e as Error & { code?: number };
      if (abort.signal.aborted || err.code === P.ErrorCodes.Cancelled) {
        job.state = 'cancelled';
        this.log.info(`job ${name} cancelled; run it again to resume`);
        void vscode.window.showInformationMessage(`DocDistill: "${name}" cancelled. Distill again to resume where it stopped.`);
      } else {
        job.state = 'failed';
        job.error = err.message;
        this.log.error(`job ${name} failed: ${err.message}${err instanceof WorkerGoneError ? '' : ''}`);
        void vscode.window.showErrorMessage(`DocDistill: ${err.message}`, 'Show Log').then((a) => a && this.log.show());
      }
      return undefined;
    } finally {
      job.finished = Date.now();
      this.running = undefined;
      void vscode.commands.executeCommand('setContext', 'docdistill.jobRunning', false);
      void this.ctx.workspaceState.update('docdistill.jobs', this.jobs.map((j) => ({ ...j, log: j.log.slice(-50) })));
      this.updateStatus();
      this.changed.fire({});
    }
  }

  cancel(): void {
    if (!this.running) return void vscode.window.showInformationMessage('DocDistill: no job is running.');
    this.running.abort.abort();
    this.log.info(`cancelling ${this.running.job.name}…`);
  }

  private onJobEvent(jobId: string, e: P.JobEvent): void {
    const job = this.jobs.find((j) => j.jobId === jobId);
    if (!job) return;
    switch (e.type) {
      case 'run': job.runId = e.runId; break;
      case 'phase': if (e.status === 'start') { job.phase = e.phase; job.phaseProgress = undefined; } break;
      case 'progress': job.phaseProgress = { done: e.done, total: e.total }; job.etaSec = e.etaSec; break;
      case 'train': job.loss.push({ step: e.step, loss: e.loss }); job.lr = e.lr; job.tokensPerSec = e.tokensPerSec; job.etaSec = e.etaSec; job.totalSteps = e.totalSteps; job.phaseProgress = { done: e.step, total: e.totalSteps }; break;
      case 'validation': job.validation.push({ step: e.step, loss: e.loss }); break;
      case 'sample': job.samples.push({ source: e.source, question: e.question, answer: e.answer }); break;
      case 'eval': job.eval = { summary: e.summary, rows: e.rows }; break;
      case 'log': job.log.push(e.message); this.log[e.level === 'warn' ? 'warn' : 'info'](`[${job.name}] ${e.message}`); break;
      case 'done': break;
    }
    this.updateStatus();
    this.changed.fire({ jobId, event: e });
  }

  private percent(job: JobView): number | undefined {
    const weights: Record<string, [number, number]> = { ingest: [0, 2], questions: [2, 25], answers: [27, 23], train: [50, 40], evaluate: [90, 10] };
    const w = job.phase ? weights[job.phase] : undefined;
    if (!w) return undefined;
    const f = job.phaseProgress && job.phaseProgress.total ? job.phaseProgress.done / job.phaseProgress.total : 0;
    return Math.round(w[0] + w[1] * Math.min(1, f));
  }

  private describe(job: JobView): string {
    const p = job.phaseProgress;
    const eta = job.etaSec && Number.isFinite(job.etaSec) ? ` · ${job.etaSec > 90 ? `${Math.round(job.etaSec / 60)} min` : `${Math.round(job.etaSec)} s`} left` : '';
    if (job.phase === 'train' && job.loss.length) return `training, step ${p?.done}/${p?.total}, loss ${job.loss.at(-1)!.loss.toFixed(3)}${eta}`;
    return `${job.phase ?? 'starting'}${p ? ` ${p.done}/${p.total}` : ''}${eta}`;
  }

  private updateStatus(): void {
    const r = this.running?.job;
    if (r) {
      const pc = this.percent(r);
      this.status.text = r.state === 'restarting' ? '$(sync~spin) DocDistill: restarting worker' : `$(sync~spin) DocDistill: ${this.describe(r)}${pc !== undefined ? ` (${pc}%)` : ''}`;
      this.status.tooltip = new vscode.MarkdownString(`Distilling **${r.name}** — click for the dashboard. Cancel with *DocDistill: Cancel Job*.`);
      this.status.backgroundColor = undefined;
    } else {
      const stale = this.adapters.filter((a) => a.stale);
      this.status.text = stale.length ? `$(warning) DocDistill: ${stale.length} stale adapter${stale.length > 1 ? 's' : ''}` : '$(sparkle) DocDistill';
      this.status.tooltip = stale.length ? `Docs changed since ${stale.map((a) => a.name).join(', ')} ${stale.length > 1 ? 'were' : 'was'} trained — click for the dashboard` : 'DocDistill — click for the dashboard';
      this.status.backgroundColor = stale.length ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    }
    this.status.show();
  }

  dashboardState(): DashboardState {
    return { model: this.model, jobs: this.jobs, adapters: this.adapters };
  }

  // ── watcher ─────────────────────────────────────────────────────────────────────────────
  private startWatcher(): void {
    this.watcher?.dispose();
    const root = this.root;
    if (!root) return;
    this.watcher = new DocsWatcher(root, this.cfg().get<string>('docsGlob', 'docs/**/*.md'), (files) => void this.onDocsChanged(files), (m) => this.log.debug(m));
  }

  private async onDocsChanged(files: string[]): Promise<void> {
    this.log.info(`docs changed: ${files.join(', ')}`);
    if (!this.worker) return; // nothing trained in this session yet; the next list shows staleness
    await this.refreshAdapters();
    const stale = this.adapters.filter((a) => a.stale && a.sources.some((s) => files.includes(s)));
    if (!stale.length || this.running) return;
    const mode = this.cfg().get<string>('autoRedistill', 'ask');
    for (const a of stale) {
      if (mode === 'off') continue;
      const go = mode === 'on' || (await vscode.window.showInformationMessage(`DocDistill: ${a.changed + a.removed} passage(s) of the docs behind "${a.name}" changed. Re-distill what changed?`, 'Re-distill', 'Not Now')) === 'Re-distill';
      if (go) await this.runJob(a.sources, a.name);
    }
  }

  // ── model and adapters ──────────────────────────────────────────────────────────────────
  async selectModel(): Promise<void> {
    type Item = vscode.QuickPickItem & { id: string };
    const items: Item[] = [
      { id: 'demo', label: '$(beaker) Built-in demo model', description: 'a small model of a made-up world, for trying DocDistill' },
      { id: 'folder', label: '$(folder) Choose a local model folder…', description: 'Hugging Face layout: config.json, *.safetensors, tokenizer.json' },
      { id: 'hub', label: '$(cloud-download) Download from Hugging Face…', description: 'e.g. Qwen/Qwen2.5-0.5B-Instruct' },
    ];
    const pick = await vscode.window.showQuickPick(items, { title: 'DocDistill: Select Base Model', placeHolder: `current: ${this.cfg().get<string>('model') || 'built-in demo model'}` });
    if (!pick) return;
    let value = '';
    if (pick.id === 'folder') {
      const f = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, openLabel: 'Use This Model' });
      if (!f?.[0]) return;
      const problem = checkModelFolder(f[0].fsPath);
      if (problem) return void vscode.window.showErrorMessage(`DocDistill: ${problem}`);
      value = f[0].fsPath;
    } else if (pick.id === 'hub') {
      const id = await vscode.window.showInputBox({ title: 'Hugging Face model id', placeHolder: 'Qwen/Qwen2.5-0.5B-Instruct', validateInput: (v) => (looksLikeHubId(v.trim()) ? undefined : 'owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct') });
      if (!id) return;
      const dest = join(this.ctx.globalStorageUri.fsPath, 'models', id.trim().replace('/', '--'));
      const ok = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Downloading ${id}`, cancellable: true }, async (progress, token) => {
        const ac = new AbortController();
        token.onCancellationRequested(() => ac.abort());
        let last = 0;
        await downloadFromHub(id.trim(), dest, {
          endpoint: process.env.HF_ENDPOINT, token: await hfToken(this.ctx.secrets), signal: ac.signal,
          onProgress: (done, total, file) => {
            const pc = total ? Math.floor((100 * done) / total) : 0;
            if (pc > last) progress.report({ increment: pc - last, message: `${file} — ${(done / 2 ** 20).toFixed(0)}/${(total / 2 ** 20).toFixed(0)} MB` });
            last = Math.max(last, pc);
          },
        });
        return true;
      }).then((x) => x, (e: Error) => {
        void vscode.window.showErrorMessage(`DocDistill: download failed: ${e.message}`);
        return false;
      });
      if (!ok) return;
      const problem = checkModelFolder(dest);
      if (problem) return void vscode.window.showErrorMessage(`DocDistill: ${problem}`);
      value = id.trim();
    }
    // Machine-scoped: a local path belongs in the user's settings, never in a shared .vscode/settings.json.
    await this.cfg().update('model', value, vscode.ConfigurationTarget.Global);
    this.log.info(`base model: ${value || 'built-in demo model'}`);
    await this.restartWorker();
    void vscode.window.showInformationMessage(`DocDistill: base model set to ${value || 'the built-in demo model'}.`);
  }

  async manageAdapters(): Promise<void> {
    await this.refreshAdapters();
    if (!this.adapters.length) return void vscode.window.showInformationMessage('DocDistill: no adapters yet. Distill some docs first.', 'Distill Docs Folder').then((a) => a && this.distillDocsFolder());
    const a = await vscode.window.showQuickPick(this.adapters.map((x) => ({
      label: `${x.active ? '$(check) ' : ''}${x.name}`, description: `${x.sources.length} doc(s), ${x.chunks} passages${x.stale ? ' — $(warning) stale' : ''}`, detail: x.sources.join(', '), x,
    })), { title: 'DocDistill: Manage Adapters' });
    if (!a) return;
    const action = await vscode.window.showQuickPick([
      { label: '$(check) Activate for chat', id: 'activate' }, { label: '$(refresh) Re-distill its docs', id: 'redistill' },
      { label: '$(export) Export (PEFT folder)…', id: 'export' }, { label: '$(merge) Merge into a model folder…', id: 'merge' }, { label: '$(trash) Delete', id: 'delete' },
    ], { title: `Adapter ${a.x.name}` });
    if (!action) return;
    const w = await this.client();
    try {
      if (action.id === 'activate') await w.request(P.ActivateAdapter.type, { name: a.x.name });
      if (action.id === 'redistill') await this.runJob(a.x.sources, a.x.name);
      if (action.id === 'delete') {
        if ((await vscode.window.showWarningMessage(`Delete adapter "${a.x.name}"?`, { modal: true }, 'Delete')) !== 'Delete') return;
        await w.request(P.DeleteAdapter.type, { name: a.x.name });
      }
      if (action.id === 'export' || action.id === 'merge') {
        const to = await vscode.window.showSaveDialog({ defaultUri: vscode.Uri.file(join(this.root!, `${a.x.name}-${action.id === 'merge' ? 'merged' : 'adapter'}`)), saveLabel: action.id === 'merge' ? 'Merge Here' : 'Export Here' });
        if (!to) return;
        const r = await w.request(action.id === 'merge' ? P.MergeAdapter.type : P.ExportAdapter.type, { name: a.x.name, dest: to.fsPath });
        void vscode.window.showInformationMessage(`DocDistill: written to ${r.dir}`);
      }
    } catch (e) {
      void vscode.window.showErrorMessage(`DocDistill: ${(e as Error).message}`);
    }
    await this.refreshAdapters();
  }

  dispose(): void {
    this.watcher?.dispose();
    for (const d of this.disposables) d.dispose();
    this.status.dispose();
    this.changed.dispose();
    void this.worker?.dispose(3000);
    this.log.dispose();
  }

  async shutdown(): Promise<void> {
    this.watcher?.dispose();
    await this.worker?.dispose(3000);
  }
}

const pct = (x: number) => `${Math.round(100 * x)}%`;
