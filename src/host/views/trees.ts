// The DocDistill view container: Adapters (active one marked, stale ones flagged with why, docs and
// passages counts), Runs (phase and progress while running, result after) and Docs (each Markdown
// file under the docs glob: distilled into which adapter, stale, or not yet distilled).
import * as vscode from 'vscode';
import { join } from 'node:path';
import type * as P from '../../protocol';
import type { JobView } from '../../protocol/webview';
import type { DocDistill } from '../docdistill';
import type { DocsIndex } from './docsIndex';
import type { DocStatus } from '../docStatus';

const t = vscode.l10n.t;
const pct = (x: number) => `${Math.round(100 * x)}%`;

/** An adapter row: the worker's summary when it has listed them, else what is on disk. */
export interface AdapterRow {
  name: string;
  folder?: vscode.WorkspaceFolder;
  sources: string[];
  chunks: number;
  active: boolean;
  stale: boolean;
  why?: string;
  summary?: P.EvalSummary;
}

export class AdaptersTree implements vscode.TreeDataProvider<AdapterRow | { doc: string; adapter: AdapterRow }> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(
    private readonly dd: DocDistill,
    private readonly index: DocsIndex,
  ) {}

  refresh(): void {
    this.changed.fire();
  }

  rows(): AdapterRow[] {
    const rows: AdapterRow[] = [];
    const current = this.dd.folder?.uri.toString();
    const fromWorker = new Map(this.dd.adapters.map((a) => [a.name, a]));
    for (const f of this.index.all()) {
      for (const a of f.adapters) {
        const w = f.folder.uri.toString() === current ? fromWorker.get(a.name) : undefined;
        const docStale = [...f.docs.values()].filter((d) => d.staleIn.includes(a.name)).map((d) => d.path);
        const stale = w ? w.stale : docStale.length > 0;
        const why = w?.stale
          ? t('{0} passage(s) changed, {1} removed since it was distilled', w.changed, w.removed)
          : docStale.length
            ? t('changed since it was distilled: {0}', docStale.join(', '))
            : undefined;
        rows.push({
          name: a.name,
          folder: f.folder,
          sources: a.sources,
          chunks: a.chunks,
          active: w?.active ?? false,
          stale,
          why,
          summary: w?.summary,
        });
      }
    }
    return rows;
  }

  getChildren(
    el?: AdapterRow | { doc: string; adapter: AdapterRow },
  ): (AdapterRow | { doc: string; adapter: AdapterRow })[] {
    if (!el) return this.rows();
    return 'sources' in el ? el.sources.map((doc) => ({ doc, adapter: el })) : [];
  }

  getTreeItem(el: AdapterRow | { doc: string; adapter: AdapterRow }): vscode.TreeItem {
    if ('doc' in el) {
      const uri = el.adapter.folder ? vscode.Uri.joinPath(el.adapter.folder.uri, el.doc) : undefined;
      const item = uri ? new vscode.TreeItem(uri, vscode.TreeItemCollapsibleState.None) : new vscode.TreeItem(el.doc);
      item.label = el.doc;
      item.contextValue = 'adapterDoc';
      if (uri) item.command = { command: 'vscode.open', title: t('Open'), arguments: [uri] };
      return item;
    }
    const item = new vscode.TreeItem(
      el.name,
      el.sources.length ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None,
    );
    item.id = `adapter:${el.folder?.uri.toString() ?? ''}:${el.name}`;
    const counts = t('{0} docs · {1} passages', el.sources.length, el.chunks);
    // Several folders: say whose adapter it is (each folder has its own .docdistill/adapters).
    const where = el.folder && this.index.all().length > 1 ? el.folder.name : '';
    item.description = [
      where,
      el.active ? t('active') : '',
      el.stale ? t('stale') : '',
      counts,
      el.summary ? t('F1 {0}', pct(el.summary.student.f1)) : '',
    ]
      .filter(Boolean)
      .join(' · ');
    item.iconPath = el.stale
      ? new vscode.ThemeIcon('warning', new vscode.ThemeColor('list.warningForeground'))
      : el.active
        ? new vscode.ThemeIcon('pass-filled', new vscode.ThemeColor('charts.green'))
        : new vscode.ThemeIcon('layers');
    const md = new vscode.MarkdownString(`**${el.name}**${el.active ? ` — ${t('active for chat')}` : ''}\n\n${counts}`);
    if (el.why) md.appendMarkdown(`\n\n$(warning) ${t('Stale')}: ${el.why}`);
    if (el.summary)
      md.appendMarkdown(
        `\n\n${t('Held-out answers (F1): base {0}, student {1}, teacher with docs {2}', pct(el.summary.base.f1), pct(el.summary.student.f1), pct(el.summary.teacher.f1))}`,
      );
    md.supportThemeIcons = true;
    item.tooltip = md;
    item.contextValue = el.active ? 'adapterActive' : 'adapter';
    item.accessibilityInformation = { label: `${el.name}, ${item.description}` };
    return item;
  }
}

export class RunsTree implements vscode.TreeDataProvider<JobView> {
  private readonly changed = new vscode.EventEmitter<JobView | void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly dd: DocDistill) {}

  refresh(): void {
    this.changed.fire();
  }

  getChildren(el?: JobView): JobView[] {
    return el ? [] : [...this.dd.jobs].reverse();
  }

  getTreeItem(j: JobView): vscode.TreeItem {
    const item = new vscode.TreeItem(j.name, vscode.TreeItemCollapsibleState.None);
    item.id = `run:${j.jobId}`;
    const p = j.phaseProgress;
    const when = new Date(j.started).toLocaleString();
    if (j.state === 'running' || j.state === 'restarting') {
      item.description = `${j.state === 'restarting' ? t('restarting the worker') : (j.phase ?? t('starting'))}${p ? ` ${p.done}/${p.total}` : ''}`;
      item.iconPath = new vscode.ThemeIcon('sync~spin');
    } else if (j.state === 'done') {
      const e = j.eval?.summary;
      item.description = e
        ? t('done · student F1 {0} (base {1}, teacher {2})', pct(e.student.f1), pct(e.base.f1), pct(e.teacher.f1))
        : t('done');
      item.iconPath = new vscode.ThemeIcon('pass', new vscode.ThemeColor('testing.iconPassed'));
    } else if (j.state === 'failed') {
      item.description = t('failed: {0}', j.error ?? '');
      item.iconPath = new vscode.ThemeIcon('error', new vscode.ThemeColor('testing.iconFailed'));
    } else {
      item.description = t('cancelled (resumable)');
      item.iconPath = new vscode.ThemeIcon('circle-slash');
    }
    item.tooltip = `${j.name} — ${item.description}\n${when}${j.runId ? `\n${t('run {0}', j.runId)}` : ''}`;
    item.contextValue = `run${j.state === 'running' ? 'Running' : ''}`;
    item.command = { command: 'docdistill.run.open', title: t('Open Run in Dashboard'), arguments: [j] };
    return item;
  }
}

type DocNode = { folder: vscode.WorkspaceFolder } | { folder: vscode.WorkspaceFolder; doc: DocStatus };

export class DocsTree implements vscode.TreeDataProvider<DocNode> {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;

  constructor(private readonly index: DocsIndex) {}

  refresh(): void {
    this.changed.fire();
  }

  private docsOf(folder: vscode.WorkspaceFolder): DocNode[] {
    const f = this.index.all().find((x) => x.folder === folder);
    return f
      ? [...f.docs.values()]
          .filter((d) => d.state !== 'excluded')
          .sort((a, b) => a.path.localeCompare(b.path))
          .map((doc) => ({ folder, doc }))
      : [];
  }

  getChildren(el?: DocNode): DocNode[] {
    if (el) return 'doc' in el ? [] : this.docsOf(el.folder);
    const all = this.index.all();
    // One folder: its docs directly; several: a node per folder (each has its own glob).
    if (all.length === 1) return this.docsOf(all[0]!.folder);
    return all.filter((f) => this.docsOf(f.folder).length).map((f) => ({ folder: f.folder }));
  }

  getTreeItem(n: DocNode): vscode.TreeItem {
    if (!('doc' in n)) {
      const item = new vscode.TreeItem(n.folder.name, vscode.TreeItemCollapsibleState.Expanded);
      item.iconPath = vscode.ThemeIcon.Folder;
      return item;
    }
    const d = n.doc;
    const uri = vscode.Uri.file(join(n.folder.uri.fsPath, d.path));
    const item = new vscode.TreeItem(uri, vscode.TreeItemCollapsibleState.None);
    item.label = d.path;
    item.description =
      d.state === 'distilled'
        ? t('in {0}', d.adapters.join(', '))
        : d.state === 'stale'
          ? t('stale in {0}', d.staleIn.join(', '))
          : t('not yet distilled');
    item.iconPath = new vscode.ThemeIcon(
      d.state === 'distilled' ? 'pass' : d.state === 'stale' ? 'warning' : 'circle-large-outline',
    );
    item.tooltip = `${d.path} — ${item.description}`;
    item.contextValue = `doc-${d.state}`;
    item.resourceUri = uri;
    item.command = { command: 'vscode.open', title: t('Open'), arguments: [uri] };
    return item;
  }
}
