// Elementwise ops (NumPy broadcasting) and their backward rules.
import { attr, type Tensor } from '../graph';
import { isFloat, onnxTypeCode, type DType } from '../dtype';
import { broadcastShapes } from '../shape';
import { defGrad } from './registry';
import { fail, operands, sameDtype, type Operand } from './common';
import { reduceSum } from './reduce';
import { reshape, zerosLike } from './shape';

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

/** Sums a broadcast gradient back to the shape of the operand it flowed from. */
export function unbroadcast(dy: Tensor, target: Tensor): Tensor {
  const r = dy.rank;
  const t = target.rank;
  const axes: number[] = [];
  for (let i = 0; i < r - t; i++) axes.push(i);
  for (let j = 0; j < t; j++) if (target.shape[j] === 1 && dy.shape[r - t + j] !== 1) axes.push(r - t + j);
  if (axes.length === 0) return dy;
  const s = reduceSum(dy, axes, true);
  return r === t ? s : reshape(s, target.shape);
}

export const add = (a: Operand, b: Operand): Tensor => binary('Add', a, b);
defGrad('Add', (n, [dy], needs) => [needs[0] ? unbroadcast(dy!, n.inputs[0]!) : undefined, needs[1] ? unbroadcast(dy!, n.inputs[1]!) : undefined]);

export const sub = (a: Operand, b: Operand): Tensor => binary('Sub', a, b);
defGrad('Sub', (n, [dy], needs) => [needs[0] ? unbroadcast(dy!, n.inputs[0]!) : undefined, needs[1] ? unbroadcast(neg(dy!), n.inputs[1]!) : undefined]);

export const mul = (a: Operand, b: Operand): Tensor => binary('Mul', a, b);
defGrad('Mul', (n, [dy], needs) => {
  const [a, b] = n.inputs as Tensor[];
  return [needs[0] ? unbroadcast(mul(dy!, b!), a!) : undefined, needs[1] ? unbroadcast(mul(dy!, a!), b!) : undefined];
});

export const div = (a: Operand, b: Operand): Tensor => binary('Div', a, b);
defGrad('Div', (n, [dy], needs) => {
  const [a, b] = n.inputs as Tensor[];
  const y = n.outputs[0]!;
  // d(a/b)/db = -a/b² = -y/b
  return [needs[0] ? unbroadcast(div(dy!, b!), a!) : undefined, needs[1] ? unbroadcast(neg(div(mul(dy!, y), b!)), b!) : undefined];
});

/** Elementwise power; the exponent may be a number (the usual case: x², x^-0.5). */
export const pow = (a: Tensor, b: Operand): Tensor => binary('Pow', a, b);
defGrad('Pow', (n, [dy], needs) => {
  const [x, e] = n.inputs as Tensor[];
  const y = n.outputs[0]!;
  // d/dx = e·x^(e-1); d/de = y·ln x
  const dx = needs[0] ? unbroadcast(mul(dy!, mul(e!, pow(x!, sub(e!, 1)))), x!) : undefined;
  const de = needs[1] ? unbroadcast(mul(dy!, mul(y, log(x!))), e!) : undefined;
  return [dx, de];
});

export const max2 = (a: Operand, b: Operand): Tensor => binary('Max', a, b);
export const min2 = (a: Operand, b: Operand): Tensor => binary('Min', a, b);
for (const op of ['Max', 'Min']) {
  defGrad(op, (n, [dy], needs) => {
    const [a, b] = n.inputs as Tensor[];
    const y = n.outputs[0]!;
    // The gradient goes to the operand that was chosen (to the first one on ties).
    const pickA = equal(a!, y);
    const z = zerosLike(dy!);
    return [
      needs[0] ? unbroadcast(where(pickA, dy!, z), a!) : undefined,
      needs[1] ? unbroadcast(where(pickA, z, dy!), b!) : undefined,
    ];
  });
}

export const neg = (x: Tensor): Tensor => unary('Neg', x);
defGrad('Neg', (_n, [dy]) => [neg(dy!)]);

export const sqrt = (x: Tensor): Tensor => unary('Sqrt', x);
defGrad('Sqrt', (n, [dy]) => [div(dy!, mul(n.outputs[0]!, 2))]);

export const exp = (x: Tensor): Tensor => unary('Exp', x);
defGrad('Exp', (n, [dy]) => [mul(dy!, n.outputs[0]!)]);

export const log = (x: Tensor): Tensor => unary('Log', x);
defGrad('Log', (n, [dy]) => [div(dy!, n.inputs[0]!)]);

export const reciprocal = (x: Tensor): Tensor => unary('Reciprocal', x);
defGrad('Reciprocal', (n, [dy]) => {
  const y = n.outputs[0]!;
  return [neg(mul(dy!, mul(y, y)))];
});

export const sigmoid = (x: Tensor): Tensor => unary('Sigmoid', x);
defGrad('Sigmoid', (n, [dy]) => {
  const y = n.outputs[0]!;
  return [mul(dy!, mul(y, sub(1, y)))];
});

export const tanh = (x: Tensor): Tensor => unary('Tanh', x);
defGrad('Tanh', (n, [dy]) => {
  const y = n.outputs[0]!;
  return [mul(dy!, sub(1, mul(y, y)))];
});

export const relu = (x: Tensor): Tensor => unary('Relu', x);
defGrad('Relu', (n, [dy]) => [where(greater(n.inputs[0]!, 0), dy!, zerosLike(dy!))]);

export const abs = (x: Tensor): Tensor => unary('Abs', x);
defGrad('Abs', (n, [dy]) => [mul(dy!, sign(n.inputs[0]!))]);

export const sign = (x: Tensor): Tensor => unary('Sign', x);
defGrad('Sign', (n) => [zerosLike(n.inputs[0]!)]);

export const erf = (x: Tensor): Tensor => unary('Erf', x);
defGrad('Erf', (n, [dy]) => {
  const x = n.inputs[0]!;
  // d erf(x)/dx = 2/√π · exp(-x²)
  return [mul(dy!, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)))];
});

/** x · sigmoid(x), the SwiGLU activation. */
export const silu = (x: Tensor): Tensor => mul(x, sigmoid(x));

export const identity = (x: Tensor): Tensor => x.graph.node('Identity', [x], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
defGrad('Identity', (_n, [dy]) => [dy]);

export function cast(x: Tensor, to: DType): Tensor {
  if (x.dtype === to) return x;
  return x.graph.node('Cast', [x], { to: attr.int(onnxTypeCode[to]) }, [{ dtype: to, shape: x.shape }])[0]!;
}
defGrad('Cast', (n, [dy]) => [isFloat(n.inputs[0]!.dtype) ? cast(dy!, n.inputs[0]!.dtype) : undefined]);

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
defGrad('Where', (n, [dy], needs) => {
  const [c, a, b] = n.inputs as Tensor[];
  const z = zerosLike(dy!);
  return [
    undefined,
    needs[1] ? unbroadcast(where(c!, dy!, z), a!) : undefined,
    needs[2] ? unbroadcast(where(c!, z, dy!), b!) : undefined,
  ];
});

export const cos = (x: Tensor): Tensor => unary('Cos', x);
defGrad('Cos', (n, [dy]) => [neg(mul(dy!, sin(n.inputs[0]!)))]);

export const sin = (x: Tensor): Tensor => unary('Sin', x);
defGrad('Sin', (n, [dy]) => [mul(dy!, cos(n.inputs[0]!))]);
