// Safe document reads: every place that reads a document (ingest, re-distillation from an adapter's
// recorded sources, chat with the teacher, the adapter list's staleness) goes through here, so that
//  - a document is read only if its real path (symlinks resolved) lies inside the workspace: a
//    `docs/notes.md → ~/.ssh/id_rsa` link is refused, not trained into an adapter;
//  - only regular files are read, opened without blocking (a FIFO named *.md cannot hang the run)
//    and checked on the open descriptor, not on a path that may change in between;
//  - a read is bounded (MAX_DOC_BYTES, counted on the bytes read, not on what stat says: a file
//    that grows while it is read stops at the cap) and can be cancelled between chunks.
// The host's docs watcher, which may not import the pipeline, applies the same real-path rule
// itself (leadsOutside in src/host/watcher.ts).
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readdirSync,
  readSync,
  realpathSync,
  statSync,
  type Stats,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';

export class IngestError extends Error {
  override name = 'IngestError';
}

export const MAX_DOC_BYTES = 8 * 2 ** 20;

const MARKDOWN = /\.(md|markdown|mdx)$/i;
const CHUNK = 2 ** 20;
// Not defined on Windows, where there are no FIFOs to block on nor links to follow at open.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOFOLLOW ?? 0);

const within = (root: string, p: string): boolean => {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
};

/** `p` as the user knows it: relative to the workspace when it lies inside it. */
const shown = (root: string, p: string): string => {
  const abs = resolve(root, p);
  return within(resolve(root), abs) ? relative(resolve(root), abs).split(sep).join('/') || '.' : p;
};

const errno = (e: unknown): string => (e as NodeJS.ErrnoException).code ?? String(e);

function realRoot(root: string): string {
  try {
    return realpathSync(resolve(root));
  } catch (e) {
    throw new IngestError(`the workspace ${root} cannot be read (${errno(e)})`);
  }
}

/**
 * `p` (absolute, or relative to root) resolved to its real path, refused unless that lies inside
 * the workspace's real path. `what` names the path in the message ("document", "input", …).
 */
export function confine(root: string, path: string, what = 'document'): string {
  const abs = resolve(root, path);
  const rootReal = realRoot(root);
  if (!within(resolve(root), abs) && !within(rootReal, abs))
    throw new IngestError(
      `${what} ${path} is outside the workspace ${root}; DocDistill reads documents only inside it`,
    );
  const p = shown(root, path);
  let real: string;
  try {
    real = realpathSync(abs);
  } catch (e) {
    const code = errno(e);
    if (code === 'ENOENT') throw new IngestError(`${p}: no such file or folder`);
    if (code === 'ELOOP') throw new IngestError(`${p}: is a symbolic link that loops; remove or fix the link`);
    throw new IngestError(`${p}: cannot read (${code})`);
  }
  if (!within(rootReal, real)) {
    throw new IngestError(
      `${p}: leads to ${real} (through a symbolic link), outside the workspace ${root}; DocDistill reads only files inside the workspace (copy the file in if it belongs to the docs)`,
    );
  }
  return real;
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

const tooBig = (p: string, bytes: number) =>
  new IngestError(
    `${p}: ${bytes > MAX_DOC_BYTES ? `more than ${MAX_DOC_BYTES / 2 ** 20} MB` : `${(bytes / 2 ** 20).toFixed(1)} MB`} is more than the ${MAX_DOC_BYTES / 2 ** 20} MB a document may have; split it into smaller files`,
  );

function checkRegular(p: string, st: Stats): void {
  if (!st.isFile())
    throw new IngestError(`${p}: is ${kindOf(st)}, not a regular file; DocDistill reads only regular Markdown files`);
  if (st.size > MAX_DOC_BYTES)
    throw new IngestError(
      `${p}: ${(st.size / 2 ** 20).toFixed(1)} MB is more than the ${MAX_DOC_BYTES / 2 ** 20} MB a document may have; split it into smaller files`,
    );
}

/** Strict UTF-8 Markdown from the bytes of a file, refusing binary and invalid text with a clear reason. */
function decode(p: string, bytes: Uint8Array): string {
  if (bytes.includes(0)) throw new IngestError(`${p}: looks like a binary file (it contains NUL bytes), not Markdown`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes).replace(/^\uFEFF/, '');
  } catch {
    throw new IngestError(`${p}: is not valid UTF-8 text; save it as UTF-8`);
  }
}

const openError = (p: string, e: unknown): IngestError => {
  const code = errno(e);
  if (code === 'ELOOP')
    return new IngestError(`${p}: became a symbolic link while being read; DocDistill does not follow it`);
  return new IngestError(`${p}: cannot read (${code})`);
};

/**
 * Reads one file as Markdown: a regular file only (opened without blocking, checked on the open
 * descriptor), at most MAX_DOC_BYTES, strict UTF-8. No workspace check: see readDocumentSync.
 */
export function readMarkdown(path: string): string {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS & ~(constants.O_NOFOLLOW ?? 0));
  } catch (e) {
    throw openError(path, e);
  }
  try {
    checkRegular(path, fstatSync(fd));
    const parts: Buffer[] = [];
    let n = 0;
    while (n <= MAX_DOC_BYTES) {
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, MAX_DOC_BYTES + 1 - n));
      const r = readSync(fd, buf, 0, buf.length, null);
      if (!r) break;
      parts.push(buf.subarray(0, r));
      n += r;
    }
    if (n > MAX_DOC_BYTES) throw tooBig(path, n);
    return decode(path, Buffer.concat(parts, n));
  } finally {
    closeSync(fd);
  }
}

/** A document inside the workspace, read safely (see the top of this file), synchronously. */
export function readDocumentSync(root: string, p: string, what = 'document'): string {
  const real = confine(root, p, what);
  try {
    return readMarkdown(real);
  } catch (e) {
    // Name the document as the user knows it, not by its real path.
    if (e instanceof IngestError) e.message = e.message.split(real).join(shown(root, p));
    throw e;
  }
}

/**
 * A document inside the workspace, read safely and asynchronously, in chunks; `check` is called
 * between chunks and may throw to cancel (the Distiller's cancellation check).
 */
export async function readDocument(root: string, path: string, check?: () => void, what = 'document'): Promise<string> {
  const real = confine(root, path, what);
  const p = shown(root, path);
  let fh;
  try {
    fh = await open(real, OPEN_FLAGS);
  } catch (e) {
    throw openError(p, e);
  }
  try {
    checkRegular(p, await fh.stat());
    const parts: Buffer[] = [];
    let n = 0;
    while (n <= MAX_DOC_BYTES) {
      check?.();
      const buf = Buffer.allocUnsafe(Math.min(CHUNK, MAX_DOC_BYTES + 1 - n));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (!bytesRead) break;
      parts.push(buf.subarray(0, bytesRead));
      n += bytesRead;
    }
    if (n > MAX_DOC_BYTES) throw tooBig(p, n);
    return decode(p, Buffer.concat(parts, n));
  } finally {
    await fh.close();
  }
}

/**
 * Markdown files under the inputs (folders walked, .docdistill and dot-folders skipped), sorted.
 * Inputs must lie inside the workspace (real paths); inside a folder, a link that leads outside it,
 * a link loop and special files are skipped with a warning, the rest is read as usual.
 */
export function collectMarkdown(inputs: string[], root: string, warn: (message: string) => void = () => {}): string[] {
  const out = new Set<string>();
  const seen = new Set<string>();
  const rootAbs = resolve(root);
  const walk = (p: string) => {
    let real: string;
    try {
      real = confine(rootAbs, p);
    } catch (e) {
      warn(`${(e as Error).message} — skipped`);
      return;
    }
    const st = statSync(real);
    if (st.isDirectory()) {
      if (seen.has(real)) return; // a link back to a folder already walked
      seen.add(real);
      for (const n of readdirSync(p).sort()) {
        if (n.startsWith('.') || n === 'node_modules') continue;
        walk(join(p, n));
      }
    } else if (MARKDOWN.test(p)) out.add(p);
  };
  for (const i of inputs) {
    const abs = resolve(rootAbs, i);
    const real = confine(rootAbs, i, 'input');
    if (statSync(real).isFile() && !MARKDOWN.test(abs)) throw new IngestError(`${i}: not a Markdown file (.md)`);
    walk(abs);
  }
  return [...out].sort();
}

/**
 * The sources an adapter's docdistill.json records (its `chunks[].source`), once each, that still
 * exist (or, with keepMissing, that did) and lie inside the workspace. A recorded source outside it
 * (a committed docdistill.json saying `../../outside/x.md`, or a link leading out) is not read;
 * `warn` says which.
 */
export function recordedSources(
  chunks: readonly { source: string }[] | undefined,
  root: string,
  warn: (message: string) => void = () => {},
  adapter = 'the adapter',
  keepMissing = false,
): string[] {
  const out: string[] = [];
  for (const src of new Set((chunks ?? []).map((c) => c.source))) {
    if (typeof src !== 'string' || !src) continue;
    try {
      confine(root, src, 'recorded source');
    } catch (e) {
      if (/no such file/.test((e as Error).message)) {
        if (keepMissing) out.push(src); // deleted since: nothing to replay, but the adapter knew it
        continue;
      }
      warn(`${adapter}'s docdistill.json records ${JSON.stringify(src)}, which is not read: ${(e as Error).message}`);
      continue;
    }
    out.push(src);
  }
  return out;
}
