// The user's cache does not keep the packs of model folders that are gone: a model folder's cache
// names its model (source.json), and folders whose model has no config.json any more are deleted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { claimModelCache, modelCacheDir, pruneOrphanCaches } from '../../../src/engine/models/pack';

const root = mkdtempSync(join(tmpdir(), 'dd-prune-'));
test.after(() => rmSync(root, { recursive: true, force: true }));

function model(name: string): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), '{}');
  return dir;
}

test('cache folders of deleted model folders are pruned; live, unmarked and foreign ones are kept', () => {
  const saved = process.env.DOCDISTILL_CACHE_DIR;
  process.env.DOCDISTILL_CACHE_DIR = join(root, 'cache');
  try {
    const [kept, gone, moved] = [model('kept'), model('gone'), model('moved')];
    for (const m of [kept, gone, moved]) {
      claimModelCache(modelCacheDir(m), m);
      writeFileSync(join(modelCacheDir(m), 'x.weights'), 'pack');
    }
    assert.deepEqual(JSON.parse(readFileSync(join(modelCacheDir(kept), 'source.json'), 'utf8')), { model: kept });
    // An older cache folder that does not name its model, and a source.json copied into another
    // folder (its name is not the hash of the path it names): both left alone.
    const unmarked = join(root, 'cache', 'models', '0123456789abcdef');
    mkdirSync(unmarked, { recursive: true });
    const foreign = join(root, 'cache', 'models', 'fedcba9876543210');
    mkdirSync(foreign, { recursive: true });
    writeFileSync(join(foreign, 'source.json'), JSON.stringify({ model: gone }));

    rmSync(gone, { recursive: true });
    rmSync(join(moved, 'config.json'));
    const removed = pruneOrphanCaches(join(root, 'cache', 'models'));
    assert.deepEqual(removed.sort(), [modelCacheDir(gone), modelCacheDir(moved)].sort());
    assert.ok(existsSync(join(modelCacheDir(kept), 'x.weights')), 'a live model keeps its pack');
    assert.ok(existsSync(unmarked) && existsSync(foreign));
    assert.deepEqual(pruneOrphanCaches(join(root, 'cache', 'models')), [], 'nothing more to prune');
    assert.deepEqual(pruneOrphanCaches(join(root, 'no-such-folder')), []);
  } finally {
    if (saved === undefined) delete process.env.DOCDISTILL_CACHE_DIR;
    else process.env.DOCDISTILL_CACHE_DIR = saved;
  }
});
