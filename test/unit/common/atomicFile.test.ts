// Files are replaced whole or not at all, and a failed write leaves no temporary file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeAll, writeFileAtomic, writeFileAtomicWith, writeJsonAtomic } from '../../../src/common/atomicFile';

const root = mkdtempSync(join(tmpdir(), 'dd-atomic-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

test('writes text, bytes and JSON (two-space indent, final newline), replacing what was there', () => {
  const p = join(root, 'a.json');
  writeFileSync(p, 'old');
  writeJsonAtomic(p, { a: 1, b: [2] });
  assert.equal(readFileSync(p, 'utf8'), '{\n  "a": 1,\n  "b": [\n    2\n  ]\n}\n');
  writeFileAtomic(p, Uint8Array.of(1, 2, 3));
  assert.deepEqual([...readFileSync(p)], [1, 2, 3]);
  writeFileAtomic(p, 'é');
  assert.equal(readFileSync(p, 'utf8'), 'é');
  assert.deepEqual(readdirSync(root), ['a.json']);
});

test('positioned writes leave holes as zeros', () => {
  const p = join(root, 'sparse.bin');
  writeFileAtomicWith(p, (fd) => {
    writeAll(fd, Uint8Array.of(1), 0);
    writeAll(fd, Uint8Array.of(2, 3), 4);
  });
  assert.deepEqual([...readFileSync(p)], [1, 0, 0, 0, 2, 3]);
});

test('a write that fails keeps the old file and removes its temporary file', () => {
  const p = join(root, 'keep.txt');
  writeFileSync(p, 'old');
  assert.throws(
    () =>
      writeFileAtomicWith(p, (fd) => {
        writeAll(fd, Buffer.from('half'));
        throw new Error('stopped halfway');
      }),
    /stopped halfway/,
  );
  assert.equal(readFileSync(p, 'utf8'), 'old');
  assert.ok(!existsSync(`${p}.${process.pid}.tmp`));
});

test('a full disk is an error that keeps the old file', { skip: !existsSync('/dev/full') && 'no /dev/full' }, () => {
  const p = join(root, 'full.txt');
  writeFileSync(p, 'old');
  symlinkSync('/dev/full', `${p}.${process.pid}.tmp`);
  assert.throws(
    () => writeFileAtomic(p, 'x'.repeat(1 << 16)),
    (e: NodeJS.ErrnoException) => e.code === 'ENOSPC',
  );
  assert.equal(readFileSync(p, 'utf8'), 'old');
  assert.ok(!existsSync(`${p}.${process.pid}.tmp`));
});
