// Matrix products.
import type { Tensor } from '../graph';
import { broadcastShapes, type Dim } from '../shape';
import { defGrad } from './registry';
import { fail, sameDtype } from './common';
import { unbroadcast } from './elementwise';
import { reshape, transpose } from './shape';

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

const swapLast = (x: Tensor): Tensor => {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return transpose(x, perm);
};

const flat = (x: Tensor): Tensor => {
  const lead = x.shape.slice(0, -1);
  const rows: Dim = lead.every((d) => typeof d === 'number') ? (lead as number[]).reduce((p, q) => p * q, 1) : lead.join('*');
  return reshape(x, [rows, x.shape[x.rank - 1]!]);
};

defGrad('MatMul', (n, [dy], needs) => {
  const [a, b] = n.inputs as Tensor[];
  const da = needs[0] ? unbroadcast(matmul(dy!, swapLast(b!)), a!) : undefined; // [..., M, K]
  let db: Tensor | undefined;
  if (needs[1]) {
    if (b!.rank === 2 && a!.rank > 2) {
      // A weight shared by every batch row: one [K, rows] @ [rows, N] product instead of a batched one and a sum.
      db = matmul(transpose(flat(a!), [1, 0]), flat(dy!)); // [K, N]
    } else {
      db = unbroadcast(matmul(swapLast(a!), dy!), b!); // [..., K, N]
    }
  }
  return [da, db];
});
