// Matrix products. The backward rule is in backward/linalg.ts.
import { attr, type Tensor } from '../graph';
import { broadcastShapes, type Dim } from '../shape';
import { fail, sameDtype } from './common';

/** a [..., M, K] @ b [..., K, N] → [..., M, N], batch dimensions broadcast. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  const dtype = sameDtype('MatMul', a, b);
  if (a.rank < 2 || b.rank < 2) fail('MatMul', 'both operands need rank ≥ 2', a, b);
  const k1 = a.shape[a.rank - 1]!;
  const k2 = b.shape[b.rank - 2]!;
  if (k1 !== k2) fail('MatMul', `inner dimensions differ (${k1} vs ${k2})`, a, b);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  if (!batch) fail('MatMul', 'batch dimensions do not broadcast', a, b);
  const shape: Dim[] = [...batch, a.shape[a.rank - 2]!, b.shape[b.rank - 1]!];
  return a.graph.node('MatMul', [a, b], {}, [{ dtype, shape }])[0]!;
}

/**
 * a [M, K] @ bᵀ, with b [N, K] → [M, N] (ONNX Gemm, transB = 1): the product with a matrix's
 * transpose without a Transpose node. ONNX Runtime folds a Transpose of a constant into a second,
 * transposed copy of the weight; Gemm reads the weight as it is stored. No backward rule (it is
 * emitted by backward rules only).
 */
export function matmulTransB(a: Tensor, b: Tensor): Tensor {
  const dtype = sameDtype('Gemm', a, b);
  if (a.rank !== 2 || b.rank !== 2) fail('Gemm', 'both operands need rank 2', a, b);
  if (a.shape[1] !== b.shape[1]) fail('Gemm', `inner dimensions differ (${a.shape[1]} vs ${b.shape[1]})`, a, b);
  return a.graph.node('Gemm', [a, b], { transB: attr.int(1) }, [{ dtype, shape: [a.shape[0]!, b.shape[0]!] }])[0]!;
}
