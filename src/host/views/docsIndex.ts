// The Markdown files of every workspace folder and what DocDistill knows about each (see
// docStatus.ts), kept up to date by a file-system watcher. The Docs view and the Explorer
// decorations read it; `onDidChange` tells them which files changed.
import * as vscode from 'vscode';
import { relative, sep } from 'node:path';
import { docStatus, mtimeOf, readAdapters, type AdapterOnDisk, type DocStatus } from '../docStatus';

export interface FolderDocs {
  folder: vscode.WorkspaceFolder;
  glob: string;
  adapters: AdapterOnDisk[];
  docs: Map<string, DocStatus>;
}

const EXCLUDE = '**/{node_modules,.docdistill,.git}/**';

export class DocsIndex implements vscode.Disposable {
  private folders: FolderDocs[] = [];
  private readonly changed = new vscode.EventEmitter<vscode.Uri[] | undefined>();
  readonly onDidChange = this.changed.event;
  private readonly subs: vscode.Disposable[] = [];
  private timer?: NodeJS.Timeout;

  constructor(private readonly log: (m: string) => void = () => {}) {
    const w = vscode.workspace.createFileSystemWatcher('**/*.{md,markdown}');
    const a = vscode.workspace.createFileSystemWatcher('**/.docdistill/adapters/*/docdistill.json');
    for (const x of [w, a])
      this.subs.push(
        x,
        x.onDidChange(() => this.schedule()),
        x.onDidCreate(() => this.schedule()),
        x.onDidDelete(() => this.schedule()),
      );
    this.subs.push(vscode.workspace.onDidChangeWorkspaceFolders(() => this.schedule()));
    this.subs.push(
      vscode.workspace.onDidChangeConfiguration(
        (e) => e.affectsConfiguration('docdistill.docsGlob') && this.schedule(),
      ),
    );
    this.schedule(0);
  }

  /** Re-reads soon (debounced: saving several files refreshes once). */
  schedule(ms = 300): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), ms);
  }

  all(): FolderDocs[] {
    return this.folders;
  }

  /** The status of a file, if it is a Markdown file in a workspace folder. */
  statusOf(uri: vscode.Uri): DocStatus | undefined {
    const folder = vscode.workspace.getWorkspaceFolder(uri);
    const f = folder && this.folders.find((x) => x.folder.uri.toString() === folder.uri.toString());
    return f?.docs.get(relative(f.folder.uri.fsPath, uri.fsPath).split(sep).join('/'));
  }

  async refresh(): Promise<void> {
    const next: FolderDocs[] = [];
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      const glob = vscode.workspace.getConfiguration('docdistill', folder.uri).get<string>('docsGlob', 'docs/**/*.md');
      const [inGlob, all] = await Promise.all([
        vscode.workspace.findFiles(new vscode.RelativePattern(folder, glob), EXCLUDE),
        vscode.workspace.findFiles(new vscode.RelativePattern(folder, '**/*.{md,markdown}'), EXCLUDE, 5000),
      ]);
      const adapters = readAdapters(folder.uri.fsPath);
      const globbed = new Set(inGlob.map((u) => u.fsPath));
      const docs = new Map<string, DocStatus>();
      for (const u of [...inGlob, ...all]) {
        const rel = relative(folder.uri.fsPath, u.fsPath).split(sep).join('/');
        if (!docs.has(rel)) docs.set(rel, docStatus(rel, globbed.has(u.fsPath), mtimeOf(u.fsPath), adapters));
      }
      next.push({ folder, glob, adapters, docs });
      const by = (st: string) => [...docs.values()].filter((d) => d.state === st).length;
      this.log(
        `docs index: ${folder.name}: ${inGlob.length} under ${glob} (${by('distilled')} distilled, ${by('stale')} stale), ${by('excluded')} other Markdown, ${adapters.length} adapter(s)`,
      );
    }
    this.folders = next;
    // Palette entries and welcome content follow these, whether or not the view is open.
    void vscode.commands.executeCommand(
      'setContext',
      'docdistill.hasAdapters',
      next.some((f) => f.adapters.length > 0),
    );
    void vscode.commands.executeCommand(
      'setContext',
      'docdistill.hasDocs',
      next.some((f) => [...f.docs.values()].some((d) => d.state !== 'excluded')),
    );
    this.changed.fire(undefined);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.subs.forEach((s) => s.dispose());
    this.changed.dispose();
  }
}
