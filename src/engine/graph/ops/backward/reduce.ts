// Backward rules of the reductions and normalised exponentials (../reduce.ts).
import type { Tensor } from '../../graph';
import { defGrad } from '../registry';
import { attrOf } from '../common';
import { cast, div, equal, exp, mul, sub } from '../elementwise';
import { reduceProd, reduceSum } from '../reduce';
import { expand, reshape } from '../shape';

const reducedAxes = (n: { inputs: readonly (Tensor | undefined)[] }, rank: number): number[] => {
  const axesT = n.inputs[1]!;
  const init = axesT.graph.initializers.find((i) => i.tensor === axesT)!;
  return Array.from(init.data as BigInt64Array, (v) => {
    const a = Number(v);
    return a < 0 ? a + rank : a;
  });
};

/** Broadcasts a reduced gradient back over the reduced axes. */
function spread(dy: Tensor, x: Tensor, axes: number[], keepdims: boolean): Tensor {
  const kept = keepdims
    ? dy
    : reshape(
        dy,
        x.shape.map((d, i) => (axes.includes(i) ? 1 : d)),
      );
  return expand(kept, x.shape);
}

/** How many elements each output of a reduction over `axes` saw, as a scalar of x's dtype. */
function countOf(x: Tensor, axes: number[]): Tensor {
  const dims = axes.map((a) => x.shape[a]!);
  if (dims.every((d) => typeof d === 'number'))
    return x.graph.scalar(
      (dims as number[]).reduce((a, b) => a * b, 1),
      x.dtype,
    );
  const g = x.graph;
  const parts = g.shapeOf(dims);
  const prod = reduceProd(parts, [0], false);
  return cast(prod, x.dtype);
}

defGrad('ReduceSum', (n, [dy]) => {
  const x = n.inputs[0]!;
  return [spread(dy!, x, reducedAxes(n, x.rank), attrOf(n, 'keepdims', 'int') === 1)];
});

defGrad('ReduceMean', (n, [dy]) => {
  const x = n.inputs[0]!;
  const axes = reducedAxes(n, x.rank);
  return [div(spread(dy!, x, axes, attrOf(n, 'keepdims', 'int') === 1), countOf(x, axes))];
});

defGrad('ReduceMax', (n, [dy]) => {
  const x = n.inputs[0]!;
  const axes = reducedAxes(n, x.rank);
  const keep = attrOf(n, 'keepdims', 'int') === 1;
  const y = spread(n.outputs[0]!, x, axes, keep);
  // Ties share the gradient equally.
  const mask = cast(equal(x, y), x.dtype);
  const count = spread(reduceSum(mask, axes, true), x, axes, true);
  return [div(mul(mask, spread(dy!, x, axes, keep)), count)];
});

defGrad('Softmax', (n, [dy]) => {
  const y = n.outputs[0]!;
  const axis = attrOf(n, 'axis', 'int');
  // dx = y ⊙ (dy − Σ dy⊙y)
  return [mul(y, sub(dy!, reduceSum(mul(dy!, y), [axis], true)))];
});

defGrad('LogSoftmax', (n, [dy]) => {
  const y = n.outputs[0]!;
  const axis = attrOf(n, 'axis', 'int');
  // dx = dy − softmax(x) · Σ dy
  return [sub(dy!, mul(exp(y), reduceSum(dy!, [axis], true)))];
});
