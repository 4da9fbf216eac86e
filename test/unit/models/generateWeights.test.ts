// generate() with the weights fed as inputs (a model in training decodes with its current
// weights): the same tokens as the same weights saved to a folder and loaded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Backend } from '../../../src/engine/backend';
import { CausalLM } from '../../../src/engine/models/model';
import { saveModelFolder } from '../../../src/engine/models/save';
import { FullTrainer } from '../../../src/engine/train/full';
import { generate } from '../../../src/engine/generate';
import { makeModel } from '../../../src/tools/makeModel';
import { mulberry32 } from '../../../src/common/rng';

let dir = '';
let backend: Backend;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dd-genw-'));
  makeModel({ shape: 'tiny-llama', seed: 5, out: join(dir, 'm') });
  backend = await Backend.create({ device: 'cpu', threads: 1 });
});
after(async () => {
  await backend.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('generate with weight feeds decodes as the model those weights make', async () => {
  const model = await CausalLM.load(join(dir, 'm'), backend);
  const trainer = new FullTrainer(model, {
    lr: 1e-3,
    weightDecay: 0,
    beta1: 0.9,
    beta2: 0.99,
    schedule: 'constant',
    warmupSteps: 0,
    totalSteps: 10,
    maxGradNorm: 1,
  });
  // Other weights than the folder's, as after some training steps.
  const r = mulberry32(9);
  for (const w of trainer.params.values()) for (let i = 0; i < w.length; i++) w[i] = w[i]! * 3 + (r() - 0.5) * 0.2;
  const prompts = [model.tokenizer.encode('The quick brown fox'), model.tokenizer.encode('Hello')];
  const fed = await generate(model, prompts, { maxTokens: 10, stopTokens: [], weights: trainer.weightFeeds() });
  const own = await generate(model, prompts, { maxTokens: 10, stopTokens: [] });
  assert.notDeepEqual(
    fed.map((g) => g.ids),
    own.map((g) => g.ids),
    'the fed weights are used',
  );

  const out = join(dir, 'trained');
  saveModelFolder(out, model.config, model.graphs.weightNames(), (name) => ({
    shape: model.graphs.weights.get(name).shape,
    data: trainer.params.get(`w.${name}`)!,
  }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(dir, 'm', f), join(out, f));
  const saved = await CausalLM.load(out, backend);
  const ref = await generate(saved, prompts, { maxTokens: 10, stopTokens: [] });
  assert.deepEqual(
    fed.map((g) => g.ids),
    ref.map((g) => g.ids),
  );
  assert.deepEqual(
    fed.map((g) => g.text),
    ref.map((g) => g.text),
  );
});
