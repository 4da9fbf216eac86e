// Localization: l10n/bundle.l10n.json holds every string the host and the webviews translate
// (a string missing there is one no translator sees), and the webviews' t() follows vscode.l10n.t.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { extractStrings } from '../../../scripts/l10n.mjs';

const repo = resolve(__dirname, '..', '..', '..');

test('l10n/bundle.l10n.json lists exactly the strings of the host and the webviews', () => {
  const bundle = JSON.parse(readFileSync(resolve(repo, 'l10n', 'bundle.l10n.json'), 'utf8')) as Record<string, string>;
  const found = extractStrings(repo) as Record<string, string>;
  assert.deepEqual(
    Object.keys(found).filter((k) => !(k in bundle)),
    [],
    'strings missing from the bundle: run node scripts/l10n.mjs',
  );
  assert.deepEqual(
    Object.keys(bundle).filter((k) => !(k in found)),
    [],
    'strings no longer used: run node scripts/l10n.mjs',
  );
  // Strings the user sees in each place, as a spot check that the extraction reaches them.
  for (const s of [
    'DocDistill: "{0}" is still running. Cancel it first, or wait.',
    'Built-in demo model',
    'Answers side by side',
    'Compare base / student / teacher',
    'DocDistill could not start: {0}',
  ])
    assert.ok(s in bundle, s);
});

test('the manifest strings (package.nls.json) cover every %key% of package.json', () => {
  const pkg = readFileSync(resolve(repo, 'package.json'), 'utf8');
  const nls = JSON.parse(readFileSync(resolve(repo, 'package.nls.json'), 'utf8')) as Record<string, string>;
  const keys = [...pkg.matchAll(/"%([^%"]+)%"/g)].map((m) => m[1]!);
  assert.ok(keys.length > 20);
  assert.deepEqual(
    keys.filter((k) => !(k in nls)),
    [],
  );
});
