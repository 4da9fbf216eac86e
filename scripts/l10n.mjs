// Writes l10n/bundle.l10n.json, the English source of the extension's strings (what a translator
// copies to bundle.l10n.<language>.json): every vscode.l10n.t('…') of the host and t('…') of the
// webviews, keyed by its own text, as `npx @vscode/l10n-dev export` would. The unit test
// test/unit/host/l10n.test.ts fails when the bundle is out of date. Run: node scripts/l10n.mjs
import { readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const walk = (dir) =>
  readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });

/** The strings of the host (src/extension.ts, src/host/) and the webviews, sorted, as a bundle. */
export function extractStrings(root) {
  const files = [join(root, 'src', 'extension.ts'), ...walk(join(root, 'src', 'host')), ...walk(join(root, 'webview'))];
  const out = new Map();
  // Single- or double-quoted (Prettier quotes a string with an apostrophe in double quotes).
  const re = /(?<![\w$])(?:vscode\.l10n\.)?t\(\s*(?:'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)")/g;
  for (const f of files) {
    for (const m of readFileSync(f, 'utf8').matchAll(re)) {
      const s = (m[1] ?? m[2]).replace(/\\(.)/g, (_, c) => ({ n: '\n', t: '\t' })[c] ?? c);
      if (!out.has(s)) out.set(s, relative(root, f));
    }
  }
  return Object.fromEntries([...out.keys()].sort().map((s) => [s, s]));
}

if (process.argv[1]?.endsWith('l10n.mjs')) {
  const root = resolve(dirname(process.argv[1]), '..');
  const file = join(root, 'l10n', 'bundle.l10n.json');
  const bundle = extractStrings(root);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(bundle, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  console.log(`l10n: ${Object.keys(bundle).length} strings → ${relative(root, file)}`);
}
