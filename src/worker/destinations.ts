// Where the worker may write what a user takes away (adapters/export, adapters/merge). The host
// picks the destination with a save dialog and sends an absolute path; the worker refuses anything
// else: a relative path (relative to what the worker happens to think is the root), a folder that
// exists, and any place inside DocDistill's own work folders (runs, adapters, caches), where a copy
// would be taken for an adapter or clobber a run. Links are resolved before the check.
import { cpSync, existsSync, lstatSync, mkdirSync, realpathSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ResponseError } from 'vscode-jsonrpc/node';
import { ErrorCodes } from '../protocol';

/** A refused destination: bad input (InvalidParams) for the caller. */
export class DestinationError extends ResponseError<void> {
  constructor(message: string) {
    super(ErrorCodes.BadInput, message);
  }
}

const within = (root: string, p: string): boolean => {
  const rel = relative(root, p);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
};

/** `p` with its longest existing prefix resolved to a real path (p itself need not exist). */
function realish(p: string): string {
  const rest: string[] = [];
  let cur = resolve(p);
  for (;;) {
    try {
      return join(realpathSync(cur), ...rest.reverse());
    } catch {
      const up = dirname(cur);
      if (up === cur) return resolve(p);
      rest.push(basename(cur));
      cur = up;
    }
  }
}

/**
 * `dest` if the worker may create it: absolute, not there yet, and outside the work folders
 * (`workDirs`: the workspace's .docdistill and, if elsewhere, the configured one). `what` names the
 * request in the message.
 */
export function checkDestination(dest: string, workDirs: readonly string[], what: string): string {
  if (!dest || !isAbsolute(dest))
    throw new DestinationError(
      `${what}: the destination ${JSON.stringify(dest)} is not an absolute path; choose a folder with the save dialog (or give a full path)`,
    );
  const abs = resolve(dest);
  for (const w of workDirs) {
    if (within(resolve(w), abs) || within(realish(w), realish(abs))) {
      throw new DestinationError(
        `${what}: ${dest} is inside DocDistill's work folder ${w}, which holds its runs and adapters; choose a folder outside it`,
      );
    }
  }
  let there = false;
  try {
    lstatSync(abs);
    there = true;
  } catch {
    // not there: good
  }
  if (there) throw new DestinationError(`${what}: ${dest} exists; choose a new folder`);
  return abs;
}

/** Copies the folder `src` to the new folder `dest` whole: into a temporary sibling, then a rename. */
export function copyFolderAtomic(src: string, dest: string): void {
  const tmp = `${dest}.tmp-${process.pid}-${Date.now().toString(36)}`;
  try {
    mkdirSync(dirname(dest), { recursive: true });
    cpSync(src, tmp, { recursive: true, filter: (s) => !lstatSync(s).isSymbolicLink() });
    if (existsSync(dest)) throw new DestinationError(`${dest} appeared while copying; choose a new folder`);
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** adapters/export: the adapter folder `src` copied whole to `dest`, once `dest` passes checkDestination. */
export function exportFolder(src: string, dest: string, workDirs: readonly string[]): string {
  const abs = checkDestination(dest, workDirs, 'adapters/export');
  copyFolderAtomic(src, abs);
  return abs;
}
