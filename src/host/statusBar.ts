// The status bar item: the running job's phase and progress, else how many adapters are stale.
// A click opens the dashboard.
import * as vscode from 'vscode';
import type { DocDistill } from './docdistill';
import { describeJob, jobPercent } from './jobs';

const t = vscode.l10n.t;

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly subs: vscode.Disposable[];

  constructor(private readonly dd: DocDistill) {
    this.item = vscode.window.createStatusBarItem('docdistill.status', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'DocDistill';
    this.item.command = 'docdistill.openDashboard';
    this.subs = [dd.onDidChange(() => this.update()), dd.onDidChangeStatus(() => this.update())];
    this.update();
  }

  update(): void {
    const r = this.dd.running?.job;
    const s = this.item;
    if (r) {
      const pc = jobPercent(r);
      s.text =
        r.state === 'restarting'
          ? `$(sync~spin) ${t('DocDistill: restarting worker')}`
          : `$(sync~spin) DocDistill: ${describeJob(r)}${pc !== undefined ? ` (${pc}%)` : ''}`;
      s.tooltip = new vscode.MarkdownString(
        t('Distilling **{0}** — click for the dashboard. Cancel with *DocDistill: Cancel Job*.', r.name),
      );
      s.backgroundColor = undefined;
    } else {
      const stale = this.dd.adapters.filter((a) => a.stale);
      const names = stale.map((a) => a.name).join(', ');
      s.text = stale.length
        ? `$(warning) ${stale.length > 1 ? t('DocDistill: {0} stale adapters', stale.length) : t('DocDistill: 1 stale adapter')}`
        : '$(sparkle) DocDistill';
      s.tooltip = stale.length
        ? stale.length > 1
          ? t('Docs changed since {0} were trained — click for the dashboard', names)
          : t('Docs changed since {0} was trained — click for the dashboard', names)
        : t('DocDistill — click for the dashboard');
      s.backgroundColor = stale.length ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    }
    s.show();
  }

  dispose(): void {
    this.subs.forEach((x) => x.dispose());
    this.item.dispose();
  }
}
