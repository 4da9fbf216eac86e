// The extension's entry point: builds the DocDistill object and hands it the context.
import type * as vscode from 'vscode';
import { DocDistill } from './host/docdistill';

let dd: DocDistill | undefined;

export async function activate(ctx: vscode.ExtensionContext): Promise<void> {
  dd = new DocDistill(ctx);
  ctx.subscriptions.push(dd);
  await dd.activate();
}

export async function deactivate(): Promise<void> {
  await dd?.shutdown();
}
