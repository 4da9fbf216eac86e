// Every op's backward rule against float64 central finite differences on random non-zero inputs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { op, type Tensor } from '../../../src/engine/graph';
import { gradCheck, type CheckInput } from '../helpers/gradcheck';

const results: [string, number, number][] = [];
const TOL = 1e-5;

function check(
  name: string,
  inputs: CheckInput[],
  f: (xs: Tensor[]) => Tensor,
  o: { h?: number; tol?: number } = {},
): void {
  test(`${name} gradient matches finite differences`, async () => {
    const r = await gradCheck(name, inputs, f, { h: o.h });
    const tol = o.tol ?? TOL;
    results.push([name, r.maxRel, r.checked]);
    assert.ok(r.checked > 0, 'nothing was checked');
    assert.ok(
      r.maxRel < tol,
      `${name}: max relative error ${r.maxRel.toExponential(2)} ≥ ${tol} (${JSON.stringify(r.perInput)})`,
    );
  });
}

const F = (name: string, ...shape: number[]): CheckInput => ({ name, shape });
const P = (name: string, ...shape: number[]): CheckInput => ({ name, shape, kind: 'positive' });

check('Add (broadcast)', [F('a', 3, 4), F('b', 4)], ([a, b]) => op.add(a!, b!));
check('Add (broadcast middle)', [F('a', 2, 3, 4), F('b', 2, 1, 4)], ([a, b]) => op.add(a!, b!));
check('Sub (broadcast)', [F('a', 3, 1), F('b', 1, 4)], ([a, b]) => op.sub(a!, b!));
check('Mul (broadcast)', [F('a', 2, 3, 4), F('b', 3, 1)], ([a, b]) => op.mul(a!, b!));
check('Div', [F('a', 3, 4), P('b', 3, 4)], ([a, b]) => op.div(a!, b!));
check('Pow (x²)', [F('x', 3, 5)], ([x]) => op.pow(x!, 2));
check('Pow (x^-0.5)', [P('x', 3, 5)], ([x]) => op.pow(x!, -0.5));
check('Pow (tensor exponent)', [P('x', 3, 4), F('e', 4)], ([x, e]) => op.pow(x!, e!));
check('Max (elementwise)', [F('a', 4, 5), F('b', 4, 5)], ([a, b]) => op.max2(a!, b!));
check('Min (elementwise)', [F('a', 4, 5), F('b', 5)], ([a, b]) => op.min2(a!, b!));
check('Neg', [F('x', 6)], ([x]) => op.neg(x!));
check('Sqrt', [P('x', 2, 5)], ([x]) => op.sqrt(x!));
check('Exp', [F('x', 2, 5)], ([x]) => op.exp(x!));
check('Log', [P('x', 2, 5)], ([x]) => op.log(x!));
check('Reciprocal', [P('x', 2, 5)], ([x]) => op.reciprocal(x!));
check('Sigmoid', [F('x', 3, 4)], ([x]) => op.sigmoid(x!));
check('Tanh', [F('x', 3, 4)], ([x]) => op.tanh(x!));
check('Relu', [F('x', 3, 4)], ([x]) => op.relu(x!));
check('Abs', [F('x', 3, 4)], ([x]) => op.abs(x!));
check('SiLU', [F('x', 3, 4)], ([x]) => op.silu(x!));
check('Identity', [F('x', 3, 4)], ([x]) => op.identity(x!));
check('Softmax', [F('x', 3, 7)], ([x]) => op.softmax(x!, -1));
check('Softmax (axis 0)', [F('x', 5, 3)], ([x]) => op.softmax(x!, 0));
check('LogSoftmax', [F('x', 3, 7)], ([x]) => op.logSoftmax(x!, -1));
check('ReduceSum', [F('x', 2, 3, 4)], ([x]) => op.reduceSum(x!, [1], false));
check('ReduceSum (keepdims, two axes)', [F('x', 2, 3, 4)], ([x]) => op.reduceSum(x!, [0, 2], true));
check('ReduceMean', [F('x', 2, 3, 4)], ([x]) => op.reduceMean(x!, [-1], true));
check('ReduceMean (symbolic dims)', [{ name: 'x', shape: [2, 3, 4], dims: ['B', 'T', 4] }], ([x]) =>
  op.reduceMean(x!, [0, 1], false),
);
check('ReduceMax', [F('x', 3, 6)], ([x]) => op.reduceMax(x!, [1], false));
check('MatMul (2-D)', [F('a', 3, 4), F('b', 4, 5)], ([a, b]) => op.matmul(a!, b!));
check('MatMul (batched)', [F('a', 2, 3, 4), F('b', 2, 4, 5)], ([a, b]) => op.matmul(a!, b!));
check('MatMul (shared weight)', [F('a', 2, 3, 4), F('b', 4, 5)], ([a, b]) => op.matmul(a!, b!));
check(
  'MatMul (shared weight, symbolic)',
  [{ name: 'a', shape: [2, 3, 4], dims: ['B', 'T', 4] }, F('b', 4, 5)],
  ([a, b]) => op.matmul(a!, b!),
);
check('MatMul (broadcast batch)', [F('a', 2, 1, 3, 4), F('b', 3, 4, 2)], ([a, b]) => op.matmul(a!, b!));
check('Transpose', [F('x', 2, 3, 4)], ([x]) => op.transpose(x!, [2, 0, 1]));
check('Reshape', [F('x', 2, 3, 4)], ([x]) => op.reshape(x!, [6, 4]));
check('Reshape (symbolic)', [{ name: 'x', shape: [2, 3, 4], dims: ['B', 'T', 4] }], ([x]) =>
  op.reshape(x!, ['B', 'T', 2, 2]),
);
check('Unsqueeze', [F('x', 3, 4)], ([x]) => op.unsqueeze(x!, [0, 2]));
check('Squeeze', [F('x', 3, 1, 4)], ([x]) => op.squeeze(x!, [1]));
check('Concat', [F('a', 2, 3), F('b', 2, 5)], ([a, b]) => op.concat([a!, b!], 1));
check(
  'Concat (symbolic)',
  [
    { name: 'a', shape: [2, 3], dims: [2, 'P'] },
    { name: 'b', shape: [2, 4], dims: [2, 'T'] },
  ],
  ([a, b]) => op.concat([a!, b!], 1),
);
check('Slice', [F('x', 4, 6)], ([x]) => op.slice(x!, [1, 2], [3, 5], [0, 1]));
check('Slice (negative start, to the end)', [F('x', 4, 6)], ([x]) => op.slice(x!, [-2], [Infinity], [1]));
check('Slice (symbolic)', [{ name: 'x', shape: [2, 5, 3], dims: ['B', 'T', 3] }], ([x]) =>
  op.slice(x!, [1], [Infinity], [1]),
);
check(
  'Gather (embedding rows, repeated)',
  [F('w', 5, 3), { name: 'i', shape: [2, 3], kind: 'int', ints: [0, 2, 2, 4, 0, 1] }],
  ([w, i]) => op.gather(w!, i!, 0),
);
check('GatherElements', [F('x', 3, 4), { name: 'i', shape: [3, 2], kind: 'int', ints: [0, 3, 1, 1, 2, 0] }], ([x, i]) =>
  op.gatherElements(x!, i!, 1),
);
check(
  'ScatterElements',
  [F('x', 3, 4), { name: 'i', shape: [3, 1], kind: 'int', ints: [2, 0, 3] }, F('u', 3, 1)],
  ([x, i, u]) => op.scatterElements(x!, i!, u!, 1),
);
check('Expand', [F('x', 3, 1)], ([x]) => op.expand(x!, [2, 3, 4]));
check(
  'Where',
  [{ name: 'c', shape: [3, 4], kind: 'bool', ints: [1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0] }, F('a', 3, 4), F('b', 4)],
  ([c, a, b]) => op.where(c!, a!, b!),
);
// Through float32 the function is only float32-accurate: a quadratic, whose central difference is
// exact, with a step large enough for float32 rounding to stay small.
check(
  'Cast (float64 → float32 → float64)',
  [F('x', 3, 4)],
  ([x]) => op.cast(op.mul(op.cast(x!, 'float32'), op.cast(x!, 'float32')), 'float64'),
  { h: 1e-2, tol: 1e-4 },
);
check('Trilu (lower)', [F('x', 4, 4)], ([x]) => op.trilu(x!, false));
check('Trilu (upper, k=1)', [F('x', 2, 4, 4)], ([x]) => op.trilu(x!, true, 1));
check('Split', [F('x', 2, 7)], ([x]) => {
  const [a, b, c] = op.split(x!, [2, 3, 2], 1);
  return op.add(op.mul(a!, c!), op.reduceSum(b!, [1], true));
});
check('Split (one part unused)', [F('x', 6, 2)], ([x]) => op.split(x!, [4, 2], 0)[1]!);
check('RMSNorm', [F('x', 2, 3, 8), F('w', 8)], ([x, w]) => op.rmsNorm(x!, w!, 1e-5));
check('RoPE', [F('x', 1, 2, 3, 4), F('cos', 3, 4), F('sin', 3, 4)], ([x, c, s]) => op.applyRope(x!, c!, s!));
check('used twice (gradient accumulation)', [F('x', 3, 4)], ([x]) => op.mul(op.exp(x!), op.sigmoid(x!)));

after(() => {
  const w = Math.max(...results.map((r) => r[0].length));
  console.log(`\nop gradient check (float64 finite differences, h=1e-6): worst relative error per op`);
  for (const [n, e, k] of results.sort((a, b) => b[1] - a[1]))
    console.log(`  ${n.padEnd(w)}  ${e.toExponential(2)}  (${k} elements)`);
});
