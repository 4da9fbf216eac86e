// Distillation settings: validation, the defaults a model folder recommends, --set, and the demo's spread over seeds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { DEFAULT_SETTINGS, modelDefaults, resolveSettings, SettingsError } from '../../../src/pipeline/settings';
import { DEMO_SETTINGS, demoSpread, spreadTable, type DemoScores } from '../../../src/demo/demo';
import { setOptions, settingsFrom } from '../../../src/cli/distill';

test('every bad setting is reported by name', () => {
  assert.throws(
    () => resolveSettings({ epochs: 0, loraRank: 1.5, groundQuestions: 'yes' as unknown as boolean }),
    (e: Error) =>
      e instanceof SettingsError &&
      /epochs/.test(e.message) &&
      /loraRank/.test(e.message) &&
      /groundQuestions/.test(e.message),
  );
  assert.deepEqual(resolveSettings({ epochs: undefined }), DEFAULT_SETTINGS);
  assert.throws(
    () => resolveSettings({ generalPool: 0.5, answerableOnly: 1 as unknown as boolean }),
    (e: Error) => /generalPool/.test(e.message) && /answerableOnly/.test(e.message),
  );
});

test('a model folder recommends defaults in training.json; only plain settings of the right type are taken', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dd-settings-'));
  try {
    assert.deepEqual(modelDefaults(dir), {}, 'no training.json');
    assert.deepEqual(modelDefaults(undefined), {});
    writeFileSync(join(dir, 'training.json'), '{not json');
    assert.deepEqual(modelDefaults(dir), {}, 'unreadable training.json');
    writeFileSync(
      join(dir, 'training.json'),
      JSON.stringify({
        distillDefaults: {
          epochs: 7,
          loraRank: 'big',
          loraTargets: ['q', 'v'],
          bogus: 1,
          prompts: { system: 'x' },
          groundQuestions: false,
        },
      }),
    );
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

test('--set key=value reaches any setting with its type, and a wrong key or value is named', () => {
  assert.deepEqual(
    setOptions(['questionTemperature=1', 'groundQuestions=false', 'loraTargets=q, v', 'schedule=linear']),
    {
      questionTemperature: 1,
      groundQuestions: false,
      loraTargets: ['q', 'v'],
      schedule: 'linear',
    },
  );
  assert.deepEqual(settingsFrom({ epochs: '4', set: ['generalTopK=10'] }).generalTopK, 10);
  assert.throws(() => setOptions(['epoch=3']), /'epoch' is not a setting; one of rounds, /);
  assert.throws(() => setOptions(['epochs=three']), /epochs must be a number/);
  assert.throws(() => setOptions(['groundQuestions=yes']), /true or false/);
  assert.throws(() => setOptions(['epochs']), /key=value/);
  assert.throws(() => setOptions(['prompts={}']), /not a setting/);
});

test("general questions are sampled from the model's own distribution by default, and their sampling is validated", () => {
  assert.equal(DEFAULT_SETTINGS.generalTemperature, 1);
  assert.equal(DEFAULT_SETTINGS.generalTopK, 0);
  assert.throws(
    () => resolveSettings({ generalTemperature: -1, generalTopK: 2.5 }),
    (e: Error) => /generalTemperature/.test(e.message) && /generalTopK/.test(e.message),
  );
});

test('the demo over several seeds reports mean, sample standard deviation and range, leaving out a baseline that did not run', () => {
  const s = (pd: number, sft: number) =>
    ({
      pd,
      sft,
      teacher: 1,
      pdReserved: pd,
      pdDontKnow: 0.9,
      sftReserved: sft,
      sftDontKnow: sft,
    }) as unknown as DemoScores;
  const sp = demoSpread([s(0.8, NaN), s(0.9, NaN), s(1, NaN)]);
  assert.equal(sp.pd.n, 3);
  assert.ok(Math.abs(sp.pd.mean - 0.9) < 1e-12);
  assert.ok(Math.abs(sp.pd.sd - 0.1) < 1e-12, 'n − 1 in the denominator');
  assert.deepEqual([sp.pd.min, sp.pd.max], [0.8, 1]);
  assert.equal(sp.sft.n, 0);
  const table = spreadTable([s(0.8, NaN), s(0.9, NaN), s(1, NaN)], [0, 1, 2]);
  assert.match(table, /over 3 seeds \(0, 1, 2\)/);
  assert.match(table, /PD student, correct closed book +90\.0 ± 10\.0 % \(80\.0–100\.0\)/);
  assert.doesNotMatch(table, /SFT/);
  assert.match(spreadTable([s(0.8, 0.5), s(0.9, 0.7)], [3, 4]), /SFT student, correct closed book +60\.0 ± 14\.1 %/);
});
