// "Manage Adapters": pick an adapter, then activate it for chat, re-distill its docs, export it
// (PEFT folder), merge it into a model folder, or delete it.
import * as vscode from 'vscode';
import { join } from 'node:path';
import * as P from '../protocol';
import type { DocDistill } from './docdistill';
import type { Jobs } from './jobs';

const t = vscode.l10n.t;

export async function manageAdapters(dd: DocDistill, jobs: Jobs): Promise<void> {
  await dd.refreshAdapters();
  if (!dd.adapters.length)
    return void vscode.window
      .showInformationMessage(t('DocDistill: no adapters yet. Distill some docs first.'), t('Distill Docs Folder'))
      .then((a) => void (a && jobs.distillDocsFolder()));
  const a = await vscode.window.showQuickPick(
    dd.adapters.map((x) => ({
      label: `${x.active ? '$(check) ' : ''}${x.name}`,
      description:
        t('{0} doc(s), {1} passages', x.sources.length, x.chunks) + (x.stale ? ` — $(warning) ${t('stale')}` : ''),
      detail: x.sources.join(', '),
      x,
    })),
    { title: t('DocDistill: Manage Adapters') },
  );
  if (!a) return;
  const action = await vscode.window.showQuickPick(
    [
      { label: `$(check) ${t('Activate for chat')}`, id: 'activate' },
      { label: `$(refresh) ${t('Re-distill its docs')}`, id: 'redistill' },
      { label: `$(export) ${t('Export (PEFT folder)…')}`, id: 'export' },
      { label: `$(merge) ${t('Merge into a model folder…')}`, id: 'merge' },
      { label: `$(trash) ${t('Delete')}`, id: 'delete' },
    ],
    { title: t('Adapter {0}', a.x.name) },
  );
  if (!action) return;
  const w = await dd.client();
  try {
    if (action.id === 'activate') await w.request(P.ActivateAdapter.type, { name: a.x.name });
    if (action.id === 'redistill') await jobs.runJob(a.x.sources, a.x.name);
    if (action.id === 'delete') {
      if (
        (await vscode.window.showWarningMessage(t('Delete adapter "{0}"?', a.x.name), { modal: true }, t('Delete'))) !==
        t('Delete')
      )
        return;
      await w.request(P.DeleteAdapter.type, { name: a.x.name });
    }
    if (action.id === 'export' || action.id === 'merge') {
      const to = await vscode.window.showSaveDialog({
        defaultUri: vscode.Uri.file(join(dd.root!, `${a.x.name}-${action.id === 'merge' ? 'merged' : 'adapter'}`)),
        saveLabel: action.id === 'merge' ? t('Merge Here') : t('Export Here'),
      });
      if (!to) return;
      const r = await w.request(action.id === 'merge' ? P.MergeAdapter.type : P.ExportAdapter.type, {
        name: a.x.name,
        dest: to.fsPath,
      });
      void vscode.window.showInformationMessage(t('DocDistill: written to {0}', r.dir));
    }
  } catch (e) {
    void vscode.window.showErrorMessage(t('DocDistill: {0}', (e as Error).message));
  }
  await dd.refreshAdapters();
}
