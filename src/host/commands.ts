// The palette and menu commands of package.json, one line each: the command id and what it does.
// (The tree items' own commands live with the views, in views/index.ts.)
import * as vscode from 'vscode';
import type { DocDistill } from './docdistill';
import type { Jobs } from './jobs';
import { ChatPanel, DashboardPanel } from './panels';
import { selectModel } from './modelPicker';
import { manageAdapters } from './adapterMenu';

export type CommandTable = Record<string, (...args: never[]) => unknown>;

export function commandTable(dd: DocDistill, jobs: Jobs): CommandTable {
  return {
    'docdistill.showLog': () => dd.log.show(),
    'docdistill.selectModel': () => selectModel(dd),
    'docdistill.distill': (uri?: vscode.Uri, uris?: vscode.Uri[]) =>
      jobs.distillUris(uris?.length ? uris : uri ? [uri] : []),
    'docdistill.distillDocsFolder': () => jobs.distillDocsFolder(),
    'docdistill.distillDemo': () => jobs.distillDemo(),
    'docdistill.openDashboard': () => DashboardPanel.show(dd),
    'docdistill.chat': () => ChatPanel.show(dd),
    'docdistill.cancelJob': () => jobs.cancel(),
    'docdistill.manageAdapters': () => manageAdapters(dd, jobs),
  };
}

export function registerCommands(table: CommandTable): vscode.Disposable {
  return vscode.Disposable.from(...Object.entries(table).map(([id, fn]) => vscode.commands.registerCommand(id, fn)));
}
