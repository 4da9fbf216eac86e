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
  /**
   * Compute a beginning that several prompts share once (default true unless the environment has
   * DOCDISTILL_SHARED_PREFIX=0; see Stepper.prefill). false = every prompt prefilled in full, for
   * comparison.
   */
  sharePrefixes?: boolean;
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
  /** Decode steps run: the batch runs until its longest row stops (finished rows ride along). */
  decodeSteps: number;
  /**
   * Prompt tokens whose keys and values were copied from another prompt of the batch with the same
   * beginning instead of being computed again (see Stepper.prefill).
   */
  prefixReusedTokens: number;
  /**
   * Positions the prefill ran through the model, left padding included: about what it cost. The
   * batch × its longest prompt for a plain prefill; less when prompts share their beginning.
   */
  prefillPositions: number;
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

  /**
   * Starts the cache with `len` positions: row b's positions [len − rows[b].length, len) copied from
   * row rows[b].from of another step's new_k/new_v (laid out [len, G, K, E], right-aligned the same
   * way); the rest zero (masked out).
   */
  seed(
    src: Record<string, HostTensor>,
    len: number,
    G: number,
    rows: readonly { from: number; length: number }[],
  ): void {
    if (len > this.capacity) throw new Error(`KV cache overflow: ${len} > ${this.capacity}`);
    const w = this.K * this.E;
    for (let l = 0; l < this.k.length; l++) {
      for (const [dst, name] of [
        [this.k[l]!, `new_k.${l}`],
        [this.v[l]!, `new_v.${l}`],
      ] as const) {
        const from = src[name]!.data as Float32Array;
        const to = dst as Float32Array;
        to.fill(0, 0, len * this.row);
        rows.forEach((r, b) => {
          for (let p = len - r.length; p < len; p++)
            to.set(from.subarray((p * G + r.from) * w, (p * G + r.from + 1) * w), p * this.row + b * w);
        });
      }
    }
    this.len = len;
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

/** Positions a prefill run computes at most (Stepper.prefillChunk). */
export const PREFILL_CHUNK_POSITIONS = 2048;

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

  /** Prompt tokens of the last prefill whose keys and values were shared, not computed (see prefill). */
  prefixReusedTokens = 0;
  /**
   * Positions the last prefill ran through the model, left padding included (what it cost): the
   * batch × the longest prompt for a plain prefill; with shared beginnings, those beginnings padded
   * to the longest plus every row's rest padded to the longest rest.
   */
  prefillPositions = 0;
  /** Whether prefill() may share the common beginning of prompts. */
  sharePrefixes = true;

  /**
   * Prefills the prompts (one per row); returns the logits of each row's last token, [B × V].
   *
   * Prompts that begin alike (the same passage asked several questions, one prompt sampled several
   * times) share the work, as vLLM's prefix caching does: the common beginning of each group is
   * computed once, in a first run over one row per group, its keys and values are copied into the
   * cache of every row of the group, and a second run computes only what follows. Both runs are
   * the ordinary step graph (the second with the copied cache as its past; the gap between a row's
   * prefix and its suffix is masked out, and positions are the tokens' own), so the result is the
   * plain prefill's up to rounding. A prompt that shares nothing may put its own beginning in the
   * first run too, so that the second run, padded to its longest row, stays short. Used with the
   * cache in host memory, when it saves at least a fifth of the positions computed (see
   * sharedPrefixes); with the cache on the device every prompt is prefilled whole.
   */
  async prefill(prompts: readonly (readonly number[])[]): Promise<Float32Array> {
    const B = this.batch;
    if (prompts.length !== B) throw new Error(`prefill: ${prompts.length} prompts for a batch of ${B}`);
    if (this.cache.len) throw new Error('prefill: this stepper has already run');
    this.prefixReusedTokens = 0;
    this.prefillPositions = 0;
    const plan = this.sharePrefixes && this.cache instanceof HostKvCache ? sharedPrefixes(prompts) : undefined;
    if (plan) return this.prefillShared(prompts, plan);
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
    this.prefillPositions = B * Tp;
    return this.runChunked(ids, pos, this.mask, Tp);
  }

  /**
   * Positions one prefill run computes at most. A longer batch is prefilled in pieces of time
   * (chunked prefill, as vLLM and llama.cpp do), each run attending to the cache the earlier ones
   * wrote: the activations of a piece, not of the whole batch, are in memory at once, and the
   * logits are the plain prefill's up to rounding.
   */
  prefillChunk = PREFILL_CHUNK_POSITIONS;

  /** Runs [B, Tp] prompts after the cache (mask [B, cache + Tp]) through the model in pieces of prefillChunk. */
  private async runChunked(
    ids: BigInt64Array<ArrayBuffer>,
    pos: BigInt64Array<ArrayBuffer>,
    mask: BigInt64Array<ArrayBuffer>,
    Tp: number,
  ): Promise<Float32Array> {
    const B = this.batch;
    const past = this.cache.len;
    const c = Math.max(1, Math.floor(this.prefillChunk / B));
    if (c >= Tp) {
      this.S = past + Tp;
      this.mask = mask;
      return this.run(ids, pos, Tp);
    }
    const piece = (src: BigInt64Array<ArrayBuffer>, width: number, from: number, to: number) => {
      const out = new BigInt64Array(B * (to - from));
      for (let b = 0; b < B; b++) out.set(src.subarray(b * width + from, b * width + to), b * (to - from));
      return out;
    };
    const S = past + Tp;
    let logits: Float32Array | undefined;
    for (let t0 = 0; t0 < Tp; t0 += c) {
      const t1 = Math.min(Tp, t0 + c);
      this.S = past + t1;
      this.mask = piece(mask, S, 0, past + t1);
      logits = await this.run(piece(ids, Tp, t0, t1), piece(pos, Tp, t0, t1), t1 - t0);
    }
    return logits!;
  }

  private async prefillShared(prompts: readonly (readonly number[])[], plan: PrefixPlan): Promise<Float32Array> {
    const B = this.batch;
    const G = plan.groups.length;
    // Run 1: each group's prefix once, right-aligned (left-padded) in a batch of G rows.
    const P = Math.max(...plan.groups.map((g) => g.length));
    const pIds = new BigInt64Array(G * P);
    const pPos = new BigInt64Array(G * P);
    const pMask = new BigInt64Array(G * P);
    plan.groups.forEach((g, r) => {
      const src = prompts[g.rows[0]!]!;
      for (let i = 0; i < g.length; i++) {
        const at = r * P + P - g.length + i;
        pIds[at] = BigInt(src[i]!);
        pPos[at] = BigInt(i);
        pMask[at] = 1n;
      }
    });
    const first = await this.session.runMixed({
      ids: { dtype: 'int64', dims: [G, P], data: pIds },
      mask: { dtype: 'int64', dims: [G, P], data: pMask },
      positions: { dtype: 'int64', dims: [G, P], data: pPos },
      ...emptyPast(this.cache as HostKvCache, G),
      ...this.extraFeeds,
    });
    // Every row's cache starts with its group's prefix (rows in no group: nothing).
    const rowOf = new Array<{ from: number; length: number }>(B).fill({ from: 0, length: 0 });
    plan.groups.forEach((g, r) => g.rows.forEach((b) => (rowOf[b] = { from: r, length: g.length })));
    (this.cache as HostKvCache).seed(first.host, P, G, rowOf);
    // Run 2: what follows each row's prefix, left-padded, after the shared past.
    const T = Math.max(...prompts.map((p, b) => p.length - rowOf[b]!.length));
    const ids = new BigInt64Array(B * T);
    const pos = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * (P + T));
    prompts.forEach((p, b) => {
      const shared = rowOf[b]!.length;
      for (let j = P - shared; j < P; j++) mask[b * (P + T) + j] = 1n;
      const rest = p.length - shared;
      for (let i = 0; i < rest; i++) {
        const t = T - rest + i;
        ids[b * T + t] = BigInt(p[shared + i]!);
        pos[b * T + t] = BigInt(shared + i);
        mask[b * (P + T) + P + t] = 1n;
      }
      this.lengths[b] = p.length;
    });
    this.prefixReusedTokens = plan.groups.reduce((n, g) => n + g.length * (g.rows.length - 1), 0);
    this.prefillPositions = G * P + B * T;
    return this.runChunked(ids, pos, mask, T);
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
  // DOCDISTILL_SHARED_PREFIX=0 turns sharing off everywhere (an A/B switch for whole runs).
  stepper.sharePrefixes = opts.sharePrefixes ?? process.env.DOCDISTILL_SHARED_PREFIX !== '0';
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
  let decodeTokens = 0,
    decodeSteps = 0;

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
    decodeSteps++;
    logits = await stepper.decode(next);
  }
  opts.onTimings?.({
    prefillMs: t1 - t0,
    prefillTokens: prompts.reduce((n, p) => n + p.length, 0),
    decodeMs: performance.now() - t1,
    decodeTokens,
    decodeSteps,
    prefixReusedTokens: stepper.prefixReusedTokens,
    prefillPositions: stepper.prefillPositions,
  });
  return prompts.map((_, b) => ({ ids: gen[b]!, text: texts[b]!, finishReason: done[b]! }));
}

interface PrefixPlan {
  /**
   * Beginnings computed once, in the first run, each with the rows that continue from it: rows that
   * share their first `length` tokens, or a single row whose long beginning goes there so that the
   * second run stays short. Every row keeps at least one token of its own (whose logits the prefill
   * returns); a row in no group is prefilled whole in the second run.
   */
  groups: { rows: number[]; length: number }[];
}

/** The least saving, in positions, worth a second run of the step graph. */
const MIN_SAVED = 16;

/**
 * How a prefill of these prompts shares work (see Stepper.prefill), or undefined when the plain
 * prefill costs about as much.
 *
 * The cost of a prefill is the positions it runs through the model, padding included: B × the
 * longest prompt for the plain one; G × P + B × T for a shared one, whose first run computes G
 * beginnings padded to the longest, P, and whose second run every row's rest padded to the longest,
 * T. For each width T the rows are taken in sorted order (rows with a long common beginning are then
 * neighbours) and grouped while the group's common beginning leaves at most T tokens of each row to
 * the second run; growing each group as far as it goes gives the fewest groups for that T, since any
 * run of rows inside a group that works works too. The cheapest T is used when it saves a fifth of
 * the plain cost (and at least MIN_SAVED positions) and the cache needs no more positions than the
 * plain prefill's (P + T ≤ the longest prompt).
 */
export function sharedPrefixes(prompts: readonly (readonly number[])[]): PrefixPlan | undefined {
  const B = prompts.length;
  if (B < 2) return undefined;
  const lcp = (a: readonly number[], b: readonly number[]) => {
    let i = 0;
    while (i < a.length && i < b.length && a[i] === b[i]) i++;
    return i;
  };
  const order = [...prompts.keys()].sort((a, b) => {
    const x = prompts[a]!,
      y = prompts[b]!;
    const i = lcp(x, y);
    return i < x.length && i < y.length ? x[i]! - y[i]! : x.length - y.length || a - b;
  });
  const len = order.map((r) => prompts[r]!.length);
  // The common beginning of sorted rows i..j is the least of their neighbours' common beginnings.
  const next = order.slice(1).map((r, i) => lcp(prompts[order[i]!]!, prompts[r]!));
  const Tp = Math.max(...len);
  // Rows no longer than T need nothing from the first run: they neither constrain a group nor need it.
  const groupsFor = (T: number) => {
    const out: { from: number; to: number; need: number; common: number }[] = [];
    for (let i = 0; i < B;) {
      let need = len[i]! - T;
      let common = len[i]! > T ? len[i]! - 1 : Infinity;
      let j = i + 1;
      for (; j < B; j++) {
        const c = Math.min(common, next[j - 1]!, len[j]! > T ? len[j]! - 1 : Infinity);
        const n = Math.max(need, len[j]! - T);
        if (c < n) break;
        common = c;
        need = n;
      }
      out.push({ from: i, to: j, need, common });
      i = j;
    }
    return out;
  };
  const plain = B * Tp;
  let best: { T: number; cost: number } | undefined;
  for (let T = 1; T < Tp; T++) {
    const firsts = groupsFor(T).filter((g) => g.need > 0);
    const P = Math.max(0, ...firsts.map((g) => g.need));
    const cost = firsts.length * P + B * T;
    // Without a beginning that two rows share, a second run only saves padding: not this feature's job.
    if (!firsts.some((g) => g.to - g.from >= 2)) continue;
    if (P + T <= Tp && (!best || cost < best.cost)) best = { T, cost };
  }
  if (!best || best.cost > 0.8 * plain || plain - best.cost < MIN_SAVED) return undefined;
  const T = best.T;
  const firsts = groupsFor(T).filter((g) => g.need > 0);
  const P = Math.max(...firsts.map((g) => g.need));
  // Each group shares as much as it has in common, up to P (which costs nothing more); a short row
  // in the group takes the shared beginning when it leaves it a token of its own.
  const groups = firsts.map((g) => {
    const length = Math.min(g.common, P);
    const rows = order.slice(g.from, g.to).filter((r) => prompts[r]!.length > length);
    return { rows: rows.sort((a, b) => a - b), length };
  });
  return groups.some((g) => g.rows.length >= 2) ? { groups } : undefined;
}

/** An empty past (0 positions) for a batch of G rows, in the cache's dtype. */
function emptyPast(cache: HostKvCache, G: number): Record<string, HostTensor> {
  const f: Record<string, HostTensor> = {};
  const data = () =>
    cache.dtype === 'float32'
      ? new Float32Array(0)
      : cache.dtype === 'float16'
        ? new Uint16Array(0)
        : new Float64Array(0);
  for (let l = 0; l < cache.k.length; l++) {
    f[`past_k.${l}`] = { dtype: cache.dtype, dims: [0, G, cache.K, cache.E], data: data() };
    f[`past_v.${l}`] = { dtype: cache.dtype, dims: [0, G, cache.K, cache.E], data: data() };
  }
  return f;
}
