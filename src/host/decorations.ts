// Explorer badges on Markdown files, the way source control marks modified files: D = distilled
// into an adapter, S = stale (changed since the adapter was trained), and a dimmed "–" for
// Markdown files outside the docs glob. Setting docdistill.decorations turns them off.
import * as vscode from 'vscode';
import type { DocsIndex } from './views/docsIndex';

export class DocDecorations implements vscode.FileDecorationProvider, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<vscode.Uri | vscode.Uri[] | undefined>();
  readonly onDidChangeFileDecorations = this.changed.event;
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly index: DocsIndex) {
    this.subs.push(index.onDidChange(() => this.changed.fire(undefined)));
    this.subs.push(
      vscode.workspace.onDidChangeConfiguration(
        (e) => e.affectsConfiguration('docdistill.decorations') && this.changed.fire(undefined),
      ),
    );
    this.subs.push(vscode.window.registerFileDecorationProvider(this));
  }

  provideFileDecoration(uri: vscode.Uri): vscode.FileDecoration | undefined {
    if (uri.scheme !== 'file' || !vscode.workspace.getConfiguration('docdistill').get<boolean>('decorations', true))
      return undefined;
    const s = this.index.statusOf(uri);
    if (!s) return undefined;
    switch (s.state) {
      case 'distilled':
        return new vscode.FileDecoration(
          'D',
          vscode.l10n.t('DocDistill: distilled into {0}', s.adapters.join(', ')),
          new vscode.ThemeColor('charts.green'),
        );
      case 'stale':
        return new vscode.FileDecoration(
          'S',
          vscode.l10n.t('DocDistill: changed since {0} was distilled — re-distill to update', s.staleIn.join(', ')),
          new vscode.ThemeColor('list.warningForeground'),
        );
      case 'excluded':
        return new vscode.FileDecoration(
          '–',
          vscode.l10n.t('DocDistill: outside the docs glob (docdistill.docsGlob), not distilled'),
          new vscode.ThemeColor('gitDecoration.ignoredResourceForeground'),
        );
      default:
        return undefined;
    }
  }

  dispose(): void {
    this.subs.forEach((s) => s.dispose());
    this.changed.dispose();
  }
}
