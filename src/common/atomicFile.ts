// Files written whole or not at all: into a temporary file beside the target (the same folder, so
// the rename cannot cross file systems), flushed to disk, then renamed over it. A reader never
// sees half a file, and a crash, a kill or a full disk at any moment leaves the old file or the
// new one; a failed write removes its temporary file.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';

const IO_CHUNK = 1 << 30;

/**
 * Writes all of `data`, at `position` or else at the file's current offset: writeSync may write
 * less than asked, and takes at most 2 GiB at once.
 */
export function writeAll(fd: number, data: Uint8Array, position?: number): void {
  let off = 0;
  while (off < data.length)
    off += writeSync(
      fd,
      data,
      off,
      Math.min(IO_CHUNK, data.length - off),
      position === undefined ? null : position + off,
    );
}

/** Writes `path` atomically with `write(fd)`, which fills the temporary file. */
export function writeFileAtomicWith(path: string, write: (fd: number) => void): void {
  const tmp = `${path}.${process.pid}.tmp`;
  let ok = false;
  try {
    const fd = openSync(tmp, 'w');
    try {
      write(fd);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
    ok = true;
  } finally {
    if (!ok) rmSync(tmp, { force: true });
  }
}

export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  writeFileAtomicWith(path, (fd) => writeAll(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data));
}

/** JSON as the project writes it: two-space indent and a final newline. */
export function writeJsonAtomic(path: string, value: unknown): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n');
}
