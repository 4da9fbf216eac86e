// The docdistill command, run as a user runs it: a real child process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { modelDefaults, resolveSettings } from '../../src/pipeline/settings';
import { tmpdir } from 'node:os';

const bin = resolve(__dirname, '..', '..', 'bin', 'docdistill.js');
const run = (...args: string[]) => spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });

test('docdistill --help lists the commands and exits 0', () => {
  const r = run('--help');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /Usage: docdistill <command>/);
});

test("demo --help shows the demo model's own defaults, distill --help DocDistill's", () => {
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
    // A quantized base: close to float32; a bad value is a usage error.
    const q8 = JSON.parse(
      run('score', '--model', m, '--ids', s.ids.join(','), '--json', '--device', 'cpu', '--quantize', 'int8').stdout,
    ) as typeof s;
    for (let i = 1; i < s.ids.length; i++)
      assert.ok(
        Math.abs(q8.logprobs[i]! - s.logprobs[i]!) < 0.05,
        `int8 log-prob ${q8.logprobs[i]} vs ${s.logprobs[i]}`,
      );
    assert.notDeepEqual(q8.logprobs, s.logprobs, 'int8 reads other weights');
    r = run('score', '--model', m, '--text', 'x', '--quantize', 'int5');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--quantize must be none, int8, int4 \(got 'int5'\)/);
    const gen = (...extra: string[]) =>
      JSON.parse(
        run(
          'generate',
          '--model',
          m,
          '--prompt',
          'Hi there',
          '--max-tokens',
          '6',
          '--json',
          '--device',
          'cpu',
          ...extra,
        ).stdout,
      ) as { ids: number[] };
    const a = gen('--temperature', '1', '--seed', '7');
    assert.deepEqual(gen('--temperature', '1', '--seed', '7').ids, a.ids, 'same seed, same output');
    assert.equal(a.ids.length <= 6, true);
    // Timings as llama.cpp reports them: load, prefill and decode separately.
    const j = gen('--max-tokens', '5') as { ids: number[]; finishReason: string; timings: Record<string, number> };
    assert.deepEqual(Object.keys(j.timings).sort(), [
      'decodeMs',
      'decodeTokens',
      'loadMs',
      'prefillMs',
      'prefillPositions',
      'prefillTokens',
      'prefixReusedTokens',
    ]);
    assert.equal(j.timings.prefixReusedTokens, 0, 'one prompt shares nothing');
    assert.equal(j.timings.prefillPositions, j.timings.prefillTokens, 'one prompt: prefilled whole');
    assert.ok(j.timings.loadMs! > 0 && j.timings.prefillMs! > 0 && j.timings.decodeMs! >= 0);
    assert.ok(j.timings.prefillTokens! >= 2, "the prompt's tokens");
    // The first new token comes from the prefill's logits; a stop token sampled after a decode step is not output.
    assert.equal(j.timings.decodeTokens, j.ids.length - (j.finishReason === 'length' ? 1 : 0));
    r = run('generate', '--model', m, '--prompt', 'Hi there', '--max-tokens', '3', '--device', 'cpu');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /load \d+\.\d\d s · prefill \d+ tokens \d+\.\d\d s \(.*\) · decode \d+ tokens \d+\.\d\d s/);
    writeFileSync(
      join(dir, 'pairs.jsonl'),
      [
        JSON.stringify({
          teacher: 'Doc: the sky is green. Q: sky colour?',
          student: 'Q: sky colour?',
          answer: 'Green.',
        }),
        JSON.stringify({
          teacher: 'Doc: cats bark. Q: what do cats do?',
          student: 'Q: what do cats do?',
          answer: 'They bark.',
        }),
      ].join('\n'),
    );
    r = run(
      'train',
      '--model',
      m,
      '--data',
      join(dir, 'pairs.jsonl'),
      '--out',
      join(dir, 'ad'),
      '--epochs',
      '2',
      '--lr',
      '1e-2',
      '--rank',
      '4',
      '--device',
      'cpu',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /step 2\/2 epoch 2 loss/);
    r = run(
      'train',
      '--model',
      m,
      '--data',
      join(dir, 'pairs.jsonl'),
      '--out',
      join(dir, 'ad4'),
      '--epochs',
      '2',
      '--lr',
      '1e-2',
      '--rank',
      '4',
      '--device',
      'cpu',
      '--quantize',
      'int4',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /step 2\/2 epoch 2 loss/);
    r = run('merge', '--model', m, '--adapter', join(dir, 'ad'), '--out', join(dir, 'merged'));
    assert.equal(r.status, 0, r.stderr);
    const withAdapter = JSON.parse(
      run('score', '--model', m, '--adapter', join(dir, 'ad'), '--ids', s.ids.join(','), '--json', '--device', 'cpu')
        .stdout,
    ) as typeof s;
    const merged = JSON.parse(
      run('score', '--model', join(dir, 'merged'), '--ids', s.ids.join(','), '--json', '--device', 'cpu').stdout,
    ) as typeof s;
    for (let i = 1; i < s.ids.length; i++) assert.ok(Math.abs(withAdapter.logprobs[i]! - merged.logprobs[i]!) < 1e-3);
    assert.notDeepEqual(withAdapter.logprobs, s.logprobs, 'the adapter changed the model');
    r = run('score', '--model', join(dir, 'nope'), '--text', 'x');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /no such folder/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Starts `docdistill distill` as a user would, waits for the run folder's run.json, stops it with
 * Ctrl-C (SIGINT) and returns the settings the run recorded.
 */
async function recordedSettings(extra: string[]): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'dd-cli-settings-'));
  try {
    const repo = resolve(__dirname, '..', '..');
    cpSync(join(repo, 'examples', 'docs', 'dapu.md'), join(dir, 'dapu.md')); // documents are read inside --root only
    const child = spawn(
      process.execPath,
      [
        bin,
        'distill',
        join(dir, 'dapu.md'),
        '--model',
        join(repo, 'media', 'demo-model'),
        '--root',
        dir,
        '--device',
        'cpu',
        '--no-eval',
        ...extra,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const runs = join(dir, '.docdistill', 'runs');
    const deadline = Date.now() + 60_000;
    let runJson: string | undefined;
    while (!runJson && Date.now() < deadline && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 50));
      const id = existsSync(runs) ? readdirSync(runs)[0] : undefined;
      if (id && existsSync(join(runs, id, 'run.json'))) runJson = join(runs, id, 'run.json');
    }
    child.kill('SIGINT');
    const code = await exited;
    assert.ok(runJson, `no run.json appeared; the CLI said:\n${stderr}`);
    assert.ok(code === 130 || code === 0, `exit ${code}: ${stderr}`);
    return (JSON.parse(readFileSync(runJson, 'utf8')) as { settings: Record<string, unknown> }).settings;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("distill from the command line trains with the model folder's recommended settings when the user sets none", async () => {
  const model = resolve(__dirname, '..', '..', 'media', 'demo-model');
  const recommended = modelDefaults(model);
  assert.ok(Object.keys(recommended).length >= 3, 'the demo model recommends settings');
  const s = await recordedSettings([]);
  assert.deepEqual(s, { ...resolveSettings(recommended) });
  // An option the user gives wins; the other recommendations stay.
  const s2 = await recordedSettings(['--epochs', '3', '--set', 'questionTemperature=0.7']);
  assert.deepEqual(s2, { ...resolveSettings({ ...recommended, epochs: 3, questionTemperature: 0.7 }) });
});

test('distill --estimate-only prints the estimate per phase and writes nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-cli-est-'));
  try {
    const repo = resolve(__dirname, '..', '..');
    cpSync(join(repo, 'examples', 'docs', 'dapu.md'), join(dir, 'dapu.md'));
    const r = run(
      'distill',
      join(dir, 'dapu.md'),
      '--model',
      join(repo, 'media', 'demo-model'),
      '--root',
      dir,
      '--device',
      'cpu',
      '--estimate-only',
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^estimate: about .+: questions .+, answers .+, training .+, evaluation .+$/m);
    assert.equal(existsSync(join(dir, '.docdistill')), false, 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
