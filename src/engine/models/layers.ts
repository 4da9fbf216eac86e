// The Llama-family decoder, as graph-building functions shared by every graph the engine runs
// (score, prefill, decode step, train step). Shapes: B batch, T new tokens, P past tokens,
// S = P + T keys, D hidden, H query heads, K kv heads, R = H / K, E head dim.
import { op, type Tensor, type Dim } from '../graph';
import { isQuantized, type QuantizedMatrix } from '../graph/ops/quant';

/** A linear layer y = x·Wᵀ (+ b) (+ scale·(x·Aᵀ)·Bᵀ), with W stored transposed as [in, out]. */
export interface Linear {
  weight: Tensor | QuantizedMatrix; // [in, out], or MatMulNBits blocks of a quantized base
  bias?: Tensor; // [out]
  lora?: { a: Tensor; b: Tensor; scale: number; dropout?: Tensor }; // a: [in, r], b: [r, out], dropout mask: [.., in]
}

export function linear(x: Tensor, l: Linear): Tensor {
  let y = isQuantized(l.weight) ? op.matmulNBits(x, l.weight) : op.matmul(x, l.weight); // [..., out]
  if (l.bias) y = op.add(y, l.bias);
  if (l.lora) {
    const xin = l.lora.dropout ? op.mul(x, l.lora.dropout) : x;
    const low = op.matmul(op.matmul(xin, l.lora.a), l.lora.b); // [..., r] → [..., out]
    y = op.add(y, l.lora.scale === 1 ? low : op.mul(low, l.lora.scale));
  }
  return y;
}

export interface LayerWeights {
  inputNorm: Tensor; // [D]
  q: Linear;
  k: Linear;
  v: Linear;
  o: Linear;
  qNorm?: Tensor; // [E] (Qwen3)
  kNorm?: Tensor; // [E]
  postNorm: Tensor; // [D]
  gate: Linear;
  up: Linear;
  down: Linear;
}

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  eps: number;
}

/** cos/sin of the rotary embedding for given positions, computed as Hugging Face does (float32). */
export function ropeTables(positions: Tensor, invFreq: Tensor, dtype: Tensor['dtype']): { cos: Tensor; sin: Tensor } {
  const pos = op.unsqueeze(op.cast(positions, 'float32'), [-1]); // [B, T, 1]
  const freqs = op.mul(pos, invFreq); // [B, T, E/2]
  const emb = op.concat([freqs, freqs], -1); // [B, T, E]
  const c = op.unsqueeze(op.unsqueeze(op.cos(emb), [1]), [1]); // [B, 1, 1, T, E]
  const s = op.unsqueeze(op.unsqueeze(op.sin(emb), [1]), [1]);
  return { cos: op.cast(c, dtype), sin: op.cast(s, dtype) };
}

/**
 * Additive attention mask [B, 1, 1, T, S] (float32 unless asked otherwise): 0 where query t (absolute position P + t)
 * may see key s (s ≤ P + t and key s is not padding), a large negative number elsewhere. Rows
 * with no visible key (left-padding queries) stay finite and are ignored by the callers.
 */
export function attentionBias(keyMask: Tensor, T: Dim, S: Dim, dtype: 'float32' | 'float64' = 'float32'): Tensor {
  const g = keyMask.graph;
  const sT = op.squeeze(g.dim(S), [0]);
  const tT = op.squeeze(g.dim(T), [0]);
  const one = g.scalar(1, 'int64');
  const past = op.sub(sT, tT);
  const qpos = op.range(past, sT, one, T); // [T]
  const kpos = op.range(g.scalar(0, 'int64'), sT, one, S); // [S]
  const causal = op.lessOrEqual(op.unsqueeze(kpos, [0]), op.unsqueeze(qpos, [1])); // [T, S]
  const real = op.equal(op.unsqueeze(keyMask, [1, 2, 3]), 1); // [B, 1, 1, 1, S]
  const ok = op.and(op.unsqueeze(causal, [0, 1, 2]), real); // [B, 1, 1, T, S]
  return op.where(ok, g.scalar(0, dtype), g.scalar(-1e9, dtype));
}

/** The dtype for norms, softmax and losses: float32, or float64 in float64 graphs (tests). */
export const accumDtype = (d: Tensor['dtype']): 'float32' | 'float64' => (d === 'float64' ? 'float64' : 'float32');

export interface LayerOutput {
  out: Tensor; // [B, T, D]
  k: Tensor; // [B, K, T, E] this step's keys (after RoPE)
  v: Tensor; // [B, K, T, E]
}

/**
 * One decoder layer. `past` holds earlier keys/values [B, K, P, E]; `bias` is attentionBias()
 * over S = P + T keys.
 */
export function decoderLayer(
  x: Tensor,
  w: LayerWeights,
  a: AttentionShape,
  rope: { cos: Tensor; sin: Tensor },
  bias: Tensor,
  past?: { k: Tensor; v: Tensor },
): LayerOutput {
  const [B, T] = [x.shape[0]!, x.shape[1]!];
  const { numHeads: H, numKvHeads: K, headDim: E } = a;
  const R = H / K;
  if (!Number.isInteger(R)) throw new Error(`decoderLayer: ${H} query heads are not a multiple of ${K} kv heads`);

  const h = op.rmsNorm(x, w.inputNorm, a.eps); // [B, T, D]
  let q = op.reshape(linear(h, w.q), [B, T, H, E]);
  let k = op.reshape(linear(h, w.k), [B, T, K, E]);
  const v0 = op.reshape(linear(h, w.v), [B, T, K, E]);
  if (w.qNorm) q = op.rmsNorm(q, w.qNorm, a.eps);
  if (w.kNorm) k = op.rmsNorm(k, w.kNorm, a.eps);
  // Query heads grouped by the kv head they share: [B, K, R, T, E]; keys/values [B, K, 1, T, E].
  const qg = op.transpose(op.reshape(q, [B, T, K, R, E]), [0, 2, 3, 1, 4]);
  const kg = op.unsqueeze(op.transpose(k, [0, 2, 1, 3]), [2]);
  const qr = op.applyRope(qg, rope.cos, rope.sin); // [B, K, R, T, E]
  const kr = op.applyRope(kg, rope.cos, rope.sin); // [B, K, 1, T, E]
  const kNew = op.squeeze(kr, [2]); // [B, K, T, E]
  const vNew = op.transpose(v0, [0, 2, 1, 3]); // [B, K, T, E]
  const kAll = past ? op.concat([past.k, kNew], 2) : kNew; // [B, K, S, E]
  const vAll = past ? op.concat([past.v, vNew], 2) : vNew;

  const kT = op.unsqueeze(op.transpose(kAll, [0, 1, 3, 2]), [2]); // [B, K, 1, E, S]
  let scores = op.matmul(qr, kT); // [B, K, R, T, S]
  // Softmax in float32 at least, whatever the compute dtype.
  scores = op.mul(op.cast(scores, accumDtype(x.dtype)), 1 / Math.sqrt(E));
  const probs = op.cast(op.softmax(op.add(scores, bias), -1), x.dtype); // [B, K, R, T, S]
  const ctx = op.matmul(probs, op.unsqueeze(vAll, [2])); // [B, K, R, T, E]
  const merged = op.reshape(op.transpose(ctx, [0, 3, 1, 2, 4]), [B, T, H * E]); // [B, T, H·E]
  const x1 = op.add(x, linear(merged, w.o)); // [B, T, D]

  const h2 = op.rmsNorm(x1, w.postNorm, a.eps);
  const mlp = linear(op.mul(op.silu(linear(h2, w.gate)), linear(h2, w.up)), w.down); // [B, T, D]
  return { out: op.add(x1, mlp), k: kNew, v: vNew };
}
