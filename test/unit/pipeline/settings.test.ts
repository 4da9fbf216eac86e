// Distillation settings: validation, and the defaults a model folder recommends.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_SETTINGS, modelDefaults, resolveSettings, SettingsError } from '../../../src/pipeline/settings';
import { DEMO_SETTINGS } from '../../../src/pipeline/demo/demo';

test('every bad setting is reported by name', () => {
  assert.throws(() => resolveSettings({ epochs: 0, loraRank: 1.5, groundQuestions: 'yes' as unknown as boolean }), (e: Error) =>
    e instanceof SettingsError && /epochs/.test(e.message) && /loraRank/.test(e.message) && /groundQuestions/.test(e.message));
  assert.deepEqual(resolveSettings({ epochs: undefined }), DEFAULT_SETTINGS);
});

test('a model folder recommends defaults in training.json; only plain settings of the right type are taken', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-settings-'));
  try {
    assert.deepEqual(modelDefaults(dir), {}, 'no training.json');
    assert.deepEqual(modelDefaults(undefined), {});
    writeFileSync(join(dir, 'training.json'), '{not json');
    assert.deepEqual(modelDefaults(dir), {}, 'unreadable training.json');
    writeFileSync(join(dir, 'training.json'), JSON.stringify({ distillDefaults: { epochs: 7, loraRank: 'big', loraTargets: ['q', 'v'], bogus: 1, prompts: { system: 'x' }, groundQuestions: false } }));
    assert.deepEqual(modelDefaults(dir), { epochs: 7, loraTargets: ['q', 'v'], groundQuestions: false });
    // Explicit settings win over the model's; the result is validated as usual.
    assert.equal(resolveSettings({ ...modelDefaults(dir), epochs: 2 }).epochs, 2);
    writeFileSync(join(dir, 'training.json'), JSON.stringify({ distillDefaults: { epochs: -1 } }));
    assert.throws(() => resolveSettings(modelDefaults(dir)), SettingsError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the built-in demo model recommends exactly the settings the demo was measured with', () => {
  assert.deepEqual(modelDefaults(resolve(__dirname, '..', '..', '..', 'media', 'demo-model')), DEMO_SETTINGS);
});
