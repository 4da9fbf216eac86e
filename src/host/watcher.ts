// Watches the docs (chokidar) and reports changed Markdown files, debounced, relative to the
// workspace. chokidar 4 has no globs: the glob's fixed prefix is watched and paths are matched here.
import { watch, type FSWatcher } from 'chokidar';
import { realpathSync } from 'node:fs';
import { isAbsolute, join, relative, sep } from 'node:path';

/** A glob (**, *, ?, [a-z], [!a-z], {a,b}) as a RegExp over '/'-separated relative paths. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      // A character class, as workspace.findFiles reads it: [abc], [a-z], [!a-z] (negated).
      const end = glob.indexOf(']', i + 2);
      if (end < 0) re += '\\[';
      else {
        let body = glob.slice(i + 1, end);
        const neg = body.startsWith('!') || body.startsWith('^');
        if (neg) body = body.slice(1);
        re += `[${neg ? '^/' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
        i = end;
      }
    } else if (c === '{') {
      const end = glob.indexOf('}', i);
      if (end < 0) re += '\\{';
      else {
        re += `(?:${glob
          .slice(i + 1, end)
          .split(',')
          .map((s) => s.replace(/[.+^$()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*'))
          .join('|')})`;
        i = end;
      }
    } else re += c.replace(/[.+^$()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The folder part of a glob before its first wildcard ("docs/**\/*.md" → "docs"). */
export function globBase(glob: string): string {
  const parts = glob.split('/');
  const fixed: string[] = [];
  for (const p of parts) {
    if (/[*?{[]/.test(p)) break;
    fixed.push(p);
  }
  if (fixed.length === parts.length) fixed.pop();
  return fixed.join('/');
}

/**
 * Whether `p` exists and its real path (links resolved) lies outside the workspace: such a path is
 * not watched (a `docs/shared → ~` link must not make the watcher walk the home folder). A path
 * that no longer exists is not outside: its deletion is news. The worker confines what it reads
 * the same way (src/pipeline/docFiles.ts).
 */
export function leadsOutside(root: string, p: string): boolean {
  let real: string;
  let realRoot: string;
  try {
    realRoot = realpathSync(root);
    real = realpathSync(p);
  } catch {
    return false;
  }
  const rel = relative(realRoot, real);
  return rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel);
}

export class DocsWatcher {
  private readonly w: FSWatcher;
  private timer?: NodeJS.Timeout;
  private readonly pending = new Set<string>();

  constructor(
    readonly root: string,
    glob: string,
    onChange: (files: string[]) => void,
    log: (m: string) => void = () => {},
    debounceMs = 1000,
  ) {
    const re = globToRegExp(glob);
    const base = join(root, globBase(glob));
    this.w = watch(base, {
      ignoreInitial: true,
      ignored: (p: string) =>
        p.split(sep).includes('.docdistill') ||
        p.split(sep).includes('node_modules') ||
        p.split(sep).includes('.git') ||
        leadsOutside(root, p),
      awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 },
    });
    const hit = (p: string) => {
      const rel = relative(root, p).split(sep).join('/');
      if (!re.test(rel)) return;
      this.pending.add(rel);
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        const files = [...this.pending].sort();
        this.pending.clear();
        onChange(files);
      }, debounceMs);
    };
    this.w
      .on('add', hit)
      .on('change', hit)
      .on('unlink', hit)
      .on('error', (e) => log(`watcher: ${String(e)}`));
    log(`watching ${base} for ${glob}`);
  }

  /** Resolves once the initial scan is done (tests). */
  ready(): Promise<void> {
    return new Promise((r) => this.w.once('ready', () => r()));
  }

  dispose(): void {
    clearTimeout(this.timer);
    void this.w.close();
  }
}
