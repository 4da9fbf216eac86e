// glibc malloc settings for the processes that train: when they are added, and that a real child
// process gets them (the worker as the extension starts it, the CLI's model commands).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LEAN_MALLOC_TUNABLES, leanMallocEnv, needsLeanMalloc } from '../../../src/common/leanMalloc';
import { reexecForMalloc } from '../../../src/cli/reexec';

test('the tunables are added on Linux, appended to the user’s own, and never override theirs', () => {
  assert.equal(leanMallocEnv({ A: '1' }, 'linux').GLIBC_TUNABLES, LEAN_MALLOC_TUNABLES);
  assert.equal(
    leanMallocEnv({ GLIBC_TUNABLES: 'glibc.pthread.rseq=0' }, 'linux').GLIBC_TUNABLES,
    `glibc.pthread.rseq=0:${LEAN_MALLOC_TUNABLES}`,
  );
  const mine = { GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=65536' };
  assert.deepEqual(leanMallocEnv(mine, 'linux'), mine);
  assert.deepEqual(leanMallocEnv({ A: '1' }, 'darwin'), { A: '1' });
  assert.deepEqual(leanMallocEnv({ A: '1' }, 'win32'), { A: '1' });
  assert.deepEqual(leanMallocEnv({ DOCDISTILL_LEAN_MALLOC: '0' }, 'linux'), { DOCDISTILL_LEAN_MALLOC: '0' });
  assert.equal(needsLeanMalloc(leanMallocEnv({}, 'linux'), 'linux'), false);
});

test('the CLI runs itself again only for model commands that lack the tunables', () => {
  for (const c of ['train', 'distill', 'generate', 'score', 'chat', 'demo', 'demo-model'])
    assert.equal(reexecForMalloc([c, '--model', 'm'], {}, 'linux'), true, c);
  assert.equal(reexecForMalloc(['train', '--help'], {}, 'linux'), false);
  assert.equal(reexecForMalloc(['make-model', '--out', 'x'], {}, 'linux'), false);
  assert.equal(reexecForMalloc(['--version'], {}, 'linux'), false);
  assert.equal(reexecForMalloc(['train'], { GLIBC_TUNABLES: LEAN_MALLOC_TUNABLES }, 'linux'), false);
  assert.equal(reexecForMalloc(['train'], {}, 'darwin'), false);
});

test(
  'a model command through bin/docdistill.js runs with the tunables and passes on the exit code and messages',
  { skip: process.platform !== 'linux' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'dd-malloc-'));
    try {
      // A preloaded script stands in for nothing: it records the environment the command itself
      // ran with, then the real command runs (and stops at a model folder that does not exist).
      const probe = join(dir, 'probe.cjs');
      const out = join(dir, 'env.txt');
      writeFileSync(
        probe,
        `require('node:fs').appendFileSync(${JSON.stringify(out)}, (process.env.GLIBC_TUNABLES ?? '-') + '\\n');`,
      );
      const bin = resolve(__dirname, '..', '..', '..', 'bin', 'docdistill.js');
      const env = { ...process.env };
      delete env.GLIBC_TUNABLES;
      delete env.DOCDISTILL_LEAN_MALLOC;
      const r = spawnSync(
        process.execPath,
        ['--require', probe, bin, 'score', '--model', join(dir, 'nope'), '--text', 'x'],
        {
          encoding: 'utf8',
          env,
        },
      );
      assert.equal(r.status, 2, r.stderr); // a usage error's code, from the child
      assert.equal(r.stderr.match(/docdistill score:/g)?.length, 1, r.stderr);
      // The first process had none; the one that ran the command (started again with the same
      // node options, so the probe ran in it too) had DocDistill's.
      assert.deepEqual(readFileSync(out, 'utf8').trim().split('\n'), ['-', LEAN_MALLOC_TUNABLES]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test(
  'with the tunables, freed blocks go back to the system even after a large block raised glibc’s threshold',
  { skip: process.platform !== 'linux' },
  () => {
    // 100 blocks of 1 MB, allocated after a 20 MB one was freed (which, with glibc's defaults,
    // moves the mmap threshold to 20 MB and such blocks into the heap), freed again while a small
    // block allocated after them stays: the resident size must fall back.
    const script = `
      const rss = () => process.memoryUsage().rss / 2 ** 20;
      let big = Buffer.allocUnsafeSlow(20 << 20); big.fill(1); big = null; gc();
      let bufs = []; for (let i = 0; i < 100; i++) { const b = Buffer.allocUnsafeSlow(1 << 20); b.fill(1); bufs.push(b); }
      const pin = Buffer.allocUnsafeSlow(64 << 10); pin.fill(1);
      const peak = rss(); bufs = null; gc(); gc();
      setTimeout(() => { gc(); console.log(JSON.stringify({ peak, after: rss(), pin: pin.length })); }, 100);`;
    const run = (env: NodeJS.ProcessEnv) => {
      const r = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', env });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout) as { peak: number; after: number };
    };
    const base = { ...process.env };
    delete base.GLIBC_TUNABLES;
    const lean = run(leanMallocEnv(base, 'linux'));
    assert.ok(lean.peak - lean.after > 80, `with the tunables: ${lean.peak.toFixed(0)} → ${lean.after.toFixed(0)} MB`);
  },
);
