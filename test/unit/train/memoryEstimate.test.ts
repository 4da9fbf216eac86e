// The training-memory estimate behind the CLI's warning: weight bytes match the published
// parameter counts at each precision, activations grow with batch and length, and the warning
// appears only past the machine's memory, naming the quantization that fits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL_SHAPES, weightPlan } from '../../../src/tools/makeModel';
import type { ModelConfig } from '../../../src/engine/models/config';
import { baseWeightBytes, estimateTrainMemory, trainMemoryWarning } from '../../../src/engine/train/memoryEstimate';

function config(name: string): ModelConfig {
  const s = MODEL_SHAPES[name];
  return {
    architecture: s.architecture as ModelConfig['architecture'],
    modelType: s.modelType,
    vocabSize: s.vocabSize,
    hiddenSize: s.hiddenSize,
    intermediateSize: s.intermediateSize,
    numLayers: s.numLayers,
    numHeads: s.numHeads,
    numKvHeads: s.numKvHeads,
    headDim: s.headDim ?? s.hiddenSize / s.numHeads,
    rmsNormEps: s.rmsNormEps,
    ropeTheta: s.ropeTheta,
    maxPositionEmbeddings: s.maxPositionEmbeddings,
    tieWordEmbeddings: s.tieWordEmbeddings,
    qkvBias: s.modelType === 'qwen2',
    qkNorm: s.modelType === 'qwen3',
    torchDtype: 'float32',
    eosTokenIds: [0],
  };
}
const GB = 2 ** 30;
const run = { batchSize: 4, teacherTokens: 800, studentTokens: 40, answerTokens: 16 };

test('memory estimate: float32 weight bytes are 4 × the parameter count; quantized ones far fewer', () => {
  for (const name of ['qwen2.5-0.5b', 'qwen3-0.6b', 'llama3.2-1b', 'qwen2.5-1.5b']) {
    const params = weightPlan(MODEL_SHAPES[name]).reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(baseWeightBytes(config(name)), 4 * params, name);
    const i8 = baseWeightBytes(config(name), 'int8');
    const i4 = baseWeightBytes(config(name), 'int4');
    assert.ok(i4 < i8 && i8 < 0.6 * 4 * params, `${name}: int8 ${i8}, int4 ${i4}`);
  }
});

test("memory estimate: activations grow with batch and teacher length; quantization adds only the int4 head's backward", () => {
  const c = config('llama3.2-1b');
  const a = estimateTrainMemory(c, run);
  const b2 = estimateTrainMemory(c, { ...run, batchSize: 8 });
  assert.ok(Math.abs(b2.activationBytes - 2 * a.activationBytes) < 1);
  assert.ok(estimateTrainMemory(c, { ...run, teacherTokens: 1600 }).activationBytes > a.activationBytes);
  for (const q of ['int8', 'int4'] as const)
    assert.equal(estimateTrainMemory(c, { ...run, quantize: q }).activationBytes, a.activationBytes);
  assert.ok(a.totalBytes > a.weightBytes + a.activationBytes);
});

test('memory estimate: the warning appears past total memory and names the quantization that fits', () => {
  const c = config('llama3.2-1b');
  const est = estimateTrainMemory(c, run).totalBytes;
  assert.equal(trainMemoryWarning(c, run, 32 * GB), undefined);
  assert.equal(trainMemoryWarning(c, run, est + 1), undefined);
  const w = trainMemoryWarning(c, run, est - 1);
  assert.ok(w, 'warns just below the estimate');
  const int8 = estimateTrainMemory(c, { ...run, quantize: 'int8' }).totalBytes;
  assert.ok(int8 < est - 1);
  assert.match(w, /--quantize int8/);
  assert.match(w, /more than this machine's/);
  // Nothing fits: no quantization is suggested beyond int4, the batch and passages are.
  const none = trainMemoryWarning(c, { ...run, quantize: 'int4' }, 1 * GB);
  assert.ok(none && /smaller --batch-size/.test(none) && !/--quantize int8/.test(none), none);
});
