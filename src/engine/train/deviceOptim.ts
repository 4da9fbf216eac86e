// The optimizer as ONNX graphs, for a provider that keeps tensors in device memory (WebGPU): the
// LoRA parameters, AdamW's moments and the gradients stay on the device between train steps, and
// only scalars cross to the host. Two graphs over every trainable tensor at once:
//   accumulate   out = a·x + b·y                       (gradients of micro-batches, weights a, b)
//   AdamW step   g ← scale·g;  n = ‖g‖₂ (global);  g ← g·min(1, maxNorm / (n + 1e-6));
//                m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g·g;
//                p ← p − p·(lr·λ) − (lr/bc₁)·m / (√v / √bc₂ + ε)
// the operations of optim.ts's AdamW and clipByGlobalNorm (torch's AdamW and clip_grad_norm_;
// the decay p·(1 − lr·λ) written p − p·(lr·λ), exact when λ = 0), in float32: optim.ts rounds each
// stored value once after computing it in float64, the graph after every operation, so an
// update differs by a few float32 ulps (checked against optim.ts in
// test/unit/train/deviceOptim.test.ts). The step-dependent numbers
// (bias corrections, learning rate) are computed in JavaScript in float64, as optim.ts does, and
// fed as float32 scalars.
import { Graph, op, type Tensor } from '../graph';
import type { DeviceTensor, Feed, HostTensor } from '../backend';

export interface ParamShape {
  name: string;
  dims: readonly number[];
}

export interface AdamWConstants {
  beta1: number;
  beta2: number;
  eps: number;
}

const scalar = (value: number): HostTensor => ({ dtype: 'float32', dims: [], data: Float32Array.of(value) });

/** out.<name> = a·x.<name> + b·y.<name> for every tensor; a, b float32 scalars. */
export function buildAccumulateGraph(params: readonly ParamShape[]): Graph {
  const g = new Graph(`accumulate_${params.length}`);
  const a = g.input('a', 'float32', []);
  const b = g.input('b', 'float32', []);
  for (const p of params) {
    const x = g.input(`x.${p.name}`, 'float32', [...p.dims]);
    const y = g.input(`y.${p.name}`, 'float32', [...p.dims]);
    g.output(op.add(op.mul(x, a), op.mul(y, b)), `out.${p.name}`);
  }
  return g;
}

/** Output names of the accumulate graph (they stay on the device). */
export const accumulateOutputs = (params: readonly ParamShape[]): string[] => params.map((p) => `out.${p.name}`);

export function accumulateFeeds(
  x: Map<string, Feed>,
  a: number,
  y: Map<string, Feed>,
  b: number,
): Record<string, Feed> {
  const f: Record<string, Feed> = { a: scalar(a), b: scalar(b) };
  for (const [name, t] of x) f[`x.${name}`] = t;
  for (const [name, t] of y) f[`y.${name}`] = t;
  return f;
}

/**
 * One AdamW step with clipping by global norm over every tensor. Inputs p.*, m.*, v.*, g.* and the
 * scalars of adamWScalars(); outputs p_out.*, m_out.*, v_out.* (to keep on the device) and
 * grad_norm (the norm before clipping, to the host).
 */
export function buildAdamWGraph(params: readonly ParamShape[], c: AdamWConstants): Graph {
  const g = new Graph(`adamw_${params.length}_b${c.beta1}_${c.beta2}_e${c.eps}`);
  const gradScale = g.input('grad_scale', 'float32', []);
  const maxNorm = g.input('max_norm', 'float32', []);
  const stepSize = g.input('step_size', 'float32', []);
  const sqrtBc2 = g.input('sqrt_bc2', 'float32', []);
  const decay = g.input('decay', 'float32', []);
  const grads: Tensor[] = params.map((p) => op.mul(g.input(`g.${p.name}`, 'float32', [...p.dims]), gradScale));
  // Σ over tensors of Σ g²: a ReduceSum per tensor to a scalar, then one sum of those.
  let sumSq: Tensor | undefined;
  for (const gr of grads) {
    const s = op.reduceSum(
      op.mul(gr, gr),
      gr.shape.map((_, i) => i),
      false,
    );
    sumSq = sumSq ? op.add(sumSq, s) : s;
  }
  const norm = op.sqrt(sumSq ?? g.scalar(0, 'float32'));
  g.output(norm, 'grad_norm');
  const coef = op.min2(op.div(maxNorm, op.add(norm, 1e-6)), 1);
  params.forEach((p, i) => {
    const gr = op.mul(grads[i]!, coef);
    const m = op.add(op.mul(g.input(`m.${p.name}`, 'float32', [...p.dims]), c.beta1), op.mul(gr, 1 - c.beta1));
    const v = op.add(
      op.mul(g.input(`v.${p.name}`, 'float32', [...p.dims]), c.beta2),
      op.mul(op.mul(gr, 1 - c.beta2), gr),
    );
    const w = g.input(`p.${p.name}`, 'float32', [...p.dims]);
    const update = op.div(op.mul(m, stepSize), op.add(op.div(op.sqrt(v), sqrtBc2), c.eps));
    g.output(op.sub(op.sub(w, op.mul(w, decay)), update), `p_out.${p.name}`);
    g.output(m, `m_out.${p.name}`);
    g.output(v, `v_out.${p.name}`);
  });
  return g;
}

/** Output names of the AdamW graph that stay on the device. */
export const adamWDeviceOutputs = (params: readonly ParamShape[]): string[] =>
  params.flatMap((p) => [`p_out.${p.name}`, `m_out.${p.name}`, `v_out.${p.name}`]);

/**
 * The scalar feeds of the AdamW graph for optimizer step `step` (1-based, after the increment), as
 * optim.ts computes them: bias corrections in float64, then rounded once to float32.
 */
export function adamWScalars(
  o: { step: number; lr: number; weightDecay: number; maxGradNorm: number; gradScale: number } & AdamWConstants,
): Record<string, HostTensor> {
  const bc1 = 1 - o.beta1 ** o.step;
  const bc2 = 1 - o.beta2 ** o.step;
  return {
    grad_scale: scalar(o.gradScale),
    max_norm: scalar(o.maxGradNorm),
    step_size: scalar(o.lr / bc1),
    sqrt_bc2: scalar(Math.sqrt(bc2)),
    decay: scalar(o.lr * o.weightDecay),
  };
}

export function adamWFeeds(
  p: Map<string, Feed>,
  m: Map<string, Feed>,
  v: Map<string, Feed>,
  g: Map<string, Feed>,
  scalars: Record<string, HostTensor>,
): Record<string, Feed> {
  const f: Record<string, Feed> = { ...scalars };
  for (const [name, t] of p) {
    const mi = m.get(name),
      vi = v.get(name),
      gi = g.get(name);
    if (!mi || !vi || !gi)
      throw new Error(`AdamW graph: no ${!mi ? 'first moment' : !vi ? 'second moment' : 'gradient'} for ${name}`);
    Object.assign(f, { [`p.${name}`]: t, [`m.${name}`]: mi, [`v.${name}`]: vi, [`g.${name}`]: gi });
  }
  return f;
}

/** The new parameters and moments from an AdamW graph run's device outputs. */
export function adamWResults(
  names: Iterable<string>,
  device: Record<string, DeviceTensor>,
): { p: Map<string, DeviceTensor>; m: Map<string, DeviceTensor>; v: Map<string, DeviceTensor> } {
  const p = new Map<string, DeviceTensor>(),
    m = new Map<string, DeviceTensor>(),
    v = new Map<string, DeviceTensor>();
  for (const name of names) {
    p.set(name, device[`p_out.${name}`]!);
    m.set(name, device[`m_out.${name}`]!);
    v.set(name, device[`v_out.${name}`]!);
  }
  return { p, m, v };
}
