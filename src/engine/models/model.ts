// A loaded causal LM: its folder (config, weights), tokenizer, prepared weights and the sessions
// of its graphs on a backend. Scoring lives here; generation in engine/generate.
import { readdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { keepsOutputsOnDevice, type Backend, type Feed, type HostTensor, type Session } from '../backend';
import { Tokenizer } from '../tokenizer';
import { loadModelFolder, type ModelFolder } from './folder';
import type { ModelConfig } from './config';
import { LlamaGraphs, loraInputs, loraSpecKey, type LoraSpec } from './llama';
import { PreparedWeights, type ComputeDtype, type WeightSource } from './weights';
import { claimModelCache, modelCacheDir } from './pack';
import { BASE_QUANTIZATIONS, type BaseQuantization } from './quantize';

/** LoRA tensors keyed by graph input name (lora.<layer>.<module>.a [in, r] / .b [r, out]). */
export interface AdapterWeights {
  spec: LoraSpec;
  tensors: Map<string, Float32Array>;
}

export interface LoadOptions {
  /** Compute dtype; default float32 on the CPU and float16 on GPU providers. */
  dtype?: ComputeDtype;
  /** The frozen base's linear weights as 8- or 4-bit blocks (MatMulNBits); default none. */
  quantize?: BaseQuantization;
  /**
   * Where the weight pack and the graphs that read it are kept (default: modelCacheDir(dir));
   * false = no pack, weights as graph initializers in memory.
   */
  cacheDir?: string | false;
  /** The folder's tokenizer, already loaded (Tokenizer.fromFolder(dir)); loaded here otherwise. */
  tokenizer?: Tokenizer;
}

/** Identifies a folder's weights by path, size and modification time, without reading them. */
function weightsKey(dir: string): string {
  const h = createHash('sha256').update(resolve(dir));
  for (const f of readdirSync(dir)
    .filter((n) => n.endsWith('.safetensors'))
    .sort()) {
    const s = statSync(join(dir, f));
    h.update(`|${f}:${s.size}:${s.mtimeMs}`);
  }
  return h.digest('hex').slice(0, 24);
}

export class CausalLM {
  readonly graphs: LlamaGraphs;
  private readonly sessions = new Map<string, Promise<Session>>();

  private readonly variants = new Map<BaseQuantization, CausalLM>();

  private constructor(
    readonly config: ModelConfig,
    private readonly source: WeightSource,
    private readonly weightsId: string,
    private readonly tok: Tokenizer | undefined,
    readonly backend: Backend,
    readonly dtype: ComputeDtype,
    /** The model folder, when loaded from one. */
    readonly dir?: string,
    readonly quantization: BaseQuantization = 'none',
    private readonly cacheDir?: string,
  ) {
    if (!(BASE_QUANTIZATIONS as readonly string[]).includes(quantization))
      throw new Error(`base quantization must be ${BASE_QUANTIZATIONS.join(', ')} (got '${quantization}')`);
    this.graphs = new LlamaGraphs(
      config,
      new PreparedWeights(config, dtype, weightsId, source, quantization, cacheDir),
    );
  }

  static async load(dir: string, backend: Backend, opts: LoadOptions = {}): Promise<CausalLM> {
    const folder: ModelFolder = loadModelFolder(dir);
    const tokenizer = opts.tokenizer ?? (await Tokenizer.fromFolder(dir));
    const dtype = opts.dtype ?? (backend.provider === 'cpu' ? 'float32' : 'float16');
    const cacheDir = opts.cacheDir === false ? undefined : (opts.cacheDir ?? modelCacheDir(dir));
    if (opts.cacheDir === undefined && cacheDir) claimModelCache(cacheDir, dir);
    return new CausalLM(
      folder.config,
      folder.weights,
      weightsKey(dir),
      tokenizer,
      backend,
      dtype,
      dir,
      opts.quantize ?? 'none',
      cacheDir,
    );
  }

  /** A model from weights in memory (tests, training a model from scratch). */
  static fromWeights(
    config: ModelConfig,
    source: WeightSource,
    backend: Backend,
    opts: { dtype?: ComputeDtype; id: string; tokenizer?: Tokenizer; quantize?: BaseQuantization },
  ): CausalLM {
    return new CausalLM(
      config,
      source,
      opts.id,
      opts.tokenizer,
      backend,
      opts.dtype ?? 'float32',
      undefined,
      opts.quantize ?? 'none',
    );
  }

  /**
   * The same model with its base quantized otherwise (or not): shares the config, tokenizer,
   * backend and weight files; its own graphs, sessions and weight pack. Cheap: nothing is read
   * until a session is asked for. The same object for the same setting.
   */
  withQuantization(q: BaseQuantization): CausalLM {
    if (q === this.quantization) return this;
    let m = this.variants.get(q);
    if (!m) {
      m = new CausalLM(
        this.config,
        this.source,
        this.weightsId,
        this.tok,
        this.backend,
        this.dtype,
        this.dir,
        q,
        this.cacheDir,
      );
      m.variants.set(this.quantization, this);
      this.variants.set(q, m);
    }
    return m;
  }

  get tokenizer(): Tokenizer {
    if (!this.tok) throw new Error('this model was built without a tokenizer');
    return this.tok;
  }

  /**
   * The session of the score or step graph, with or without LoRA inputs of a given shape.
   * 'step-device' is the step graph whose KV cache stays in device memory (present_k/v outputs).
   */
  session(kind: 'score' | 'step' | 'step-device', lora?: LoraSpec, weightsAsInputs = false): Promise<Session> {
    const key = `${kind}:${loraSpecKey(lora)}:${weightsAsInputs ? 'winputs' : 'winit'}`;
    let s = this.sessions.get(key);
    if (!s) {
      const o = { lora, weightsAsInputs };
      if (kind === 'score') {
        s = this.backend.session(this.graphs.scoreGraph(o), { reuseOptimized: true });
      } else if (kind === 'step') {
        s = this.backend.session(this.graphs.stepGraph(o), { reuseOptimized: true });
      } else {
        const names = Array.from({ length: this.config.numLayers }, (_, l) => [
          `present_k.${l}`,
          `present_v.${l}`,
        ]).flat();
        s = this.backend.session(this.graphs.stepGraph({ ...o, cacheOnDevice: true }), { deviceOutputs: names });
      }
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  /**
   * An adapter's tensors as feeds that stay on the device for many runs (one generation), on
   * providers that keep tensors there; host feeds elsewhere. Not cached across calls: training
   * changes the tensors in place. Dispose the device copies with disposeFeeds() when done.
   */
  async residentAdapterFeeds(adapter: AdapterWeights | undefined): Promise<Record<string, Feed>> {
    if (!adapter || !keepsOutputsOnDevice(this.backend.provider)) return this.adapterFeeds(adapter);
    return this.backend.upload(this.adapterFeeds(adapter));
  }

  /** Feeds for an adapter's tensors, checked against its spec. */
  adapterFeeds(adapter: AdapterWeights | undefined): Record<string, HostTensor> {
    const feeds: Record<string, HostTensor> = {};
    if (!adapter) return feeds;
    for (const i of loraInputs(this.config, adapter.spec)) {
      const t = adapter.tensors.get(i.name);
      if (!t) throw new Error(`adapter is missing ${i.name}`);
      if (t.length !== i.shape[0] * i.shape[1])
        throw new Error(`adapter tensor ${i.name} has ${t.length} values, expected [${i.shape.join(', ')}]`);
      feeds[i.name] = { dtype: 'float32', dims: i.shape, data: t };
    }
    return feeds;
  }

  /**
   * Log-probabilities of each token given the ones before it: result[b][i] = log p(ids[b][i] |
   * ids[b][..i]), null for i = 0. Sequences of different lengths are left-padded into one batch.
   */
  async score(ids: number[][], adapter?: AdapterWeights): Promise<(number | null)[][]> {
    if (ids.length === 0) return [];
    const B = ids.length;
    const T = Math.max(...ids.map((s) => s.length));
    if (T === 0) return ids.map(() => []);
    this.checkIds(ids);
    const idT = new BigInt64Array(B * T);
    const mask = new BigInt64Array(B * T);
    const pos = new BigInt64Array(B * T);
    const tgt = new BigInt64Array(B * T);
    ids.forEach((s, b) => {
      const off = T - s.length;
      for (let i = 0; i < s.length; i++) {
        idT[b * T + off + i] = BigInt(s[i]!);
        mask[b * T + off + i] = 1n;
        pos[b * T + off + i] = BigInt(i);
        if (i + 1 < s.length) tgt[b * T + off + i] = BigInt(s[i + 1]!);
      }
    });
    const s = await this.session('score', adapter?.spec);
    const dims = [B, T];
    const out = await s.run({
      ids: { dtype: 'int64', dims, data: idT },
      mask: { dtype: 'int64', dims, data: mask },
      positions: { dtype: 'int64', dims, data: pos },
      targets: { dtype: 'int64', dims, data: tgt },
      ...this.adapterFeeds(adapter),
    });
    const lp = out.logprobs!.data as Float32Array | Float64Array;
    return ids.map((seq, b) => {
      const off = T - seq.length;
      return seq.map((_, i) => (i === 0 ? null : lp[b * T + off + i - 1]!));
    });
  }

  checkIds(ids: number[][]): void {
    const V = this.config.vocabSize;
    for (const s of ids) {
      for (const t of s) {
        if (!Number.isInteger(t) || t < 0 || t >= V)
          throw new RangeError(`token id ${t} is outside the vocabulary (0..${V - 1})`);
      }
    }
  }
}
