// Writes a model in the Hugging Face layout from weights in the engine's layout (linear weights
// [in, out]): config.json, generation_config.json and model.safetensors, each atomically.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../../common/atomicFile';
import { writeSafetensors, type TensorToWrite } from './safetensors';
import type { ModelConfig } from './config';
import { hfNameOf, transpose2d } from './weights';

/** The transformers version whose config.json layout hfConfigJson writes. */
const TRANSFORMERS_VERSION = '4.51.3';

/**
 * config.json as transformers writes it for the architecture (keys sorted), for a model whose
 * weights are stored in `dtype`. The project's one config writer: model folders saved from the
 * engine and the random-weight models of src/tools write through it.
 */
export function hfConfigJson(c: ModelConfig, dtype: ModelConfig['torchDtype'] = 'float32'): Record<string, unknown> {
  const modelType = {
    LlamaForCausalLM: 'llama',
    Qwen2ForCausalLM: 'qwen2',
    Qwen3ForCausalLM: 'qwen3',
    MistralForCausalLM: 'mistral',
  }[c.architecture];
  const out: Record<string, unknown> = {
    architectures: [c.architecture],
    attention_dropout: 0.0,
    bos_token_id: c.bosTokenId ?? null,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    hidden_act: 'silu',
    hidden_size: c.hiddenSize,
    initializer_range: 0.02,
    intermediate_size: c.intermediateSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    model_type: modelType,
    num_attention_heads: c.numHeads,
    num_hidden_layers: c.numLayers,
    num_key_value_heads: c.numKvHeads,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: dtype,
    transformers_version: TRANSFORMERS_VERSION,
    use_cache: true,
    vocab_size: c.vocabSize,
  };
  if (c.padTokenId !== undefined) out.pad_token_id = c.padTokenId;
  // Qwen2's config has no head_dim (hidden / heads); the others name it.
  if (c.architecture !== 'Qwen2ForCausalLM' || c.headDim !== c.hiddenSize / c.numHeads) out.head_dim = c.headDim;
  const rs = c.ropeScaling;
  if (rs) {
    out.rope_scaling =
      rs.type === 'llama3'
        ? {
            factor: rs.factor,
            high_freq_factor: rs.highFreqFactor,
            low_freq_factor: rs.lowFreqFactor,
            original_max_position_embeddings: rs.originalMaxPositionEmbeddings,
            rope_type: 'llama3',
          }
        : { factor: rs.factor, rope_type: 'linear' };
  } else if (c.architecture !== 'Qwen2ForCausalLM') {
    out.rope_scaling = null;
  }
  switch (c.architecture) {
    case 'LlamaForCausalLM':
      Object.assign(out, { attention_bias: c.qkvBias, mlp_bias: false, pretraining_tp: 1 });
      break;
    case 'MistralForCausalLM':
      Object.assign(out, { sliding_window: null });
      break;
    case 'Qwen2ForCausalLM':
      Object.assign(out, {
        max_window_layers: c.numLayers,
        sliding_window: c.maxPositionEmbeddings,
        use_sliding_window: false,
      });
      break;
    case 'Qwen3ForCausalLM':
      Object.assign(out, {
        attention_bias: c.qkvBias,
        max_window_layers: c.numLayers,
        sliding_window: null,
        use_sliding_window: false,
      });
      break;
  }
  return Object.fromEntries(
    Object.keys(out)
      .sort()
      .map((k) => [k, out[k]]),
  );
}

/**
 * Writes `dir`/config.json, generation_config.json and model.safetensors (float32). `weight(name)`
 * returns an engine-named weight ('embed', 'layers.0.q', …) in the engine's layout.
 */
export function saveModelFolder(
  dir: string,
  c: ModelConfig,
  names: readonly string[],
  weight: (name: string) => { shape: readonly number[]; data: Float32Array },
  generation: Record<string, unknown> = {},
): void {
  mkdirSync(dir, { recursive: true });
  const tensors: TensorToWrite[] = [];
  for (const name of names) {
    if (name === 'lm_head' && c.tieWordEmbeddings) continue;
    const { hf, transpose } = hfNameOf(c, name);
    const w = weight(name);
    let data = w.data;
    let shape = [...w.shape];
    if (transpose) {
      data = transpose2d(data, shape[0]!, shape[1]!);
      shape = [shape[1]!, shape[0]!];
    }
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i]!)) throw new Error(`refusing to save: ${hf} has a non-finite value at index ${i}`);
    }
    tensors.push({ name: hf, dtype: 'F32', shape, data });
  }
  tensors.sort((a, b) => a.name.localeCompare(b.name));
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeJsonAtomic(join(dir, 'config.json'), hfConfigJson(c));
  writeJsonAtomic(join(dir, 'generation_config.json'), {
    bos_token_id: c.bosTokenId ?? null,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    pad_token_id: c.padTokenId ?? null,
    ...generation,
  });
}
