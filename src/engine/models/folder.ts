// A Hugging Face model folder: config.json, generation_config.json (optional), the weights in
// model.safetensors or sharded by model.safetensors.index.json, and tokenizer.json. Loading checks
// everything the engine will need up front, so a bad folder fails at once with one clear message
// instead of deep inside graph building. No code from the folder is ever run (auto_map and *.py
// files are ignored).
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ModelError, parseConfig, type ModelConfig } from './config';
import { SafetensorsFile, type SafetensorsDType, type TensorInfo } from './safetensors';

export interface GenerationDefaults {
  eosTokenIds: number[];
  bosTokenId?: number;
  padTokenId?: number;
  /** HF's do_sample: when false (its default), generation is greedy whatever the temperature. */
  doSample?: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
  maxNewTokens?: number;
}

export interface ModelFolder {
  dir: string;
  config: ModelConfig;
  generation: GenerationDefaults;
  weights: WeightStore;
}

const FLOAT_DTYPES: readonly SafetensorsDType[] = ['F32', 'F16', 'BF16'];

/** The tensors of a model, over one safetensors file or the shards of an index. */
export class WeightStore {
  private readonly where = new Map<string, SafetensorsFile>();

  constructor(readonly files: SafetensorsFile[]) {
    for (const f of files) for (const n of f.names()) if (!this.where.has(n)) this.where.set(n, f);
  }

  /** Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`. */
  static open(dir: string): WeightStore {
    const single = join(dir, 'model.safetensors');
    const index = join(dir, 'model.safetensors.index.json');
    if (existsSync(single)) return new WeightStore([SafetensorsFile.open(single)]);
    if (existsSync(index)) return WeightStore.openIndex(dir, index);
    const present = safeList(dir);
    const other = present.filter((n) => /\.(bin|pt|pth|gguf|ckpt|h5|msgpack)$/.test(n) || n.endsWith('.safetensors'));
    let hint = '';
    if (other.some((n) => /\.(bin|pt|pth|ckpt)$/.test(n)))
      hint =
        ' PyTorch pickle weights (*.bin/*.pt) are not read because loading them can run code: convert the model to safetensors (e.g. save_pretrained(..., safe_serialization=True)).';
    else if (other.some((n) => n.endsWith('.gguf')))
      hint = ' GGUF files are not supported: use the original Hugging Face checkpoint.';
    else if (other.some((n) => n.endsWith('.safetensors')))
      hint = ` Found ${other.filter((n) => n.endsWith('.safetensors')).join(', ')}, but a Hugging Face folder names its weights model.safetensors or lists shards in model.safetensors.index.json.`;
    throw new ModelError(`${dir}: no weights: expected model.safetensors or model.safetensors.index.json.${hint}`);
  }

  private static openIndex(dir: string, indexPath: string): WeightStore {
    const idx = readJson(indexPath) as { weight_map?: unknown };
    const map = idx?.weight_map;
    if (typeof map !== 'object' || map === null || Array.isArray(map))
      throw new ModelError(`${indexPath}: no "weight_map" object (tensor name → shard file)`);
    const byFile = new Map<string, string[]>();
    for (const [name, file] of Object.entries(map as Record<string, unknown>)) {
      if (
        typeof file !== 'string' ||
        file.includes('/') ||
        file.includes('\\') ||
        file === '..' ||
        !file.endsWith('.safetensors')
      ) {
        throw new ModelError(
          `${indexPath}: weight_map["${name}"] must name a .safetensors file in the same folder, got ${JSON.stringify(file)}`,
        );
      }
      byFile.set(file, [...(byFile.get(file) ?? []), name]);
    }
    const files: SafetensorsFile[] = [];
    try {
      for (const [file, names] of [...byFile].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        const p = join(dir, file);
        if (!existsSync(p))
          throw new ModelError(
            `${indexPath}: shard ${file} (holding ${names.length} tensors, e.g. ${names[0]}) is missing from the folder`,
          );
        const f = SafetensorsFile.open(p);
        files.push(f);
        const absent = names.filter((n) => !f.has(n));
        if (absent.length)
          throw new ModelError(
            `${p}: does not contain ${absent.length} tensor(s) the index assigns to it: ${absent.slice(0, 5).join(', ')}${absent.length > 5 ? ', …' : ''}`,
          );
      }
    } catch (e) {
      for (const f of files) f.close();
      throw e;
    }
    // Only the tensors the index lists are part of the model.
    const store = new WeightStore(files);
    for (const n of [...store.where.keys()]) if (!(n in (map as object))) store.where.delete(n);
    return store;
  }

  names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  info(name: string): TensorInfo {
    return this.file(name).info(name);
  }

  bytes(name: string): Uint8Array {
    return this.file(name).bytes(name);
  }

  /** Values as float32; f16 and bf16 are converted. */
  float32(name: string): Float32Array {
    return this.file(name).float32(name);
  }

  close(): void {
    for (const f of this.files) f.close();
  }

  private file(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new ModelError(`no tensor named "${name}" in the model's weights`);
    return f;
  }
}

/** Every tensor a Llama-family model of this config needs, with its shape (Hugging Face names). */
export function expectedTensors(c: ModelConfig): { name: string; shape: number[] }[] {
  const { hiddenSize: D, intermediateSize: I, vocabSize: V, numHeads: H, numKvHeads: K, headDim: E } = c;
  const out: { name: string; shape: number[] }[] = [{ name: 'model.embed_tokens.weight', shape: [V, D] }];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      { name: `${p}.input_layernorm.weight`, shape: [D] },
      { name: `${p}.self_attn.q_proj.weight`, shape: [H * E, D] },
      { name: `${p}.self_attn.k_proj.weight`, shape: [K * E, D] },
      { name: `${p}.self_attn.v_proj.weight`, shape: [K * E, D] },
      { name: `${p}.self_attn.o_proj.weight`, shape: [D, H * E] },
    );
    if (c.qkvBias) {
      out.push(
        { name: `${p}.self_attn.q_proj.bias`, shape: [H * E] },
        { name: `${p}.self_attn.k_proj.bias`, shape: [K * E] },
        { name: `${p}.self_attn.v_proj.bias`, shape: [K * E] },
      );
    }
    if (c.qkNorm) {
      out.push(
        { name: `${p}.self_attn.q_norm.weight`, shape: [E] },
        { name: `${p}.self_attn.k_norm.weight`, shape: [E] },
      );
    }
    out.push(
      { name: `${p}.post_attention_layernorm.weight`, shape: [D] },
      { name: `${p}.mlp.gate_proj.weight`, shape: [I, D] },
      { name: `${p}.mlp.up_proj.weight`, shape: [I, D] },
      { name: `${p}.mlp.down_proj.weight`, shape: [D, I] },
    );
  }
  out.push({ name: 'model.norm.weight', shape: [D] });
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [V, D] });
  return out;
}

/** Checks that the store has every tensor the config needs, in a float dtype and the right shape. */
export function checkWeights(c: ModelConfig, weights: WeightStore, where: string): void {
  // First what the weights' own header says about the sizes, before listing every tensor the
  // config implies (a config naming far more layers than the file holds fails here, at once).
  const layers = new Set<number>();
  for (const n of weights.names()) {
    const m = /^model\.layers\.(\d+)\./.exec(n);
    if (m) layers.add(Number(m[1]));
  }
  if (layers.size !== c.numLayers) {
    const [lo, hi] = [Math.min(...layers), Math.max(...layers)];
    const held =
      layers.size === 0
        ? 'no layers'
        : `${layers.size} layer${layers.size === 1 ? '' : 's'} (model.layers.${lo}${hi > lo ? ` to ${hi}` : ''})`;
    throw new ModelError(
      `${where}: config.json says num_hidden_layers is ${c.numLayers} but the weights hold ${held}: the config does not belong to these weights, or the weights are incomplete`,
    );
  }
  if (weights.has('model.embed_tokens.weight')) {
    const s = weights.info('model.embed_tokens.weight').shape;
    if (s.length !== 2 || s[0] !== c.vocabSize || s[1] !== c.hiddenSize) {
      throw new ModelError(
        `${where}: config.json says vocab_size ${c.vocabSize} and hidden_size ${c.hiddenSize} but model.embed_tokens.weight has shape [${s.join(', ')}]: the config does not belong to these weights`,
      );
    }
  }
  const problems: string[] = [];
  let count = 0;
  for (const t of expectedTensors(c)) {
    let p: string | undefined;
    if (!weights.has(t.name)) {
      p = `${t.name} is missing`;
    } else {
      const i = weights.info(t.name);
      if (i.shape.length !== t.shape.length || i.shape.some((d, k) => d !== t.shape[k]))
        p = `${t.name} has shape [${i.shape.join(', ')}], expected [${t.shape.join(', ')}]`;
      else if (!FLOAT_DTYPES.includes(i.dtype)) p = `${t.name} has dtype ${i.dtype}, expected F32, F16 or BF16`;
    }
    if (p) {
      count++;
      if (problems.length < 6) problems.push(p);
    }
  }
  if (count) {
    const more = count > problems.length ? `; and ${count - problems.length} more` : '';
    throw new ModelError(
      `${where}: the weights do not match config.json (${c.architecture}, ${c.numLayers} layers): ${problems.join('; ')}${more}`,
    );
  }
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ModelError(`${path}: cannot read (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelError(`${path}: not valid JSON (${(e as Error).message})`);
  }
}

function optNumber(obj: Record<string, unknown>, key: string, file: string, int = false): number | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || (int && !Number.isInteger(v))) {
    throw new ModelError(
      `${file}: "${key}" must be a ${int ? 'whole ' : ''}non-negative number, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

function optIds(obj: Record<string, unknown>, key: string, file: string): number[] | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  const list = Array.isArray(v) ? v : [v];
  if (!list.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0))
    throw new ModelError(`${file}: "${key}" must be a token id or a list of them, got ${JSON.stringify(v)}`);
  return list as number[];
}

/** generation_config.json's sampling defaults and special ids, falling back to config.json's ids. */
export function readGenerationConfig(dir: string, config: ModelConfig): GenerationDefaults {
  const file = join(dir, 'generation_config.json');
  const g: GenerationDefaults = { eosTokenIds: [...config.eosTokenIds] };
  if (config.bosTokenId !== undefined) g.bosTokenId = config.bosTokenId;
  if (config.padTokenId !== undefined) g.padTokenId = config.padTokenId;
  if (!existsSync(file)) return g;
  const raw = readJson(file);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw new ModelError(`${file}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  const eos = optIds(o, 'eos_token_id', file);
  if (eos) g.eosTokenIds = eos;
  const bos = optIds(o, 'bos_token_id', file)?.[0];
  if (bos !== undefined) g.bosTokenId = bos;
  const pad = optIds(o, 'pad_token_id', file)?.[0];
  if (pad !== undefined) g.padTokenId = pad;
  if (o.do_sample !== undefined && o.do_sample !== null) {
    if (typeof o.do_sample !== 'boolean') throw new ModelError(`${file}: "do_sample" must be true or false`);
    g.doSample = o.do_sample;
  }
  const temperature = optNumber(o, 'temperature', file);
  if (temperature !== undefined) g.temperature = temperature;
  const topP = optNumber(o, 'top_p', file);
  if (topP !== undefined) {
    if (topP > 1) throw new ModelError(`${file}: "top_p" must be between 0 and 1, got ${topP}`);
    g.topP = topP;
  }
  const topK = optNumber(o, 'top_k', file, true);
  if (topK !== undefined) g.topK = topK;
  const maxNew = optNumber(o, 'max_new_tokens', file, true);
  if (maxNew !== undefined) g.maxNewTokens = maxNew;
  for (const id of [...g.eosTokenIds, g.bosTokenId, g.padTokenId]) {
    if (id !== undefined && id >= config.vocabSize)
      throw new ModelError(
        `${file}: token id ${id} is outside the vocabulary (vocab_size ${config.vocabSize} in config.json)`,
      );
  }
  return g;
}

/**
 * Opens and validates a model folder: config.json (a supported architecture), the weights (every
 * tensor the architecture needs, right shape, float dtype), tokenizer.json, and
 * generation_config.json when present. Throws one ModelError naming the file and the problem.
 */
export function loadModelFolder(dir: string, opts: { requireTokenizer?: boolean } = {}): ModelFolder {
  const abs = resolve(dir);
  let st;
  try {
    st = statSync(abs);
  } catch {
    throw new ModelError(`${abs}: model folder not found`);
  }
  if (!st.isDirectory())
    throw new ModelError(
      `${abs}: not a folder (expected a Hugging Face model folder with config.json, model.safetensors and tokenizer.json)`,
    );
  const cfgPath = join(abs, 'config.json');
  if (!existsSync(cfgPath))
    throw new ModelError(`${abs}: config.json is missing (is this a Hugging Face model folder?)`);
  const config = parseConfig(readJson(cfgPath), cfgPath);
  if ((opts.requireTokenizer ?? true) && !existsSync(join(abs, 'tokenizer.json'))) {
    const sp = existsSync(join(abs, 'tokenizer.model'))
      ? ' (only tokenizer.model is present: a SentencePiece file; save the fast tokenizer with tokenizer.save_pretrained to get tokenizer.json)'
      : '';
    throw new ModelError(`${abs}: tokenizer.json is missing${sp}`);
  }
  const generation = readGenerationConfig(abs, config);
  const weights = WeightStore.open(abs);
  try {
    checkWeights(config, weights, abs);
  } catch (e) {
    weights.close();
    throw e;
  }
  return { dir: abs, config, generation, weights };
}
