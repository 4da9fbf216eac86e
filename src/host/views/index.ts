// Registers the DocDistill view container's trees, the Explorer decorations and the commands of
// the tree items (inline actions on adapters and runs).
import * as vscode from 'vscode';
import { join } from 'node:path';
import * as P from '../../protocol';
import type { DocDistill } from '../docdistill';
import type { Jobs } from '../jobs';
import { DashboardPanel, ChatPanel } from '../panels';
import { checkModelFolder } from '../modelFolder';
import { DocDecorations } from '../decorations';
import { DocsIndex } from './docsIndex';
import { AdaptersTree, DocsTree, RunsTree, type AdapterRow } from './trees';

const t = vscode.l10n.t;

export function registerViews(dd: DocDistill, jobs: Jobs): vscode.Disposable {
  const subs: vscode.Disposable[] = [];
  const index = new DocsIndex((m) => dd.log.debug(m));
  const adapters = new AdaptersTree(dd, index);
  const runs = new RunsTree(dd);
  const docs = new DocsTree(index);
  subs.push(index, new DocDecorations(index));
  subs.push(vscode.window.createTreeView('docdistill.adapters', { treeDataProvider: adapters, showCollapseAll: true }));
  subs.push(vscode.window.createTreeView('docdistill.runs', { treeDataProvider: runs }));
  subs.push(vscode.window.createTreeView('docdistill.docs', { treeDataProvider: docs }));
  const modelContext = () =>
    void vscode.commands.executeCommand('setContext', 'docdistill.modelMissing', !!checkModelFolder(dd.modelDir()));
  modelContext();
  subs.push(
    vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration('docdistill.model') && modelContext()),
  );
  subs.push(
    index.onDidChange(() => {
      adapters.refresh();
      docs.refresh();
    }),
  );
  let last = 0;
  let timer: NodeJS.Timeout | undefined;
  subs.push(
    dd.onDidChange((e) => {
      if (!e.event) {
        adapters.refresh();
        runs.refresh();
        index.schedule();
        return;
      }
      // Job events arrive many times a second while training: refresh the Runs view at most twice a second.
      const now = Date.now();
      if (now - last > 500) {
        last = now;
        runs.refresh();
      } else if (!timer) {
        timer = setTimeout(() => {
          timer = undefined;
          last = Date.now();
          runs.refresh();
        }, 500);
      }
    }),
  );

  const c = (id: string, fn: (...a: never[]) => unknown) => subs.push(vscode.commands.registerCommand(id, fn));
  const withWorker = async (fn: (w: Awaited<ReturnType<DocDistill['client']>>) => Promise<unknown>) => {
    try {
      await fn(await dd.client());
    } catch (e) {
      void vscode.window.showErrorMessage(t('DocDistill: {0}', (e as Error).message));
    }
    await dd.refreshAdapters();
    index.schedule(0);
  };
  c('docdistill.refreshViews', async () => {
    await index.refresh();
    adapters.refresh();
    runs.refresh();
  });
  // An adapter belongs to its workspace folder: act on it there (multi-root).
  const inFolder = (a: AdapterRow) => !a.folder || dd.useFolder(a.folder);
  c(
    'docdistill.adapter.activate',
    (a: AdapterRow) => inFolder(a) && withWorker((w) => w.request(P.ActivateAdapter.type, { name: a.name })),
  );
  c('docdistill.adapter.chat', async (a: AdapterRow) => {
    if (!inFolder(a)) return;
    await withWorker((w) => w.request(P.ActivateAdapter.type, { name: a.name }));
    ChatPanel.show(dd);
  });
  c('docdistill.adapter.redistill', (a: AdapterRow) => inFolder(a) && jobs.runJob(a.sources, a.name));
  c('docdistill.adapter.delete', async (a: AdapterRow) => {
    if (!inFolder(a)) return;
    if (
      (await vscode.window.showWarningMessage(t('Delete adapter "{0}"?', a.name), { modal: true }, t('Delete'))) !==
      t('Delete')
    )
      return;
    await withWorker((w) => w.request(P.DeleteAdapter.type, { name: a.name }));
  });
  for (const kind of ['export', 'merge'] as const) {
    c(`docdistill.adapter.${kind}`, async (a: AdapterRow) => {
      if (!inFolder(a)) return;
      const root = a.folder?.uri.fsPath ?? dd.root;
      if (!root) return;
      const to = await vscode.window.showSaveDialog({
        defaultUri: vscode.Uri.file(join(root, `${a.name}-${kind === 'merge' ? 'merged' : 'adapter'}`)),
        saveLabel: kind === 'merge' ? t('Merge Here') : t('Export Here'),
      });
      if (!to) return;
      await withWorker(async (w) => {
        const r = await w.request(kind === 'merge' ? P.MergeAdapter.type : P.ExportAdapter.type, {
          name: a.name,
          dest: to.fsPath,
        });
        void vscode.window.showInformationMessage(t('DocDistill: written to {0}', r.dir));
      });
    });
  }
  c('docdistill.run.open', (j?: { jobId: string }) => DashboardPanel.show(dd, j?.jobId));
  return vscode.Disposable.from(...subs);
}
