// The adapter catalogue: adapters/<name>/ in the work folder, each a PEFT adapter folder plus
// docdistill.json (what it was trained on: model, chunk hashes, settings, evaluation) and
// docdistill-qa.jsonl (the QA pairs it learnt, replayed by incremental runs). Here: reading the
// catalogue, telling which adapters are stale for the current text of their sources, and
// publishing a run's adapter.
//
// The route of an adapter: the train phase writes it once, into runs/<id>/adapter/ (with the QA
// pairs); evaluate reads it there; publishing adds docdistill.json and moves the folder into
// adapters/<name>/ with a rename; the worker reads it when it chats with the student.
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { chunkMarkdown } from './ingest';
import { readDocumentSync, recordedSources } from './docFiles';
import type { EvalSummary } from './events';
import { DEFAULT_PROMPTS, type PromptSettings } from './prompts';
import { listDirs, readJson, writeAtomic, writeJson } from './runFolder';
import type { DistillSettings } from './settings';
import { chunkBudget, chunkMinTokens, chunks, type RunContext } from './phases/context';

export const ADAPTER_INFO_FILE = 'docdistill.json';
export const ADAPTER_QA_FILE = 'docdistill-qa.jsonl';

export interface AdapterInfo {
  name: string;
  model: string;
  created: string;
  runId: string;
  chunks: { source: string; hash: string }[];
  /** The chunk size in tokens used, so a watcher can re-chunk the sources the same way. */
  chunkBudget: number;
  settings: DistillSettings;
  summary?: EvalSummary;
}

export function readAdapterInfo(adapterDir: string): AdapterInfo | undefined {
  return readJson<AdapterInfo>(join(adapterDir, ADAPTER_INFO_FILE));
}

/** Adapters in a .docdistill folder, with what they know. */
export function listAdapters(workDir: string): AdapterInfo[] {
  return listDirs(join(workDir, 'adapters'))
    .map((n) => readAdapterInfo(join(workDir, 'adapters', n)))
    .filter((x): x is AdapterInfo => !!x);
}

/** The documents an adapter was distilled from (its recorded sources, each once). */
export function adapterSources(info: AdapterInfo | undefined): string[] {
  return info ? [...new Set(info.chunks.map((c) => c.source))] : [];
}

/** The prompts an adapter was trained with (the defaults for what its docdistill.json leaves out). */
export function adapterPrompts(info: AdapterInfo | undefined): PromptSettings {
  return { ...DEFAULT_PROMPTS, ...info?.settings?.prompts };
}

/** Which adapters are stale for the current chunks of their sources (hash sets differ). */
export function staleness(
  info: AdapterInfo,
  currentChunks: { source: string; hash: string }[],
): { stale: boolean; changed: number; removed: number } {
  const known = new Set(info.chunks.map((c) => c.hash));
  const sources = new Set(info.chunks.map((c) => c.source));
  const cur = currentChunks.filter((c) => sources.has(c.source));
  const curSet = new Set(cur.map((c) => c.hash));
  const changed = cur.filter((c) => !known.has(c.hash)).length;
  const removed = info.chunks.filter((c) => !curSet.has(c.hash)).length;
  return { stale: changed > 0 || removed > 0, changed, removed };
}

/**
 * An adapter's recorded sources as they are now (those outside the workspace left out), and, given
 * the model's token counter, its staleness: the sources re-chunked with the adapter's chunk budget
 * (a source that cannot be read counts as removed). Without a counter nothing is known to be stale.
 */
export function adapterStatus(
  info: AdapterInfo,
  root: string,
  countTokens?: (text: string) => number,
): { sources: string[]; stale: boolean; changed: number; removed: number } {
  const sources = recordedSources(info.chunks, root, undefined, undefined, true);
  if (!countTokens) return { sources, stale: false, changed: 0, removed: 0 };
  const cur = sources.flatMap((s) => {
    try {
      return chunkMarkdown(s, readDocumentSync(root, s), {
        maxTokens: info.chunkBudget ?? 512,
        minTokens: chunkMinTokens(info.settings ?? {}),
        countTokens,
      });
    } catch {
      return [];
    }
  });
  return { sources, ...staleness(info, cur) };
}

/**
 * The adapter a run evaluates: the one it trained (in its run folder until published, then in
 * adapters/<name>/ as long as no later run has replaced it), else the adapter it continued.
 */
export function runAdapterDir(run: RunContext): string | undefined {
  if (existsSync(run.paths.adapter)) return run.paths.adapter;
  if (existsSync(run.paths.published)) {
    const now = readAdapterInfo(run.adapterDir)?.runId;
    if (now === run.state.id) return run.adapterDir;
    throw new Error(
      `the adapter that run ${run.state.id} trained has since been replaced in ${run.adapterDir}${now ? ` by run ${now}` : ''}; evaluate that run instead`,
    );
  }
  return run.state.baseAdapter;
}

/**
 * Publishes the run's adapter: its docdistill.json (with the chunk hashes it knows) goes into
 * runs/<id>/adapter/, and the folder is renamed to adapters/<name>/. An earlier adapter of that
 * name is first renamed aside (a *.tmp name, which the catalogue skips) and removed after, so a
 * crash leaves either the old adapter or the new one in place. Nothing to do when this run trained
 * nothing (or published already).
 */
export function publishAdapter(run: RunContext, summary?: EvalSummary): void {
  const trained = run.paths.adapter;
  if (!existsSync(trained)) return;
  const info: AdapterInfo = {
    name: run.req.name,
    model: run.modelId,
    created: new Date().toISOString(),
    runId: run.state.id,
    chunks: chunks(run).map((c) => ({ source: c.source, hash: c.hash })),
    chunkBudget: chunkBudget(run.model, run.s),
    settings: run.s,
    summary,
  };
  writeJson(join(trained, ADAPTER_INFO_FILE), info);
  const dest = run.adapterDir;
  const old = `${dest}.tmp-old-${process.pid}`;
  rmSync(old, { recursive: true, force: true });
  mkdirSync(dirname(dest), { recursive: true });
  const had = existsSync(dest);
  if (had) renameSync(dest, old);
  try {
    renameSync(trained, dest);
  } catch (e) {
    if (had) renameSync(old, dest);
    throw e;
  }
  rmSync(old, { recursive: true, force: true });
  writeAtomic(run.paths.published, dest + '\n');
}
