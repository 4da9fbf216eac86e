// The docdistill command, run as a user runs it: a real child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

const bin = resolve(__dirname, '..', '..', 'bin', 'docdistill.js');
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: "utf8", timeout: 120_000 });

test('docdistill --help lists the commands and exits 0', () => {
  const r = run('--help');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Usage: docdistill <command>/);
});

test('demo --help shows the demo model\'s own defaults, distill --help DocDistill\'s', () => {
  const demo = run('demo', '--help');
  assert.equal(demo.status, 0, demo.stderr);
  assert.match(demo.stdout, /--epochs N .*default 60; the best epoch by held-out KL/);
  assert.match(demo.stdout, /--rank R --alpha A .*default 64, 128/);
  const distill = run('distill', '--help');
  assert.equal(distill.status, 0, distill.stderr);
  assert.match(distill.stdout, /--epochs N .*default 5; early stopping on held-out KL/);
  assert.match(distill.stdout, /--rank R --alpha A .*default 16, 32/);
});

test('docdistill with an unknown command says so and exits 2', () => {
  const r = run('frobnicate');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command 'frobnicate'/);
});

test('docdistill --version prints the package version', () => {
  const r = run('--version');
  assert.equal(r.status, 0);
  assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

test('make-model, score, generate, train and merge work from the command line on a tiny model', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-cli-'));
  try {
    const m = join(dir, 'm');
    let r = run('make-model', '--shape', 'tiny-qwen2', '--seed', '3', '--out', m);
    assert.equal(r.status, 0, r.stderr);
    r = run('score', '--model', m, '--text', 'Hello world, hello!', '--json', '--device', 'cpu');
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout) as { ids: number[]; logprobs: (number | null)[] };
    assert.equal(s.logprobs[0], null);
    assert.equal(s.logprobs.length, s.ids.length);
    assert.ok(s.logprobs.slice(1).every((x) => typeof x === 'number' && x < 0));
    const r2 = run('score', '--model', m, '--ids', s.ids.join(','), '--json', '--device', 'cpu');
    assert.deepEqual(JSON.parse(r2.stdout), s);
    const gen = (...extra: string[]) => JSON.parse(run('generate', '--model', m, '--prompt', 'Hi there', '--max-tokens', '6', '--json', '--device', 'cpu', ...extra).stdout) as { ids: number[] };
    const a = gen('--temperature', '1', '--seed', '7');
    assert.deepEqual(gen('--temperature', '1', '--seed', '7').ids, a.ids, 'same seed, same output');
    assert.equal(a.ids.length <= 6, true);
    writeFileSync(join(dir, 'pairs.jsonl'), [
      JSON.stringify({ teacher: 'Doc: the sky is green. Q: sky colour?', student: 'Q: sky colour?', answer: 'Green.' }),
      JSON.stringify({ teacher: 'Doc: cats bark. Q: what do cats do?', student: 'Q: what do cats do?', answer: 'They bark.' }),
    ].join('\n'));
    r = run('train', '--model', m, '--data', join(dir, 'pairs.jsonl'), '--out', join(dir, 'ad'), '--epochs', '2', '--lr', '1e-2', '--rank', '4', '--device', 'cpu');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /step 2\/2 epoch 2 loss/);
    r = run('merge', '--model', m, '--adapter', join(dir, 'ad'), '--out', join(dir, 'merged'));
    assert.equal(r.status, 0, r.stderr);
    const withAdapter = JSON.parse(run('score', '--model', m, '--adapter', join(dir, 'ad'), '--ids', s.ids.join(','), '--json', '--device', 'cpu').stdout) as typeof s;
    const merged = JSON.parse(run('score', '--model', join(dir, 'merged'), '--ids', s.ids.join(','), '--json', '--device', 'cpu').stdout) as typeof s;
    for (let i = 1; i < s.ids.length; i++) assert.ok(Math.abs(withAdapter.logprobs[i]! - merged.logprobs[i]!) < 1e-3);
    assert.notDeepEqual(withAdapter.logprobs, s.logprobs, 'the adapter changed the model');
    r = run('score', '--model', join(dir, 'nope'), '--text', 'x');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /no such folder/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
