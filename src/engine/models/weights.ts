// A model's weights prepared for the graphs: linear weights transposed to [in, out] (so MatMul
// needs no transpose), converted to the compute dtype, under the engine's own short names.
import { floatToHalf, type TypedData } from '../graph';
import type { ModelConfig } from './config';
import { PACK_FORMAT, WeightPack, type PackEntry } from './pack';
import { QUANT_BLOCK, quantBits, quantizeRows, type BaseQuantization, type QuantizedWeight } from './quantize';

/** The size (values) from which an int8 base reads its head as int8 blocks too: 8 M, 32 MB in float32. */
export const HEAD_QUANTIZE_MIN = 8 * 1024 * 1024;

/**
 * Whether a quantized base reads this model's head and embedding as int8 blocks
 * (vocabulary × hidden ≥ HEAD_QUANTIZE_MIN).
 */
export const largeVocabulary = (c: { vocabSize: number; hiddenSize: number }): boolean =>
  c.vocabSize * c.hiddenSize >= HEAD_QUANTIZE_MIN;

export type ComputeDtype = 'float32' | 'float16' | 'float64';

/** What the preparation reads from: a model folder's WeightStore, or tensors in memory. */
export interface WeightSource {
  has(name: string): boolean;
  info(name: string): { shape: readonly number[] };
  float32(name: string): Float32Array;
}

export interface HostArray {
  shape: number[];
  data: TypedData;
}

export const LINEAR_MODULES = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
export type LinearModule = (typeof LINEAR_MODULES)[number];

const hfLinear: Record<LinearModule, string> = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
};

/** The Hugging Face module path of a linear layer (used for weights and for PEFT adapter keys). */
export const hfModulePath = (layer: number, m: LinearModule): string => `model.layers.${layer}.${hfLinear[m]}`;

/** Engine name → Hugging Face tensor name and whether it is a linear weight to transpose. */
export function hfNameOf(cfg: ModelConfig, name: string): { hf: string; transpose: boolean } {
  if (name === 'embed') return { hf: 'model.embed_tokens.weight', transpose: false };
  if (name === 'final_norm') return { hf: 'model.norm.weight', transpose: false };
  if (name === 'lm_head')
    return { hf: cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight', transpose: true };
  const m = /^layers\.(\d+)\.(\w+)$/.exec(name);
  if (!m) throw new Error(`unknown weight '${name}'`);
  const [l, part] = [Number(m[1]), m[2]!];
  const base = `model.layers.${l}`;
  switch (part) {
    case 'input_norm':
      return { hf: `${base}.input_layernorm.weight`, transpose: false };
    case 'post_norm':
      return { hf: `${base}.post_attention_layernorm.weight`, transpose: false };
    case 'q_norm':
      return { hf: `${base}.self_attn.q_norm.weight`, transpose: false };
    case 'k_norm':
      return { hf: `${base}.self_attn.k_norm.weight`, transpose: false };
    case 'q_bias':
    case 'k_bias':
    case 'v_bias':
      return { hf: `${hfModulePath(l, part[0] as LinearModule)}.bias`, transpose: false };
    default:
      if ((LINEAR_MODULES as readonly string[]).includes(part))
        return { hf: `${hfModulePath(l, part as LinearModule)}.weight`, transpose: true };
      throw new Error(`unknown weight '${name}'`);
  }
}

/** Cache-friendly transpose of a row-major [rows, cols] matrix. */
export function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const dst = new Float32Array(rows * cols);
  const BS = 64;
  for (let r0 = 0; r0 < rows; r0 += BS) {
    const r1 = Math.min(rows, r0 + BS);
    for (let c0 = 0; c0 < cols; c0 += BS) {
      const c1 = Math.min(cols, c0 + BS);
      for (let r = r0; r < r1; r++) {
        const row = r * cols;
        for (let c = c0; c < c1; c++) dst[c * rows + r] = src[row + c]!;
      }
    }
  }
  return dst;
}

export function convert(src: Float32Array, dtype: ComputeDtype): TypedData {
  if (dtype === 'float32') return src;
  if (dtype === 'float64') return Float64Array.from(src);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = floatToHalf(src[i]!);
  return out;
}

export class PreparedWeights {
  private readonly cache = new Map<string, HostArray>();
  private readonly qcache = new Map<string, QuantizedWeight>();
  private packed?: WeightPack;

  /** `key` identifies the source (e.g. folder + file sizes + mtimes) so graphs hash without reading weights. */
  constructor(
    readonly cfg: ModelConfig,
    readonly dtype: ComputeDtype,
    readonly key: string,
    private readonly source: WeightSource,
    /** The decoder layers' linear weights as MatMulNBits blocks (the head stays float). */
    readonly quantization: BaseQuantization = 'none',
    /** Where the weight pack goes (a model folder's cache); without one, weights are graph initializers in memory. */
    readonly cacheDir?: string,
  ) {
    if (quantization !== 'none' && dtype === 'float64')
      throw new Error(
        `a ${quantization} base needs a float32 or float16 compute dtype (MatMulNBits has no float64 kernel)`,
      );
  }

  has(name: string): boolean {
    return this.source.has(hfNameOf(this.cfg, name).hf);
  }

  /**
   * Whether a weight is read as quantized blocks: the decoder layers' linear weights, and the head
   * as int8 blocks (see bitsOf) with an int4 base, or with an int8 base when the head is large
   * (HEAD_QUANTIZE_MIN values and up: every real vocabulary). At Qwen2.5-0.5B's shape a float32
   * head is 545 MB, more than the whole int8 body, read at every decoded token, and ONNX Runtime
   * pre-packs a float MatMul's weight into a second copy at session creation: with it float, an
   * int8 base's generation peaked at 1.77 GB before its first token. A small head stays in the
   * compute dtype, as QLoRA (bitsandbytes) leaves it: it costs nothing there, and int8 blocks of
   * the demo model's head (2,593 × 128, with outliers 40× its RMS) alone moved its mean log-prob of
   * real text by 0.23. llama.cpp's 8-bit files quantize the output matrix at 8 bits too.
   */
  isQuantized(name: string): boolean {
    if (this.quantization === 'none') return false;
    if (name === 'lm_head') return this.quantization === 'int4' || largeVocabulary(this.cfg);
    if (name === 'embed') return this.embedBlocks() === 'embed';
    return /^layers\.\d+\.(q|k|v|o|gate|up|down)$/.test(name);
  }

  /**
   * Which int8 blocks the token embedding is looked up from with a quantized base and a large
   * vocabulary: the head's when it is tied to the embedding (the same [V, D] rows), else the
   * embedding's own; undefined: the float table. A float table is mapped from the pack and ONNX
   * Runtime's Gather touches it a page (or a large folio) per token: at the qwen2.5-0.5b shape a
   * 350-token prompt made 515 MB of the 545 MB table resident; int8 rows are a quarter of that,
   * and a tied model's pack does without the float table altogether.
   */
  embedBlocks(): 'lm_head' | 'embed' | undefined {
    if (this.quantization === 'none' || !largeVocabulary(this.cfg)) return undefined;
    return this.cfg.tieWordEmbeddings ? 'lm_head' : 'embed';
  }

  /** [N, K] of a quantized weight: its stored rows ([out, in] for linear ones, [V, D] for the embedding). */
  quantizedShape(name: string): [number, number] {
    return this.source.info(hfNameOf(this.cfg, name).hf).shape as [number, number];
  }

  /**
   * Bits per value of a quantized weight. The head of an int4 base is int8: at Qwen2.5-0.5B's shape
   * the float32 head (151,936 × 896) is 545 MB, more than the whole int4 body (≈ 200 MB), and it
   * is read at every decoded token; int8 blocks cut it to 145 MB, where int4 ones would add their
   * error to every logit. (llama.cpp's 4-bit files keep the output matrix at 6–8 bits, likewise.)
   */
  bitsOf(name: string): 4 | 8 {
    if (this.quantization === 'none') throw new Error('bitsOf(): this model has a float base');
    return name === 'lm_head' || name === 'embed' ? 8 : quantBits(this.quantization);
  }

  /** The prepared shape of a weight ([in, out] for linear ones), without reading it. */
  shape(name: string): number[] {
    const { hf, transpose } = hfNameOf(this.cfg, name);
    const shape = [...this.source.info(hf).shape];
    return transpose ? shape.reverse() : shape;
  }

  /**
   * A linear weight as MatMulNBits blocks, quantized from the stored [out, in] rows (no transpose:
   * that is MatMulNBits' layout). Kept for the next graph when there is no pack.
   */
  quantized(name: string): QuantizedWeight {
    if (this.quantization === 'none') throw new Error('quantized(): this model has a float base');
    let q = this.qcache.get(name);
    if (!q) {
      const { hf } = hfNameOf(this.cfg, name);
      const [n, k] = this.source.info(hf).shape as [number, number];
      q = quantizeRows(
        this.source.float32(hf),
        n,
        k,
        this.bitsOf(name),
        QUANT_BLOCK,
        this.dtype === 'float16' ? 'float16' : 'float32',
      );
      if (!this.cacheDir) this.qcache.set(name, q);
    }
    return q;
  }

  /**
   * The weight pack holding every tensor of `names` (see pack.ts), built on first use when the
   * model has a cache folder; undefined otherwise.
   */
  pack(names: readonly string[]): WeightPack | undefined {
    if (!this.cacheDir) return undefined;
    if (this.packed) return this.packed;
    const entries: PackEntry[] = [];
    for (const name of names) {
      if (this.isQuantized(name)) {
        const [n, k] = this.quantizedShape(name);
        const blocks = Math.ceil(k / QUANT_BLOCK);
        entries.push({
          name: `${name}.qb`,
          dtype: 'uint8',
          shape: [n, blocks, (QUANT_BLOCK * this.bitsOf(name)) / 8],
        });
        entries.push({
          name: `${name}.qs`,
          dtype: this.dtype === 'float16' ? 'float16' : 'float32',
          shape: [n, blocks],
        });
      } else {
        entries.push({ name, dtype: this.dtype, shape: this.shape(name) });
      }
    }
    // The last quantized weight is kept between its two entries, so each is quantized once.
    let last: { name: string; q: QuantizedWeight } | undefined;
    const load = (entry: string): TypedData => {
      const m = /^(.+)\.(qb|qs)$/.exec(entry);
      if (!m) return this.prepare(entry).data;
      if (last?.name !== m[1]) last = { name: m[1]!, q: this.quantized(m[1]!) };
      return m[2] === 'qb' ? last.q.b : last.q.scales;
    };
    const id = `${this.key}-${this.dtype}-${this.quantization}-f${PACK_FORMAT}`;
    this.packed = WeightPack.ensure(this.cacheDir, id, entries, load, `${this.key}-`);
    return this.packed;
  }

  /** Reads and prepares a weight without keeping it. */
  private prepare(name: string): HostArray {
    const hit = this.cache.get(name);
    if (hit) return hit;
    const { hf, transpose } = hfNameOf(this.cfg, name);
    const shape = [...this.source.info(hf).shape];
    let data = this.source.float32(hf);
    if (transpose) {
      if (shape.length !== 2) throw new Error(`${hf}: expected a matrix, got shape [${shape.join(', ')}]`);
      data = transpose2d(data, shape[0]!, shape[1]!);
      shape.reverse();
    }
    return { shape, data: convert(data, this.dtype) };
  }

  /** A weight prepared in memory, kept for the next graph (graphs that do not read a pack, full training). */
  get(name: string): HostArray {
    let a = this.cache.get(name);
    if (!a) {
      a = this.prepare(name);
      this.cache.set(name, a);
    }
    return a;
  }

  /** Bytes of prepared weights this object keeps in JavaScript memory (0 when the graphs read a pack). */
  get heldBytes(): number {
    let n = 0;
    for (const a of this.cache.values()) n += a.data.byteLength;
    for (const q of this.qcache.values()) n += q.b.byteLength + q.scales.byteLength;
    return n;
  }

  /** Drops the prepared copies (after the sessions that need them exist). */
  release(): void {
    this.cache.clear();
  }
}
