// Run-folder writes: whole files only, and a full disk is an actionable error that loses nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskFullError, readJson, writeJson } from '../../../src/pipeline/runFolder';

test(
  'a full disk while writing is a DiskFullError, and the previous file is kept whole',
  { skip: !existsSync('/dev/full') && 'no /dev/full here' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'dd-full-'));
    try {
      const f = join(dir, 'run.json');
      writeJson(f, { phase: 'questions', n: 1 });
      // The temporary file the next write goes through is /dev/full, where every write fails with ENOSPC.
      symlinkSync('/dev/full', `${f}.${process.pid}.tmp`);
      assert.throws(
        () => writeJson(f, { phase: 'answers', n: 2, pad: 'x'.repeat(1 << 16) }),
        (e: Error) =>
          e instanceof DiskFullError &&
          e.message.includes(f) &&
          /free some space/.test(e.message) &&
          /resumes/.test(e.message),
      );
      assert.deepEqual(readJson(f), { phase: 'questions', n: 1 }, 'the old content survives');
      assert.deepEqual(readdirSync(dir), ['run.json'], 'no temporary file is left behind');
      writeJson(f, { phase: 'answers', n: 2 });
      assert.deepEqual(
        JSON.parse(readFileSync(f, 'utf8')),
        { phase: 'answers', n: 2 },
        'with space again, the write goes through',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('a run file that is not JSON names itself and says how to recover', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-bad-'));
  try {
    const f = join(dir, 'run.json');
    writeJson(f, {});
    writeFileSync(f, '{"half": ');
    assert.throws(
      () => readJson(f),
      (e: Error) => e.message.includes(f) && /delete it/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
