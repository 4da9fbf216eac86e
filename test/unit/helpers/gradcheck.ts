// Gradient checking: the backward graph that autodiff emits, against central finite differences
// of the forward graph, both evaluated in float64 by ONNX Runtime on the CPU.
import { Backend } from '../../../src/engine/backend';
import { gradients } from '../../../src/engine/autodiff';
import { Graph, op, type Dim, type Tensor, type TypedData } from '../../../src/engine/graph';
import type { HostTensor } from '../../../src/engine/backend';
import { nonZero, rng } from './random';

export interface CheckInput {
  name: string;
  shape: number[];
  /** Shape as declared in the graph (symbolic dims allowed); defaults to `shape`. */
  dims?: Dim[];
  /** 'positive' draws from [0.5, 2] (for log, sqrt, pow); 'int' means index data given in `ints`. */
  kind?: 'signed' | 'positive' | 'int' | 'bool';
  ints?: number[];
  /** Whether to check this input's gradient (default: true for float inputs). */
  grad?: boolean;
}

export interface GradCheckResult {
  maxRel: number;
  perInput: Record<string, number>;
  checked: number;
}

let backendP: Promise<Backend> | undefined;
export const cpuBackend = (): Promise<Backend> =>
  (backendP ??= Backend.create({ device: 'cpu', threads: 1, optimization: 'basic' }));

export async function gradCheck(
  label: string,
  inputs: CheckInput[],
  f: (xs: Tensor[]) => Tensor,
  opts: { seed?: number; h?: number; samples?: number } = {},
): Promise<GradCheckResult> {
  const r = rng(opts.seed ?? 1234);
  const g = new Graph(`gradcheck_${label}`);
  const xs = inputs.map((i) => {
    const dtype = i.kind === 'int' ? 'int64' : i.kind === 'bool' ? 'bool' : 'float64';
    return g.input(i.name, dtype, i.dims ?? i.shape);
  });
  const y = f(xs);
  const weights = g.input('__w', 'float64', y.shape);
  const prod = op.mul(y, weights);
  const loss =
    prod.rank === 0
      ? prod
      : op.reduceSum(
          prod,
          prod.shape.map((_, i) => i),
          false,
        );
  const diff = inputs
    .map((i, k) => ({ i, x: xs[k]! }))
    .filter(({ i }) => i.kind !== 'int' && i.kind !== 'bool' && i.grad !== false);
  const grads = gradients(
    loss,
    diff.map((d) => d.x),
  );
  g.output(loss, 'loss');
  grads.forEach((gr, k) => g.output(gr, `grad_${diff[k]!.i.name}`));

  const feeds: Record<string, HostTensor> = {};
  for (const i of inputs) {
    const n = i.shape.reduce((a, b) => a * b, 1);
    let data: TypedData;
    if (i.kind === 'int') data = BigInt64Array.from(i.ints!, (v) => BigInt(v));
    else if (i.kind === 'bool') data = Uint8Array.from(i.ints!);
    else if (i.kind === 'positive') data = Float64Array.from({ length: n }, () => 0.5 + 1.5 * r());
    else data = nonZero(n, r);
    feeds[i.name] = { dtype: i.kind === 'int' ? 'int64' : i.kind === 'bool' ? 'bool' : 'float64', dims: i.shape, data };
  }
  const be = await cpuBackend();
  const s = await be.session(g);
  // The weight tensor's concrete shape comes from a first forward run.
  const probeG = new Graph(`shape_${label}`);
  const pxs = inputs.map((i) =>
    probeG.input(i.name, i.kind === 'int' ? 'int64' : i.kind === 'bool' ? 'bool' : 'float64', i.dims ?? i.shape),
  );
  probeG.output(f(pxs), 'y');
  const yShape = (await (await be.session(probeG)).run(feeds)).y!.dims;
  feeds.__w = {
    dtype: 'float64',
    dims: yShape,
    data: nonZero(
      yShape.reduce((a, b) => a * b, 1),
      r,
      0.5,
      1.5,
    ),
  };

  const out = await s.run(feeds);
  const h = opts.h ?? 1e-6;
  const perInput: Record<string, number> = {};
  let maxRel = 0;
  let checked = 0;
  for (const { i } of diff) {
    const x = feeds[i.name]!.data as Float64Array;
    const analytic = out[`grad_${i.name}`]!.data as Float64Array;
    if (analytic.length !== x.length)
      throw new Error(`${label}: gradient of ${i.name} has ${analytic.length} elements, input has ${x.length}`);
    const picks = pickIndices(x.length, opts.samples ?? 24, r);
    let worst = 0;
    for (const k of picks) {
      const orig = x[k]!;
      x[k] = orig + h;
      const lp = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
      x[k] = orig - h;
      const lm = (await s.run(feeds, ['loss'])).loss!.data[0] as number;
      x[k] = orig;
      const numeric = (lp - lm) / (2 * h);
      const a = analytic[k]!;
      const rel = Math.abs(a - numeric) / Math.max(Math.abs(a), Math.abs(numeric), 1e-3);
      worst = Math.max(worst, rel);
      checked++;
    }
    perInput[i.name] = worst;
    maxRel = Math.max(maxRel, worst);
  }
  return { maxRel, perInput, checked };
}

function pickIndices(n: number, k: number, r: () => number): number[] {
  if (n <= k) return Array.from({ length: n }, (_, i) => i);
  const s = new Set<number>();
  while (s.size < k) s.add(Math.floor(r() * n));
  return [...s];
}
