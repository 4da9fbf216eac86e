// In-memory random Llama-family models for graph tests: a config and Hugging Face-named weights,
// with no files involved.
import type { ModelConfig } from '../../../src/engine/models/config';
import type { WeightSource } from '../../../src/engine/models/weights';
import { rng } from './random';

export function tinyConfig(over: Partial<ModelConfig> = {}): ModelConfig {
  return {
    architecture: 'LlamaForCausalLM',
    modelType: 'llama',
    vocabSize: 97,
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 8,
    rmsNormEps: 1e-6,
    ropeTheta: 10000,
    maxPositionEmbeddings: 256,
    tieWordEmbeddings: false,
    qkvBias: false,
    qkNorm: false,
    torchDtype: 'float32',
    eosTokenIds: [1],
    bosTokenId: 0,
    ...over,
  };
}

export class MemoryWeights implements WeightSource {
  readonly tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  has(name: string): boolean {
    return this.tensors.has(name);
  }
  info(name: string): { shape: readonly number[] } {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no tensor ${name}`);
    return t;
  }
  float32(name: string): Float32Array {
    return this.tensors.get(name)!.data;
  }
}

export function randomWeights(c: ModelConfig, seed = 1): MemoryWeights {
  const r = rng(seed);
  const w = new MemoryWeights();
  const normal = (n: number, s: number) =>
    Float32Array.from({ length: n }, () => {
      const u = Math.max(r(), 1e-12);
      return s * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
    });
  const put = (name: string, shape: number[], scale: number, offset = 0) =>
    w.tensors.set(name, {
      shape,
      data: normal(
        shape.reduce((a, b) => a * b, 1),
        scale,
      ).map((v) => v + offset),
    });
  const { hiddenSize: D, numHeads: H, numKvHeads: K, headDim: E, intermediateSize: I, vocabSize: V } = c;
  put('model.embed_tokens.weight', [V, D], 0.5);
  put('model.norm.weight', [D], 0.1, 1);
  if (!c.tieWordEmbeddings) put('lm_head.weight', [V, D], 0.2);
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    put(`${p}.input_layernorm.weight`, [D], 0.1, 1);
    put(`${p}.post_attention_layernorm.weight`, [D], 0.1, 1);
    put(`${p}.self_attn.q_proj.weight`, [H * E, D], 0.2);
    put(`${p}.self_attn.k_proj.weight`, [K * E, D], 0.2);
    put(`${p}.self_attn.v_proj.weight`, [K * E, D], 0.2);
    put(`${p}.self_attn.o_proj.weight`, [D, H * E], 0.2);
    put(`${p}.mlp.gate_proj.weight`, [I, D], 0.2);
    put(`${p}.mlp.up_proj.weight`, [I, D], 0.2);
    put(`${p}.mlp.down_proj.weight`, [D, I], 0.2);
    if (c.qkvBias) {
      put(`${p}.self_attn.q_proj.bias`, [H * E], 0.1);
      put(`${p}.self_attn.k_proj.bias`, [K * E], 0.1);
      put(`${p}.self_attn.v_proj.bias`, [K * E], 0.1);
    }
    if (c.qkNorm) {
      put(`${p}.self_attn.q_norm.weight`, [E], 0.1, 1);
      put(`${p}.self_attn.k_norm.weight`, [E], 0.1, 1);
    }
  }
  return w;
}
