// What the Docs view and the Explorer badges say about a Markdown file, from the adapters'
// docdistill.json files on disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { docStatus, readAdapters } from '../../../src/host/docStatus';

test('a doc is distilled, stale after it changes, new when only the glob matches it, excluded otherwise', () => {
  const root = mkdtempSync(join(tmpdir(), 'dd-status-'));
  try {
    const dir = join(root, '.docdistill', 'adapters', 'docs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'docdistill.json'),
      JSON.stringify({
        created: '2026-01-01T00:00:00Z',
        chunks: [
          { source: 'docs/a.md', hash: '1' },
          { source: 'docs/a.md', hash: '2' },
          { source: 'docs/b.md', hash: '3' },
        ],
      }),
    );
    mkdirSync(join(root, '.docdistill', 'adapters', 'half-written'));
    const adapters = readAdapters(root);
    assert.deepEqual(adapters, [
      { name: 'docs', created: '2026-01-01T00:00:00Z', sources: ['docs/a.md', 'docs/b.md'], chunks: 3 },
    ]);
    const before = Date.parse('2025-12-31T00:00:00Z');
    const after = Date.parse('2026-01-02T00:00:00Z');
    assert.equal(docStatus('docs/a.md', true, before, adapters).state, 'distilled');
    assert.deepEqual(docStatus('docs/a.md', true, after, adapters), {
      path: 'docs/a.md',
      state: 'stale',
      adapters: ['docs'],
      staleIn: ['docs'],
    });
    assert.equal(docStatus('docs/c.md', true, after, adapters).state, 'new');
    assert.equal(docStatus('README.md', false, after, adapters).state, 'excluded');
    assert.deepEqual(readAdapters(join(root, 'nowhere')), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
