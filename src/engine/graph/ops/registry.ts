// Backward rules, keyed by ONNX op type. The rules of ops/<family>.ts are registered by
// ops/backward/<family>.ts, in the same order as the forward constructors, so the two are read
// and changed side by side; a rule imports the forward ops it emits, never the other way round.
import type { Node, Tensor } from '../graph';

/**
 * Given the gradients of a node's outputs (undefined where no gradient flows), returns the
 * gradients of its inputs (undefined where the input is not differentiable or not needed).
 * `needs[i]` says whether input i needs a gradient, so rules can skip work.
 */
export type GradRule = (
  node: Node,
  dys: readonly (Tensor | undefined)[],
  needs: readonly boolean[],
) => (Tensor | undefined)[];

const rules = new Map<string, GradRule>();

export function defGrad(op: string, rule: GradRule): void {
  if (rules.has(op)) throw new Error(`a backward rule for ${op} is defined twice`);
  rules.set(op, rule);
}

export function gradRule(op: string): GradRule | undefined {
  return rules.get(op);
}

/** Ops whose outputs carry no gradient (integer or boolean results, shapes). */
export const nonDifferentiable = new Set([
  'Shape',
  'Size',
  'Equal',
  'Less',
  'Greater',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Range',
  'ConstantOfShape',
  'ArgMax',
  'ArgMin',
]);
