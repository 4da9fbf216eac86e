// Full-parameter training of a small model (every weight trainable): next-token loss with a
// weight per token, AdamW, warmup + decay, clipping. The weights are graph inputs, so the same
// session serves every step; they are kept in the engine's layout ([in, out] for linear layers)
// and written back to Hugging Face layout by saveModelFolder.
import type { HostTensor, Session } from '../backend';
import type { CausalLM } from '../models/model';
import { buildTrainGraph } from './graph';
import { AdamW, clipByGlobalNorm, lrFactor, type ScheduleOptions } from './optim';

export interface LmSequence {
  ids: number[];
  /** Loss weight of predicting ids[i + 1] at position i (length ids.length − 1; 0 = no loss). */
  weights: number[];
}

export interface FullTrainerConfig {
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  schedule: ScheduleOptions['kind'];
  warmupSteps: number;
  totalSteps: number;
  maxGradNorm: number;
}

export interface FullStepResult {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
  tokens: number;
  ms: number;
}

export class FullTrainer {
  readonly opt: AdamW;
  readonly params = new Map<string, Float32Array>();
  private sessionP?: Promise<Session>;
  readonly cfg: Readonly<FullTrainerConfig>;
  private steps: number;

  constructor(
    readonly model: CausalLM,
    cfg: FullTrainerConfig,
  ) {
    this.cfg = { ...cfg };
    this.steps = cfg.totalSteps;
    if (model.dtype !== 'float32') throw new Error('full-parameter training runs in float32');
    this.opt = new AdamW({ lr: cfg.lr, beta1: cfg.beta1, beta2: cfg.beta2, weightDecay: cfg.weightDecay });
    for (const name of model.graphs.weightNames()) {
      this.params.set(`w.${name}`, (model.graphs.weights.get(name).data as Float32Array).slice());
    }
  }

  get step(): number {
    return this.opt.state.step;
  }

  /** The schedule's length: cfg.totalSteps, until a time-boxed run sets it from its measured speed. */
  get totalSteps(): number {
    return this.steps;
  }

  set totalSteps(n: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`totalSteps must be a whole number ≥ 1 (got ${n})`);
    this.steps = n;
  }

  /** Feeds of the current weights (zero-copy), for graphs built with weightsAsInputs. */
  weightFeeds(): Record<string, HostTensor> {
    const f: Record<string, HostTensor> = {};
    for (const [k, v] of this.params)
      f[k] = { dtype: 'float32', dims: this.model.graphs.weights.get(k.slice(2)).shape, data: v };
    return f;
  }

  private session(): Promise<Session> {
    this.sessionP ??= this.model.backend.session(buildTrainGraph(this.model.graphs, { loss: 'lm', full: true }));
    return this.sessionP;
  }

  async trainStep(batch: LmSequence[]): Promise<FullStepResult> {
    const t0 = performance.now();
    const B = batch.length;
    const T = Math.max(...batch.map((s) => s.ids.length));
    const ids = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * T);
    const pos = new BigInt64Array(B * T);
    const tgt = new BigInt64Array(B * T);
    const w = new Float32Array(B * T);
    let tokens = 0;
    batch.forEach((s, b) => {
      if (s.weights.length !== s.ids.length - 1)
        throw new Error(
          `a sequence of ${s.ids.length} tokens needs ${s.ids.length - 1} loss weights (got ${s.weights.length})`,
        );
      s.ids.forEach((t, i) => {
        ids[b * T + i] = BigInt(t);
        mask[b * T + i] = 1n;
        pos[b * T + i] = BigInt(i);
        if (i + 1 < s.ids.length) {
          tgt[b * T + i] = BigInt(s.ids[i + 1]!);
          w[b * T + i] = s.weights[i]!;
        }
      });
      tokens += s.ids.length;
    });
    const dims = [B, T];
    const out = await (
      await this.session()
    ).run({
      ids: { dtype: 'int64', dims, data: ids },
      mask: { dtype: 'int64', dims, data: mask },
      positions: { dtype: 'int64', dims, data: pos },
      targets: { dtype: 'int64', dims, data: tgt },
      weights: { dtype: 'float32', dims, data: w },
      ...this.weightFeeds(),
    });
    const loss = out.loss!.data[0] as number;
    if (!Number.isFinite(loss))
      throw new Error(`training diverged: loss is ${loss} at step ${this.step + 1}; lower the learning rate`);
    const grads = new Map<string, Float32Array>();
    for (const k of this.params.keys()) grads.set(k, out[`grad.${k}`]!.data as Float32Array);
    const gradNorm = clipByGlobalNorm(grads, this.cfg.maxGradNorm);
    const lr =
      this.cfg.lr *
      lrFactor(this.step, { kind: this.cfg.schedule, totalSteps: this.totalSteps, warmupSteps: this.cfg.warmupSteps });
    // No weight decay on norms (as is usual); embeddings and linear weights decay.
    this.opt.step(this.params, grads, lr, (name) => !/norm/.test(name));
    return { step: this.step, loss, gradNorm, lr, tokens, ms: performance.now() - t0 };
  }
}
