// Reductions and normalised exponentials, with their backward rules.
import { attr, type Tensor } from '../graph';
import { isFloat } from '../dtype';
import type { Dim } from '../shape';
import { defGrad } from './registry';
import { attrOf, fail, normAxes } from './common';
import { cast, div, equal, exp, mul, sub } from './elementwise';
import { expand, reshape } from './shape';

function reduce(op: string, x: Tensor, axes: readonly number[], keepdims: boolean): Tensor {
  if (!isFloat(x.dtype) && op !== 'ReduceSum' && op !== 'ReduceMax' && op !== 'ReduceProd') fail(op, 'needs a float tensor', x);
  const ax = normAxes(op, axes, x.rank, x);
  if (ax.length === 0) fail(op, 'no axes given', x);
  const shape: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!ax.includes(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  const g = x.graph;
  const axesT = g.constant('int64', [ax.length], ax);
  return g.node(op, [x, axesT], { keepdims: attr.int(keepdims ? 1 : 0) }, [{ dtype: x.dtype, shape }])[0]!;
}

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
  const kept = keepdims ? dy : reshape(dy, x.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
  return expand(kept, x.shape);
}

/** How many elements each output of a reduction over `axes` saw, as a scalar of x's dtype. */
function countOf(x: Tensor, axes: number[]): Tensor {
  const dims = axes.map((a) => x.shape[a]!);
  if (dims.every((d) => typeof d === 'number')) return x.graph.scalar((dims as number[]).reduce((a, b) => a * b, 1), x.dtype);
  const g = x.graph;
  const parts = g.shapeOf(dims);
  const prod = reduce('ReduceProd', parts, [0], false);
  return cast(prod, x.dtype);
}

export const reduceSum = (x: Tensor, axes: readonly number[], keepdims = false): Tensor => reduce('ReduceSum', x, axes, keepdims);
defGrad('ReduceSum', (n, [dy]) => {
  const x = n.inputs[0]!;
  return [spread(dy!, x, reducedAxes(n, x.rank), attrOf(n, 'keepdims', 'int') === 1)];
});

export const reduceMean = (x: Tensor, axes: readonly number[], keepdims = false): Tensor => reduce('ReduceMean', x, axes, keepdims);
defGrad('ReduceMean', (n, [dy]) => {
  const x = n.inputs[0]!;
  const axes = reducedAxes(n, x.rank);
  return [div(spread(dy!, x, axes, attrOf(n, 'keepdims', 'int') === 1), countOf(x, axes))];
});

export const reduceMax = (x: Tensor, axes: readonly number[], keepdims = false): Tensor => reduce('ReduceMax', x, axes, keepdims);
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

export function softmax(x: Tensor, axis = -1): Tensor {
  if (!isFloat(x.dtype)) fail('Softmax', 'needs a float tensor', x);
  normAxes('Softmax', [axis], x.rank, x);
  return x.graph.node('Softmax', [x], { axis: attr.int(axis) }, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}
defGrad('Softmax', (n, [dy]) => {
  const y = n.outputs[0]!;
  const axis = attrOf(n, 'axis', 'int');
  // dx = y ⊙ (dy − Σ dy⊙y)
  return [mul(y, sub(dy!, reduceSum(mul(dy!, y), [axis], true)))];
});

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  if (!isFloat(x.dtype)) fail('LogSoftmax', 'needs a float tensor', x);
  normAxes('LogSoftmax', [axis], x.rank, x);
  return x.graph.node('LogSoftmax', [x], { axis: attr.int(axis) }, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}
defGrad('LogSoftmax', (n, [dy]) => {
  const y = n.outputs[0]!;
  const axis = attrOf(n, 'axis', 'int');
  // dx = dy − softmax(x) · Σ dy
  return [sub(dy!, mul(exp(y), reduceSum(dy!, [axis], true)))];
});
