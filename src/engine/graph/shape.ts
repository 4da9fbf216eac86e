// Symbolic shapes: a dimension is a number, or a name that ONNX Runtime resolves at run time.

export type Dim = number | string;
export type Shape = readonly Dim[];

export const fmtShape = (s: Shape): string => `[${s.join(', ')}]`;

export const isStatic = (s: Shape): s is readonly number[] => s.every((d) => typeof d === 'number');

export function numel(s: Shape): number | undefined {
  let n = 1;
  for (const d of s) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}

/** Broadcasting by the NumPy rules; undefined where the shapes cannot broadcast. */
export function broadcastShapes(a: Shape, b: Shape): Dim[] | undefined {
  const r = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < r; i++) {
    const da = i < r - a.length ? 1 : a[i - (r - a.length)]!;
    const db = i < r - b.length ? 1 : b[i - (r - b.length)]!;
    if (da === db) out.push(da);
    else if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else return undefined;
  }
  return out;
}

/** Names a dimension derived from two others (e.g. a concatenation of past and new tokens). */
export function addDims(a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') return a + b;
  if (a === 0) return b;
  if (b === 0) return a;
  return `${a}+${b}`;
}

export function normAxis(axis: number, rank: number, what: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new RangeError(`${what}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}
