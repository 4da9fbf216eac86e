// The one config.json writer: what it writes parses back to the same ModelConfig, for every shape
// make-model knows, the demo model and the variants only saved models have.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hfConfigJson } from '../../../src/engine/models/save';
import { parseConfig, type ModelConfig } from '../../../src/engine/models/config';
import { MODEL_SHAPES, buildTokenizer, shapeConfig } from '../../../src/tools/makeModel';
import { demoConfig } from '../../../src/demo/trainModel';

const roundTrip = (c: ModelConfig, dtype: ModelConfig['torchDtype'] = c.torchDtype): ModelConfig =>
  parseConfig(JSON.parse(JSON.stringify(hfConfigJson(c, dtype))), 'config.json');

test('every make-model shape parses back to the config it was written from', () => {
  for (const s of Object.values(MODEL_SHAPES)) {
    const c = shapeConfig(s, s.dtype, buildTokenizer(s.tokenizer, s.vocabSize, s.maxPositionEmbeddings));
    assert.deepEqual(roundTrip(c), c, s.name);
  }
});

test('the demo config, linear RoPE scaling, a pad id and a Qwen2 head_dim ≠ hidden/heads round-trip', () => {
  const demo = demoConfig(300, 3, 0);
  assert.deepEqual(roundTrip(demo), demo);
  const linear: ModelConfig = { ...demo, ropeScaling: { type: 'linear', factor: 4 }, bosTokenId: 1 };
  assert.deepEqual(roundTrip(linear), linear);
  const qwen2: ModelConfig = {
    ...demo,
    architecture: 'Qwen2ForCausalLM',
    modelType: 'qwen2',
    qkvBias: true,
    headDim: 48,
    tieWordEmbeddings: false,
  };
  assert.deepEqual(roundTrip(qwen2), qwen2);
});

test('keys are sorted and the dtype is the one the weights are stored in', () => {
  const j = hfConfigJson(demoConfig(300, 3, 0), 'bfloat16');
  assert.deepEqual(Object.keys(j), Object.keys(j).sort());
  assert.equal(j.torch_dtype, 'bfloat16');
});
