// Batched generation with a KV cache: prefill every prompt (left-padded into one batch), then one
// decode step per new token. The cache lives in preallocated buffers laid out [position, batch,
// kv head, head dim], so the cache so far is a prefix of each buffer, fed to the step graph
// without copying; a step returns only the last logits and the new rows, which are appended.
import { DeviceTensor, keepsOutputsOnDevice, type Feed, type HostTensor, type Session } from '../backend';
import type { ModelConfig } from '../models/config';
import type { TypedData } from '../graph';
import type { AdapterWeights, CausalLM } from '../models/model';
import { sampleToken, seededRandom, type SamplingOptions } from './sampling';
import { hasNonFinite, nonFiniteError } from '../models/finite';

export { sampleToken, seededRandom, type SamplingOptions } from './sampling';

export interface GenerateOptions extends SamplingOptions {
  /** New tokens per prompt at most (default 128). */
  maxTokens?: number;
  /** Token ids that end a sequence (default: the model's end-of-sequence ids). Not included in the output. */
  stopTokens?: readonly number[];
  /** Strings that end a sequence; the output is cut before the first one. */
  stopStrings?: readonly string[];
  adapter?: AdapterWeights;
  /**
   * The model's weights fed as graph inputs instead of the ones it was loaded with, keyed as the
   * graph names them (w.<engine name>): a model being trained decodes with its current weights,
   * e.g. FullTrainer.weightFeeds(), with no copy into the model.
   */
  weights?: Record<string, HostTensor>;
  /**
   * One seed per prompt (default: seed + its row index), so that identical prompts in one batch give
   * different samples, and a prompt given the same seed alone gives the same output as in a batch.
   */
  seeds?: readonly number[];
  /** Called with each piece of new text of a sequence as soon as it is final. */
  onText?: (index: number, text: string) => void;
  signal?: AbortSignal;
  /**
   * Keep the KV cache (and the adapter) in device memory between decode steps (default: on
   * providers that can, i.e. WebGPU). false = the cache crosses host↔device every step, as on
   * the CPU; for measuring the difference.
   */
  cacheOnDevice?: boolean;
  /** Called once at the end with where the time went (as llama.cpp reports prompt eval and eval). */
  onTimings?: (t: GenerateTimings) => void;
}

/** Time in the prefill and in the decode steps of one `generate` call. */
export interface GenerateTimings {
  /** The prefill: every prompt through the step graph at once, up to the first logits. */
  prefillMs: number;
  /** Prompt tokens prefilled (left padding not counted). */
  prefillTokens: number;
  /** Every decode step, with sampling and detokenising between them. */
  decodeMs: number;
  /** Tokens that went through a decode step (rows still generating at that step). */
  decodeTokens: number;
}

export interface Generation {
  ids: number[];
  text: string;
  finishReason: 'stop' | 'length' | 'aborted';
}

interface Cache {
  len: number;
  feeds(): Record<string, Feed>;
  append(out: { host: Record<string, HostTensor>; device: Record<string, DeviceTensor> }, T: number): void;
  dispose(): void;
}

/** The cache in preallocated host buffers; a step returns only its new rows (new_k/new_v). */
class HostKvCache implements Cache {
  readonly k: TypedData[] = [];
  readonly v: TypedData[] = [];
  len = 0;
  private readonly row: number;

  constructor(
    layers: number,
    readonly B: number,
    readonly K: number,
    readonly E: number,
    readonly capacity: number,
    readonly dtype: 'float32' | 'float16' | 'float64',
  ) {
    this.row = B * K * E;
    const make = () =>
      dtype === 'float32'
        ? new Float32Array(capacity * this.row)
        : dtype === 'float16'
          ? new Uint16Array(capacity * this.row)
          : new Float64Array(capacity * this.row);
    for (let l = 0; l < layers; l++) {
      this.k.push(make());
      this.v.push(make());
    }
  }

  feeds(): Record<string, HostTensor> {
    const f: Record<string, HostTensor> = {};
    const dims = [this.len, this.B, this.K, this.E];
    const n = this.len * this.row;
    this.k.forEach((buf, l) => {
      f[`past_k.${l}`] = { dtype: this.dtype, dims, data: buf.subarray(0, n) as TypedData };
      f[`past_v.${l}`] = { dtype: this.dtype, dims, data: this.v[l]!.subarray(0, n) as TypedData };
    });
    return f;
  }

  append({ host: out }: { host: Record<string, HostTensor> }, T: number): void {
    if (this.len + T > this.capacity) throw new Error(`KV cache overflow: ${this.len} + ${T} > ${this.capacity}`);
    const off = this.len * this.row;
    for (let l = 0; l < this.k.length; l++) {
      (this.k[l] as Float32Array).set(out[`new_k.${l}`]!.data as Float32Array, off);
      (this.v[l] as Float32Array).set(out[`new_v.${l}`]!.data as Float32Array, off);
    }
    this.len += T;
  }

  dispose(): void {}
}

/**
 * The cache in device memory: a step takes the whole cache as past and returns it with its rows
 * appended (present_k/present_v), which stays on the device for the next step.
 */
class DeviceKvCache implements Cache {
  private k: Feed[];
  private v: Feed[];
  len = 0;

  constructor(layers: number, B: number, K: number, E: number, dtype: 'float32' | 'float16' | 'float64') {
    const empty = (): HostTensor => ({
      dtype,
      dims: [0, B, K, E],
      data: dtype === 'float32' ? new Float32Array(0) : dtype === 'float16' ? new Uint16Array(0) : new Float64Array(0),
    });
    this.k = Array.from({ length: layers }, empty);
    this.v = Array.from({ length: layers }, empty);
  }

  feeds(): Record<string, Feed> {
    const f: Record<string, Feed> = {};
    this.k.forEach((t, l) => {
      f[`past_k.${l}`] = t;
      f[`past_v.${l}`] = this.v[l]!;
    });
    return f;
  }

  append({ device }: { device: Record<string, DeviceTensor> }, T: number): void {
    this.dispose();
    this.k = this.k.map((_, l) => device[`present_k.${l}`]!);
    this.v = this.v.map((_, l) => device[`present_v.${l}`]!);
    this.len += T;
  }

  dispose(): void {
    for (const t of [...this.k, ...this.v]) if (t instanceof DeviceTensor) t.dispose();
  }
}

/**
 * Runs a step graph over a batch: prefill of left-padded prompts, then decode steps of one token
 * per row, with the KV cache in preallocated buffers.
 */
export class Stepper {
  private readonly cache: Cache;
  private mask = new BigInt64Array(0);
  private S = 0;
  private readonly lengths: number[] = [];

  constructor(
    private readonly session: Session,
    cfg: ModelConfig,
    dtype: 'float32' | 'float16' | 'float64',
    readonly batch: number,
    capacity: number,
    private readonly extraFeeds: Record<string, Feed> = {},
    /** The session is a step graph with cacheOnDevice (present_k/v kept on the device). */
    cacheOnDevice = false,
  ) {
    this.cache = cacheOnDevice
      ? new DeviceKvCache(cfg.numLayers, batch, cfg.numKvHeads, cfg.headDim, dtype)
      : new HostKvCache(cfg.numLayers, batch, cfg.numKvHeads, cfg.headDim, capacity, dtype);
  }

  /** Frees the device memory of the cache now (it is freed at GC otherwise). */
  dispose(): void {
    this.cache.dispose();
  }

  /** Prefills the prompts (one per row); returns the logits of each row's last token, [B × V]. */
  async prefill(prompts: readonly (readonly number[])[]): Promise<Float32Array> {
    const B = this.batch;
    if (prompts.length !== B) throw new Error(`prefill: ${prompts.length} prompts for a batch of ${B}`);
    if (this.cache.len) throw new Error('prefill: this stepper has already run');
    const Tp = Math.max(...prompts.map((p) => p.length));
    const ids = new BigInt64Array(B * Tp);
    const pos = new BigInt64Array(B * Tp);
    this.mask = new BigInt64Array(B * Tp);
    prompts.forEach((p, b) => {
      const off = Tp - p.length;
      p.forEach((t, i) => {
        ids[b * Tp + off + i] = BigInt(t);
        this.mask[b * Tp + off + i] = 1n;
        pos[b * Tp + off + i] = BigInt(i);
      });
      this.lengths[b] = p.length;
    });
    this.S = Tp;
    return this.run(ids, pos, Tp);
  }

  /** Appends one token per row; returns the next logits [B × V]. */
  async decode(tokens: readonly number[]): Promise<Float32Array> {
    const B = this.batch;
    const S1 = this.S + 1;
    const m2 = new BigInt64Array(B * S1);
    for (let b = 0; b < B; b++) {
      m2.set(this.mask.subarray(b * this.S, (b + 1) * this.S), b * S1);
      m2[b * S1 + this.S] = 1n;
    }
    this.mask = m2;
    this.S = S1;
    const pos = BigInt64Array.from(this.lengths, (n) => BigInt(n));
    for (let b = 0; b < B; b++) this.lengths[b]!++;
    return this.run(
      BigInt64Array.from(tokens, (t) => BigInt(t)),
      pos,
      1,
    );
  }

  private async run(ids: BigInt64Array, pos: BigInt64Array, T: number): Promise<Float32Array> {
    const B = this.batch;
    const out = await this.session.runMixed({
      ids: { dtype: 'int64', dims: [B, T], data: ids },
      mask: { dtype: 'int64', dims: [B, this.S], data: this.mask },
      positions: { dtype: 'int64', dims: [B, T], data: pos },
      ...this.cache.feeds(),
      ...this.extraFeeds,
    });
    this.cache.append(out, T);
    const l = out.host.logits!.data;
    return l instanceof Float32Array ? l : Float32Array.from(l as Float64Array);
  }
}

/** Generates a continuation of each prompt (token ids), all prompts in one batch. */
export async function generate(
  model: CausalLM,
  prompts: number[][],
  opts: GenerateOptions = {},
): Promise<Generation[]> {
  const cfg = model.config;
  const B = prompts.length;
  if (B === 0) return [];
  if (prompts.some((p) => p.length === 0)) throw new Error('generate: every prompt needs at least one token');
  model.checkIds(prompts);
  const maxTokens = opts.maxTokens ?? 128;
  const stopTokens = new Set(opts.stopTokens ?? model.tokenizer.eosIds);
  const stopStrings = (opts.stopStrings ?? []).filter((s) => s.length > 0);
  const holdBack = Math.max(0, ...stopStrings.map((s) => s.length - 1));
  const Tp = Math.max(...prompts.map((p) => p.length));
  if (Tp + maxTokens > cfg.maxPositionEmbeddings) {
    throw new Error(
      `prompt (${Tp} tokens) + max tokens (${maxTokens}) exceed the model's context of ${cfg.maxPositionEmbeddings}`,
    );
  }
  const onDevice = opts.cacheOnDevice ?? keepsOutputsOnDevice(model.backend.provider);
  const session = await model.session(
    onDevice ? 'step-device' : 'step',
    opts.adapter?.spec,
    opts.weights !== undefined,
  );
  const adapterFeeds = onDevice ? await model.residentAdapterFeeds(opts.adapter) : model.adapterFeeds(opts.adapter);
  const stepper = new Stepper(
    session,
    cfg,
    model.dtype,
    B,
    Tp + maxTokens,
    { ...adapterFeeds, ...opts.weights },
    onDevice,
  );
  try {
    return await decodeLoop(model, stepper, prompts, opts, maxTokens, stopTokens, stopStrings, holdBack);
  } finally {
    stepper.dispose();
    for (const t of Object.values(adapterFeeds)) if (t instanceof DeviceTensor) t.dispose();
  }
}

async function decodeLoop(
  model: CausalLM,
  stepper: Stepper,
  prompts: number[][],
  opts: GenerateOptions,
  maxTokens: number,
  stopTokens: ReadonlySet<number>,
  stopStrings: readonly string[],
  holdBack: number,
): Promise<Generation[]> {
  const B = prompts.length;
  // One random stream per prompt: a prompt's output does not depend on what it is batched with.
  if (opts.seeds && opts.seeds.length !== B) throw new Error(`generate: ${opts.seeds.length} seeds for ${B} prompts`);
  const rngs = prompts.map((_, b) => seededRandom(opts.seeds?.[b] ?? (opts.seed ?? 0) + b * 1_000_003));

  const gen: number[][] = prompts.map(() => []);
  const texts = prompts.map(() => '');
  const emitted = prompts.map(() => 0);
  const done: (Generation['finishReason'] | undefined)[] = prompts.map(() => undefined);

  const t0 = performance.now();
  let logits = await stepper.prefill(prompts);
  const t1 = performance.now();
  let decodeTokens = 0;

  const flush = (b: number, final: boolean) => {
    const t = texts[b]!;
    let upTo = final ? t.length : t.length - holdBack;
    // Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) until its bytes arrive.
    while (!final && upTo > emitted[b]! && t.charCodeAt(upTo - 1) === 0xfffd) upTo--;
    if (upTo > emitted[b]!) {
      opts.onText?.(b, t.slice(emitted[b], upTo));
      emitted[b] = upTo;
    }
  };

  for (;;) {
    const V = logits.length / B;
    const next = new Array<number>(B).fill(0);
    for (let b = 0; b < B; b++) {
      if (done[b]) continue;
      const row = logits.subarray(b * V, (b + 1) * V);
      // NaN logits would sample a fixed token (or none) and come out as empty text with success.
      if (hasNonFinite(row)) throw nonFiniteError('generate', model, opts.adapter ? {} : undefined);
      const tok = sampleToken(row, opts, rngs[b]!);
      next[b] = tok;
      if (stopTokens.has(tok)) {
        done[b] = 'stop';
        flush(b, true);
        continue;
      }
      gen[b]!.push(tok);
      texts[b] = model.tokenizer.decode(gen[b]!, { skipSpecialTokens: true });
      const hit = stopStrings.map((s) => texts[b]!.indexOf(s)).filter((i) => i >= 0);
      if (hit.length) {
        texts[b] = texts[b]!.slice(0, Math.min(...hit));
        done[b] = 'stop';
        flush(b, true);
        continue;
      }
      if (gen[b]!.length >= maxTokens) {
        done[b] = 'length';
        flush(b, true);
        continue;
      }
      flush(b, false);
    }
    if (done.every((d) => d)) break;
    if (opts.signal?.aborted) {
      done.forEach((d, b) => {
        if (!d) {
          done[b] = 'aborted';
          flush(b, true);
        }
      });
      break;
    }
    // Decode step: one new token per row (finished rows feed a token that nothing reads).
    decodeTokens += done.filter((d) => !d).length;
    logits = await stepper.decode(next);
  }
  opts.onTimings?.({
    prefillMs: t1 - t0,
    prefillTokens: prompts.reduce((n, p) => n + p.length, 0),
    decodeMs: performance.now() - t1,
    decodeTokens,
  });
  return prompts.map((_, b) => ({ ids: gen[b]!, text: texts[b]!, finishReason: done[b]! }));
}
