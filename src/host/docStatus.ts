// What DocDistill knows about each Markdown file, read from the adapters' docdistill.json files
// without the worker (so the views and Explorer badges work before any model is loaded): which
// adapters a doc was distilled into, whether it changed since, or whether the docs glob leaves it
// out. Plain Node: no vscode import, tested in test/unit/host.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface AdapterOnDisk {
  name: string;
  created: string;
  sources: string[];
  chunks: number;
}

/** The adapters under <root>/.docdistill/adapters (unreadable ones are skipped). */
export function readAdapters(root: string): AdapterOnDisk[] {
  const dir = join(root, '.docdistill', 'adapters');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: AdapterOnDisk[] = [];
  for (const name of names.sort()) {
    try {
      const info = JSON.parse(readFileSync(join(dir, name, 'docdistill.json'), 'utf8')) as {
        created?: string;
        chunks?: { source: string }[];
      };
      const chunks = info.chunks ?? [];
      out.push({
        name,
        created: info.created ?? '',
        sources: [...new Set(chunks.map((c) => c.source))],
        chunks: chunks.length,
      });
    } catch {
      /* not an adapter folder, or half-written */
    }
  }
  return out;
}

export type DocState = 'distilled' | 'stale' | 'new' | 'excluded';

export interface DocStatus {
  /** Workspace-relative, '/'-separated. */
  path: string;
  state: DocState;
  /** Adapters that were distilled from this doc. */
  adapters: string[];
  /** Adapters trained before the doc last changed. */
  staleIn: string[];
}

/**
 * The status of one Markdown file: 'distilled' (in at least one adapter, unchanged since),
 * 'stale' (changed since an adapter that knows it was trained), 'new' (matched by the docs glob,
 * in no adapter) or 'excluded' (outside the docs glob and in no adapter).
 * `mtimeMs` is the file's modification time; an adapter's `created` is when it was written.
 */
export function docStatus(path: string, inGlob: boolean, mtimeMs: number, adapters: AdapterOnDisk[]): DocStatus {
  const mine = adapters.filter((a) => a.sources.includes(path));
  const staleIn = mine
    .filter((a) => {
      const t = Date.parse(a.created);
      return Number.isFinite(t) && mtimeMs > t;
    })
    .map((a) => a.name);
  const state: DocState = mine.length ? (staleIn.length ? 'stale' : 'distilled') : inGlob ? 'new' : 'excluded';
  return { path, state, adapters: mine.map((a) => a.name), staleIn };
}

/** mtime of a file, or 0 when it cannot be read. */
export function mtimeOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}
