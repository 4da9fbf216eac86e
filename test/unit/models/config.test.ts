// config.json parsing for each supported architecture (real published configs), clear errors for
// what the engine does not implement, and RoPE inverse frequencies against independent numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseConfig,
  ropeInvFreq,
  ModelError,
  SUPPORTED_ARCHITECTURES,
  type ModelConfig,
} from '../../../src/engine/models/config';

const llama32 = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  initializer_range: 0.02,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.45.0.dev0',
  use_cache: true,
  vocab_size: 128256,
};
const qwen25 = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.1',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};
const qwen3 = {
  architectures: ['Qwen3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: 'qwen3',
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.51.0',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};
const mistral03 = {
  architectures: ['MistralForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 4096,
  initializer_range: 0.02,
  intermediate_size: 14336,
  max_position_embeddings: 32768,
  model_type: 'mistral',
  num_attention_heads: 32,
  num_hidden_layers: 32,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_theta: 1000000.0,
  sliding_window: null,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  transformers_version: '4.42.0.dev0',
  use_cache: true,
  vocab_size: 32768,
};
const smollm2 = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 1,
  eos_token_id: 2,
  hidden_act: 'silu',
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  max_position_embeddings: 8192,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pad_token_id: 2,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.42.3',
  use_cache: true,
  vocab_size: 49152,
};

test('config: Llama 3.2, SmolLM2, Qwen2.5, Qwen3 and Mistral configs parse', () => {
  const l = parseConfig(llama32, 'llama/config.json');
  assert.equal(l.architecture, 'LlamaForCausalLM');
  assert.equal(l.headDim, 64);
  assert.deepEqual(l.ropeScaling, {
    type: 'llama3',
    factor: 32,
    lowFreqFactor: 1,
    highFreqFactor: 4,
    originalMaxPositionEmbeddings: 8192,
  });
  assert.deepEqual(l.eosTokenIds, [128001, 128008, 128009]);
  assert.equal(l.bosTokenId, 128000);
  assert.equal(l.padTokenId, undefined);
  assert.equal(l.tieWordEmbeddings, true);
  assert.equal(l.qkvBias, false);
  assert.equal(l.torchDtype, 'bfloat16');
  assert.equal(l.rmsNormEps, 1e-5);

  const s = parseConfig(smollm2, 's');
  assert.deepEqual(
    [s.hiddenSize, s.numHeads, s.numKvHeads, s.headDim, s.numLayers, s.ropeTheta, s.padTokenId, s.ropeScaling],
    [576, 9, 3, 64, 30, 100000, 2, undefined],
  );

  const q2 = parseConfig(qwen25, 'q2');
  assert.deepEqual(
    [q2.qkvBias, q2.qkNorm, q2.headDim, q2.maxPositionEmbeddings, q2.eosTokenIds[0]],
    [true, false, 64, 32768, 151645],
  );

  const q3 = parseConfig(qwen3, 'q3');
  assert.deepEqual(
    [q3.qkvBias, q3.qkNorm, q3.headDim, q3.numKvHeads, q3.ropeScaling],
    [false, true, 128, 8, undefined],
  );

  const m = parseConfig(mistral03, 'm');
  assert.deepEqual(
    [m.architecture, m.maxPositionEmbeddings, m.tieWordEmbeddings, m.modelType],
    ['MistralForCausalLM', 32768, false, 'mistral'],
  );
  // Mistral 7B v0.1: a 4096-token sliding window. Up to the window it is plain causal attention.
  assert.equal(parseConfig({ ...mistral03, sliding_window: 4096 }, 'm').maxPositionEmbeddings, 4096);
  assert.equal(
    parseConfig({ ...qwen25, use_sliding_window: true, sliding_window: 4096 }, 'q').maxPositionEmbeddings,
    4096,
  );
});

test('config: defaults and alternative layouts', () => {
  // No "architectures": inferred from model_type; omitted keys take transformers' defaults.
  const c = parseConfig(
    {
      model_type: 'llama',
      vocab_size: 100,
      hidden_size: 64,
      intermediate_size: 128,
      num_hidden_layers: 2,
      num_attention_heads: 4,
    },
    'c',
  );
  assert.deepEqual(
    [
      c.architecture,
      c.numKvHeads,
      c.headDim,
      c.ropeTheta,
      c.rmsNormEps,
      c.tieWordEmbeddings,
      c.torchDtype,
      c.maxPositionEmbeddings,
      c.eosTokenIds,
    ],
    ['LlamaForCausalLM', 4, 16, 10000, 1e-6, false, 'float32', 2048, []],
  );
  // transformers 5: rope_parameters and dtype.
  const { rope_scaling: _r, rope_theta: _t, torch_dtype: _d, ...rest } = llama32;
  const v5 = parseConfig(
    {
      ...rest,
      dtype: 'float16',
      rope_parameters: {
        rope_type: 'llama3',
        rope_theta: 500000,
        factor: 8,
        high_freq_factor: 4,
        low_freq_factor: 1,
        original_max_position_embeddings: 8192,
      },
    },
    'v5',
  );
  assert.deepEqual(
    [v5.ropeTheta, v5.torchDtype, v5.ropeScaling?.type, v5.ropeScaling?.factor],
    [500000, 'float16', 'llama3', 8],
  );
  assert.deepEqual(parseConfig({ ...qwen3, rope_scaling: { rope_type: 'linear', factor: 2 } }, 'x').ropeScaling, {
    type: 'linear',
    factor: 2,
  });
  assert.equal(parseConfig({ ...qwen3, rope_scaling: { type: 'default' } }, 'x').ropeScaling, undefined);
});

test('config: what the engine does not implement is refused, naming what is supported', () => {
  const bad = (json: unknown, re: RegExp) =>
    assert.throws(
      () => parseConfig(json, '/m/config.json'),
      (e: unknown) => {
        assert.ok(e instanceof ModelError, String(e));
        assert.ok(e.message.startsWith('/m/config.json: '), e.message);
        assert.match(e.message, re);
        return true;
      },
    );
  bad(
    { ...llama32, architectures: ['GemmaForCausalLM'], model_type: 'gemma' },
    /architecture "GemmaForCausalLM" is not supported \(supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM\)/,
  );
  bad({ model_type: 'phi3' }, /model_type "phi3" is not supported \(supported: llama, qwen2, qwen3, mistral\)/);
  bad(
    { ...llama32, rope_scaling: { rope_type: 'yarn', factor: 4 } },
    /rope scaling type "yarn" is not supported \(supported: .*"linear", "llama3"\)/,
  );
  bad({ ...llama32, rope_scaling: { rope_type: 'dynamic', factor: 4 } }, /"dynamic" is not supported/);
  bad({ ...llama32, hidden_size: undefined }, /"hidden_size" is missing/);
  bad({ ...llama32, vocab_size: '128256' }, /"vocab_size" must be a number/);
  bad({ ...llama32, num_hidden_layers: 1.5 }, /"num_hidden_layers" must be a whole number/);
  bad({ ...llama32, num_key_value_heads: 5 }, /multiple of num_key_value_heads/);
  bad({ ...llama32, attention_bias: true }, /"attention_bias": true is not supported .*o_proj/);
  bad({ ...llama32, mlp_bias: true }, /mlp_bias/);
  bad({ ...llama32, hidden_act: 'gelu' }, /hidden_act "gelu" is not supported \(supported: "silu"\)/);
  bad({ ...llama32, quantization_config: { quant_method: 'awq' } }, /quantized models \(awq\) are not supported/);
  bad(
    { ...llama32, torch_dtype: 'float8_e4m3fn' },
    /torch_dtype "float8_e4m3fn" is not supported \(supported: float32, float16, bfloat16\)/,
  );
  bad({ ...llama32, model_type: 'qwen2' }, /model_type "qwen2" does not match architecture LlamaForCausalLM/);
  bad({ ...llama32, eos_token_id: 200000 }, /"eos_token_id" 200000 is outside the vocabulary/);
  bad({ ...qwen25, use_sliding_window: true, sliding_window: null }, /"sliding_window" is missing/);
  bad({ ...llama32, head_dim: 63 }, /must be even/);
  bad([], /expected a JSON object/);
  assert.equal(SUPPORTED_ARCHITECTURES.length, 4);
});

test('ropeInvFreq: llama3 scaling matches the formula worked out independently, and torch float32 values', () => {
  const c: ModelConfig = { ...parseConfig(llama32, 'l') };
  const inv = ropeInvFreq(c);
  assert.equal(inv.length, 32);
  // By hand: base frequencies θ^(-2i/d); wavelength λ = 2π/f. With original context 8192,
  // low_freq_factor 1 and high_freq_factor 4: λ < 8192/4 = 2048 keeps f, λ > 8192 divides f by 32,
  // between them f·((1−s)/32 + s) with s = (8192/λ − 1) / (4 − 1).
  const base = (i: number) => Math.pow(500000, (-2 * i) / 64);
  const expected = (i: number) => {
    const f = base(i);
    const lambda = (2 * Math.PI) / f;
    if (lambda < 2048) return f;
    if (lambda > 8192) return f / 32;
    const s = (8192 / lambda - 1) / 3;
    return f * ((1 - s) / 32 + s);
  };
  // Which band each index is in: λ_i = 2π·500000^(i/32); 2048 < λ < 8192 ⇔ i ∈ {15, 16, 17}.
  const bands = Array.from({ length: 32 }, (_, i) => {
    const lambda = (2 * Math.PI) / base(i);
    return lambda < 2048 ? 'high' : lambda > 8192 ? 'low' : 'mid';
  });
  assert.deepEqual(
    bands.map((b, i) => (b === 'mid' ? i : -1)).filter((i) => i >= 0),
    [15, 16, 17],
  );
  for (let i = 0; i < 32; i++)
    assert.ok(Math.abs(inv[i]! / expected(i) - 1) < 1e-6, `i=${i}: ${inv[i]} vs ${expected(i)}`);
  // A middle-band value worked through: i = 16: f = 500000^(−1/2) = 1/707.10678 = 0.00141421356,
  // λ = 4442.8829, s = (8192/4442.8829 − 1)/3 = 0.28129, f·((1−s)/32 + s) = 0.000429556.
  assert.ok(Math.abs(inv[16]! - 0.000429556) < 1e-9);
  // transformers' own numbers (computed in torch float32 for this config).
  const torchRef: [number, number][] = [
    [0, 1],
    [1, 0.663601279258728],
    [14, 0.0032114461064338684],
    [15, 0.0012905480107292533],
    [16, 0.000429556705057621],
    [17, 9.708286233944818e-5],
    [18, 1.9461638657958247e-5],
    [31, 9.418306490260875e-8],
  ];
  for (const [i, v] of torchRef) assert.ok(Math.abs(inv[i]! / v - 1) < 3e-7, `i=${i}: ${inv[i]} vs torch ${v}`);

  // Unscaled and linear.
  const plain = ropeInvFreq({ ...c, ropeScaling: undefined, ropeTheta: 10000, headDim: 8 });
  assert.deepEqual(
    [...plain].map((x) => +x.toPrecision(6)),
    [1, 0.1, 0.01, 0.001],
  );
  const lin = ropeInvFreq({ ...c, ropeScaling: { type: 'linear', factor: 4 }, ropeTheta: 10000, headDim: 8 });
  assert.deepEqual(
    [...lin].map((x) => +x.toPrecision(6)),
    [0.25, 0.025, 0.0025, 0.00025],
  );
});
