// A weight pack: every tensor a model's graphs read, prepared once (transposed, converted to the
// compute dtype, or block-quantized) into one file in the user's cache folder, each tensor on a page
// boundary. Graphs refer to it as ONNX external data, so ONNX Runtime maps the weights from the
// file: JavaScript never holds them, every session of the model (score, step, train) and every
// process reads the same pages, and a second start skips reading and preparing the weights.
//
// <id>.weights holds the bytes; <id>.json lists the tensors and the file's size. Both are written
// to a temporary name and renamed, the manifest last, so a manifest always describes a complete
// file; a pack whose manifest is missing, unreadable or disagrees with what is asked is rebuilt.
// The id says what the bytes are (model files by path, size and mtime; dtype; quantization;
// format version), so a changed model or setting never reads a stale pack.
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { writeJsonAtomic } from '../../common/atomicFile';
import { bytesOf, byteSize, type DType, type ExternalData, type TypedData } from '../graph';

/** Bumped whenever what a pack holds for the same id changes (layout, quantizer). */
export const PACK_FORMAT = 1;
const PAGE = 4096;

export interface PackEntry {
  name: string;
  dtype: DType;
  shape: number[];
}

interface Manifest {
  format: number;
  id: string;
  size: number;
  tensors: Record<string, { dtype: DType; shape: number[]; offset: number; length: number }>;
}

/**
 * Where a model folder's caches go: a folder of the user's cache, named by a hash of the model
 * folder's path — $XDG_CACHE_HOME (or ~/.cache)/docdistill/models/<hash> on Linux,
 * ~/Library/Caches/docdistill/models/<hash> on macOS, %LOCALAPPDATA%\docdistill\models\<hash>
 * on Windows, shared by the CLI and the extension's worker. DOCDISTILL_CACHE_DIR moves them all.
 * Never inside the model folder: that may be a Hugging Face snapshot, a shared or
 * version-controlled folder, or inside a workspace, where gigabytes of cache do not belong.
 */
export function modelCacheDir(modelDir: string): string {
  return join(cacheRoot(), 'models', cacheTag(modelDir));
}

/** The name of a model folder's cache folder: a hash of its absolute path. */
const cacheTag = (modelDir: string): string =>
  createHash('sha256').update(resolve(modelDir)).digest('hex').slice(0, 16);

function cacheRoot(): string {
  const env = process.env.DOCDISTILL_CACHE_DIR;
  if (env) return resolve(env);
  if (process.platform === 'win32' && process.env.LOCALAPPDATA) return join(process.env.LOCALAPPDATA, 'docdistill');
  if (process.platform === 'darwin') return join(homedir(), 'Library', 'Caches', 'docdistill');
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'docdistill');
}

/** The file in a model's cache folder naming the model folder it caches (see claimModelCache). */
const SOURCE_FILE = 'source.json';
let prunedThisProcess = false;

/**
 * Records in `cacheDir` (a modelCacheDir) which model folder it caches, and, once per process,
 * deletes the cache folders of model folders that no longer exist (pruneOrphanCaches): a deleted
 * or moved model, or a test's temporary copy, would otherwise leave its packs (gigabytes for a
 * real model) in the user's cache for ever.
 */
export function claimModelCache(cacheDir: string, modelDir: string): void {
  const file = join(cacheDir, SOURCE_FILE);
  try {
    if (!existsSync(file)) {
      mkdirSync(cacheDir, { recursive: true });
      writeJsonAtomic(file, { model: resolve(modelDir) });
    }
  } catch {
    /* a cache we cannot write: building the pack will say so, with advice */
  }
  if (!prunedThisProcess) {
    prunedThisProcess = true;
    pruneOrphanCaches(dirname(cacheDir));
  }
}

/**
 * Deletes the folders under `root` (the models folder of the cache) whose source.json names a model
 * folder without a config.json. Only folders that name their model, and whose name is the hash of
 * that path (so a source.json copied elsewhere deletes nothing), are touched; returns them.
 */
export function pruneOrphanCaches(root: string): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return removed;
  }
  for (const name of names) {
    if (!/^[0-9a-f]{16}$/.test(name)) continue;
    const dir = join(root, name);
    let model: unknown;
    try {
      model = (JSON.parse(readFileSync(join(dir, SOURCE_FILE), 'utf8')) as { model?: unknown }).model;
    } catch {
      continue;
    }
    if (typeof model !== 'string' || existsSync(join(model, 'config.json'))) continue;
    if (cacheTag(model) !== name) continue;
    try {
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    } catch {
      /* in use (Windows) or not ours to delete: next time */
    }
  }
  return removed;
}

export class WeightPack {
  private constructor(
    readonly dir: string,
    readonly id: string,
    readonly path: string,
    private readonly manifest: Manifest,
    /** Whether this call wrote the pack (false: an existing one was reused). */
    readonly built: boolean,
  ) {}

  /**
   * The pack `id` in `dir` holding exactly `entries`: reused when a complete one is there,
   * otherwise built by `load`, one tensor at a time (so at most one tensor is in memory).
   * `stalePrefix`: other packs in `dir` whose id does not start with it are deleted after a build
   * (packs of an earlier version of the same model files).
   */
  static ensure(
    dir: string,
    id: string,
    entries: readonly PackEntry[],
    load: (name: string) => TypedData,
    stalePrefix?: string,
  ): WeightPack {
    if (!/^[\w.-]+$/.test(id))
      throw new Error(`weight pack id '${id}' may only hold letters, digits, '.', '_' and '-'`);
    const path = join(dir, `${id}.weights`);
    const mpath = join(dir, `${id}.json`);
    const existing = readManifest(mpath, path, id, entries);
    if (existing) {
      markInUse(dir, id);
      return new WeightPack(dir, id, path, existing, false);
    }

    mkdirSync(dir, { recursive: true });
    const manifest: Manifest = { format: PACK_FORMAT, id, size: 0, tensors: {} };
    const tmp = `.tmp-${process.pid}-${Date.now()}`;
    const fd = openSync(path + tmp, 'w');
    try {
      let end = 0;
      for (const e of entries) {
        const data = load(e.name);
        const length = e.shape.reduce((a, b) => a * b, 1) * byteSize[e.dtype];
        if (data.byteLength !== length)
          throw new Error(
            `weight pack: ${e.name} has ${data.byteLength} bytes, expected ${length} (${e.dtype} [${e.shape.join(', ')}])`,
          );
        const offset = Math.ceil(end / PAGE) * PAGE;
        const raw = bytesOf(data);
        for (let done = 0; done < raw.byteLength;)
          done += writeSync(fd, raw, done, Math.min(raw.byteLength - done, 1 << 30), offset + done);
        manifest.tensors[e.name] = { dtype: e.dtype, shape: [...e.shape], offset, length };
        end = offset + length;
      }
      manifest.size = end;
      fsyncSync(fd);
    } catch (err) {
      closeSync(fd);
      rmSync(path + tmp, { force: true });
      const need = entries.reduce((n, e) => n + e.shape.reduce((a, b) => a * b, 1) * byteSize[e.dtype], 0);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EACCES' || code === 'EROFS') {
        throw new Error(
          `could not write the weight pack (${(need / 2 ** 30).toFixed(2)} GiB) into ${dir}: ${(err as Error).message}. Free some space there, or point DOCDISTILL_CACHE_DIR at a folder with room.`,
        );
      }
      throw err;
    }
    closeSync(fd);
    renameSync(path + tmp, path);
    writeFileSync(mpath + tmp, JSON.stringify(manifest));
    renameSync(mpath + tmp, mpath);
    markInUse(dir, id);
    if (stalePrefix !== undefined) pruneStale(dir, stalePrefix, id);
    return new WeightPack(dir, id, path, manifest, true);
  }

  has(name: string): boolean {
    return name in this.manifest.tensors;
  }

  /** A tensor of the pack as external data for Graph.externalInitializer. */
  ref(name: string): { dtype: DType; shape: number[]; external: ExternalData } {
    const t = this.manifest.tensors[name];
    if (!t) throw new Error(`weight pack ${this.id} has no tensor '${name}'`);
    return { dtype: t.dtype, shape: t.shape, external: { path: this.path, offset: t.offset, length: t.length } };
  }

  get bytes(): number {
    return this.manifest.size;
  }
}

function readManifest(mpath: string, path: string, id: string, entries: readonly PackEntry[]): Manifest | undefined {
  if (!existsSync(mpath) || !existsSync(path)) return undefined;
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(mpath, 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
  if (m.format !== PACK_FORMAT || m.id !== id || !m.tensors || statSync(path).size !== m.size) return undefined;
  if (Object.keys(m.tensors).length !== entries.length) return undefined;
  for (const e of entries) {
    const t = m.tensors[e.name];
    if (
      !t ||
      t.dtype !== e.dtype ||
      t.shape.join() !== e.shape.join() ||
      t.offset % PAGE !== 0 ||
      t.offset + t.length > m.size
    )
      return undefined;
  }
  return m;
}

/** The packs this process has marked as read by it (markInUse), by path. */
const marked = new Set<string>();

/**
 * Leaves `<id>.pid-<pid>` beside a pack this process reads, so that another process that builds a
 * newer version of the same model (its files replaced while this one runs) does not delete the
 * pack from under this one's next session (pruneStale); the markers of processes that are gone are
 * deleted on the way (one per run would otherwise pile up).
 */
function markInUse(dir: string, id: string): void {
  const file = join(dir, `${id}.pid-${process.pid}`);
  if (marked.has(file) && existsSync(file)) return;
  try {
    writeFileSync(file, '');
    marked.add(file);
    otherReaders(dir, readdirSync(dir));
  } catch {
    /* a cache we cannot write to is reported where the pack is built */
  }
}

/**
 * The packs (ids) among `files` that another running process reads, by their markers; the markers
 * of processes that have exited are deleted.
 */
function otherReaders(dir: string, files: readonly string[]): Set<string> {
  const ids = new Set<string>();
  for (const f of files) {
    const m = /^([\w-]+)\.pid-(\d+)$/.exec(f);
    if (!m) continue;
    const pid = Number(m[2]);
    if (pid === process.pid) continue;
    if (alive(pid)) ids.add(m[1]!);
    else rmSync(join(dir, f), { force: true });
  }
  return ids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Deletes packs that belong to other versions of the model's files, and the graphs that read them
 * (<id>.<hash>.onnx, and ONNX Runtime's optimized copies <id>.<hash>.opt-<key>.onnx/.data/.json),
 * except those another running process reads (its `<id>.pid-<pid>` marker): they go in a later
 * prune, once it has exited. This process's own older packs go now, with its markers.
 */
function pruneStale(dir: string, keepPrefix: string, justBuilt: string): void {
  const files = readdirSync(dir);
  const inUse = otherReaders(dir, files);
  for (const f of files) {
    const m =
      /^([\w-]+)\.(weights|json|pid-\d+|[0-9a-f]{32}\.onnx|[0-9a-f]{32}\.opt-[0-9a-f]+\.(?:onnx|data|json))$/.exec(f);
    if (!m || m[1] === justBuilt || m[1]!.startsWith(keepPrefix) || inUse.has(m[1]!)) continue;
    rmSync(join(dir, f), { force: true });
  }
}
