// sectionPassages: every section of a file about several subjects is its own passage, in the
// ingest phase's chunking and in the watcher's re-chunking of an adapter's sources (staleness).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunkMarkdown } from '../../../src/pipeline/ingest';
import { adapterStatus, type AdapterInfo } from '../../../src/pipeline/adapters';
import { chunkMinTokens } from '../../../src/pipeline/phases/context';
import { DEFAULT_SETTINGS, resolveSettings, SettingsError } from '../../../src/pipeline/settings';

const words = (s: string) => s.split(/\s+/).filter(Boolean).length;
const md = `## Tyzhoz

Tyzhoz was born in the year 1939. Tyzhoz likes to eat soup.

## Vryku

Vryku works as a dancer. Vryku plays the drum.

## Limal

Limal likes to eat figs.
`;

test('with sectionPassages each person of a file is a passage of their own; without, small sections merge', () => {
  const apart = chunkMarkdown('people.md', md, {
    maxTokens: 200,
    countTokens: words,
    minTokens: chunkMinTokens({ sectionPassages: true }),
  });
  assert.deepEqual(
    apart.map((c) => c.headings),
    [['Tyzhoz'], ['Vryku'], ['Limal']],
  );
  assert.ok(apart.every((c, i) => !apart.some((d, j) => j !== i && d.text.includes(c.headings[0]!))));
  const merged = chunkMarkdown('people.md', md, {
    maxTokens: 200,
    countTokens: words,
    minTokens: chunkMinTokens({ sectionPassages: false }),
  });
  assert.equal(merged.length, 1);
  assert.throws(
    () => resolveSettings({ sectionPassages: 'yes' as unknown as boolean }),
    (e: Error) => e instanceof SettingsError && /sectionPassages/.test(e.message),
  );
});

test("an adapter's staleness re-chunks its sources the way its run did", () => {
  const root = mkdtempSync(join(tmpdir(), 'dd-sections-'));
  try {
    mkdirSync(join(root, 'docs'));
    writeFileSync(join(root, 'docs', 'people.md'), md);
    const info = (sectionPassages: boolean): AdapterInfo => ({
      name: 'a',
      model: 'm',
      created: '',
      runId: 'r',
      chunkBudget: 200,
      chunks: chunkMarkdown('docs/people.md', md, {
        maxTokens: 200,
        countTokens: words,
        minTokens: chunkMinTokens({ sectionPassages }),
      }).map((c) => ({ source: c.source, hash: c.hash })),
      settings: { ...DEFAULT_SETTINGS, sectionPassages },
    });
    assert.equal(adapterStatus(info(true), root, words).stale, false);
    assert.equal(adapterStatus(info(false), root, words).stale, false);
    // Recorded as one passage per section, re-chunked as merged: that would be stale.
    const mixed = { ...info(true), settings: { ...DEFAULT_SETTINGS, sectionPassages: false } };
    assert.equal(adapterStatus(mixed, root, words).stale, true);
    // A change to one person's section makes exactly that passage new.
    writeFileSync(join(root, 'docs', 'people.md'), md.replace('the drum', 'the harp'));
    const st = adapterStatus(info(true), root, words);
    assert.deepEqual([st.stale, st.changed, st.removed], [true, 1, 1]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
