// Backward rules of the elementwise ops (../elementwise.ts), and `unbroadcast`, which sums a
// gradient back to the shape of a broadcast operand (used by the other families' rules too).
import type { Tensor } from '../../graph';
import { defGrad } from '../registry';
import { cast, div, equal, exp, greater, log, mul, neg, pow, sign, sin, cos, sub, where } from '../elementwise';
import { reduceSum } from '../reduce';
import { reshape, zerosLike } from '../shape';
import { isFloat } from '../../dtype';

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

defGrad('Add', (n, [dy], needs) => [
  needs[0] ? unbroadcast(dy!, n.inputs[0]!) : undefined,
  needs[1] ? unbroadcast(dy!, n.inputs[1]!) : undefined,
]);

defGrad('Sub', (n, [dy], needs) => [
  needs[0] ? unbroadcast(dy!, n.inputs[0]!) : undefined,
  needs[1] ? unbroadcast(neg(dy!), n.inputs[1]!) : undefined,
]);

defGrad('Mul', (n, [dy], needs) => {
  const [a, b] = n.inputs as Tensor[];
  return [needs[0] ? unbroadcast(mul(dy!, b!), a!) : undefined, needs[1] ? unbroadcast(mul(dy!, a!), b!) : undefined];
});

defGrad('Div', (n, [dy], needs) => {
  const [a, b] = n.inputs as Tensor[];
  const y = n.outputs[0]!;
  // d(a/b)/db = -a/b² = -y/b
  return [
    needs[0] ? unbroadcast(div(dy!, b!), a!) : undefined,
    needs[1] ? unbroadcast(neg(div(mul(dy!, y), b!)), b!) : undefined,
  ];
});

defGrad('Pow', (n, [dy], needs) => {
  const [x, e] = n.inputs as Tensor[];
  const y = n.outputs[0]!;
  // d/dx = e·x^(e-1); d/de = y·ln x
  const dx = needs[0] ? unbroadcast(mul(dy!, mul(e!, pow(x!, sub(e!, 1)))), x!) : undefined;
  const de = needs[1] ? unbroadcast(mul(dy!, mul(y, log(x!))), e!) : undefined;
  return [dx, de];
});

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

defGrad('Neg', (_n, [dy]) => [neg(dy!)]);

defGrad('Sqrt', (n, [dy]) => [div(dy!, mul(n.outputs[0]!, 2))]);

defGrad('Exp', (n, [dy]) => [mul(dy!, n.outputs[0]!)]);

defGrad('Log', (n, [dy]) => [div(dy!, n.inputs[0]!)]);

defGrad('Reciprocal', (n, [dy]) => {
  const y = n.outputs[0]!;
  return [neg(mul(dy!, mul(y, y)))];
});

defGrad('Sigmoid', (n, [dy]) => {
  const y = n.outputs[0]!;
  return [mul(dy!, mul(y, sub(1, y)))];
});

defGrad('Tanh', (n, [dy]) => {
  const y = n.outputs[0]!;
  return [mul(dy!, sub(1, mul(y, y)))];
});

defGrad('Relu', (n, [dy]) => [where(greater(n.inputs[0]!, 0), dy!, zerosLike(dy!))]);

defGrad('Abs', (n, [dy]) => [mul(dy!, sign(n.inputs[0]!))]);

defGrad('Sign', (n) => [zerosLike(n.inputs[0]!)]);

defGrad('Erf', (n, [dy]) => {
  const x = n.inputs[0]!;
  // d erf(x)/dx = 2/√π · exp(-x²)
  return [mul(dy!, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)))];
});

defGrad('Identity', (_n, [dy]) => [dy]);

defGrad('Cast', (n, [dy]) => [isFloat(n.inputs[0]!.dtype) ? cast(dy!, n.inputs[0]!.dtype) : undefined]);

defGrad('Where', (n, [dy], needs) => {
  const [c, a, b] = n.inputs as Tensor[];
  const z = zerosLike(dy!);
  return [
    undefined,
    needs[1] ? unbroadcast(where(c!, dy!, z), a!) : undefined,
    needs[2] ? unbroadcast(where(c!, z, dy!), b!) : undefined,
  ];
});

defGrad('Cos', (n, [dy]) => [neg(mul(dy!, sin(n.inputs[0]!)))]);

defGrad('Sin', (n, [dy]) => [mul(dy!, cos(n.inputs[0]!))]);
