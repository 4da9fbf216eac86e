// Markdown ingest: headings, code fences, front matter, comments, budgets, hashes, bad files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunkMarkdown, readMarkdown, IngestError, MAX_DOC_BYTES } from '../../../src/pipeline/ingest';

// A stand-in token count: words. The pipeline passes the model tokenizer's count.
const words = (s: string) => s.split(/\s+/).filter(Boolean).length;

const doc = `---
title: Zorblax
tags: [a, b]
---
# Zorblax

Zorblax lives in Quendor. <!-- editor's note: check this -->
<!--
a whole comment block
-->

## Work

Zorblax is a baker.

\`\`\`bash
# not a heading
echo hello
\`\`\`

## Pets

Zorblax has a cat named Miru.
`;

test('splits at headings, keeps code, drops front matter and comments', () => {
  const chunks = chunkMarkdown('docs/z.md', doc, { maxTokens: 200, countTokens: words, minTokens: 0 });
  assert.deepEqual(
    chunks.map((c) => c.headings),
    [['Zorblax'], ['Zorblax', 'Work'], ['Zorblax', 'Pets']],
  );
  const all = chunks.map((c) => c.text).join('\n');
  assert.doesNotMatch(all, /title:|editor's note|whole comment/);
  assert.match(chunks[1]!.text, /```bash\n# not a heading\necho hello\n```/);
  assert.match(chunks[1]!.text, /^Zorblax\n\n## Work/, 'a section carries its parent headings');
  assert.equal(chunks[0]!.line, 5);
  assert.deepEqual(
    chunks.map((c) => c.id),
    ['docs/z.md#0', 'docs/z.md#1', 'docs/z.md#2'],
  );
});

test('small sections under one parent merge while they fit', () => {
  const chunks = chunkMarkdown('z.md', doc, { maxTokens: 200, countTokens: words });
  assert.equal(chunks.length, 1);
  assert.match(chunks[0]!.text, /## Work[\s\S]*## Pets/);
});

test('a section longer than the budget is split at paragraphs, then sentences, each piece within budget', () => {
  const para = (i: number) =>
    Array.from({ length: 5 }, (_, j) => `Sentence ${j} of paragraph ${i} says something.`).join(' ');
  const md = `# Long\n\n${Array.from({ length: 6 }, (_, i) => para(i)).join('\n\n')}\n`;
  const chunks = chunkMarkdown('l.md', md, { maxTokens: 30, countTokens: words });
  assert.ok(chunks.length > 6, `${chunks.length} chunks`);
  for (const c of chunks) assert.ok(c.tokens <= 30, `${c.tokens} tokens: ${c.text}`);
  const text = chunks.map((c) => c.text).join(' ');
  for (let i = 0; i < 6; i++)
    for (let j = 0; j < 5; j++) assert.ok(text.includes(`Sentence ${j} of paragraph ${i}`), `lost sentence ${j}/${i}`);
});

test('hashes change with the content and only with it', () => {
  const a = chunkMarkdown('z.md', doc, { maxTokens: 200, countTokens: words, minTokens: 0 });
  const b = chunkMarkdown('z.md', doc.replace('a cat named Miru', 'a dog named Miru'), {
    maxTokens: 200,
    countTokens: words,
    minTokens: 0,
  });
  assert.equal(a[0]!.hash, b[0]!.hash);
  assert.equal(a[1]!.hash, b[1]!.hash);
  assert.notEqual(a[2]!.hash, b[2]!.hash);
  assert.match(a[0]!.hash, /^[0-9a-f]{64}$/);
});

test('empty and comment-only documents give no chunks; CRLF is handled', () => {
  assert.deepEqual(chunkMarkdown('e.md', '', { maxTokens: 50, countTokens: words }), []);
  assert.deepEqual(chunkMarkdown('e.md', '<!-- nothing -->\n\n', { maxTokens: 50, countTokens: words }), []);
  const c = chunkMarkdown('w.md', '# A\r\n\r\nText here.\r\n', { maxTokens: 50, countTokens: words });
  assert.equal(c.length, 1);
  assert.doesNotMatch(c[0]!.text, /\r/);
});

test('binary, invalid UTF-8 and huge files are refused with a clear reason', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-ingest-'));
  try {
    writeFileSync(join(dir, 'bin.md'), Buffer.from([0x23, 0x20, 0x00, 0x01, 0x02]));
    writeFileSync(join(dir, 'bad.md'), Buffer.from([0x23, 0x20, 0xff, 0xfe, 0x41]));
    writeFileSync(join(dir, 'ok.md'), '\uFEFF# Fine\n');
    writeFileSync(join(dir, 'huge.md'), Buffer.alloc(MAX_DOC_BYTES + 1, 0x61));
    assert.throws(
      () => readMarkdown(join(dir, 'bin.md')),
      (e: Error) => e instanceof IngestError && /binary/.test(e.message),
    );
    assert.throws(() => readMarkdown(join(dir, 'bad.md')), /not valid UTF-8/);
    assert.throws(() => readMarkdown(join(dir, 'huge.md')), /MB is more than/);
    assert.throws(() => readMarkdown(join(dir, 'missing.md')), /cannot read \(ENOENT\)/);
    assert.equal(readMarkdown(join(dir, 'ok.md')), '# Fine\n');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('CommonMark structure: setext headings split, lists and tables stay whole, HTML comments and front matter go', () => {
  const md = `---
title: Kest
---
Kest
====

Kest is a potter in Varn.

Work
----

- She throws bowls.
- She fires them on Fridays.

| day | hours |
| --- | ----- |
| Mon | 9-5   |

<div class="note">
Kest sells at the market.
</div>
<!-- hidden -->

Not a heading
    ---
`;
  const chunks = chunkMarkdown('k.md', md, { maxTokens: 200, countTokens: words, minTokens: 0 });
  assert.deepEqual(
    chunks.map((c) => c.headings),
    [['Kest'], ['Kest', 'Work']],
  );
  assert.match(
    chunks[0]!.text,
    /^Kest\n====\n\nKest is a potter/,
    'a setext heading starts its own chunk, without its name repeated as context',
  );
  assert.match(chunks[1]!.text, /^Kest\n\nWork\n----/, 'a setext sub-section carries its parent heading');
  assert.match(chunks[1]!.text, /- She throws bowls\.\n- She fires them on Fridays\./);
  assert.match(chunks[1]!.text, /\| Mon \| 9-5 {3}\|/);
  assert.match(chunks[1]!.text, /Kest sells at the market/);
  assert.doesNotMatch(chunks.map((c) => c.text).join('\n'), /title:|hidden/);
  assert.equal(chunks[1]!.line, 9);
});

test('sentences split at real sentence ends, not inside abbreviations or numbers', () => {
  const long = 'The kiln reaches 1200.5 degrees, e.g. on Fridays. It cools overnight. Kest opens it at dawn.';
  const chunks = chunkMarkdown('s.md', `# S\n\n${long}\n`, { maxTokens: 9, countTokens: words });
  const texts = chunks.map((c) => c.text.replace(/^S\n\n/, ''));
  assert.ok(
    texts.some((t) => t.includes('1200.5 degrees')),
    texts.join(' | '),
  );
  assert.ok(
    texts.every((t) => !/^5 degrees/.test(t)),
    texts.join(' | '),
  );
});
