// What users expect without asking: .docdistill/ ignores its run folders in git (adapters stay
// committable), and a Hugging Face token kept in SecretStorage (the HF_TOKEN variable still wins).
import * as vscode from 'vscode';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SECRET = 'docdistill.hfToken';

/** Writes <root>/.docdistill/.gitignore the first time (never overwrites the user's). */
export function ensureGitignore(root: string): boolean {
  const dir = join(root, '.docdistill');
  const file = join(dir, '.gitignore');
  if (existsSync(file)) return false;
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    file,
    '# Written by DocDistill: run folders are large and local; adapters/ stays committable.\nruns/\n*.tmp\n',
  );
  return true;
}

/** The token for the hub: $HF_TOKEN, else the one stored with "Set Hugging Face Token". */
export async function hfToken(secrets: vscode.SecretStorage): Promise<string | undefined> {
  return process.env.HF_TOKEN || (await secrets.get(SECRET)) || undefined;
}

export function registerHousekeeping(ctx: vscode.ExtensionContext): vscode.Disposable {
  return vscode.commands.registerCommand('docdistill.setHfToken', async () => {
    const v = await vscode.window.showInputBox({
      title: vscode.l10n.t('Hugging Face token'),
      prompt: vscode.l10n.t(
        "Stored in VS Code's secret storage, used to download gated models. Leave empty to remove it. The HF_TOKEN environment variable, when set, is used instead.",
      ),
      password: true,
      ignoreFocusOut: true,
      placeHolder: 'hf_…',
    });
    if (v === undefined) return;
    if (v.trim()) await ctx.secrets.store(SECRET, v.trim());
    else await ctx.secrets.delete(SECRET);
    void vscode.window.showInformationMessage(
      v.trim()
        ? vscode.l10n.t('DocDistill: Hugging Face token stored.')
        : vscode.l10n.t('DocDistill: Hugging Face token removed.'),
    );
  });
}
