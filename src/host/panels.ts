// The dashboard and chat webview panels: strict CSP with a nonce, scripts only from the
// extension's dist/webview folder, no remote content. Both survive a window reload (serializers
// and state re-sent on 'ready').
import * as vscode from 'vscode';
import { randomBytes } from 'node:crypto';
import * as P from '../protocol';
import type { DashboardState, FromChat, FromDashboard, ToChat, ToDashboard } from '../protocol/webview';
import type { WorkerClient } from './workerClient';

/** What the panels need of the extension: its files, its state, its worker. Nothing else. */
export interface PanelHost {
  readonly extensionUri: vscode.Uri;
  readonly adapters: readonly P.AdapterSummary[];
  readonly model?: P.ModelInfo;
  readonly onDidChange: vscode.Event<{ jobId?: string; event?: P.JobEvent }>;
  dashboardState(): DashboardState;
  client(): Promise<WorkerClient>;
  refreshAdapters(): Promise<void>;
}

const t = vscode.l10n.t;
const escapeAttr = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The page of a webview. Its strings come translated: the l10n bundle goes in as data-l10n. */
export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, script: string, title: string): string {
  const nonce = randomBytes(16).toString('base64');
  const src = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview', `${script}.js`));
  const csp = [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src ${webview.cspSource} 'nonce-${nonce}'`,
    `font-src ${webview.cspSource}`,
    `img-src ${webview.cspSource} data:`,
    "connect-src 'none'",
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="${escapeAttr(vscode.env.language)}">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${escapeAttr(title)}</title>
<style nonce="${nonce}">
  body { color: var(--vscode-foreground); background: var(--vscode-editor-background); font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); padding: 0 16px 24px; }
  h1 { font-size: 1.4em; font-weight: 600; margin: 16px 0 4px; } h2 { font-size: 1.1em; font-weight: 600; margin: 20px 0 8px; }
  .muted { color: var(--vscode-descriptionForeground); }
  .row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
  .card { border: 1px solid var(--vscode-panel-border); border-radius: 4px; padding: 10px 12px; margin: 10px 0; background: var(--vscode-sideBar-background); }
  .bar { height: 6px; background: var(--vscode-progressBar-background); border-radius: 3px; transition: width .3s; }
  .barbox { height: 6px; background: var(--vscode-editorWidget-background); border-radius: 3px; overflow: hidden; flex: 1; min-width: 120px; }
  .phases { display: flex; gap: 4px; margin: 6px 0; } .phase { padding: 2px 8px; border-radius: 10px; font-size: .85em; border: 1px solid var(--vscode-panel-border); }
  .phase.done { background: var(--vscode-testing-iconPassed); color: var(--vscode-editor-background); border-color: transparent; }
  .phase.now { background: var(--vscode-progressBar-background); color: var(--vscode-editor-background); border-color: transparent; }
  table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--vscode-panel-border); vertical-align: top; }
  th { color: var(--vscode-descriptionForeground); font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .stale { color: var(--vscode-editorWarning-foreground); } .err { color: var(--vscode-errorForeground); }
  svg text { fill: var(--vscode-descriptionForeground); font-size: 11px; } svg text.axis-title { font-weight: 600; }
  .loss-chart { max-width: 100%; display: block; } caption { text-align: left; color: var(--vscode-descriptionForeground); padding: 2px 0 6px; }
  ol.phases { list-style: none; padding: 0; flex-wrap: wrap; } .phase[aria-current="step"] { font-weight: 600; }
  .samples, .eval-table { table-layout: auto; } td, th { overflow-wrap: anywhere; }
  .legend { font-size: .9em; gap: 6px 14px; } .nowrap { white-space: nowrap; } .swatch { display: inline-block; width: 18px; height: 0; border-top: 2px solid var(--vscode-charts-blue); margin-left: 6px; }
  .swatch.val { border-top: 2px dashed var(--vscode-charts-orange); }
  .cols { display: grid; grid-template-columns: repeat(auto-fit, minmax(220px, 1fr)); gap: 10px; }
  .msg.user { white-space: pre-wrap; } .md > :first-child { margin-top: 0; } .md > :last-child { margin-bottom: 0; }
  .md pre { background: var(--vscode-textCodeBlock-background); padding: 6px 8px; overflow-x: auto; } .md code { font-family: var(--vscode-editor-font-family); }
  .msg { padding: 8px 10px; border-radius: 4px; margin: 6px 0; } .user { background: var(--vscode-input-background); }
  .answer { background: var(--vscode-sideBar-background); border: 1px solid var(--vscode-panel-border); }
  .label { font-size: .8em; text-transform: uppercase; letter-spacing: .04em; color: var(--vscode-descriptionForeground); }
  textarea { width: 100%; box-sizing: border-box; color: var(--vscode-input-foreground); background: var(--vscode-input-background); border: 1px solid var(--vscode-input-border, transparent); font-family: inherit; font-size: inherit; padding: 6px; }
  :focus-visible { outline: 1px solid var(--vscode-focusBorder); }
</style>
</head>
<body data-l10n="${escapeAttr(JSON.stringify(vscode.l10n.bundle ?? {}))}">
<div id="app" role="main"></div>
<script nonce="${nonce}" src="${src}"></script>
</body>
</html>`;
}

const panelOptions = (uri: vscode.Uri): vscode.WebviewPanelOptions & vscode.WebviewOptions => ({
  enableScripts: true,
  enableFindWidget: true,
  retainContextWhenHidden: true,
  localResourceRoots: [vscode.Uri.joinPath(uri, 'dist', 'webview')],
});

export class DashboardPanel {
  static readonly viewType = 'docdistill.dashboard';
  private static current?: DashboardPanel;
  private readonly subs: vscode.Disposable[] = [];

  private constructor(
    private readonly dd: PanelHost,
    readonly panel: vscode.WebviewPanel,
  ) {
    panel.iconPath = vscode.Uri.joinPath(dd.extensionUri, 'media', 'icon.png');
    panel.webview.options = panelOptions(dd.extensionUri);
    panel.webview.html = webviewHtml(panel.webview, dd.extensionUri, 'dashboard', t('DocDistill Dashboard'));
    this.subs.push(panel.webview.onDidReceiveMessage((m: FromDashboard) => this.onMessage(m)));
    this.subs.push(
      dd.onDidChange((e) =>
        e.event && e.jobId ? this.post({ type: 'jobEvent', jobId: e.jobId, event: e.event }) : this.sendState(),
      ),
    );
    panel.onDidDispose(() => {
      this.subs.forEach((s) => s.dispose());
      if (DashboardPanel.current === this) DashboardPanel.current = undefined;
    });
  }

  /** A job to reveal once the webview has its state. */
  private pendingReveal?: string;

  static show(dd: PanelHost, jobId?: string): void {
    if (DashboardPanel.current) {
      DashboardPanel.current.panel.reveal();
      if (jobId) DashboardPanel.current.post({ type: 'reveal', jobId });
      return;
    }
    const panel = vscode.window.createWebviewPanel(
      DashboardPanel.viewType,
      'DocDistill',
      vscode.ViewColumn.Active,
      panelOptions(dd.extensionUri),
    );
    DashboardPanel.current = new DashboardPanel(dd, panel);
    DashboardPanel.current.pendingReveal = jobId;
    void dd.refreshAdapters().catch(() => {});
  }

  static revive(dd: PanelHost, panel: vscode.WebviewPanel): void {
    DashboardPanel.current = new DashboardPanel(dd, panel);
  }

  private post(m: ToDashboard): void {
    void this.panel.webview.postMessage(m);
  }

  private sendState(): void {
    this.post({ type: 'state', state: this.dd.dashboardState() });
  }

  private onMessage(m: FromDashboard): void {
    if (m.type === 'ready') {
      this.sendState();
      if (this.pendingReveal) this.post({ type: 'reveal', jobId: this.pendingReveal });
      this.pendingReveal = undefined;
      return;
    }
    const cmd = {
      cancel: 'docdistill.cancelJob',
      distillDocs: 'docdistill.distillDocsFolder',
      chat: 'docdistill.chat',
      selectModel: 'docdistill.selectModel',
      manageAdapters: 'docdistill.manageAdapters',
    }[m.command];
    if (cmd) void vscode.commands.executeCommand(cmd);
  }
}

export class ChatPanel {
  static readonly viewType = 'docdistill.chat';
  private static current?: ChatPanel;
  private readonly subs: vscode.Disposable[] = [];
  private abort?: AbortController;

  private constructor(
    private readonly dd: PanelHost,
    readonly panel: vscode.WebviewPanel,
  ) {
    panel.iconPath = vscode.Uri.joinPath(dd.extensionUri, 'media', 'icon.png');
    panel.webview.options = panelOptions(dd.extensionUri);
    panel.webview.html = webviewHtml(panel.webview, dd.extensionUri, 'chat', t('DocDistill Chat'));
    this.subs.push(panel.webview.onDidReceiveMessage((m: FromChat) => void this.onMessage(m)));
    this.subs.push(dd.onDidChange((e) => !e.event && this.sendInit()));
    panel.onDidDispose(() => {
      this.abort?.abort();
      this.subs.forEach((s) => s.dispose());
      if (ChatPanel.current === this) ChatPanel.current = undefined;
    });
  }

  static show(dd: PanelHost): void {
    if (ChatPanel.current) return ChatPanel.current.panel.reveal();
    const panel = vscode.window.createWebviewPanel(
      ChatPanel.viewType,
      t('DocDistill Chat'),
      vscode.ViewColumn.Beside,
      panelOptions(dd.extensionUri),
    );
    ChatPanel.current = new ChatPanel(dd, panel);
  }

  static revive(dd: PanelHost, panel: vscode.WebviewPanel): void {
    ChatPanel.current = new ChatPanel(dd, panel);
  }

  private post(m: ToChat): void {
    void this.panel.webview.postMessage(m);
  }

  private sendInit(): void {
    const names = this.dd.adapters.map((a) => a.name);
    this.post({
      type: 'init',
      adapters: names,
      active: this.dd.adapters.find((a) => a.active)?.name ?? names.at(-1),
      model: this.dd.model?.dir,
    });
  }

  private async onMessage(m: FromChat): Promise<void> {
    if (m.type === 'ready') {
      this.sendInit();
      await this.dd.refreshAdapters().catch(() => {});
      return this.sendInit();
    }
    if (m.type === 'stop') return void this.abort?.abort();
    const ac = new AbortController();
    this.abort = ac;
    let w;
    try {
      w = await this.dd.client();
    } catch (e) {
      for (const mode of m.modes) this.post({ type: 'error', id: `${m.id}:${mode}`, message: (e as Error).message });
      return;
    }
    const onDelta = (p: { streamId: string; text: string }) =>
      p.streamId.startsWith(`${m.id}:`) && this.post({ type: 'delta', id: p.streamId, text: p.text });
    w.on('chatDelta', onDelta);
    try {
      await Promise.all(
        m.modes.map(async (mode) => {
          const id = `${m.id}:${mode}`;
          try {
            const r = await w.request(
              P.Chat.type,
              {
                streamId: id,
                mode,
                adapter: m.adapter,
                messages: [...m.history, { role: 'user', content: m.question }],
                maxTokens: 200,
              },
              ac.signal,
            );
            this.post({ type: 'done', id, text: r.text, ms: r.ms, tokens: r.tokens, finishReason: r.finishReason });
          } catch (e) {
            this.post({ type: 'error', id, message: (e as Error).message });
          }
        }),
      );
    } finally {
      w.off('chatDelta', onDelta);
    }
  }
}
