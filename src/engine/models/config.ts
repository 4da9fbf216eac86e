// config.json of a Hugging Face causal LM, validated and normalised. Only the architectures the
// engine implements are accepted; anything else is refused with a message naming what is supported.

export type Architecture = 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM' | 'MistralForCausalLM';
export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = ['LlamaForCausalLM', 'Qwen2ForCausalLM', 'Qwen3ForCausalLM', 'MistralForCausalLM'];

export type RopeScaling =
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  | { type: 'linear'; factor: number };

export interface ModelConfig {
  architecture: Architecture;
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  qkvBias: boolean;
  qkNorm: boolean;
  torchDtype: 'float32' | 'float16' | 'bfloat16';
  bosTokenId?: number;
  eosTokenIds: number[];
  padTokenId?: number;
}

export class ModelError extends Error {
  override name = 'ModelError';
}

const supportedList = SUPPORTED_ARCHITECTURES.join(', ');

export function parseConfig(json: unknown, source: string): ModelConfig {
  const bad = (msg: string): never => {
    throw new ModelError(`${source}: ${msg}`);
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) bad('not a JSON object');
  const c = json as Record<string, unknown>;
  const archs = c.architectures;
  if (!Array.isArray(archs) || typeof archs[0] !== 'string') bad(`no "architectures" entry; supported: ${supportedList}`);
  const architecture = (archs as string[])[0]!;
  if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(architecture)) {
    bad(`architecture ${architecture} is not supported; supported: ${supportedList}`);
  }
  const int = (k: string, fallback?: number): number => {
    const v = c[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) return bad(`"${k}" must be a positive whole number (got ${JSON.stringify(v)})`);
    return v;
  };
  const num = (k: string, fallback?: number): number => {
    const v = c[k] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return bad(`"${k}" must be a positive number (got ${JSON.stringify(v)})`);
    return v;
  };
  const optId = (k: string): number | undefined => {
    const v = c[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) return bad(`"${k}" must be a token id`);
    return v;
  };
  const hiddenSize = int('hidden_size');
  const numHeads = int('num_attention_heads');
  const numKvHeads = int('num_key_value_heads', numHeads);
  if (numHeads % numKvHeads) bad(`num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`);
  const headDim = c.head_dim === undefined || c.head_dim === null ? hiddenSize / numHeads : int('head_dim');
  if (!Number.isInteger(headDim) || headDim % 2) bad(`head dimension ${headDim} must be an even whole number`);

  const qkNorm = architecture === 'Qwen3ForCausalLM';
  const qkvBias = architecture === 'Qwen2ForCausalLM' ? true : c.attention_bias === true;
  if (c.mlp_bias === true) bad('"mlp_bias": true is not supported');
  const act = c.hidden_act ?? 'silu';
  if (act !== 'silu') bad(`hidden_act "${String(act)}" is not supported (only silu)`);
  // A sliding window that the model never reaches changes nothing; one that it does is not implemented.
  const maxPos = int('max_position_embeddings', 2048);
  if (c.use_sliding_window === true || (architecture === 'MistralForCausalLM' && typeof c.sliding_window === 'number' && c.sliding_window < maxPos)) {
    bad(`sliding-window attention (sliding_window ${String(c.sliding_window)}) is not supported; use a model without it`);
  }

  let ropeScaling: RopeScaling | undefined;
  const rs = c.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object') bad('"rope_scaling" must be an object');
    const r = rs as Record<string, unknown>;
    const type = r.rope_type ?? r.type;
    const f = (k: string, fb?: number) => {
      const v = r[k] ?? fb;
      if (typeof v !== 'number' || !(v > 0)) return bad(`rope_scaling.${k} must be a positive number`);
      return v;
    };
    if (type === 'llama3') {
      ropeScaling = { type: 'llama3', factor: f('factor'), lowFreqFactor: f('low_freq_factor', 1), highFreqFactor: f('high_freq_factor', 4), originalMaxPositionEmbeddings: f('original_max_position_embeddings', 8192) };
    } else if (type === 'linear') {
      ropeScaling = { type: 'linear', factor: f('factor') };
    } else if (type !== 'default') {
      bad(`rope_scaling type "${String(type)}" is not supported; supported: llama3, linear, default`);
    }
  }

  const dt = c.torch_dtype ?? c.dtype ?? 'float32';
  if (dt !== 'float32' && dt !== 'float16' && dt !== 'bfloat16') bad(`torch_dtype "${String(dt)}" is not supported (float32, float16, bfloat16)`);
  const eos = c.eos_token_id;
  const eosTokenIds = eos === undefined || eos === null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!eosTokenIds.every((e) => typeof e === 'number' && Number.isInteger(e) && e >= 0)) bad('"eos_token_id" must be a token id or a list of them');

  return {
    architecture: architecture as Architecture,
    modelType: typeof c.model_type === 'string' ? c.model_type : architecture,
    vocabSize: int('vocab_size'),
    hiddenSize,
    intermediateSize: int('intermediate_size'),
    numLayers: int('num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    ropeScaling,
    maxPositionEmbeddings: maxPos,
    tieWordEmbeddings: c.tie_word_embeddings === true,
    qkvBias,
    qkNorm,
    torchDtype: dt,
    bosTokenId: optId('bos_token_id'),
    eosTokenIds: eosTokenIds as number[],
    padTokenId: optId('pad_token_id'),
  };
}

/** The rotary inverse frequencies, as transformers computes them (including llama3 and linear scaling). */
export function ropeInvFreq(c: ModelConfig): Float64Array {
  const half = c.headDim / 2;
  const inv = Float64Array.from({ length: half }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / c.headDim));
  const s = c.ropeScaling;
  if (!s) return inv;
  if (s.type === 'linear') return inv.map((f) => f / s.factor);
  // Llama 3: long wavelengths are slowed by `factor`, short ones kept, the band between interpolated.
  const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
  const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) return f;
    if (wavelen > lowWavelen) return f / s.factor;
    const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
    return (1 - smooth) * (f / s.factor) + smooth * f;
  });
}
