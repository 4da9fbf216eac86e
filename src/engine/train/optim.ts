// AdamW (decoupled weight decay, as torch.optim.AdamW), learning-rate schedules (linear warmup,
// then cosine or linear decay, as transformers' schedules), and clipping by global norm (as
// torch.nn.utils.clip_grad_norm_). Plain TypeScript over Float32Arrays: the trainable set is small
// for LoRA, and each update is one pass over it.

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

export interface AdamWState {
  step: number;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  state: AdamWState = { step: 0, m: new Map(), v: new Map() };

  constructor(opts: AdamWOptions) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
  }

  /**
   * One update of every parameter with its gradient, at learning rate `lr`. `decay(name)` says
   * whether weight decay applies (e.g. not to norms).
   */
  step(
    params: Map<string, Float32Array>,
    grads: Map<string, Float32Array>,
    lr: number,
    decay: (name: string) => boolean = () => true,
  ): void {
    const s = this.state;
    s.step++;
    const bc1 = 1 - this.beta1 ** s.step;
    const bc2 = 1 - this.beta2 ** s.step;
    const stepSize = lr / bc1;
    const sqrtBc2 = Math.sqrt(bc2);
    for (const [name, p] of params) {
      const g = grads.get(name);
      if (!g) throw new Error(`AdamW: no gradient for ${name}`);
      if (g.length !== p.length)
        throw new Error(`AdamW: gradient of ${name} has ${g.length} values, the parameter ${p.length}`);
      let m = s.m.get(name);
      let v = s.v.get(name);
      if (!m) s.m.set(name, (m = new Float32Array(p.length)));
      if (!v) s.v.set(name, (v = new Float32Array(p.length)));
      const wd = decay(name) ? 1 - lr * this.weightDecay : 1;
      const b1 = this.beta1,
        b2 = this.beta2,
        eps = this.eps;
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        const mi = (m[i] = b1 * m[i]! + (1 - b1) * gi);
        const vi = (v[i] = b2 * v[i]! + (1 - b2) * gi * gi);
        p[i] = p[i]! * wd - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
      }
    }
  }
}

export interface ScheduleOptions {
  kind: 'cosine' | 'linear' | 'constant';
  totalSteps: number;
  warmupSteps: number;
}

/** Multiplier of the peak learning rate at optimizer step `step` (0-based), as transformers' schedules. */
export function lrFactor(step: number, o: ScheduleOptions): number {
  if (step < o.warmupSteps) return step / Math.max(1, o.warmupSteps);
  if (o.kind === 'constant') return 1;
  const progress = (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps);
  if (o.kind === 'linear') return Math.max(0, 1 - progress);
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/** The global L2 norm of all gradients (in float64). */
export function globalNorm(grads: Iterable<Float32Array>): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
  return Math.sqrt(s);
}

/** Scales gradients in place so their global norm is at most maxNorm; returns the norm before. */
export function clipByGlobalNorm(grads: Map<string, Float32Array>, maxNorm: number): number {
  const norm = globalNorm(grads.values());
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i]! *= coef;
  return norm;
}
