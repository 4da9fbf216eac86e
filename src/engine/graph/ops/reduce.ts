// Reductions and normalised exponentials. Their backward rules are in backward/reduce.ts.
import { attr, type Tensor } from '../graph';
import { isFloat } from '../dtype';
import type { Dim } from '../shape';
import { fail, normAxes } from './common';

function reduce(op: string, x: Tensor, axes: readonly number[], keepdims: boolean): Tensor {
  if (!isFloat(x.dtype) && op !== 'ReduceSum' && op !== 'ReduceMax' && op !== 'ReduceProd')
    fail(op, 'needs a float tensor', x);
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

export const reduceSum = (x: Tensor, axes: readonly number[], keepdims = false): Tensor =>
  reduce('ReduceSum', x, axes, keepdims);

export const reduceMean = (x: Tensor, axes: readonly number[], keepdims = false): Tensor =>
  reduce('ReduceMean', x, axes, keepdims);

export const reduceMax = (x: Tensor, axes: readonly number[], keepdims = false): Tensor =>
  reduce('ReduceMax', x, axes, keepdims);

/** Product over `axes` (also of integer tensors: the size of symbolic dimensions). */
export const reduceProd = (x: Tensor, axes: readonly number[], keepdims = false): Tensor =>
  reduce('ReduceProd', x, axes, keepdims);

export function softmax(x: Tensor, axis = -1): Tensor {
  if (!isFloat(x.dtype)) fail('Softmax', 'needs a float tensor', x);
  normAxes('Softmax', [axis], x.rank, x);
  return x.graph.node('Softmax', [x], { axis: attr.int(axis) }, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  if (!isFloat(x.dtype)) fail('LogSoftmax', 'needs a float tensor', x);
  normAxes('LogSoftmax', [axis], x.rank, x);
  return x.graph.node('LogSoftmax', [x], { axis: attr.int(axis) }, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}
