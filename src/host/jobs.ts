// Distillation jobs: what to distill (files, the docs folder, the demo docs), one job at a time
// with a cancellable notification, its events folded into the job's view by the protocol's
// reducer, the outcome reported, and the last jobs kept in the workspace state.
import * as vscode from 'vscode';
import { join, relative } from 'node:path';
import * as P from '../protocol';
import { applyJobEvent } from '../protocol/jobs';
import type { JobView } from '../protocol/webview';
import type { DocDistill } from './docdistill';
import { ChatPanel, DashboardPanel } from './panels';
import { ensureGitignore } from './housekeeping';

const t = vscode.l10n.t;
const pct = (x: number) => `${Math.round(100 * x)}%`;

/** How far a job is, 0–100, weighting the phases by their usual share of the time. */
export function jobPercent(job: JobView): number | undefined {
  const weights: Record<string, [number, number]> = {
    ingest: [0, 2],
    questions: [2, 25],
    answers: [27, 23],
    train: [50, 40],
    evaluate: [90, 10],
  };
  const w = job.phase ? weights[job.phase] : undefined;
  if (!w) return undefined;
  const f = job.phaseProgress && job.phaseProgress.total ? job.phaseProgress.done / job.phaseProgress.total : 0;
  return Math.round(w[0] + w[1] * Math.min(1, f));
}

/** A job's phase, progress and time left, in a few words (notification and status bar). */
export function describeJob(job: JobView): string {
  const p = job.phaseProgress;
  const eta =
    job.etaSec && Number.isFinite(job.etaSec)
      ? ` · ${job.etaSec > 90 ? t('{0} min left', Math.round(job.etaSec / 60)) : t('{0} s left', Math.round(job.etaSec))}`
      : '';
  if (job.phase === 'train' && job.loss.length)
    return (
      t('training, step {0}/{1}, loss {2}', String(p?.done), String(p?.total), job.loss.at(-1)!.loss.toFixed(3)) + eta
    );
  return `${job.phase ?? t('starting')}${p ? ` ${p.done}/${p.total}` : ''}${eta}`;
}

export class Jobs {
  constructor(private readonly dd: DocDistill) {
    dd.jobEvent = (jobId, e) => this.onJobEvent(jobId, e);
  }

  /**
   * The distillation settings the user chose (user, workspace or folder level). Unset ones are left
   * out, so the worker applies the model's recommended defaults (the demo model's, from its
   * training.json) and then DocDistill's; package.json shows the latter.
   */
  private settings(): Record<string, unknown> {
    const d = this.dd.cfg();
    const keys = [
      'questionsPerRound',
      'rounds',
      'questionTemperature',
      'answerTemperature',
      'distillTemperature',
      'loss',
      'loraRank',
      'loraAlpha',
      'loraTargets',
      'learningRate',
      'epochs',
      'generalShare',
      'sectionPassages',
    ];
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
    const dd = this.dd;
    const folders = new Set(uris.map((u) => vscode.workspace.getWorkspaceFolder(u)?.uri.toString()));
    if (folders.size > 1)
      return void vscode.window.showErrorMessage(
        t('DocDistill: pick docs of one workspace folder at a time (each folder has its own adapters).'),
      );
    const target = uris[0] && vscode.workspace.getWorkspaceFolder(uris[0]);
    if (target && !dd.useFolder(target)) return;
    const root = dd.root;
    if (!root) return void vscode.window.showErrorMessage(t('DocDistill: open a folder first.'));
    if (!uris.length) {
      const picked = await vscode.window.showOpenDialog({
        canSelectMany: true,
        canSelectFolders: true,
        filters: { Markdown: ['md', 'markdown'] },
        defaultUri: vscode.Uri.file(root),
        openLabel: t('Distill'),
      });
      if (!picked?.length) return;
      uris = picked;
    }
    const inputs = uris.map((u) => relative(root, u.fsPath)).filter((r) => r && !r.startsWith('..'));
    if (inputs.length !== uris.length)
      return void vscode.window.showErrorMessage(
        t('DocDistill: only files inside the workspace folder can be distilled.'),
      );
    await this.runJob(inputs, dd.cfg().get<string>('adapterName', 'docs'));
  }

  async distillDocsFolder(): Promise<void> {
    const all = vscode.workspace.workspaceFolders ?? [];
    const picked =
      all.length > 1
        ? await vscode.window.showWorkspaceFolderPick({ placeHolder: t('Distill the docs of which folder?') })
        : all[0];
    if (!picked) return;
    if (!this.dd.useFolder(picked)) return;
    const glob = this.dd.cfg().get<string>('docsGlob', 'docs/**/*.md');
    const files = await vscode.workspace.findFiles(
      new vscode.RelativePattern(picked, glob),
      '**/{node_modules,.docdistill}/**',
    );
    if (!files.length)
      return void vscode.window
        .showWarningMessage(
          t('DocDistill: no Markdown files match "{0}" (setting docdistill.docsGlob).', glob),
          t('Open Settings'),
        )
        .then((a) => a && vscode.commands.executeCommand('workbench.action.openSettings', 'docdistill.docsGlob'));
    await this.distillUris(files);
  }

  async distillDemo(): Promise<void> {
    const dd = this.dd;
    const root = dd.root;
    if (!root) return void vscode.window.showErrorMessage(t('DocDistill: open a folder first.'));
    const dest = vscode.Uri.file(join(root, 'docdistill-demo'));
    const src = vscode.Uri.file(dd.ctx.asAbsolutePath(join('examples', 'docs')));
    for (const [name] of await vscode.workspace.fs.readDirectory(src)) {
      if (name.endsWith('.md'))
        await vscode.workspace.fs.copy(vscode.Uri.joinPath(src, name), vscode.Uri.joinPath(dest, name), {
          overwrite: true,
        });
    }
    if (dd.cfg().get<string>('model', '')) {
      const useDemo = t('Use Demo Model');
      const use = await vscode.window.showInformationMessage(
        t("The demo docs are about the demo model's world. Use the built-in demo model for this workspace?"),
        useDemo,
        t('Keep My Model'),
      );
      if (use === useDemo) await dd.cfg().update('model', '', vscode.ConfigurationTarget.Global);
    }
    await this.runJob(['docdistill-demo'], 'demo');
  }

  async runJob(inputs: string[], name: string): Promise<P.DistillResult | undefined> {
    const dd = this.dd;
    if (dd.running) {
      void vscode.window
        .showWarningMessage(
          t('DocDistill: "{0}" is still running. Cancel it first, or wait.', dd.running.job.name),
          t('Cancel Job'),
        )
        .then((a) => a && this.cancel());
      return undefined;
    }
    if (dd.root && ensureGitignore(dd.root)) dd.log.info('wrote .docdistill/.gitignore (run folders stay out of git)');
    const jobId = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
    const job: JobView = {
      jobId,
      name,
      state: 'running',
      started: Date.now(),
      loss: [],
      validation: [],
      samples: [],
      log: [],
    };
    dd.jobs.push(job);
    while (dd.jobs.length > 20) dd.jobs.shift();
    const abort = new AbortController();
    dd.running = { job, abort };
    void vscode.commands.executeCommand('setContext', 'docdistill.jobRunning', true);
    dd.fire();
    try {
      return await vscode.window.withProgress(
        {
          location: vscode.ProgressLocation.Notification,
          title: t('DocDistill: distilling into "{0}"', name),
          cancellable: true,
        },
        async (progress, token) => {
          token.onCancellationRequested(() => abort.abort());
          let last = 0;
          const sub = dd.onDidChange((e) => {
            if (e.jobId !== jobId || !e.event) return;
            const pc = jobPercent(job);
            if (pc !== undefined && pc > last) {
              progress.report({ increment: pc - last, message: describeJob(job) });
              last = pc;
            } else if (e.event.type === 'phase') progress.report({ message: describeJob(job) });
          });
          try {
            const w = await dd.client();
            const res = await w.distill({ jobId, inputs, name, settings: this.settings() }, abort.signal);
            job.state = 'done';
            const s = res.summary;
            const chat = t('Chat');
            const dashboard = t('Dashboard');
            void vscode.window
              .showInformationMessage(
                s
                  ? t(
                      'DocDistill: "{0}" learned its docs — held-out answers (F1): base {1}, student {2}, teacher with docs {3}.',
                      name,
                      pct(s.base.f1),
                      pct(s.student.f1),
                      pct(s.teacher.f1),
                    )
                  : t('DocDistill: "{0}" is ready.', name),
                chat,
                dashboard,
              )
              .then((a) => (a === chat ? ChatPanel.show(dd) : a === dashboard ? DashboardPanel.show(dd) : undefined));
            await dd.refreshAdapters();
            return res;
          } finally {
            sub.dispose();
          }
        },
      );
    } catch (e) {
      const err = e as Error & { code?: number };
      if (abort.signal.aborted || err.code === P.ErrorCodes.Cancelled) {
        job.state = 'cancelled';
        dd.log.info(`job ${name} cancelled; run it again to resume`);
        void vscode.window.showInformationMessage(
          t('DocDistill: "{0}" cancelled. Distill again to resume where it stopped.', name),
        );
      } else {
        job.state = 'failed';
        job.error = err.message;
        dd.log.error(`job ${name} failed: ${err.message}`);
        void vscode.window
          .showErrorMessage(t('DocDistill: {0}', err.message), t('Show Log'))
          .then((a) => a && dd.log.show());
      }
      return undefined;
    } finally {
      job.finished = Date.now();
      dd.running = undefined;
      void vscode.commands.executeCommand('setContext', 'docdistill.jobRunning', false);
      void dd.ctx.workspaceState.update(
        'docdistill.jobs',
        dd.jobs.map((j) => ({ ...j, log: j.log.slice(-50) })),
      );
      dd.fire();
    }
  }

  cancel(): void {
    const r = this.dd.running;
    if (!r) return void vscode.window.showInformationMessage(t('DocDistill: no job is running.'));
    r.abort.abort();
    this.dd.log.info(`cancelling ${r.job.name}…`);
  }

  private onJobEvent(jobId: string, e: P.JobEvent): void {
    const job = this.dd.jobs.find((j) => j.jobId === jobId);
    if (!job) return;
    applyJobEvent(job, e);
    if (e.type === 'log') this.dd.log[e.level === 'warn' ? 'warn' : 'info'](`[${job.name}] ${e.message}`);
    if (e.type === 'estimate' && e.long) {
      // Said before the user waits: the job goes on unless they stop it.
      const cancel = t('Cancel Job');
      void vscode.window
        .showWarningMessage(
          t(
            'DocDistill: {0} will take about {1} hours. To shorten it: {2}.',
            job.name,
            (e.totalSec / 3600).toFixed(1),
            e.suggestions.join('; '),
          ),
          cancel,
        )
        .then((a) => a === cancel && this.cancel());
    }
    this.dd.fire({ jobId, event: e });
  }
}
