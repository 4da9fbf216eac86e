// LoRA training steps on a CausalLM: batches of distillation (or SFT) samples → one train-graph
// run per micro-batch → gradient accumulation → clipping → AdamW with a warmup + decay schedule.
// Everything that decides the next step (adapter, optimizer moments, step, random state) is in
// TrainerState, so a run restored from a checkpoint continues exactly as an uninterrupted one.
//
// On a provider that keeps tensors in device memory (WebGPU), the adapter, the optimizer moments
// and the gradients stay there between steps: gradient accumulation, clipping and AdamW run as small
// graphs (deviceOptim.ts), and a step sends the host only its loss, per-sample losses and gradient
// norm. The host copy of the adapter and moments is brought up to date by sync(), for saving and
// checkpoints. On the CPU the update is optim.ts's loop over the same Float32Arrays the graph reads.
import { DeviceTensor, keepsOutputsOnDevice, type Feed, type HostTensor, type Session } from '../backend';
import { Rng } from '../../common/rng';
import type { CausalLM } from '../models/model';
import type { AdapterWeights } from '../models/model';
import { loraInputs, loraSpecKey, type LoraSpec } from '../models/llama';
import { buildTeacherLogProbsGraph, buildTeacherTopKGraph, buildTrainGraph, checkpointByDefault } from './graph';
import { AdamW, clipByGlobalNorm, lrFactor, type ScheduleOptions } from './optim';
import {
  accumulateFeeds,
  accumulateOutputs,
  adamWDeviceOutputs,
  adamWFeeds,
  adamWResults,
  adamWScalars,
  buildAccumulateGraph,
  buildAdamWGraph,
  type ParamShape,
} from './deviceOptim';

/** One training example. The answer is the last `answerLength` tokens of both sequences. */
export interface DistillSample {
  /** Teacher input: (system +) document + question + answer. */
  teacher: number[];
  /** Student input: (system +) question + answer. */
  student: number[];
  answerLength: number;
  /** Weight of this sample in the batch mean (default 1); e.g. for the general-data KL term. */
  weight?: number;
  /** The teacher's top-k at each answer position, once computed (TrainerConfig.teacherTopK; see cacheTeacher). */
  teacherTop?: TeacherTop;
}

/**
 * A sample's teacher distribution at its A answer positions: k most likely tokens and the rest's
 * mass; with k = V the whole distribution in vocabulary order (idx empty, no tail).
 */
export interface TeacherTop {
  k: number;
  /** [A, k] token ids (empty when k = V) and log-probs at τ. */
  idx: BigInt64Array;
  lp: Float32Array | Float64Array;
  /** [A] the mass outside the k, and its log (floored at 1e-30). */
  tailP: Float32Array | Float64Array;
  tailLp: Float32Array | Float64Array;
}

export interface TrainerConfig {
  loss: 'kl' | 'ce';
  lora: LoraSpec;
  /** LoRA dropout probability (0 = off). */
  dropout: number;
  /** Distillation temperature τ. */
  temperature: number;
  lr: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  schedule: ScheduleOptions['kind'];
  warmupSteps: number;
  totalSteps: number;
  /** Samples per graph run; gradAccum runs make one optimizer step. */
  microBatch: number;
  gradAccum: number;
  maxGradNorm: number;
  seed: number;
  /**
   * kl only: > 0 computes the teacher's k most likely tokens per answer position once per sample
   * and trains against those (KL over k + 1 outcomes, see TrainGraphOptions.teacherTopK) instead
   * of running the teacher in every step; 0 = the teacher in every step (exact KL).
   */
  teacherTopK?: number;
  /**
   * Activation checkpointing (TrainGraphOptions.checkpoint); default: on for models of real size
   * (layers × hidden ≥ CHECKPOINT_MIN), where the layers' saved activations dominate a step's
   * memory, off for small ones, where they are small and the extra forward pass is pure cost.
   */
  checkpoint?: boolean;
}

export const defaultTrainerConfig = (lora: LoraSpec, totalSteps: number): TrainerConfig => ({
  loss: 'kl',
  lora,
  dropout: 0,
  temperature: 2,
  lr: 1e-4,
  weightDecay: 0.1,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  schedule: 'cosine',
  warmupSteps: Math.round(0.1 * totalSteps),
  totalSteps,
  microBatch: 4,
  gradAccum: 1,
  maxGradNorm: 1,
  seed: 0,
});

export interface TrainerState {
  step: number;
  params: Map<string, Float32Array>;
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
  rng: number;
}

export interface StepResult {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
  tokens: number;
  ms: number;
}

// The seeded stream whose state checkpoints store (re-exported for the importers of this module).
export { Rng };

/** A new adapter: A uniform in ±1/√in (PEFT's default Kaiming init), B zero, so it changes nothing yet. */
export function initLora(model: CausalLM, spec: LoraSpec, seed: number): Map<string, Float32Array> {
  const r = new Rng(seed ^ 0x5eed);
  const params = new Map<string, Float32Array>();
  for (const i of loraInputs(model.config, spec)) {
    const n = i.shape[0] * i.shape[1];
    if (i.which === 'b') params.set(i.name, new Float32Array(n));
    else {
      const bound = 1 / Math.sqrt(i.shape[0]);
      params.set(
        i.name,
        Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * bound),
      );
    }
  }
  return params;
}

const DROPOUT_BUDGET = 64 * 2 ** 20; // mask values per micro-batch fed from JS

export interface TrainerOptions {
  /**
   * Keep the adapter, optimizer moments and gradients in device memory between steps (default:
   * on providers that can, i.e. WebGPU). false sends them through the host every micro-batch.
   */
  onDevice?: boolean;
}

/** The adapter and AdamW moments in device memory. */
interface DeviceState {
  p: Map<string, DeviceTensor>;
  m: Map<string, DeviceTensor>;
  v: Map<string, DeviceTensor>;
}

export class LoraTrainer {
  readonly opt: AdamW;
  /** Whether train steps keep the adapter and optimizer state on the device (see TrainerOptions). */
  readonly onDevice: boolean;
  private readonly rng: Rng;
  private sessionP?: Promise<Session>;
  private teacherTopP?: Promise<Session>;
  private accumulateP?: Promise<Session>;
  private adamWP?: Promise<Session>;
  private readonly hostParams: Map<string, Float32Array>;
  private dev?: DeviceState;
  /** The host copies of the adapter and moments are older than the device's (until sync()). */
  private hostStale = false;
  private readonly shapes: ParamShape[];

  constructor(
    readonly model: CausalLM,
    readonly cfg: TrainerConfig,
    state?: TrainerState,
    o: TrainerOptions = {},
  ) {
    if (cfg.loss !== 'kl' && cfg.loss !== 'ce') throw new Error(`unknown loss '${String(cfg.loss)}'`);
    this.opt = new AdamW({
      lr: cfg.lr,
      beta1: cfg.beta1,
      beta2: cfg.beta2,
      eps: cfg.eps,
      weightDecay: cfg.weightDecay,
    });
    this.rng = new Rng(state?.rng ?? cfg.seed);
    this.hostParams = state?.params ?? initLora(model, cfg.lora, cfg.seed);
    if (state) this.opt.state = { step: state.step, m: state.m, v: state.v };
    this.onDevice = (o.onDevice ?? true) && keepsOutputsOnDevice(model.backend.provider) && model.dtype !== 'float64';
    this.shapes = loraInputs(model.config, cfg.lora).map((i) => ({ name: i.name, dims: i.shape }));
  }

  /**
   * The adapter's tensors in host memory. After a train step on the device they are out of date
   * until `await sync()`; reading them then throws rather than giving the old values. On the device
   * path, changes written into them count only before the first step or evaluation (which upload
   * them); later, start a new trainer from state().
   */
  get params(): Map<string, Float32Array> {
    this.checkHost('params');
    return this.hostParams;
  }

  get step(): number {
    return this.opt.state.step;
  }

  /** Everything a checkpoint needs (after `await sync()` on the device path). */
  state(): TrainerState {
    this.checkHost('state()');
    return {
      step: this.opt.state.step,
      params: this.hostParams,
      m: this.opt.state.m,
      v: this.opt.state.v,
      rng: this.rng.state,
    };
  }

  adapter(): AdapterWeights {
    this.checkHost('adapter()');
    return { spec: this.cfg.lora, tensors: this.hostParams };
  }

  /**
   * Copies the adapter and optimizer moments from the device into the host arrays that params,
   * state() and adapter() return (a no-op when they are current). The device copies stay in use:
   * write to the host arrays only through a new trainer.
   */
  async sync(): Promise<void> {
    if (!this.hostStale || !this.dev) return;
    const dev = this.dev;
    const all: Record<string, DeviceTensor> = {};
    for (const [name, t] of dev.p)
      Object.assign(all, { [`p.${name}`]: t, [`m.${name}`]: dev.m.get(name)!, [`v.${name}`]: dev.v.get(name)! });
    const host = await this.model.backend.download(all);
    const s = this.opt.state;
    for (const { name } of this.shapes) {
      for (const [prefix, map] of [
        ['p', this.hostParams],
        ['m', s.m],
        ['v', s.v],
      ] as const) {
        const data = host[`${prefix}.${name}`]!.data as Float32Array;
        const t = map.get(name);
        if (t) t.set(data);
        else map.set(name, data);
      }
    }
    this.hostStale = false;
  }

  /** Frees the device copies (the host arrays are brought up to date first). */
  async release(): Promise<void> {
    await this.sync();
    if (this.dev) for (const map of [this.dev.p, this.dev.m, this.dev.v]) for (const t of map.values()) t.dispose();
    this.dev = undefined;
  }

  private checkHost(what: string): void {
    if (this.hostStale)
      throw new Error(
        `LoraTrainer.${what}: the adapter is in device memory and has changed since the last sync; await trainer.sync() first`,
      );
  }

  /** The adapter and moments on the device, uploaded from the host arrays the first time. */
  private async deviceState(): Promise<DeviceState> {
    if (this.dev) return this.dev;
    const s = this.opt.state;
    const feeds: Record<string, HostTensor> = {};
    for (const { name, dims } of this.shapes) {
      const p = this.hostParams.get(name);
      if (!p) throw new Error(`LoraTrainer: the adapter has no tensor ${name}`);
      const n = dims[0]! * dims[1]!;
      const t = (data: Float32Array | undefined): HostTensor => {
        if (data && data.length !== n)
          throw new Error(`LoraTrainer: ${name} has ${data.length} values, expected [${dims.join(', ')}]`);
        return { dtype: 'float32', dims, data: data ?? new Float32Array(n) };
      };
      Object.assign(feeds, { [`p.${name}`]: t(p), [`m.${name}`]: t(s.m.get(name)), [`v.${name}`]: t(s.v.get(name)) });
    }
    const up = await this.model.backend.upload(feeds);
    const pick = (prefix: string) => new Map(this.shapes.map(({ name }) => [name, up[`${prefix}.${name}`]!]));
    this.dev = { p: pick('p'), m: pick('m'), v: pick('v') };
    return this.dev;
  }

  /** The k of the teacher cache (0 = none): never more than the vocabulary. */
  get teacherK(): number {
    return this.cfg.loss === 'kl' ? Math.min(this.cfg.teacherTopK ?? 0, this.model.config.vocabSize) : 0;
  }

  /** The teacher cache holds whole distributions (k = V): the train graph reads them as teacher_logprobs. */
  private get teacherExact(): boolean {
    return this.teacherK === this.model.config.vocabSize;
  }

  /**
   * Computes the teacher's top-k (or, with k = V, its whole distribution) for every sample that has
   * none yet, in order, `microBatch` at a time: a deterministic pass, so a resumed run that calls it
   * on the same list gets the same values. One teacher forward per sample, instead of one per
   * sample per epoch.
   */
  async cacheTeacher(samples: readonly DistillSample[]): Promise<void> {
    const k = this.teacherK;
    const todo = samples.filter((s) => s.teacherTop?.k !== k);
    if (!k || !todo.length) return;
    const exact = this.teacherExact;
    const temperature = this.cfg.temperature;
    this.teacherTopP ??= this.model.backend.session(
      exact
        ? buildTeacherLogProbsGraph(this.model.graphs, { temperature })
        : buildTeacherTopKGraph(this.model.graphs, { temperature, k }),
      { manyRows: true },
    );
    const session = await this.teacherTopP;
    const f64 = this.model.dtype === 'float64';
    for (let i = 0; i < todo.length; i += this.cfg.microBatch) {
      const mb = todo.slice(i, i + this.cfg.microBatch);
      const A = Math.max(...mb.map((s) => s.answerLength));
      const out = await session.run(this.teacherFeeds(mb, A));
      const lp = (exact ? out.lp : out.top_lp)!.data as Float32Array | Float64Array;
      const idx = exact ? new BigInt64Array(0) : (out.top_idx!.data as BigInt64Array);
      mb.forEach((s, b) => {
        const n = s.answerLength;
        const top: TeacherTop = {
          k,
          idx: exact ? idx : idx.slice(b * A * k, (b * A + n) * k),
          lp: lp.slice(b * A * k, (b * A + n) * k),
          tailP: f64 ? new Float64Array(n) : new Float32Array(n),
          tailLp: f64 ? new Float64Array(n) : new Float32Array(n),
        };
        for (let j = 0; j < n; j++) {
          let mass = 0;
          for (let c = 0; c < k; c++) mass += Math.exp(top.lp[j * k + c]!);
          const tail = k === this.model.config.vocabSize ? 0 : Math.max(0, 1 - mass);
          top.tailP[j] = tail;
          top.tailLp[j] = Math.log(Math.max(tail, 1e-30));
        }
        s.teacherTop = top;
      });
    }
  }

  /**
   * Frees the teacher graph's session (its memory: a second set of pre-packed weights and the
   * activations of whole passages) once every sample's top-k is computed; a later cacheTeacher
   * makes it again.
   */
  async releaseTeacher(): Promise<void> {
    const p = this.teacherTopP;
    this.teacherTopP = undefined;
    if (p) await this.model.backend.release(await p);
  }

  private session(): Promise<Session> {
    this.sessionP ??= this.model.backend.session(
      buildTrainGraph(this.model.graphs, {
        loss: this.cfg.loss,
        lora: this.cfg.lora,
        temperature: this.cfg.temperature,
        dropout: this.cfg.dropout,
        teacherTopK: (!this.teacherExact && this.teacherK) || undefined,
        teacherInput: this.teacherExact || undefined,
        checkpoint:
          process.env.DOCDISTILL_CHECKPOINT !== undefined
            ? process.env.DOCDISTILL_CHECKPOINT === '1'
            : (this.cfg.checkpoint ?? checkpointByDefault(this.model.config)),
      }),
      // On the device path the gradients stay there, for the accumulate and AdamW graphs.
      { manyRows: true, ...(this.onDevice ? { deviceOutputs: this.shapes.map((s) => `grad.${s.name}`) } : {}) },
    );
    return this.sessionP;
  }

  /** The learning rate of the next optimizer step. */
  currentLr(): number {
    return (
      this.cfg.lr *
      lrFactor(this.step, {
        kind: this.cfg.schedule,
        totalSteps: this.cfg.totalSteps,
        warmupSteps: this.cfg.warmupSteps,
      })
    );
  }

  /** Loss and gradients of one micro-batch (no update). Gradients are of the micro-batch's weighted mean loss. */
  async lossAndGrads(
    samples: DistillSample[],
  ): Promise<{ loss: number; grads: Map<string, Float32Array>; sampleLoss: Float32Array }> {
    await this.cacheTeacher(samples);
    if (this.onDevice) {
      const r = await this.deviceLossAndGrads(samples);
      try {
        const host = await this.model.backend.download(Object.fromEntries(r.grads));
        const grads = new Map(this.shapes.map(({ name }) => [name, host[name]!.data as Float32Array]));
        return { loss: r.loss, grads, sampleLoss: r.sampleLoss };
      } finally {
        for (const t of r.grads.values()) t.dispose();
      }
    }
    const feeds = { ...this.batchFeeds(samples), ...this.model.adapterFeeds(this.adapter()) };
    const out = await (await this.session()).run(feeds);
    const grads = new Map<string, Float32Array>();
    for (const name of this.params.keys()) grads.set(name, out[`grad.${name}`]!.data as Float32Array);
    return { loss: out.loss!.data[0] as number, grads, sampleLoss: out.sample_loss!.data as Float32Array };
  }

  /** A micro-batch on the device path: the adapter fed from device memory, the gradients left there. */
  private async deviceLossAndGrads(
    samples: DistillSample[],
  ): Promise<{ loss: number; grads: Map<string, DeviceTensor>; sampleLoss: Float32Array }> {
    await this.cacheTeacher(samples);
    const dev = await this.deviceState();
    const feeds: Record<string, Feed> = this.batchFeeds(samples);
    for (const [name, t] of dev.p) feeds[name] = t;
    const out = await (await this.session()).runMixed(feeds);
    const grads = new Map(this.shapes.map(({ name }) => [name, out.device[`grad.${name}`]!]));
    return { loss: out.host.loss!.data[0] as number, grads, sampleLoss: out.host.sample_loss!.data as Float32Array };
  }

  /** Loss of a batch without training (validation). */
  async evalLoss(samples: DistillSample[]): Promise<number> {
    let total = 0;
    let weight = 0;
    for (let i = 0; i < samples.length; i += this.cfg.microBatch) {
      const mb = samples.slice(i, i + this.cfg.microBatch);
      let sampleLoss: Float32Array;
      if (this.onDevice) {
        const r = await this.deviceLossAndGrads(mb);
        for (const t of r.grads.values()) t.dispose();
        sampleLoss = r.sampleLoss;
      } else sampleLoss = (await this.lossAndGrads(mb)).sampleLoss;
      mb.forEach((s, j) => {
        total += (s.weight ?? 1) * sampleLoss[j]!;
        weight += s.weight ?? 1;
      });
    }
    return weight ? total / weight : 0;
  }

  /** One optimizer step over `gradAccum` micro-batches (samples.length ≤ microBatch × gradAccum). */
  async trainStep(samples: DistillSample[]): Promise<StepResult> {
    const t0 = performance.now();
    if (samples.length === 0) throw new Error('trainStep: empty batch');
    const chunks: DistillSample[][] = [];
    for (let i = 0; i < samples.length; i += this.cfg.microBatch)
      chunks.push(samples.slice(i, i + this.cfg.microBatch));
    const totalWeight = samples.reduce((a, s) => a + (s.weight ?? 1), 0);
    if (this.onDevice) return this.deviceTrainStep(chunks, totalWeight, t0);
    const grads = new Map<string, Float32Array>();
    for (const [name, p] of this.params) grads.set(name, new Float32Array(p.length));
    let loss = 0;
    let tokens = 0;
    for (const mb of chunks) {
      const w = mb.reduce((a, s) => a + (s.weight ?? 1), 0) / totalWeight;
      const r = await this.lossAndGrads(mb);
      loss += w * r.loss;
      for (const [name, g] of r.grads) {
        const acc = grads.get(name)!;
        for (let i = 0; i < g.length; i++) acc[i]! += w * g[i]!;
      }
      tokens += mb.reduce(
        (a, s) => a + s.student.length + (this.cfg.loss === 'kl' && !this.teacherK ? s.teacher.length : 0),
        0,
      );
    }
    if (!Number.isFinite(loss))
      throw new Error(`training diverged: loss is ${loss} at step ${this.step + 1}; lower the learning rate`);
    const gradNorm = clipByGlobalNorm(grads, this.cfg.maxGradNorm);
    const lr = this.currentLr();
    this.opt.step(this.params, grads, lr);
    return { step: this.step, loss, gradNorm, lr, tokens, ms: performance.now() - t0 };
  }

  /**
   * trainStep on the device path: each micro-batch's gradients are added on the device (a·x + b·y,
   * the same weights as the host path's sum), then one AdamW graph clips and updates; the host gets
   * the loss and the gradient norm.
   */
  private async deviceTrainStep(chunks: DistillSample[][], totalWeight: number, t0: number): Promise<StepResult> {
    const be = this.model.backend;
    const dev = await this.deviceState();
    const names = this.shapes.map((s) => s.name);
    let acc: Map<string, DeviceTensor> | undefined;
    let accScale = 1;
    const dispose = (m?: Map<string, DeviceTensor>) => m?.forEach((t) => t.dispose());
    let loss = 0;
    let tokens = 0;
    try {
      for (const mb of chunks) {
        const w = mb.reduce((a, s) => a + (s.weight ?? 1), 0) / totalWeight;
        const r = await this.deviceLossAndGrads(mb);
        loss += w * r.loss;
        tokens += mb.reduce(
          (a, s) => a + s.student.length + (this.cfg.loss === 'kl' && !this.teacherK ? s.teacher.length : 0),
          0,
        );
        if (!acc) {
          // The first micro-batch's weight is applied by the next sum or by the AdamW graph.
          acc = r.grads;
          accScale = w;
          continue;
        }
        this.accumulateP ??= be.session(buildAccumulateGraph(this.shapes), {
          deviceOutputs: accumulateOutputs(this.shapes),
        });
        const s = await this.accumulateP;
        const out = await s.runMixed(accumulateFeeds(acc, accScale, r.grads, w));
        dispose(acc);
        dispose(r.grads);
        acc = new Map(names.map((n) => [n, out.device[`out.${n}`]!]));
        accScale = 1;
      }
      if (!Number.isFinite(loss))
        throw new Error(`training diverged: loss is ${loss} at step ${this.step + 1}; lower the learning rate`);
      const lr = this.currentLr();
      const step = this.opt.state.step + 1;
      const c = { beta1: this.cfg.beta1, beta2: this.cfg.beta2, eps: this.cfg.eps };
      this.adamWP ??= be.session(buildAdamWGraph(this.shapes, c), { deviceOutputs: adamWDeviceOutputs(this.shapes) });
      const s = await this.adamWP;
      const scalars = adamWScalars({
        ...c,
        step,
        lr,
        weightDecay: this.cfg.weightDecay,
        maxGradNorm: this.cfg.maxGradNorm,
        gradScale: accScale,
      });
      const out = await s.runMixed(adamWFeeds(dev.p, dev.m, dev.v, acc!, scalars));
      const next = adamWResults(names, out.device);
      for (const map of [dev.p, dev.m, dev.v]) dispose(map);
      this.dev = next;
      this.opt.state.step = step;
      this.hostStale = true;
      return { step, loss, gradNorm: out.host.grad_norm!.data[0] as number, lr, tokens, ms: performance.now() - t0 };
    } finally {
      dispose(acc);
    }
  }

  /** Right-padded feeds of the train graph for a micro-batch. */
  batchFeeds(samples: DistillSample[]): Record<string, HostTensor> {
    const B = samples.length;
    const Ts = Math.max(...samples.map((s) => s.student.length));
    const A = Math.max(...samples.map((s) => s.answerLength));
    for (const s of samples) {
      if (
        s.answerLength < 1 ||
        s.answerLength >= s.student.length ||
        (this.cfg.loss === 'kl' && s.answerLength >= s.teacher.length)
      ) {
        throw new Error(
          `a training sample needs 1 ≤ answer length < prompt + answer length (answer ${s.answerLength}, student ${s.student.length}, teacher ${s.teacher.length})`,
        );
      }
    }
    const acc = this.model.dtype === 'float64' ? 'float64' : 'float32';
    const floats = (n: number) => (acc === 'float64' ? new Float64Array(n) : new Float32Array(n));
    const ids = new BigInt64Array(B * Ts);
    const mask = new BigInt64Array(B * Ts);
    const pos = new BigInt64Array(B * Ts);
    const sIdx = new BigInt64Array(B * A);
    const aMask = floats(B * A);
    const answerIds = new BigInt64Array(B * A);
    const sw = floats(B);
    samples.forEach((s, b) => {
      s.student.forEach((t, i) => {
        ids[b * Ts + i] = BigInt(t);
        mask[b * Ts + i] = 1n;
        pos[b * Ts + i] = BigInt(i);
      });
      const start = s.student.length - s.answerLength;
      for (let j = 0; j < s.answerLength; j++) {
        sIdx[b * A + j] = BigInt(start + j - 1);
        aMask[b * A + j] = 1;
        answerIds[b * A + j] = BigInt(s.student[start + j]!);
      }
      sw[b] = s.weight ?? 1;
    });
    const feeds: Record<string, HostTensor> = {
      ids: { dtype: 'int64', dims: [B, Ts], data: ids },
      mask: { dtype: 'int64', dims: [B, Ts], data: mask },
      positions: { dtype: 'int64', dims: [B, Ts], data: pos },
      student_idx: { dtype: 'int64', dims: [B, A], data: sIdx },
      answer_mask: { dtype: acc, dims: [B, A], data: aMask },
      sample_weights: { dtype: acc, dims: [B], data: sw },
    };
    if (this.cfg.loss === 'ce') {
      feeds.answer_ids = { dtype: 'int64', dims: [B, A], data: answerIds };
    } else if (this.teacherExact) {
      Object.assign(feeds, this.teacherExactFeeds(samples, A, acc));
    } else if (this.teacherK) {
      Object.assign(feeds, this.teacherTopFeeds(samples, A, acc));
    } else Object.assign(feeds, this.teacherFeeds(samples, A));
    if (this.cfg.dropout > 0) Object.assign(feeds, this.dropoutFeeds(B, Ts, A));
    return feeds;
  }

  /** The cached whole teacher distributions of a micro-batch, padded to A answer positions (uniform, masked anyway). */
  private teacherExactFeeds(
    samples: DistillSample[],
    A: number,
    acc: 'float32' | 'float64',
  ): Record<string, HostTensor> {
    const B = samples.length;
    const V = this.model.config.vocabSize;
    const lp = (acc === 'float64' ? new Float64Array(B * A * V) : new Float32Array(B * A * V)).fill(-Math.log(V));
    samples.forEach((s, b) => {
      const t = s.teacherTop;
      if (!t || t.k !== V)
        throw new Error('LoraTrainer: a sample has no cached teacher distribution (call cacheTeacher first)');
      lp.set(t.lp, b * A * V);
    });
    return { teacher_logprobs: { dtype: acc, dims: [B, A, V], data: lp } };
  }

  /** The cached teacher top-k of a micro-batch, padded to A answer positions (padding: id 0, mass 0, masked anyway). */
  private teacherTopFeeds(samples: DistillSample[], A: number, acc: 'float32' | 'float64'): Record<string, HostTensor> {
    const B = samples.length;
    const k = this.teacherK;
    const floats = (n: number) => (acc === 'float64' ? new Float64Array(n) : new Float32Array(n));
    const idx = new BigInt64Array(B * A * k);
    const lp = floats(B * A * k).fill(-30);
    const tailP = floats(B * A);
    const tailLp = floats(B * A).fill(-30);
    samples.forEach((s, b) => {
      const t = s.teacherTop;
      if (!t || t.k !== k) throw new Error('LoraTrainer: a sample has no teacher top-k (call cacheTeacher first)');
      idx.set(t.idx, b * A * k);
      lp.set(t.lp, b * A * k);
      tailP.set(t.tailP, b * A);
      tailLp.set(t.tailLp, b * A);
    });
    return {
      teacher_top_idx: { dtype: 'int64', dims: [B, A, k], data: idx },
      teacher_top_lp: { dtype: acc, dims: [B, A, k], data: lp },
      teacher_tail_p: { dtype: acc, dims: [B, A], data: tailP },
      teacher_tail_lp: { dtype: acc, dims: [B, A], data: tailLp },
    };
  }

  /** Right-padded teacher inputs of a micro-batch (ids, mask, positions, answer positions). */
  private teacherFeeds(samples: readonly DistillSample[], A: number): Record<string, HostTensor> {
    const B = samples.length;
    const Tt = Math.max(...samples.map((s) => s.teacher.length));
    const tIds = new BigInt64Array(B * Tt);
    const tMask = new BigInt64Array(B * Tt);
    const tPos = new BigInt64Array(B * Tt);
    const tIdx = new BigInt64Array(B * A);
    samples.forEach((s, b) => {
      s.teacher.forEach((t, i) => {
        tIds[b * Tt + i] = BigInt(t);
        tMask[b * Tt + i] = 1n;
        tPos[b * Tt + i] = BigInt(i);
      });
      const start = s.teacher.length - s.answerLength;
      for (let j = 0; j < s.answerLength; j++) tIdx[b * A + j] = BigInt(start + j - 1);
    });
    return {
      teacher_ids: { dtype: 'int64', dims: [B, Tt], data: tIds },
      teacher_mask: { dtype: 'int64', dims: [B, Tt], data: tMask },
      teacher_positions: { dtype: 'int64', dims: [B, Tt], data: tPos },
      teacher_idx: { dtype: 'int64', dims: [B, A], data: tIdx },
    };
  }

  private dropoutFeeds(B: number, T: number, A: number): Record<string, HostTensor> {
    const p = this.cfg.dropout;
    const keep = 1 / (1 - p);
    const feeds: Record<string, HostTensor> = {};
    let total = 0;
    for (const i of loraInputs(this.model.config, this.cfg.lora)) {
      if (i.which !== 'a') continue;
      const rows = i.layer === 'lm_head' ? B * A : B * T;
      total += rows * i.shape[0];
      if (total > DROPOUT_BUDGET) {
        throw new Error(
          `LoRA dropout needs ${total}+ mask values per micro-batch here (limit ${DROPOUT_BUDGET}); set dropout to 0 or use a smaller micro-batch`,
        );
      }
      const m = new Float32Array(rows * i.shape[0]);
      for (let k = 0; k < m.length; k++) m[k] = this.rng.next() < p ? 0 : keep;
      const name = i.layer === 'lm_head' ? 'lora.lm_head.drop' : `lora.${i.layer}.${i.module}.drop`;
      feeds[name] = {
        dtype: 'float32',
        dims: i.layer === 'lm_head' ? [B, A, i.shape[0]] : [B, T, i.shape[0]],
        data: m,
      };
    }
    return feeds;
  }

  /** Identifies the graph a trainer uses (for logs). */
  describe(): string {
    return `${this.cfg.loss} ${loraSpecKey(this.cfg.lora)} on ${this.model.backend.provider}/${this.model.dtype}`;
  }
}
