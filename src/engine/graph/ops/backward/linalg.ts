// Backward rule of the matrix product (../linalg.ts).
import type { Tensor } from '../../graph';
import type { Dim } from '../../shape';
import { defGrad } from '../registry';
import { matmul, matmulTransB } from '../linalg';
import { reshape, transpose } from '../shape';
import { unbroadcast } from './elementwise';

const swapLast = (x: Tensor): Tensor => {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return transpose(x, perm);
};

const flat = (x: Tensor): Tensor => {
  const lead = x.shape.slice(0, -1);
  const rows: Dim = lead.every((d) => typeof d === 'number')
    ? (lead as number[]).reduce((p, q) => p * q, 1)
    : lead.join('*');
  return reshape(x, [rows, x.shape[x.rank - 1]!]);
};

defGrad('MatMul', (n, [dy], needs) => {
  const [a, b] = n.inputs as Tensor[];
  let da: Tensor | undefined;
  if (needs[0]) {
    // A weight b [K, N]: dy @ bᵀ as one Gemm over every row, reading b as stored (a Transpose of a
    // constant weight would be folded by ONNX Runtime into a second, transposed copy of it).
    if (b!.rank === 2)
      da = reshape(matmulTransB(a!.rank === 2 ? dy! : flat(dy!), b!), a!.shape); // [..., M, K]
    else da = unbroadcast(matmul(dy!, swapLast(b!)), a!); // [..., M, K]
  }
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
