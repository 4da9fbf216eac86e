// Backward rules of the shape and indexing ops (../shape.ts).
import type { Tensor } from '../../graph';
import { defGrad } from '../registry';
import { attrOf } from '../common';
import { add, cast, sub } from '../elementwise';
import {
  concat,
  gather,
  gatherElements,
  pad,
  reshape,
  scatterElements,
  scatterND,
  sliceDynamic,
  transpose,
  trilu,
  unsqueeze,
  zeros,
  zerosLike,
} from '../shape';
import { unbroadcast } from './elementwise';

defGrad('Reshape', (n, [dy]) => [reshape(dy!, n.inputs[0]!.shape)]);

defGrad('Transpose', (n, [dy]) => {
  const perm = attrOf(n, 'perm', 'ints');
  const inv: number[] = [];
  perm.forEach((p, i) => (inv[p] = i));
  return [transpose(dy!, inv)];
});

defGrad('Unsqueeze', (n, [dy]) => [reshape(dy!, n.inputs[0]!.shape)]);

defGrad('Squeeze', (n, [dy]) => [reshape(dy!, n.inputs[0]!.shape)]);

defGrad('Concat', (n, [dy], needs) => {
  const axis = attrOf(n, 'axis', 'int');
  const g = dy!.graph;
  let offset = g.constant('int64', [1], [0]);
  return n.inputs.map((x, i) => {
    const size = x!.shape[axis]!;
    const end = add(offset, g.dim(size));
    const part = needs[i] ? sliceDynamic(dy!, offset, end, axis, size) : undefined;
    offset = end;
    return part;
  });
});

defGrad('Slice', (n, [dy]) => {
  const [x, startsT, endsT, axesT, stepsT] = n.inputs as (Tensor | undefined)[];
  if (stepsT) throw new Error('Slice backward: only step 1 is supported');
  const g = dy!.graph;
  const r = x!.rank;
  const axes = axesT ? constValues(axesT).map((a) => (a < 0 ? a + r : a)) : x!.shape.map((_, i) => i);
  // pads = [begin_0 … begin_{r-1}, end_0 … end_{r-1}]; begin = start, end = dim − stop (clamped to the dim).
  const zero = g.constant('int64', [1], [0]);
  const begins: Tensor[] = x!.shape.map(() => zero);
  const endsPad: Tensor[] = x!.shape.map(() => zero);
  axes.forEach((a, i) => {
    const dimT = g.dim(x!.shape[a]!);
    const pick = (t: Tensor) => gather(t, g.constant('int64', [1], [i]), 0);
    const norm = (v: Tensor) => {
      // v < 0 → v + dim, then clamp to [0, dim].
      const neg = cast(lessThanZero(v), 'int64');
      const shifted = add(v, mul64(neg, dimT));
      return min64(max64(shifted, zero), dimT);
    };
    const s = norm(pick(startsT!));
    const e = norm(pick(endsT!));
    begins[a] = s;
    endsPad[a] = sub(dimT, e);
  });
  const pads = concat([...begins, ...endsPad], 0);
  return [pad(dy!, pads, x!.shape)];
});

defGrad('Pad', () => {
  throw new Error('Pad backward is not implemented: Pad is only emitted by backward rules');
});

defGrad('Gather', (n, [dy], needs) => {
  const [data, indices] = n.inputs as Tensor[];
  if (attrOf(n, 'axis', 'int') !== 0) throw new Error('Gather backward: only axis 0 is supported');
  if (!needs[0]) return [undefined, undefined];
  // Rows gathered more than once receive the sum of their gradients.
  const idx = unsqueeze(cast(indices!, 'int64'), [-1]); // [...indices, 1]
  return [scatterND(zeros(data!.shape, dy!.dtype, dy!), idx, dy!, 'add'), undefined];
});

defGrad('GatherElements', (n, [dy]) => {
  const [data, indices] = n.inputs as Tensor[];
  const axis = attrOf(n, 'axis', 'int');
  return [scatterElements(zeros(data!.shape, dy!.dtype, dy!), indices!, dy!, axis, 'add'), undefined];
});

defGrad('ScatterElements', (n, [dy], needs) => {
  const [, indices, updates] = n.inputs as Tensor[];
  const axis = attrOf(n, 'axis', 'int');
  if (attrOf(n, 'reduction', 'string') !== 'none')
    throw new Error('ScatterElements backward: only reduction "none" is supported');
  return [
    needs[0] ? scatterElements(dy!, indices!, zeros(updates!.shape, dy!.dtype, updates!), axis) : undefined,
    undefined,
    needs[2] ? gatherElements(dy!, indices!, axis) : undefined,
  ];
});

defGrad('Expand', (n, [dy]) => [unbroadcast(dy!, n.inputs[0]!)]);

defGrad('Trilu', (n, [dy]) => {
  const k = Number((n.inputs[1]!.graph.initializers.find((i) => i.tensor === n.inputs[1])!.data as BigInt64Array)[0]);
  return [trilu(dy!, attrOf(n, 'upper', 'int') === 1, k), undefined];
});

defGrad('Split', (n, dys) => {
  const axis = attrOf(n, 'axis', 'int');
  const parts = n.outputs.map((o, i) => dys[i] ?? zerosLike(o));
  return [concat(parts, axis), undefined];
});

function constValues(t: Tensor): number[] {
  const init = t.graph.initializers.find((i) => i.tensor === t);
  if (!init) throw new Error(`${t.name} must be a constant`);
  return Array.from(init.data as BigInt64Array, Number);
}

const lessThanZero = (v: Tensor) =>
  v.graph.node('Less', [v, v.graph.constant('int64', [1], [0])], {}, [{ dtype: 'bool', shape: v.shape }])[0]!;
const mul64 = (a: Tensor, b: Tensor) => a.graph.node('Mul', [a, b], {}, [{ dtype: 'int64', shape: [1] }])[0]!;
const max64 = (a: Tensor, b: Tensor) => a.graph.node('Max', [a, b], {}, [{ dtype: 'int64', shape: [1] }])[0]!;
const min64 = (a: Tensor, b: Tensor) => a.graph.node('Min', [a, b], {}, [{ dtype: 'int64', shape: [1] }])[0]!;
