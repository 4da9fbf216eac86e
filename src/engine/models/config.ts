// A Hugging Face `config.json` for the Llama family, parsed and validated into the engine's
// ModelConfig, and the rotary-embedding frequencies exactly as transformers computes them.
//
// Only what the engine implements is accepted: anything that would silently change the numerics
// (another architecture, rope type, activation, MLP/o_proj bias, quantisation) is a ModelError
// that says what was found and what is supported.

export type Architecture = 'LlamaForCausalLM' | 'Qwen2ForCausalLM' | 'Qwen3ForCausalLM' | 'MistralForCausalLM';
export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = [
  'LlamaForCausalLM',
  'Qwen2ForCausalLM',
  'Qwen3ForCausalLM',
  'MistralForCausalLM',
];

export type RopeScaling =
  | {
      type: 'llama3';
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
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
  /** `head_dim` if the config gives it, else hidden_size / num_attention_heads. */
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling?: RopeScaling;
  /**
   * The longest sequence the model handles. When a sliding window is configured and smaller,
   * this is the window: up to that length sliding-window attention equals full causal attention.
   */
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** q/k/v projections have biases (Qwen2). */
  qkvBias: boolean;
  /** RMSNorm on q and k per head before RoPE (Qwen3). */
  qkNorm: boolean;
  torchDtype: 'float32' | 'float16' | 'bfloat16';
  bosTokenId?: number;
  eosTokenIds: number[];
  padTokenId?: number;
}

/** A model folder or config the engine cannot use, with what to do about it. */
export class ModelError extends Error {
  override name = 'ModelError';
}

const MODEL_TYPES: Record<string, Architecture> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  mistral: 'MistralForCausalLM',
};

/** transformers' defaults for keys a config may omit (per architecture where they differ). */
const DEFAULT_MAX_POSITIONS: Record<Architecture, number> = {
  LlamaForCausalLM: 2048,
  Qwen2ForCausalLM: 32768,
  Qwen3ForCausalLM: 32768,
  MistralForCausalLM: 4096 * 32,
};

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Reads typed values out of a JSON object, naming the file and key in every error. */
class Reader {
  constructor(
    readonly obj: Json,
    readonly source: string,
  ) {}

  fail(msg: string): never {
    throw new ModelError(`${this.source}: ${msg}`);
  }

  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }

  num(key: string, opts: { def?: number; int?: boolean; min?: number; max?: number; positive?: boolean } = {}): number {
    const v = this.obj[key];
    if (v === undefined || v === null) {
      if (opts.def !== undefined) return opts.def;
      this.fail(`"${key}" is missing (a ${opts.int ? 'whole ' : ''}number is required)`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`"${key}" must be a number, got ${JSON.stringify(v)}`);
    if (opts.int && !Number.isInteger(v)) this.fail(`"${key}" must be a whole number, got ${v}`);
    if (opts.positive && !(v > 0)) this.fail(`"${key}" must be positive, got ${v}`);
    if (opts.min !== undefined && v < opts.min) this.fail(`"${key}" must be at least ${opts.min}, got ${v}`);
    if (opts.max !== undefined && v > opts.max)
      this.fail(
        `"${key}" is ${v}, more than any real model has (at most ${opts.max} is accepted): the config is corrupt or not for this kind of model`,
      );
    return v;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.obj[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') this.fail(`"${key}" must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }

  str(key: string): string | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') this.fail(`"${key}" must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  /** A token id or list of token ids (eos_token_id may be either); [] when absent. */
  ids(key: string): number[] {
    const v = this.obj[key];
    if (v === undefined || v === null) return [];
    const list = Array.isArray(v) ? v : [v];
    for (const x of list) {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0)
        this.fail(`"${key}" must be a token id or a list of token ids, got ${JSON.stringify(v)}`);
    }
    return list as number[];
  }

  id(key: string): number | undefined {
    const v = this.obj[key];
    if (v === undefined || v === null) return undefined;
    if (Array.isArray(v)) return this.ids(key)[0];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0)
      this.fail(`"${key}" must be a token id, got ${JSON.stringify(v)}`);
    return v;
  }
}

function parseRopeScaling(raw: unknown, r: Reader, maxPos: number): RopeScaling | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isObject(raw)) r.fail(`"rope_scaling" must be an object or null, got ${JSON.stringify(raw)}`);
  const s: Reader = new Reader(raw, `${r.source} rope_scaling`);
  const type = s.str('rope_type') ?? s.str('type');
  switch (type) {
    case undefined:
    case 'default':
      return undefined;
    case 'linear': {
      const factor = s.num('factor', { positive: true });
      return factor === 1 ? undefined : { type: 'linear', factor };
    }
    case 'llama3': {
      const lowFreqFactor = s.num('low_freq_factor', { positive: true });
      const highFreqFactor = s.num('high_freq_factor', { positive: true });
      if (!(highFreqFactor > lowFreqFactor))
        s.fail(`"high_freq_factor" (${highFreqFactor}) must be greater than "low_freq_factor" (${lowFreqFactor})`);
      return {
        type: 'llama3',
        factor: s.num('factor', { positive: true }),
        lowFreqFactor,
        highFreqFactor,
        originalMaxPositionEmbeddings: s.num('original_max_position_embeddings', {
          int: true,
          positive: true,
          def: maxPos,
        }),
      };
    }
    default:
      return r.fail(`rope scaling type "${type}" is not supported (supported: none/"default", "linear", "llama3")`);
  }
}

const DTYPES = ['float32', 'float16', 'bfloat16'] as const;

/**
 * Upper bounds on the sizes a config may give, well above any released Llama-family model (the
 * largest have ~128 layers, hidden 16384, 262144 tokens of vocabulary), so that a corrupt or
 * hostile config fails here with its key named instead of allocating for a billion layers.
 */
export const CONFIG_MAXIMA = {
  vocab_size: 1 << 22,
  hidden_size: 1 << 16,
  intermediate_size: 1 << 18,
  num_hidden_layers: 1024,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1024,
  max_position_embeddings: 1 << 24,
} as const;

/**
 * Validates a parsed `config.json` (transformers 4.x layout, and 5.x's `rope_parameters` and
 * `dtype`) and returns the engine's view of it. `source` names the file in error messages.
 */
export function parseConfig(json: unknown, source: string): ModelConfig {
  if (!isObject(json)) throw new ModelError(`${source}: expected a JSON object`);
  const r: Reader = new Reader(json, source);
  const supported = `supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`;

  // Architecture: "architectures"[0], or inferred from "model_type" when that is absent.
  const modelType = r.str('model_type');
  let architecture: Architecture;
  const archs = json.architectures;
  if (archs !== undefined && archs !== null) {
    const first: unknown = Array.isArray(archs) ? archs[0] : undefined;
    if (typeof first !== 'string')
      r.fail(`"architectures" must be a non-empty list of names, got ${JSON.stringify(archs)}`);
    const name = first as string;
    if (!(SUPPORTED_ARCHITECTURES as readonly string[]).includes(name)) {
      r.fail(`architecture "${name}" is not supported (${supported})`);
    }
    architecture = name as Architecture;
  } else {
    if (modelType === undefined) r.fail(`neither "architectures" nor "model_type" is given (${supported})`);
    const a = MODEL_TYPES[modelType];
    if (!a) r.fail(`model_type "${modelType}" is not supported (supported: ${Object.keys(MODEL_TYPES).join(', ')})`);
    architecture = a;
  }
  const expectedType = Object.keys(MODEL_TYPES).find((k) => MODEL_TYPES[k] === architecture)!;
  if (modelType !== undefined && modelType !== expectedType) {
    r.fail(`model_type "${modelType}" does not match architecture ${architecture} (expected "${expectedType}")`);
  }

  if (json.quantization_config !== undefined && json.quantization_config !== null) {
    const q = isObject(json.quantization_config) ? json.quantization_config.quant_method : undefined;
    r.fail(
      `quantized models${q ? ` (${String(q)})` : ''} are not supported: use an unquantized float32/float16/bfloat16 checkpoint`,
    );
  }
  const act = r.str('hidden_act') ?? r.str('hidden_activation') ?? 'silu';
  if (act !== 'silu' && act !== 'swish') r.fail(`hidden_act "${act}" is not supported (supported: "silu")`);
  if (r.bool('mlp_bias', false)) r.fail(`"mlp_bias": true is not supported (MLP projections without bias only)`);
  // Llama, Mistral and Qwen3 put attention_bias on q, k, v *and* o_proj; Qwen2 has q/k/v biases always.
  if (architecture !== 'Qwen2ForCausalLM' && r.bool('attention_bias', false)) {
    r.fail(
      `"attention_bias": true is not supported for ${architecture} (it adds an o_proj bias); only Qwen2's q/k/v biases are`,
    );
  }
  const partial = r.num('partial_rotary_factor', { def: 1 });
  if (partial !== 1)
    r.fail(`"partial_rotary_factor": ${partial} is not supported (rotary embedding over the whole head only)`);

  const vocabSize = r.num('vocab_size', { int: true, positive: true, max: CONFIG_MAXIMA.vocab_size });
  const hiddenSize = r.num('hidden_size', { int: true, positive: true, max: CONFIG_MAXIMA.hidden_size });
  const intermediateSize = r.num('intermediate_size', {
    int: true,
    positive: true,
    max: CONFIG_MAXIMA.intermediate_size,
  });
  const numLayers = r.num('num_hidden_layers', { int: true, positive: true, max: CONFIG_MAXIMA.num_hidden_layers });
  const numHeads = r.num('num_attention_heads', { int: true, positive: true, max: CONFIG_MAXIMA.num_attention_heads });
  const numKvHeads = r.num('num_key_value_heads', {
    int: true,
    positive: true,
    max: CONFIG_MAXIMA.num_key_value_heads,
    def: numHeads,
  });
  if (numHeads % numKvHeads !== 0)
    r.fail(`num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  let headDim: number;
  if (r.has('head_dim')) {
    headDim = r.num('head_dim', { int: true, positive: true, max: CONFIG_MAXIMA.head_dim });
  } else {
    if (hiddenSize % numHeads !== 0)
      r.fail(
        `hidden_size (${hiddenSize}) is not a multiple of num_attention_heads (${numHeads}) and no "head_dim" is given`,
      );
    headDim = hiddenSize / numHeads;
  }
  if (headDim > CONFIG_MAXIMA.head_dim)
    r.fail(
      `the head dimension hidden_size / num_attention_heads is ${headDim}, more than any real model has (at most ${CONFIG_MAXIMA.head_dim} is accepted)`,
    );
  if (headDim % 2 !== 0) r.fail(`the head dimension (${headDim}) must be even for rotary embeddings`);

  // transformers 5 moves rope_theta and rope_scaling into "rope_parameters".
  let ropeSrc: Reader = r;
  let scalingRaw: unknown = json.rope_scaling;
  if (isObject(json.rope_parameters)) {
    ropeSrc = new Reader(json.rope_parameters, `${source} rope_parameters`);
    scalingRaw = json.rope_parameters;
  }
  const ropeTheta = ropeSrc.num('rope_theta', {
    positive: true,
    def: r.num('rope_theta', { positive: true, def: 10000 }),
  });
  let maxPositionEmbeddings = r.num('max_position_embeddings', {
    int: true,
    positive: true,
    max: CONFIG_MAXIMA.max_position_embeddings,
    def: DEFAULT_MAX_POSITIONS[architecture],
  });
  const ropeScaling = parseRopeScaling(scalingRaw, r, maxPositionEmbeddings);

  // Sliding-window attention equals full causal attention for sequences no longer than the
  // window, so a model with an active window is usable with its context capped at the window.
  const window = r.has('sliding_window') ? r.num('sliding_window', { int: true, positive: true }) : undefined;
  const windowUsed = architecture === 'MistralForCausalLM' ? window !== undefined : r.bool('use_sliding_window', false);
  if (windowUsed) {
    if (window === undefined) r.fail(`"use_sliding_window" is true but "sliding_window" is missing`);
    maxPositionEmbeddings = Math.min(maxPositionEmbeddings, window);
  }

  const dtypeStr = r.str('torch_dtype') ?? r.str('dtype') ?? 'float32';
  if (!(DTYPES as readonly string[]).includes(dtypeStr))
    r.fail(`torch_dtype "${dtypeStr}" is not supported (supported: ${DTYPES.join(', ')})`);

  const rmsNormEps = r.num('rms_norm_eps', { positive: true, def: 1e-6 });
  const cfg: ModelConfig = {
    architecture,
    modelType: modelType ?? expectedType,
    vocabSize,
    hiddenSize,
    intermediateSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps,
    ropeTheta,
    maxPositionEmbeddings,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    qkvBias: architecture === 'Qwen2ForCausalLM',
    qkNorm: architecture === 'Qwen3ForCausalLM',
    torchDtype: dtypeStr as ModelConfig['torchDtype'],
    eosTokenIds: r.ids('eos_token_id'),
  };
  if (ropeScaling) cfg.ropeScaling = ropeScaling;
  const bos = r.id('bos_token_id');
  if (bos !== undefined) cfg.bosTokenId = bos;
  const pad = r.id('pad_token_id');
  if (pad !== undefined) cfg.padTokenId = pad;
  for (const [k, ids] of [
    ['bos_token_id', bos === undefined ? [] : [bos]],
    ['eos_token_id', cfg.eosTokenIds],
    ['pad_token_id', pad === undefined ? [] : [pad]],
  ] as const) {
    for (const id of ids)
      if (id >= vocabSize) r.fail(`"${k}" ${id} is outside the vocabulary (vocab_size ${vocabSize})`);
  }
  return cfg;
}

/**
 * The rotary inverse frequencies, length headDim / 2, as transformers computes them: in float32
 * arithmetic (each step rounded to float32 like the torch tensors there), including the
 * "linear" and "llama3" scalings. Values are float32 numbers held in a Float64Array.
 */
export function ropeInvFreq(c: ModelConfig): Float64Array {
  const f = Math.fround;
  const dim = c.headDim;
  const half = dim / 2;
  const out = new Float64Array(half);
  // inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
  for (let i = 0; i < half; i++) out[i] = f(1 / f(Math.pow(c.ropeTheta, f((2 * i) / dim))));
  const s = c.ropeScaling;
  if (!s) return out;
  if (s.type === 'linear') {
    for (let i = 0; i < half; i++) out[i] = f(out[i]! / s.factor);
    return out;
  }
  // _compute_llama3_parameters
  const oldLen = s.originalMaxPositionEmbeddings;
  const lowFreqWavelen = oldLen / s.lowFreqFactor;
  const highFreqWavelen = oldLen / s.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const inv = out[i]!;
    const wavelen = f((2 * Math.PI) / inv);
    let scaled = wavelen > lowFreqWavelen ? f(inv / s.factor) : inv;
    const medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    if (medium) {
      const smooth = f(f(f(oldLen / wavelen) - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor));
      // (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
      scaled = f(f(f(f(1 - smooth) * scaled) / s.factor) + f(smooth * scaled));
    }
    out[i] = scaled;
  }
  return out;
}
