// The extension's entry point: builds the context (DocDistill) and the modules around it, and
// reports an activation that fails (a message with the log) instead of leaving it to the editor's
// own log, where no user looks.
import * as vscode from 'vscode';
import { DocDistill } from './host/docdistill';
import { Jobs } from './host/jobs';
import { StatusBar } from './host/statusBar';
import { AutoRedistill } from './host/autoRedistill';
import { commandTable, registerCommands } from './host/commands';
import { ChatPanel, DashboardPanel } from './host/panels';
import { registerViews } from './host/views';
import { registerChatParticipant } from './host/chatParticipant';
import { registerHousekeeping } from './host/housekeeping';

let dd: DocDistill | undefined;
let docs: AutoRedistill | undefined;

export async function activate(ctx: vscode.ExtensionContext): Promise<void> {
  dd = new DocDistill(ctx);
  ctx.subscriptions.push(dd);
  const d = dd;
  try {
    const version = (ctx.extension.packageJSON as { version: string }).version;
    d.log.info(`DocDistill ${version} activated`);
    const jobs = new Jobs(d);
    d.own(
      registerCommands(commandTable(d, jobs)),
      vscode.window.registerWebviewPanelSerializer(DashboardPanel.viewType, {
        deserializeWebviewPanel: async (panel) => DashboardPanel.revive(d, panel),
      }),
      vscode.window.registerWebviewPanelSerializer(ChatPanel.viewType, {
        deserializeWebviewPanel: async (panel) => ChatPanel.revive(d, panel),
      }),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (
          e.affectsConfiguration('docdistill.model') ||
          e.affectsConfiguration('docdistill.device') ||
          e.affectsConfiguration('docdistill.threads')
        )
          void d.restartWorker();
      }),
      registerViews(d, jobs),
      registerChatParticipant(d),
      registerHousekeeping(ctx),
      new StatusBar(d),
      (docs = new AutoRedistill(d, jobs)),
    );
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    d.log.error(`activation failed: ${e instanceof Error && e.stack ? e.stack : message}`);
    void vscode.window
      .showErrorMessage(vscode.l10n.t('DocDistill could not start: {0}', message), vscode.l10n.t('Show Log'))
      .then((a) => a && d.log.show());
    throw e;
  }
}

export async function deactivate(): Promise<void> {
  docs?.dispose();
  await dd?.shutdown();
}
