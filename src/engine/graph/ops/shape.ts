// Shape and indexing ops. Their backward rules are in backward/shape.ts.
import { attr, type Tensor } from '../graph';
import { isInteger, type DType } from '../dtype';
import { addDims, broadcastShapes, fmtShape, numel, type Dim, type Shape } from '../shape';
import { fail, normAxes, sameDtype } from './common';

/**
 * Reshape to `dims`. A symbolic dim the graph cannot read at run time yet (a product such as
 * "B*T") is passed as -1 for ONNX Runtime to infer; at most one such dim.
 */
export function reshape(x: Tensor, dims: Shape): Tensor {
  const g = x.graph;
  const a = numel(x.shape);
  const b = numel(dims);
  if (a !== undefined && b !== undefined && a !== b) fail('Reshape', `cannot reshape to ${fmtShape(dims)}`, x);
  if (x.shape.length === dims.length && x.shape.every((d, i) => d === dims[i])) return x;
  const unknown = dims.filter((d) => !g.hasDim(d));
  if (unknown.length > 1) fail('Reshape', `more than one dimension of ${fmtShape(dims)} is unknown at run time`, x);
  let shapeT: Tensor;
  if (unknown.length === 0) shapeT = g.shapeOf(dims);
  else if (dims.every((d) => typeof d === 'number' || !g.hasDim(d))) {
    shapeT = g.constant(
      'int64',
      [dims.length],
      dims.map((d) => (typeof d === 'number' ? d : -1)),
    );
  } else {
    const parts = dims.map((d) => (g.hasDim(d) ? g.dim(d) : g.constant('int64', [1], [-1])));
    shapeT = g.node('Concat', parts, { axis: attr.int(0) }, [{ dtype: 'int64', shape: [dims.length] }])[0]!;
  }
  return g.node('Reshape', [x, shapeT], {}, [{ dtype: x.dtype, shape: dims }])[0]!;
}

export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.rank || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
    fail('Transpose', `perm [${perm.join(', ')}] is not a permutation of the axes`, x);
  }
  if (perm.every((p, i) => p === i)) return x;
  return x.graph.node('Transpose', [x], { perm: attr.ints(perm) }, [
    { dtype: x.dtype, shape: perm.map((p) => x.shape[p]!) },
  ])[0]!;
}

export function unsqueeze(x: Tensor, axes: readonly number[]): Tensor {
  const rank = x.rank + axes.length;
  const ax = normAxes('Unsqueeze', axes, rank, x);
  const shape: Dim[] = [];
  let j = 0;
  for (let i = 0; i < rank; i++) shape.push(ax.includes(i) ? 1 : x.shape[j++]!);
  const g = x.graph;
  return g.node('Unsqueeze', [x, g.constant('int64', [ax.length], ax)], {}, [{ dtype: x.dtype, shape }])[0]!;
}

export function squeeze(x: Tensor, axes: readonly number[]): Tensor {
  const ax = normAxes('Squeeze', axes, x.rank, x);
  for (const a of ax) if (x.shape[a] !== 1) fail('Squeeze', `axis ${a} has size ${x.shape[a]}, not 1`, x);
  const g = x.graph;
  const shape = x.shape.filter((_, i) => !ax.includes(i));
  return g.node('Squeeze', [x, g.constant('int64', [ax.length], ax)], {}, [{ dtype: x.dtype, shape }])[0]!;
}

export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('Concat: no inputs');
  const dtype = sameDtype('Concat', ...xs);
  const r = xs[0]!.rank;
  const a = normAxes('Concat', [axis], r, xs[0]!)[0]!;
  const shape = [...xs[0]!.shape];
  for (const x of xs.slice(1)) {
    if (x.rank !== r || x.shape.some((d, i) => i !== a && d !== shape[i]))
      fail('Concat', `shapes differ off axis ${a}`, ...xs);
    shape[a] = addDims(shape[a]!, x.shape[a]!);
  }
  if (xs.length === 1) return xs[0]!;
  return xs[0]!.graph.node('Concat', xs, { axis: attr.int(a) }, [{ dtype, shape }])[0]!;
}

const BIG = 2 ** 62;

function sliceDim(d: Dim, start: number, end: number, name: string): Dim {
  if (typeof d === 'number') {
    const s = Math.min(Math.max(start < 0 ? start + d : start, 0), d);
    const e = Math.min(Math.max(end < 0 ? end + d : end, 0), d);
    return Math.max(0, e - s);
  }
  if (start === 0 && end >= BIG) return d;
  if (start >= 0 && end >= 0 && end < BIG) return end - start;
  if (start < 0 && end >= BIG) return -start;
  return name;
}

/**
 * x[starts:ends] along `axes` (step 1). `ends` beyond the dimension (e.g. Infinity) mean "to the end".
 */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[], axes: readonly number[]): Tensor {
  const ax = normAxes('Slice', axes, x.rank, x);
  if (starts.length !== ax.length || ends.length !== ax.length)
    fail('Slice', 'starts, ends and axes differ in length', x);
  const clampEnd = (e: number) => (e >= BIG ? BIG : e);
  const shape = [...x.shape];
  const g = x.graph;
  ax.forEach(
    (a, i) =>
      (shape[a] = sliceDim(x.shape[a]!, starts[i]!, clampEnd(ends[i]!), `${x.name}_s${a}_${starts[i]}_${ends[i]}`)),
  );
  return g.node(
    'Slice',
    [
      x,
      g.constant('int64', [ax.length], starts),
      g.constant('int64', [ax.length], ends.map(clampEnd)),
      g.constant('int64', [ax.length], ax),
    ],
    {},
    [{ dtype: x.dtype, shape }],
  )[0]!;
}

/** x[start:end] along one axis, with start and end int64 [1] tensors; `size` names the result's dim. */
export function sliceDynamic(x: Tensor, start: Tensor, end: Tensor, axis: number, size: Dim): Tensor {
  const g = x.graph;
  const a = normAxes('Slice', [axis], x.rank, x)[0]!;
  const shape = [...x.shape];
  shape[a] = size;
  return g.node('Slice', [x, start, end, g.constant('int64', [1], [a])], {}, [{ dtype: x.dtype, shape }])[0]!;
}

/** Zero padding to `outShape`; `pads` is int64 [2·rank] (begins then ends), as in ONNX Pad. */
export function pad(x: Tensor, pads: Tensor, outShape: Shape): Tensor {
  if (outShape.length !== x.rank) fail('Pad', `output rank ${outShape.length} differs from the input's`, x);
  return x.graph.node('Pad', [x, pads], { mode: attr.string('constant') }, [{ dtype: x.dtype, shape: outShape }])[0]!;
}

/** Gather along `axis`: out = data[..., indices, ...]. */
export function gather(data: Tensor, indices: Tensor, axis = 0): Tensor {
  if (!isInteger(indices.dtype)) fail('Gather', 'indices must be int32 or int64', indices);
  const a = normAxes('Gather', [axis], data.rank, data)[0]!;
  const shape = [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)];
  return data.graph.node('Gather', [data, indices], { axis: attr.int(a) }, [{ dtype: data.dtype, shape }])[0]!;
}

export function gatherElements(data: Tensor, indices: Tensor, axis: number): Tensor {
  if (!isInteger(indices.dtype)) fail('GatherElements', 'indices must be int32 or int64', indices);
  if (indices.rank !== data.rank) fail('GatherElements', 'indices and data need the same rank', data, indices);
  const a = normAxes('GatherElements', [axis], data.rank, data)[0]!;
  return data.graph.node('GatherElements', [data, indices], { axis: attr.int(a) }, [
    { dtype: data.dtype, shape: indices.shape },
  ])[0]!;
}

export function scatterElements(
  data: Tensor,
  indices: Tensor,
  updates: Tensor,
  axis: number,
  reduction: 'none' | 'add' = 'none',
): Tensor {
  sameDtype('ScatterElements', data, updates);
  if (indices.rank !== data.rank) fail('ScatterElements', 'indices and data need the same rank', data, indices);
  const a = normAxes('ScatterElements', [axis], data.rank, data)[0]!;
  return data.graph.node(
    'ScatterElements',
    [data, indices, updates],
    { axis: attr.int(a), reduction: attr.string(reduction) },
    [{ dtype: data.dtype, shape: data.shape }],
  )[0]!;
}

export function scatterND(data: Tensor, indices: Tensor, updates: Tensor, reduction: 'none' | 'add' = 'none'): Tensor {
  sameDtype('ScatterND', data, updates);
  return data.graph.node('ScatterND', [data, indices, updates], { reduction: attr.string(reduction) }, [
    { dtype: data.dtype, shape: data.shape },
  ])[0]!;
}

export function expand(x: Tensor, dims: Shape): Tensor {
  const shape = broadcastShapes(x.shape, dims);
  if (!shape) fail('Expand', `cannot expand to ${fmtShape(dims)}`, x);
  if (shape.length === x.rank && shape.every((d, i) => d === x.shape[i])) return x;
  return x.graph.node('Expand', [x, x.graph.shapeOf(dims)], {}, [{ dtype: x.dtype, shape }])[0]!;
}

/** A tensor of zeros; `like` lends the graph (and the symbolic dims' run-time source). */
export function zeros(dims: Shape, dtype: DType, like: Tensor): Tensor {
  const g = like.graph;
  const value = g.constant(dtype, [1], [0]);
  const init = g.initializers.find((i) => i.tensor === value)!;
  return g.node('ConstantOfShape', [g.shapeOf(dims)], { value: attr.tensor(dtype, [1], init.data) }, [
    { dtype, shape: dims },
  ])[0]!;
}

export const zerosLike = (x: Tensor): Tensor => zeros(x.shape, x.dtype, x);

/** Lower (upper = false) or upper triangle, keeping diagonal k and beyond, as in ONNX Trilu. */
export function trilu(x: Tensor, upper: boolean, k = 0): Tensor {
  if (x.rank < 2) fail('Trilu', 'needs rank ≥ 2', x);
  const g = x.graph;
  return g.node('Trilu', [x, g.constant('int64', [], [k])], { upper: attr.int(upper ? 1 : 0) }, [
    { dtype: x.dtype, shape: x.shape },
  ])[0]!;
}

/** [start, start+delta, …) up to limit; scalars of one dtype. `length` names the result's dim. */
export function range(start: Tensor, limit: Tensor, delta: Tensor, length: Dim): Tensor {
  const dtype = sameDtype('Range', start, limit, delta);
  if (start.rank || limit.rank || delta.rank)
    fail('Range', 'start, limit and delta must be scalars', start, limit, delta);
  return start.graph.node('Range', [start, limit, delta], {}, [{ dtype, shape: [length] }])[0]!;
}

export function shapeOfTensor(x: Tensor): Tensor {
  return x.graph.node('Shape', [x], {}, [{ dtype: 'int64', shape: [x.rank] }])[0]!;
}

/** Splits along `axis` into parts of the given sizes. */
export function split(x: Tensor, sizes: readonly Dim[], axis: number): Tensor[] {
  const a = normAxes('Split', [axis], x.rank, x)[0]!;
  const total = sizes.reduce<Dim>((p, q) => addDims(p, q), 0);
  if (typeof total === 'number' && typeof x.shape[a] === 'number' && total !== x.shape[a])
    fail('Split', `sizes [${sizes.join(', ')}] do not add up to axis ${a}`, x);
  const g = x.graph;
  return g.node(
    'Split',
    [x, g.shapeOf(sizes)],
    { axis: attr.int(a) },
    sizes.map((s) => {
      const shape = [...x.shape];
      shape[a] = s;
      return { dtype: x.dtype, shape };
    }),
  );
}

/**
 * The k largest values along the last axis, in descending order, and their indices (int64). No
 * gradient rule: it serves graphs that are run, not differentiated (the teacher's top-k log-probs).
 */
export function topK(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  const last = x.shape[x.rank - 1];
  if (!Number.isInteger(k) || k < 1 || (typeof last === 'number' && k > last))
    fail('TopK', `k must be an integer in [1, ${last}] (got ${k})`, x);
  const shape = [...x.shape.slice(0, -1), k];
  const [values, indices] = x.graph.node(
    'TopK',
    [x, x.graph.constant('int64', [1], [k])],
    { axis: attr.int(-1), largest: attr.int(1), sorted: attr.int(1) },
    [
      { dtype: x.dtype, shape },
      { dtype: 'int64', shape },
    ],
  );
  return { values: values!, indices: indices! };
}
