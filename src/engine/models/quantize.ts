// Block quantization of a frozen base's linear weights into the layout of ONNX Runtime's
// MatMulNBits: symmetric, per block of `block` values along the input dimension, no zero-point
// tensor (MatMulNBits then takes 2^(bits−1) as the zero point), so w ≈ (q − 2^(bits−1)) · scale.
import { floatToHalf, halfToFloat } from '../graph';

export type BaseQuantization = 'none' | 'int8' | 'int4';
export const BASE_QUANTIZATIONS: readonly BaseQuantization[] = ['none', 'int8', 'int4'];

/** MatMulNBits' block size and accuracy level for the base (level 4: int8 activations, the fast path). */
export const QUANT_BLOCK = 32;
export const QUANT_ACCURACY = 4;

export const quantBits = (q: Exclude<BaseQuantization, 'none'>): 4 | 8 => (q === 'int4' ? 4 : 8);

export interface QuantizedWeight {
  /** uint8 [N, blocks, block·bits/8]. */
  b: Uint8Array;
  /** [N, blocks]: float32, or float16 words for a float16 compute dtype. */
  scales: Float32Array | Uint16Array;
  n: number;
  k: number;
  bits: 4 | 8;
  block: number;
}

/**
 * Quantizes W given as `rows` [N, K] row-major (row n = the weights into output n: a Hugging Face
 * linear weight as stored, [out, in]), each block of `block` values along K with its own scale
 * (see below); values rounded to the nearest level.
 */
export function quantizeRows(
  rows: Float32Array,
  n: number,
  k: number,
  bits: 4 | 8,
  block = QUANT_BLOCK,
  scaleDtype: 'float32' | 'float16' = 'float32',
): QuantizedWeight {
  if (rows.length !== n * k) throw new Error(`quantize: ${rows.length} values for [${n}, ${k}]`);
  if (block % 16 !== 0 || block < 16)
    throw new Error(`quantize: the block size must be a multiple of 16 ≥ 16 (got ${block})`);
  const blocks = Math.ceil(k / block);
  const per = (block * bits) / 8;
  const b = new Uint8Array(n * blocks * per);
  const scales = new Float32Array(n * blocks);
  const zp = 2 ** (bits - 1);
  const qmax = zp - 1;
  const q = new Uint8Array(block);
  for (let r = 0; r < n; r++) {
    const row = r * k;
    for (let j = 0; j < blocks; j++) {
      const k0 = j * block;
      const k1 = Math.min(k, k0 + block);
      let amax = 0;
      for (let i = k0; i < k1; i++) {
        const a = Math.abs(rows[row + i]!);
        if (a > amax) amax = a;
      }
      if (!Number.isFinite(amax)) throw new Error(`quantize: weight row ${r} holds a non-finite value`);
      // The largest magnitude on the top level. Two other rules lowered a block's squared error
      // but raised the demo model's log-prob error (whose few large weights matter most): the
      // largest on the bottom level −zp when negative (llama.cpp's q4_0: a finer step, but a
      // large positive weight in the same block is clipped), and shrinking the scale to clip it.
      // The scale as the graph will read it (float16 rounds it), so the levels match it.
      const s = scaleDtype === 'float16' ? halfToFloat(floatToHalf(amax / qmax)) : Math.fround(amax / qmax);
      const inv = s > 0 ? 1 / s : 0;
      q.fill(zp);
      for (let i = k0; i < k1; i++)
        q[i - k0] = Math.max(0, Math.min(2 * zp - 1, Math.round(rows[row + i]! * inv) + zp));
      scales[r * blocks + j] = s;
      const out = (r * blocks + j) * per;
      if (bits === 8) b.set(q, out);
      else for (let i = 0; i < per; i++) b[out + i] = q[2 * i]! | (q[2 * i + 1]! << 4);
    }
  }
  return { b, scales: scaleDtype === 'float16' ? Uint16Array.from(scales, floatToHalf) : scales, n, k, bits, block };
}

/** The float values a quantized weight stands for, [N, K] row-major (the reference for tests). */
export function dequantizeRows(w: QuantizedWeight): Float32Array {
  const { n, k, bits, block } = w;
  if (!(w.scales instanceof Float32Array)) throw new Error('dequantizeRows: float32 scales only');
  const blocks = Math.ceil(k / block);
  const per = (block * bits) / 8;
  const zp = 2 ** (bits - 1);
  const out = new Float32Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let i = 0; i < k; i++) {
      const j = Math.floor(i / block);
      const off = (r * blocks + j) * per;
      const within = i - j * block;
      const byte = w.b[off + (bits === 8 ? within : within >> 1)]!;
      const level = bits === 8 ? byte : within & 1 ? byte >> 4 : byte & 15;
      out[r * k + i] = (level - zp) * w.scales[r * blocks + j]!;
    }
  }
  return out;
}
