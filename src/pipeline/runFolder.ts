// The run folder: every file is written whole, through a temporary file and a rename, so a crash,
// a kill or a cancel at any moment leaves either the old file or the new one, never half of one.
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve, relative, isAbsolute, sep } from 'node:path';
import { writeFileAtomic } from '../common/atomicFile';
import { checkName } from './names';
import type { Phase } from './events';
import type { DistillSettings } from './settings';

export class DiskFullError extends Error {
  override name = 'DiskFullError';
}

function wrapIo(path: string, e: unknown): never {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    throw new DiskFullError(
      `the disk is full while writing ${path}; free some space and run again: the run resumes where it stopped`,
    );
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
    throw new Error(`cannot write ${path} (${code}); check the folder's permissions`);
  throw e;
}

/** The project's atomic writer (temporary file, fsync, rename), with the run folder's errors. */
export function writeAtomic(path: string, data: string | Uint8Array): void {
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileAtomic(path, data);
  } catch (e) {
    wrapIo(path, e);
  }
}

export const writeJson = (path: string, v: unknown): void => writeAtomic(path, JSON.stringify(v, null, 2) + '\n');

export function readJson<T>(path: string): T | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    throw new Error(`${path} is not valid JSON (${(e as Error).message}); delete it to start that step again`);
  }
}

export const writeJsonl = (path: string, rows: readonly unknown[]): void =>
  writeAtomic(path, rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : ''));

export function readJsonl<T>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l, i) => {
      try {
        return JSON.parse(l) as T;
      } catch {
        throw new Error(`${path}:${i + 1} is not valid JSON; delete the file to redo that step`);
      }
    });
}

/** A folder name from a user-given name: letters, digits, dot, dash, underscore; no traversal. */
export const safeName = (name: string, what = 'name'): string => checkName(name, what);

/** `p` resolved, and refused unless it lies inside `root`. */
export function insideRoot(root: string, p: string, what = 'path'): string {
  const abs = resolve(root, p);
  const rel = relative(resolve(root), abs);
  if (rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel))) return abs;
  throw new Error(`${what} ${p} is outside ${root}`);
}

export function newRunId(now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace(/\..*/, '').replace('T', '-');
  return `${t}-${Math.random().toString(36).slice(2, 6)}`;
}

export function listDirs(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory() && !d.name.includes('.tmp'))
    .map((d) => d.name)
    .sort();
}

export type RunPaths = ReturnType<typeof runPaths>;

/** run.json: what a run is, and which of its phases are done. */
export interface RunState {
  id: string;
  name: string;
  model: string;
  created: string;
  inputs: string[];
  settings: DistillSettings;
  phases: Partial<Record<Phase, 'done'>>;
  /** Incremental: the adapter this run continues, and the chunk hashes it already knew. */
  baseAdapter?: string;
  knownHashes?: string[];
  finished?: string;
}

/** The latest unfinished run of an adapter on a model, if any. */
export function latestUnfinishedRun(workDir: string, name: string, model: string): string | undefined {
  for (const r of listDirs(join(workDir, 'runs')).reverse()) {
    const st = readJson<RunState>(runPaths(workDir, r).run);
    if (st && st.name === name && !st.finished && st.model === model) return r;
  }
  return undefined;
}

export const runPaths = (workDir: string, runId: string) => {
  const dir = join(workDir, 'runs', runId);
  return {
    dir,
    run: join(dir, 'run.json'),
    chunks: join(dir, 'chunks.jsonl'),
    questions: join(dir, 'questions.jsonl'),
    answers: join(dir, 'answers.jsonl'),
    metrics: join(dir, 'metrics.jsonl'),
    checkpoint: join(dir, 'checkpoint'),
    eval: join(dir, 'eval.json'),
    log: join(dir, 'log.txt'),
    /** The trained adapter, until it is published (moved to adapters/<name>/). */
    adapter: join(dir, 'adapter'),
    published: join(dir, 'published'),
  };
};
