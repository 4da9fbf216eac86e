// A product with a frozen, block-quantized weight: ONNX Runtime's com.microsoft MatMulNBits (the
// operator its own GenAI models use on CPU and GPU), and its backward with respect to the input.
import { attr, type Tensor } from '../graph';
import { defGrad } from './registry';
import { attrOf, fail } from './common';
import { add, cast, div, mul, sub } from './elementwise';
import { matmul } from './linalg';
import { concat, reshape, slice, sliceDynamic, unsqueeze } from './shape';

/**
 * A [K, N] weight (y = x·W) quantized in blocks along K, as MatMulNBits reads it: `b` uint8
 * [N, ⌈K/block⌉, block·bits/8] (two 4-bit values per byte, low nibble first), `scales`
 * [N, ⌈K/block⌉] in the compute dtype, symmetric: w = (q − 2^(bits−1)) · scale.
 */
export interface QuantizedMatrix {
  b: Tensor;
  scales: Tensor;
  k: number;
  n: number;
  bits: 4 | 8;
  blockSize: number;
  /**
   * MatMulNBits' accuracy_level: 4 quantizes the input to int8 inside (the fast path, ≈ 4e-3
   * relative error per product); 0 computes in the input's float type. 8 bits at level 0 is a
   * slow path on the CPU (20–40× slower than float32): use 4.
   */
  accuracyLevel: number;
}

export const isQuantized = (w: Tensor | QuantizedMatrix): w is QuantizedMatrix => !(w as Tensor).graph;

/** x [..., K] · W [K, N] → [..., N] with W quantized. */
export function matmulNBits(x: Tensor, w: QuantizedMatrix): Tensor {
  if (x.dtype !== 'float32' && x.dtype !== 'float16') fail('MatMulNBits', 'needs a float32 or float16 input', x);
  if (x.shape[x.rank - 1] !== w.k) fail('MatMulNBits', `the input's last dimension is not K = ${w.k}`, x);
  const blocks = Math.ceil(w.k / w.blockSize);
  const bShape = [w.n, blocks, (w.blockSize * w.bits) / 8];
  if (w.b.dtype !== 'uint8' || w.b.shape.join() !== bShape.join())
    fail('MatMulNBits', `B must be uint8 [${bShape.join(', ')}]`, w.b);
  if (w.scales.dtype !== x.dtype || w.scales.shape.join() !== [w.n, blocks].join())
    fail('MatMulNBits', `scales must be ${x.dtype} [${w.n}, ${blocks}]`, w.scales);
  return x.graph.node(
    'MatMulNBits',
    [x, w.b, w.scales],
    {
      K: attr.int(w.k),
      N: attr.int(w.n),
      bits: attr.int(w.bits),
      block_size: attr.int(w.blockSize),
      accuracy_level: attr.int(w.accuracyLevel),
    },
    [{ dtype: x.dtype, shape: [...x.shape.slice(0, -1), w.n] }],
    { domain: 'com.microsoft' },
  )[0]!;
}

/** The shape of B read as one row per output, [N, blocks · block · bits/8], for gatherBlockQuantized. */
export function blockRowsShape(w: QuantizedMatrix): [number, number] {
  return [w.n, (Math.ceil(w.k / w.blockSize) * w.blockSize * w.bits) / 8];
}

/**
 * Rows of a block-quantized matrix, dequantized: out[..., k] = (rows[ids[...], k] − 2^(bits−1)) ·
 * scale, through ONNX Runtime's com.microsoft GatherBlockQuantized (gather axis 0, quantize axis
 * last, MatMulNBits' default zero point). `rows` is the matrix's B read as [N, blocks·block·bits/8]
 * (the same bytes as `w.b`, one row per output). Only the gathered rows are read: an embedding
 * lookup from int8 blocks touches ids × K bytes, where a float table would be mapped whole.
 */
export function gatherBlockQuantized(w: QuantizedMatrix, rows: Tensor, ids: Tensor): Tensor {
  const blocks = Math.ceil(w.k / w.blockSize);
  const want = blockRowsShape(w);
  if (rows.dtype !== 'uint8' || rows.shape.join() !== want.join())
    fail('GatherBlockQuantized', `rows must be uint8 [${want.join(', ')}]`, rows);
  if (ids.dtype !== 'int64' && ids.dtype !== 'int32') fail('GatherBlockQuantized', 'ids must be int32 or int64', ids);
  const padded = blocks * w.blockSize;
  const out = ids.graph.node(
    'GatherBlockQuantized',
    [rows, ids, w.scales],
    {
      gather_axis: attr.int(0),
      quantize_axis: attr.int(1),
      block_size: attr.int(w.blockSize),
      bits: attr.int(w.bits),
    },
    [{ dtype: w.scales.dtype, shape: [...ids.shape, padded] }],
    { domain: 'com.microsoft' },
  )[0]!;
  return padded === w.k ? out : slice(out, [0], [w.k], [-1]);
}

/**
 * The weight as floats [N, K] (the layout of B: row n holds W[:, n]), dequantized inside the
 * graph. B first goes through an Expand whose shape is read from `like` at run time (always [1]):
 * ONNX Runtime would otherwise constant-fold the whole chain at session creation into a float
 * copy of every weight; this way the float rows exist only while the product that reads them runs.
 */
export function dequantizeInGraph(w: QuantizedMatrix, dtype: Tensor['dtype'], like: Tensor): Tensor {
  return dequantizeRows(runtimeCopy(w.b, like), w.scales, w, w.n, dtype);
}

/** int64 [1] zero known only at run time (from `like`'s shape), so nothing built on it is folded. */
export function runtimeZero(like: Tensor): Tensor {
  const g = like.graph;
  const rows = g.node('Shape', [like], { start: attr.int(0), end: attr.int(1) }, [{ dtype: 'int64', shape: [1] }])[0]!;
  return mul(rows, g.scalar(0, 'int64'));
}

/** x as a value computed at run time (Expand to [1] with a shape read from `like`), never folded. */
function runtimeCopy(x: Tensor, like: Tensor): Tensor {
  const one = add(runtimeZero(like), x.graph.scalar(1, 'int64')); // [1] = [1], known only at run time
  return x.graph.node('Expand', [x, one], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/** Rows of B [rows, blocks, bytes] and their scales [rows, blocks] as floats [rows, K]. */
function dequantizeRows(b: Tensor, scales: Tensor, w: QuantizedMatrix, rows: number, dtype: Tensor['dtype']): Tensor {
  const g = b.graph;
  const blocks = Math.ceil(w.k / w.blockSize);
  let q: Tensor; // [rows, blocks, block] as integers in float
  if (w.bits === 8) {
    q = cast(b, dtype);
  } else {
    const b32 = cast(b, 'int32');
    const hi = div(b32, g.scalar(16, 'int32'));
    const lo = sub(b32, mul(hi, g.scalar(16, 'int32')));
    q = cast(reshape(concat([unsqueeze(lo, [-1]), unsqueeze(hi, [-1])], -1), [rows, blocks, w.blockSize]), dtype);
  }
  const deq = mul(sub(q, g.scalar(2 ** (w.bits - 1), dtype)), unsqueeze(scales, [-1])); // [rows, blocks, block]
  const flat = reshape(deq, [rows, blocks * w.blockSize]);
  return blocks * w.blockSize === w.k ? flat : slice(flat, [0], [w.k], [1]);
}

/** The largest float32 piece of a weight the backward dequantizes at once (see matmulDequantizedT). */
export const DEQUANT_CHUNK_BYTES = 64 * 2 ** 20;

/**
 * dy [..., N] · W' [N, K] → [..., K], with W' dequantized from w's blocks in pieces of rows of at
 * most `chunkBytes` as floats, summed: a large matrix (the head: vocabulary × hidden, 1 GB in
 * float32 at 128k × 2048) never exists as floats in one piece.
 */
export function matmulDequantizedT(dy: Tensor, w: QuantizedMatrix, chunkBytes = DEQUANT_CHUNK_BYTES): Tensor {
  const rowBytes = w.k * 4;
  const per = Math.max(1, Math.floor(chunkBytes / rowBytes));
  if (per >= w.n) return matmul(dy, dequantizeInGraph(w, dy.dtype, dy));
  // Rows n0..n1 of B and of the scales, sliced at run time: a Slice of a constant with constant
  // bounds would be folded into a copy of those rows at session creation.
  const zero = runtimeZero(dy);
  const g = dy.graph;
  const last = dy.rank - 1;
  let dx: Tensor | undefined;
  for (let n0 = 0; n0 < w.n; n0 += per) {
    const n1 = Math.min(w.n, n0 + per);
    const start = add(zero, g.scalar(n0, 'int64'));
    const end = add(zero, g.scalar(n1, 'int64'));
    const b = sliceDynamic(w.b, start, end, 0, n1 - n0);
    const scales = sliceDynamic(w.scales, start, end, 0, n1 - n0);
    const part = matmul(slice(dy, [n0], [n1], [last]), dequantizeRows(b, scales, w, n1 - n0, dy.dtype));
    dx = dx ? add(dx, part) : part;
  }
  return dx!;
}

// The base is frozen: only the input gets a gradient, dx = dy · Wᵀ = dy [..., N] · W' [N, K], with
// W' dequantized from the same blocks the forward read, in pieces of rows (matmulDequantizedT).
// The other choice, MatMulNBits on a second copy quantized along N, would keep that copy in memory
// for the whole run and quantize dy to int8 at accuracy level 4; this one holds no extra weights
// and is the exact gradient of the dequantized product, at the price of dequantizing each weight
// once per backward pass — small next to the product itself when a train batch has hundreds of rows.
defGrad('MatMulNBits', (n, [dy], needs) => {
  if (!needs[0]) return [undefined, undefined, undefined];
  const [, b, scales] = n.inputs as Tensor[];
  const w: QuantizedMatrix = {
    b: b!,
    scales: scales!,
    k: attrOf(n, 'K', 'int'),
    n: attrOf(n, 'N', 'int'),
    bits: attrOf(n, 'bits', 'int') as 4 | 8,
    blockSize: attrOf(n, 'block_size', 'int'),
    accuracyLevel: attrOf(n, 'accuracy_level', 'int'),
  };
  return [matmulDequantizedT(dy!, w), undefined, undefined];
});
