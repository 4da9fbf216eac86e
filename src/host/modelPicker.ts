// "Select Base Model": the built-in demo model, a local model folder, or a download from the
// Hugging Face hub (verified, resumable, cancellable). The choice goes to the user's settings.
import * as vscode from 'vscode';
import { join } from 'node:path';
import type { DocDistill } from './docdistill';
import { checkModelFolder } from './modelFolder';
import { downloadFromHub, looksLikeHubId } from './hub';
import { hfToken } from './housekeeping';

const t = vscode.l10n.t;

export async function selectModel(dd: DocDistill): Promise<void> {
  type Item = vscode.QuickPickItem & { id: string };
  const items: Item[] = [
    {
      id: 'demo',
      label: `$(beaker) ${t('Built-in demo model')}`,
      description: t('a small model of a made-up world, for trying DocDistill'),
    },
    {
      id: 'folder',
      label: `$(folder) ${t('Choose a local model folder…')}`,
      description: t('Hugging Face layout: config.json, *.safetensors, tokenizer.json'),
    },
    {
      id: 'hub',
      label: `$(cloud-download) ${t('Download from Hugging Face…')}`,
      description: t('e.g. {0}', 'Qwen/Qwen2.5-0.5B-Instruct'),
    },
  ];
  const pick = await vscode.window.showQuickPick(items, {
    title: t('DocDistill: Select Base Model'),
    placeHolder: t('current: {0}', dd.cfg().get<string>('model') || t('built-in demo model')),
  });
  if (!pick) return;
  let value = '';
  if (pick.id === 'folder') {
    const f = await vscode.window.showOpenDialog({
      canSelectFolders: true,
      canSelectFiles: false,
      openLabel: t('Use This Model'),
    });
    if (!f?.[0]) return;
    const problem = checkModelFolder(f[0].fsPath);
    if (problem) return void vscode.window.showErrorMessage(t('DocDistill: {0}', problem));
    value = f[0].fsPath;
  } else if (pick.id === 'hub') {
    const id = await vscode.window.showInputBox({
      title: t('Hugging Face model id'),
      placeHolder: 'Qwen/Qwen2.5-0.5B-Instruct',
      validateInput: (v) =>
        looksLikeHubId(v.trim()) ? undefined : t('owner/name, e.g. {0}', 'Qwen/Qwen2.5-0.5B-Instruct'),
    });
    if (!id) return;
    const dest = join(dd.ctx.globalStorageUri.fsPath, 'models', id.trim().replace('/', '--'));
    const ok = await vscode.window
      .withProgress(
        { location: vscode.ProgressLocation.Notification, title: t('Downloading {0}', id), cancellable: true },
        async (progress, token) => {
          const ac = new AbortController();
          token.onCancellationRequested(() => ac.abort());
          let last = 0;
          await downloadFromHub(id.trim(), dest, {
            endpoint: process.env.HF_ENDPOINT,
            token: await hfToken(dd.ctx.secrets),
            signal: ac.signal,
            onProgress: (done, total, file) => {
              const pc = total ? Math.floor((100 * done) / total) : 0;
              if (pc > last)
                progress.report({
                  increment: pc - last,
                  message: t('{0} — {1}/{2} MB', file, (done / 2 ** 20).toFixed(0), (total / 2 ** 20).toFixed(0)),
                });
              last = Math.max(last, pc);
            },
          });
          return true;
        },
      )
      .then(
        (x) => x,
        (e: Error) => {
          void vscode.window.showErrorMessage(t('DocDistill: download failed: {0}', e.message));
          return false;
        },
      );
    if (!ok) return;
    const problem = checkModelFolder(dest);
    if (problem) return void vscode.window.showErrorMessage(t('DocDistill: {0}', problem));
    value = id.trim();
  }
  // Machine-scoped: a local path belongs in the user's settings, never in a shared .vscode/settings.json.
  await dd.cfg().update('model', value, vscode.ConfigurationTarget.Global);
  dd.log.info(`base model: ${value || 'built-in demo model'}`);
  await dd.restartWorker();
  void vscode.window.showInformationMessage(
    value
      ? t('DocDistill: base model set to {0}.', value)
      : t('DocDistill: base model set to the built-in demo model.'),
  );
}
