// Look-alike adapter names (issue 18, item 7): a name is checked as it is given, nowhere trimmed,
// by one validator that the command line, the Distiller, the worker and the settings' pattern share.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { CausalLM } from '../../../src/engine/models/model';
import { Distiller } from '../../../src/pipeline/distill';
import { checkName, nameProblem } from '../../../src/pipeline/names';
import { safeName } from '../../../src/pipeline/runFolder';

const repo = resolve(__dirname, '..', '..', '..');
const bin = join(repo, 'bin', 'docdistill.js');

test('item 7: names with spaces at either end or control characters are refused, saying which', () => {
  for (const ok of ['docs', 'my-docs_2', 'v1.2', 'A', 'x'.repeat(64)])
    assert.equal(nameProblem(ok, 'adapter name'), undefined, ok);
  const cases: [string, RegExp][] = [
    ['docs ', /adapter name "docs " ends with a space; remove it/],
    [' docs', /adapter name " docs" starts with a space/],
    ['docs\n', /adapter name "docs\\n" has a control character \(U\+000A\)/],
    ['do\tcs', /has a control character \(U\+0009\)/],
    ['docs\u0000', /has a control character \(U\+0000\)/],
    ['docs\u2028', /has a control character \(U\+2028\)/],
    ['docs\u00a0', /ends with a space/],
    ['my docs', /may only have letters, digits/],
    ['../evil', /may only have letters, digits/],
    ['a..b', /may only have letters, digits/],
    ['', /is empty/],
    ['x'.repeat(65), /up to 64/],
  ];
  for (const [name, re] of cases) {
    assert.match(nameProblem(name, 'adapter name') ?? '', re, JSON.stringify(name));
    assert.throws(() => checkName(name, 'adapter name'), re);
    assert.throws(() => safeName(name, 'adapter name'), re); // the run folder's check is the same one
  }
  assert.equal(safeName('docs'), 'docs');
  // The settings' pattern (package.json) accepts and refuses the same names.
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
    contributes: {
      configuration:
        { properties: Record<string, { pattern?: string }> }[] | { properties: Record<string, { pattern?: string }> };
    };
  };
  const confs = Array.isArray(pkg.contributes.configuration)
    ? pkg.contributes.configuration
    : [pkg.contributes.configuration];
  const pattern = new RegExp(confs.map((c) => c.properties['docdistill.adapterName']?.pattern).find(Boolean)!, 'u');
  for (const ok of ['docs', 'my-docs_2', 'v1.2']) assert.ok(pattern.test(ok), ok);
  for (const [name] of cases) assert.ok(!pattern.test(name), JSON.stringify(name));
});

test('item 7: the Distiller and the command line refuse "docs " and "docs\\n" before anything is written', () => {
  const root = mkdtempSync(join(tmpdir(), 'dd-names-'));
  try {
    mkdirSync(join(root, 'docs'));
    writeFileSync(join(root, 'docs', 'a.md'), '# A\n\nA plays the lute.\n');
    const fakeModel = { tokenizer: { hasChatTemplate: true }, dir: '/m' } as unknown as CausalLM;
    assert.throws(
      () => new Distiller(fakeModel, { inputs: ['docs'], root, name: 'docs ' }),
      /adapter name "docs " ends with a space/,
    );
    assert.throws(
      () => new Distiller(fakeModel, { inputs: ['docs'], root, name: 'docs\n' }),
      /adapter name "docs\\n" has a control character/,
    );
    for (const [name, re] of [
      ['docs ', /adapter name \(--name\) "docs " ends with a space/],
      ['docs\n', /adapter name \(--name\) "docs\\n" has a control character \(U\+000A\)/],
    ] as const) {
      // No --model needed: the name is checked before the model is loaded.
      const r = spawnSync(
        process.execPath,
        [bin, 'distill', 'docs', '--model', join(root, 'no-model'), '--name', name],
        { cwd: root, encoding: 'utf8' },
      );
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, re);
    }
    const e = spawnSync(process.execPath, [bin, 'eval', '--model', join(root, 'no-model'), '--name', 'docs '], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(e.status, 2, e.stderr);
    assert.match(e.stderr, /adapter name \(--name\) "docs " ends with a space/);
    assert.deepEqual(readdirSync(root), ['docs'], 'nothing was written');
    assert.equal(existsSync(join(root, '.docdistill')), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
