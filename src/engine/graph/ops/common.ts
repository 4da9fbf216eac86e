// Helpers shared by the op constructors: operand coercion, checks with useful messages.
import { GraphError, type Tensor, type Graph, type Node } from '../graph';
import type { DType } from '../dtype';
import { fmtShape, type Shape } from '../shape';

export type Operand = Tensor | number;

export function fail(op: string, msg: string, ...xs: Tensor[]): never {
  const shapes = xs.map((x) => `${x.name}: ${x.dtype}${fmtShape(x.shape)}`).join(', ');
  throw new GraphError(`${op}: ${msg}${shapes ? ` (${shapes})` : ''}`);
}

/** Turns numbers into scalar constants of the other operand's dtype. */
export function operands(op: string, a: Operand, b: Operand): [Tensor, Tensor] {
  if (typeof a === 'number' && typeof b === 'number')
    throw new GraphError(`${op}: at least one operand must be a tensor`);
  const ta = typeof a === 'number' ? (b as Tensor).graph.scalar(a, (b as Tensor).dtype) : a;
  const tb = typeof b === 'number' ? ta.graph.scalar(b, ta.dtype) : b;
  if (ta.graph !== tb.graph) fail(op, 'operands belong to different graphs', ta, tb);
  return [ta, tb];
}

export function sameDtype(op: string, ...xs: Tensor[]): DType {
  const d = xs[0]!.dtype;
  if (xs.some((x) => x.dtype !== d)) fail(op, 'operands must have the same dtype', ...xs);
  return d;
}

export function normAxes(op: string, axes: readonly number[], rank: number, x: Tensor): number[] {
  const out = axes.map((a) => {
    const n = a < 0 ? a + rank : a;
    if (n < 0 || n >= rank) fail(op, `axis ${a} is out of range for rank ${rank}`, x);
    return n;
  });
  if (new Set(out).size !== out.length) fail(op, `repeated axes [${axes.join(', ')}]`, x);
  return out;
}

export const graphOf = (...xs: (Tensor | number | undefined)[]): Graph => {
  for (const x of xs) if (x !== undefined && typeof x !== 'number') return x.graph;
  throw new GraphError('no tensor operand');
};

export const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Reads a node attribute of a known kind (backward rules read their forward's attributes). */
export function attrOf<K extends 'int' | 'ints' | 'string'>(
  n: Node,
  name: string,
  kind: K,
): K extends 'ints' ? number[] : K extends 'int' ? number : string {
  const a = n.attrs[name];
  if (!a || a.kind !== kind) throw new GraphError(`${n.op} node ${n.name}: attribute '${name}' is not of kind ${kind}`);
  return a.value as never;
}
