// Writes a model in the Hugging Face layout from weights in the engine's layout (linear weights
// [in, out]): config.json, generation_config.json and model.safetensors, each atomically.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite } from './safetensors';
import type { ModelConfig } from './config';
import { hfNameOf, transpose2d } from './weights';

export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  renameSync(tmp, path);
}

/** config.json as transformers writes it for the architecture. */
export function hfConfigJson(c: ModelConfig): Record<string, unknown> {
  const modelType = { LlamaForCausalLM: 'llama', Qwen2ForCausalLM: 'qwen2', Qwen3ForCausalLM: 'qwen3', MistralForCausalLM: 'mistral' }[c.architecture];
  const out: Record<string, unknown> = {
    architectures: [c.architecture],
    model_type: modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling
      ? c.ropeScaling.type === 'llama3'
        ? { rope_type: 'llama3', factor: c.ropeScaling.factor, low_freq_factor: c.ropeScaling.lowFreqFactor, high_freq_factor: c.ropeScaling.highFreqFactor, original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings }
        : { rope_type: 'linear', factor: c.ropeScaling.factor }
      : null,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: 'float32',
    bos_token_id: c.bosTokenId ?? null,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    pad_token_id: c.padTokenId ?? null,
    use_cache: true,
  };
  if (c.architecture === 'LlamaForCausalLM' || c.architecture === 'MistralForCausalLM') {
    out.attention_bias = c.qkvBias;
    out.mlp_bias = false;
  }
  if (c.architecture === 'Qwen2ForCausalLM' || c.architecture === 'Qwen3ForCausalLM') out.use_sliding_window = false;
  return out;
}

/**
 * Writes `dir`/config.json, generation_config.json and model.safetensors (float32). `weight(name)`
 * returns an engine-named weight ('embed', 'layers.0.q', …) in the engine's layout.
 */
export function saveModelFolder(dir: string, c: ModelConfig, names: readonly string[], weight: (name: string) => { shape: readonly number[]; data: Float32Array }, generation: Record<string, unknown> = {}): void {
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
