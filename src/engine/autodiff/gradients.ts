// Reverse-mode differentiation on the graph IR. The backward pass is emitted into the same graph
// as standard ONNX ops, so one session computes the loss and its gradients.
import { GraphError, type Node, type Tensor } from '../graph/graph';
import { isFloat } from '../graph/dtype';
import { add, zerosLike } from '../graph/ops';
import { gradRule, nonDifferentiable } from '../graph/ops/registry';

export interface GradientOptions {
  /** The gradient flowing into `loss` (default: ones, so the result is d loss / d x). */
  seed?: Tensor;
}

/**
 * Gradients of `loss` with respect to each tensor of `wrt` (graph inputs, initializers or
 * intermediate tensors). A tensor that does not influence the loss gets zeros.
 */
export function gradients(loss: Tensor, wrt: readonly Tensor[], opts: GradientOptions = {}): Tensor[] {
  const g = loss.graph;
  if (!isFloat(loss.dtype)) throw new GraphError(`gradients: the loss ${loss.name} must be a float tensor`);
  for (const w of wrt) {
    if (w.graph !== g) throw new GraphError(`gradients: ${w.name} belongs to another graph`);
    if (!isFloat(w.dtype))
      throw new GraphError(`gradients: ${w.name} is ${w.dtype}; only float tensors have gradients`);
  }
  // Only nodes on a path from some wrt tensor to the loss need backward rules.
  const nodes = g.nodes.slice(0, (loss.producer ? g.nodes.indexOf(loss.producer) : -1) + 1);
  const reaches = new Set<number>(wrt.map((w) => w.id));
  const forward: Node[] = [];
  for (const n of nodes) {
    if (nonDifferentiable.has(n.op)) continue;
    if (n.inputs.some((x) => x && reaches.has(x.id) && isFloat(x.dtype))) {
      forward.push(n);
      for (const o of n.outputs) if (isFloat(o.dtype)) reaches.add(o.id);
    }
  }
  const needed = new Set<number>([loss.id]);
  const path: Node[] = [];
  for (let i = forward.length - 1; i >= 0; i--) {
    const n = forward[i]!;
    if (n.outputs.some((o) => needed.has(o.id))) {
      path.push(n);
      for (const x of n.inputs) if (x && reaches.has(x.id)) needed.add(x.id);
    }
  }

  // Partial gradients per tensor id, summed when a tensor feeds several consumers.
  const partials = new Map<number, Tensor[]>();
  const take = (t: Tensor): Tensor | undefined => {
    const ps = partials.get(t.id);
    if (!ps || ps.length === 0) return undefined;
    const sum = ps.reduce((a, b) => add(a, b));
    partials.set(t.id, [sum]);
    return sum;
  };
  const seed = opts.seed ?? g.constant(loss.dtype, loss.shape as number[], new Array(lossSize(loss)).fill(1));
  partials.set(loss.id, [seed]);

  for (const n of path) {
    const dys = n.outputs.map((o) => take(o));
    if (dys.every((d) => d === undefined)) continue;
    const rule = gradRule(n.op);
    if (!rule)
      throw new GraphError(
        `gradients: no backward rule for ${n.op} (node ${n.name}); add one in src/engine/graph/ops/backward/, in the file named as its forward's`,
      );
    const needs = n.inputs.map((x) => !!x && needed.has(x.id) && isFloat(x.dtype));
    const dxs = rule(n, dys, needs);
    n.inputs.forEach((x, i) => {
      const dx = dxs[i];
      if (!x || !needs[i] || !dx) return;
      if (dx.dtype !== x.dtype)
        throw new GraphError(`gradients: ${n.op} rule gave ${dx.dtype} for ${x.name} (${x.dtype})`);
      const list = partials.get(x.id) ?? [];
      list.push(dx);
      partials.set(x.id, list);
    });
  }
  return wrt.map((w) => take(w) ?? zerosLike(w));
}

function lossSize(loss: Tensor): number {
  let n = 1;
  for (const d of loss.shape) {
    if (typeof d !== 'number')
      throw new GraphError(`gradients: the loss ${loss.name} has a symbolic shape; pass a seed`);
    n *= d;
  }
  return n;
}
