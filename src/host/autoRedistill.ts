// Follows the docs of the current workspace folder (the docs glob) and, when docs behind an
// adapter change, offers to re-distill them (setting docdistill.autoRedistill: ask, on, off).
import * as vscode from 'vscode';
import type { DocDistill } from './docdistill';
import type { Jobs } from './jobs';
import { DocsWatcher } from './watcher';

const t = vscode.l10n.t;

export class AutoRedistill implements vscode.Disposable {
  private watcher?: DocsWatcher;
  private readonly subs: vscode.Disposable[];

  constructor(
    private readonly dd: DocDistill,
    private readonly jobs: Jobs,
  ) {
    this.subs = [
      dd.onDidChangeFolder(() => this.start()),
      vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration('docdistill.docsGlob') && this.start()),
    ];
    this.start();
  }

  private start(): void {
    this.watcher?.dispose();
    const root = this.dd.root;
    if (!root) return;
    this.watcher = new DocsWatcher(
      root,
      this.dd.cfg().get<string>('docsGlob', 'docs/**/*.md'),
      (files) => void this.onDocsChanged(files),
      (m) => this.dd.log.debug(m),
    );
  }

  private async onDocsChanged(files: string[]): Promise<void> {
    const dd = this.dd;
    dd.log.info(`docs changed: ${files.join(', ')}`);
    if (!dd.hasWorker) return; // nothing trained in this session yet; the next list shows staleness
    await dd.refreshAdapters();
    const stale = dd.adapters.filter((a) => a.stale && a.sources.some((s) => files.includes(s)));
    if (!stale.length || dd.running) return;
    const mode = dd.cfg().get<string>('autoRedistill', 'ask');
    const redistill = t('Re-distill');
    for (const a of stale) {
      if (mode === 'off') continue;
      const go =
        mode === 'on' ||
        (await vscode.window.showInformationMessage(
          t(
            'DocDistill: {0} passage(s) of the docs behind "{1}" changed. Re-distill what changed?',
            a.changed + a.removed,
            a.name,
          ),
          redistill,
          t('Not Now'),
        )) === redistill;
      if (go) await this.jobs.runJob(a.sources, a.name);
    }
  }

  dispose(): void {
    this.subs.forEach((s) => s.dispose());
    this.watcher?.dispose();
    this.watcher = undefined;
  }
}
