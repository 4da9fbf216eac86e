// Matrix products. The backward rule is in backward/linalg.ts.
import type { Tensor } from '../graph';
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
