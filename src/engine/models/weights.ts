// A model's weights prepared for the graphs: linear weights transposed to [in, out] (so MatMul
// needs no transpose), converted to the compute dtype, under the engine's own short names.
import { floatToHalf, type TypedData } from '../graph';
import type { ModelConfig } from './config';

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
  q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj',
};

/** The Hugging Face module path of a linear layer (used for weights and for PEFT adapter keys). */
export const hfModulePath = (layer: number, m: LinearModule): string => `model.layers.${layer}.${hfLinear[m]}`;

/** Engine name → Hugging Face tensor name and whether it is a linear weight to transpose. */
export function hfNameOf(cfg: ModelConfig, name: string): { hf: string; transpose: boolean } {
  if (name === 'embed') return { hf: 'model.embed_tokens.weight', transpose: false };
  if (name === 'final_norm') return { hf: 'model.norm.weight', transpose: false };
  if (name === 'lm_head') return { hf: cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight', transpose: true };
  const m = /^layers\.(\d+)\.(\w+)$/.exec(name);
  if (!m) throw new Error(`unknown weight '${name}'`);
  const [l, part] = [Number(m[1]), m[2]!];
  const base = `model.layers.${l}`;
  switch (part) {
    case 'input_norm': return { hf: `${base}.input_layernorm.weight`, transpose: false };
    case 'post_norm': return { hf: `${base}.post_attention_layernorm.weight`, transpose: false };
    case 'q_norm': return { hf: `${base}.self_attn.q_norm.weight`, transpose: false };
    case 'k_norm': return { hf: `${base}.self_attn.k_norm.weight`, transpose: false };
    case 'q_bias': case 'k_bias': case 'v_bias': return { hf: `${hfModulePath(l, part[0] as LinearModule)}.bias`, transpose: false };
    default:
      if ((LINEAR_MODULES as readonly string[]).includes(part)) return { hf: `${hfModulePath(l, part as LinearModule)}.weight`, transpose: true };
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

  /** `key` identifies the source (e.g. folder + file sizes + mtimes) so graphs hash without reading weights. */
  constructor(
    readonly cfg: ModelConfig,
    readonly dtype: ComputeDtype,
    readonly key: string,
    private readonly source: WeightSource,
  ) {}

  has(name: string): boolean {
    return this.source.has(hfNameOf(this.cfg, name).hf);
  }

  get(name: string): HostArray {
    let a = this.cache.get(name);
    if (!a) {
      const { hf, transpose } = hfNameOf(this.cfg, name);
      const shape = [...this.source.info(hf).shape];
      let data = this.source.float32(hf);
      if (transpose) {
        if (shape.length !== 2) throw new Error(`${hf}: expected a matrix, got shape [${shape.join(', ')}]`);
        data = transpose2d(data, shape[0]!, shape[1]!);
        shape.reverse();
      }
      a = { shape, data: convert(data, this.dtype) };
      this.cache.set(name, a);
    }
    return a;
  }

  /** Drops the prepared copies (after the sessions that need them exist). */
  release(): void {
    this.cache.clear();
  }
}
