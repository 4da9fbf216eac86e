// Elementwise ops (NumPy broadcasting). Their backward rules are in backward/elementwise.ts.
import { attr, type Tensor } from '../graph';
import { isFloat, onnxTypeCode, type DType } from '../dtype';
import { broadcastShapes } from '../shape';
import { fail, operands, sameDtype, type Operand } from './common';

function binary(op: string, a: Operand, b: Operand, outDtype?: DType): Tensor {
  const [x, y] = operands(op, a, b);
  const dtype = sameDtype(op, x, y);
  const shape = broadcastShapes(x.shape, y.shape);
  if (!shape) fail(op, 'shapes do not broadcast', x, y);
  return x.graph.node(op, [x, y], {}, [{ dtype: outDtype ?? dtype, shape }])[0]!;
}

function unary(op: string, x: Tensor, floatOnly = true): Tensor {
  if (floatOnly && !isFloat(x.dtype)) fail(op, 'needs a float tensor', x);
  return x.graph.node(op, [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

export const add = (a: Operand, b: Operand): Tensor => binary('Add', a, b);

export const sub = (a: Operand, b: Operand): Tensor => binary('Sub', a, b);

export const mul = (a: Operand, b: Operand): Tensor => binary('Mul', a, b);

export const div = (a: Operand, b: Operand): Tensor => binary('Div', a, b);

/** Elementwise power; the exponent may be a number (the usual case: x², x^-0.5). */
export const pow = (a: Tensor, b: Operand): Tensor => binary('Pow', a, b);

export const max2 = (a: Operand, b: Operand): Tensor => binary('Max', a, b);
export const min2 = (a: Operand, b: Operand): Tensor => binary('Min', a, b);

export const neg = (x: Tensor): Tensor => unary('Neg', x);

export const sqrt = (x: Tensor): Tensor => unary('Sqrt', x);

export const exp = (x: Tensor): Tensor => unary('Exp', x);

export const log = (x: Tensor): Tensor => unary('Log', x);

export const reciprocal = (x: Tensor): Tensor => unary('Reciprocal', x);

export const sigmoid = (x: Tensor): Tensor => unary('Sigmoid', x);

export const tanh = (x: Tensor): Tensor => unary('Tanh', x);

export const relu = (x: Tensor): Tensor => unary('Relu', x);

export const abs = (x: Tensor): Tensor => unary('Abs', x);

export const sign = (x: Tensor): Tensor => unary('Sign', x);

export const erf = (x: Tensor): Tensor => unary('Erf', x);

/** x · sigmoid(x), the SwiGLU activation. */
export const silu = (x: Tensor): Tensor => mul(x, sigmoid(x));

export const identity = (x: Tensor): Tensor =>
  x.graph.node('Identity', [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;

export function cast(x: Tensor, to: DType): Tensor {
  if (x.dtype === to) return x;
  return x.graph.node('Cast', [x], { to: attr.int(onnxTypeCode[to]) }, [{ dtype: to, shape: x.shape }])[0]!;
}

export const equal = (a: Operand, b: Operand): Tensor => binary('Equal', a, b, 'bool');
export const less = (a: Operand, b: Operand): Tensor => binary('Less', a, b, 'bool');
export const greater = (a: Operand, b: Operand): Tensor => binary('Greater', a, b, 'bool');
export const lessOrEqual = (a: Operand, b: Operand): Tensor => binary('LessOrEqual', a, b, 'bool');
export const greaterOrEqual = (a: Operand, b: Operand): Tensor => binary('GreaterOrEqual', a, b, 'bool');
export const and = (a: Tensor, b: Tensor): Tensor => binary('And', a, b, 'bool');
export const or = (a: Tensor, b: Tensor): Tensor => binary('Or', a, b, 'bool');
export function not(x: Tensor): Tensor {
  if (x.dtype !== 'bool') fail('Not', 'needs a bool tensor', x);
  return x.graph.node('Not', [x], {}, [{ dtype: 'bool', shape: x.shape }])[0]!;
}

/** cond ? a : b, broadcast over all three. */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const [x, y] = operands('Where', a, b);
  const dtype = sameDtype('Where', x, y);
  if (cond.dtype !== 'bool') fail('Where', 'the condition must be bool', cond);
  const s1 = broadcastShapes(x.shape, y.shape);
  const shape = s1 && broadcastShapes(cond.shape, s1);
  if (!shape) fail('Where', 'shapes do not broadcast', cond, x, y);
  return x.graph.node('Where', [cond, x, y], {}, [{ dtype, shape }])[0]!;
}

export const cos = (x: Tensor): Tensor => unary('Cos', x);

export const sin = (x: Tensor): Tensor => unary('Sin', x);
