// Graphs of a Llama-family causal LM (Llama 2/3, Mistral, SmolLM, Qwen2/2.5, Qwen3), built from a
// config and prepared weights: the shared decoder, the score graph (log-probs of given tokens),
// and the step graph (prefill or one decode step with a KV cache held by the caller).
//
// Shapes: B batch, T new tokens, P cached tokens, S = P + T, D hidden, V vocabulary, K kv heads,
// E head dim. The KV cache crosses the graph boundary as [P, B, K, E] (position-major) so that the
// caller's preallocated buffer holds it contiguously and a prefix of it is the cache so far.
import { Graph, op, type Tensor, type DType } from '../graph';
import { isQuantized, type QuantizedMatrix } from '../graph/ops/quant';
import type { ModelConfig } from './config';
import { ropeInvFreq } from './config';
import { attentionBias, decoderLayer, ropeTables, type Linear, type LayerWeights } from './layers';
import { LINEAR_MODULES, type LinearModule, type PreparedWeights } from './weights';
import { QUANT_ACCURACY, QUANT_BLOCK } from './quantize';

export const LORA_TARGETS = [...LINEAR_MODULES, 'lm_head'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** The shape of a LoRA adapter as the graphs see it; its tensors are graph inputs (float32). */
export interface LoraSpec {
  rank: number;
  alpha: number;
  targets: readonly LoraTarget[];
}

export const loraInputName = (layer: number | 'lm_head', which: 'a' | 'b', module?: LinearModule): string =>
  layer === 'lm_head' ? `lora.lm_head.${which}` : `lora.${layer}.${module}.${which}`;

/** [in, out] of each linear module. */
export function linearDims(cfg: ModelConfig, m: LoraTarget): [number, number] {
  const { hiddenSize: D, numHeads: H, numKvHeads: K, headDim: E, intermediateSize: I, vocabSize: V } = cfg;
  switch (m) {
    case 'q':
      return [D, H * E];
    case 'k':
    case 'v':
      return [D, K * E];
    case 'o':
      return [H * E, D];
    case 'gate':
    case 'up':
      return [D, I];
    case 'down':
      return [I, D];
    case 'lm_head':
      return [D, V];
  }
}

/** Every LoRA input of a spec with its shape: a [in, r], b [r, out]. */
export function loraInputs(
  cfg: ModelConfig,
  spec: LoraSpec,
): { name: string; shape: [number, number]; layer: number | 'lm_head'; module: LoraTarget; which: 'a' | 'b' }[] {
  const out: ReturnType<typeof loraInputs> = [];
  for (let l = 0; l < cfg.numLayers; l++) {
    for (const m of LINEAR_MODULES) {
      if (!spec.targets.includes(m)) continue;
      const [i, o] = linearDims(cfg, m);
      out.push({ name: loraInputName(l, 'a', m), shape: [i, spec.rank], layer: l, module: m, which: 'a' });
      out.push({ name: loraInputName(l, 'b', m), shape: [spec.rank, o], layer: l, module: m, which: 'b' });
    }
  }
  if (spec.targets.includes('lm_head')) {
    const [i, o] = linearDims(cfg, 'lm_head');
    out.push({
      name: loraInputName('lm_head', 'a'),
      shape: [i, spec.rank],
      layer: 'lm_head',
      module: 'lm_head',
      which: 'a',
    });
    out.push({
      name: loraInputName('lm_head', 'b'),
      shape: [spec.rank, o],
      layer: 'lm_head',
      module: 'lm_head',
      which: 'b',
    });
  }
  return out;
}

export const loraSpecKey = (s?: LoraSpec): string =>
  s ? `r${s.rank}a${s.alpha}:${[...s.targets].sort().join(',')}` : 'base';

export interface DecoderInputs {
  ids: Tensor; // [B, T] int64
  mask: Tensor; // [B, S] int64: 1 for real tokens, 0 for padding
  positions: Tensor; // [B, T] int64
  /** Per layer, the cached keys/values [P, B, K, E]. */
  past?: { k: Tensor; v: Tensor }[];
}

export interface DecoderOutputs {
  hidden: Tensor; // [B, T, D] after the final norm
  k: Tensor[]; // per layer [B, K, T, E]
  v: Tensor[];
  /**
   * Layer l again, from another input x [B, T, D] (same weights, adapter, RoPE tables and mask;
   * no past): for activation checkpointing, which recomputes a layer in the backward pass.
   */
  layer(l: number, x: Tensor): Tensor;
  /** Each layer's input (layerInputs[l]) and the last layer's output (layerInputs[numLayers]). */
  layerInputs: Tensor[];
}

/** Options for the trainable/adapted parts. */
export interface BuildOptions {
  lora?: LoraSpec;
  /** Training: the LoRA dropout masks are inputs too (lora.<l>.<m>.drop [B, T, in], already scaled by 1/(1−p)). */
  loraDropout?: boolean;
  /** Full-parameter training: every weight is a graph input instead of an initializer. */
  weightsAsInputs?: boolean;
}

export class LlamaGraphs {
  readonly dtype: DType;

  constructor(
    readonly cfg: ModelConfig,
    readonly weights: PreparedWeights,
  ) {
    this.dtype = weights.dtype;
  }

  /** Graph inputs for the trainable weights when weightsAsInputs is set, by engine name. */
  weightNames(): string[] {
    const names = ['embed', 'final_norm'];
    if (!this.cfg.tieWordEmbeddings) names.push('lm_head');
    for (let l = 0; l < this.cfg.numLayers; l++) {
      names.push(`layers.${l}.input_norm`, `layers.${l}.post_norm`, ...LINEAR_MODULES.map((m) => `layers.${l}.${m}`));
      if (this.cfg.qkvBias) names.push(`layers.${l}.q_bias`, `layers.${l}.k_bias`, `layers.${l}.v_bias`);
      if (this.cfg.qkNorm) names.push(`layers.${l}.q_norm`, `layers.${l}.k_norm`);
    }
    return names;
  }

  /**
   * Every weight a graph of this model may read from the pack (the head too when it is tied: the
   * embedding transposed).
   */
  private packNames(): string[] {
    const names = this.weightNames();
    if (!this.cfg.tieWordEmbeddings) return names;
    // A tied embedding looked up from the head's int8 blocks needs no float table.
    return [...(this.weights.embedBlocks() === 'lm_head' ? names.filter((n) => n !== 'embed') : names), 'lm_head'];
  }

  private readonly perGraph = new WeakMap<Graph, Map<string, Tensor>>();

  /**
   * A weight as an initializer (or an input in full training), once per graph however often it is
   * used: from the model's weight pack (external data, mapped by ONNX Runtime) when it has one,
   * in memory otherwise.
   */
  weight(g: Graph, name: string, opts: BuildOptions = {}): Tensor {
    let m = this.perGraph.get(g);
    if (!m) this.perGraph.set(g, (m = new Map()));
    let t = m.get(name);
    if (!t) {
      if (opts.weightsAsInputs) {
        if (this.weights.quantization !== 'none')
          throw new Error(`full training needs a float base (this model's base is ${this.weights.quantization})`);
        t = g.input(`w.${name}`, this.dtype, this.weights.shape(name));
      } else {
        const pack = this.weights.pack(this.packNames());
        if (pack) {
          const r = pack.ref(name);
          t = g.externalInitializer(name, r.dtype, r.shape, r.external, `${pack.id}|${name}`);
        } else {
          const w = this.weights.get(name);
          t = g.initializer(name, this.dtype, w.shape, w.data, `${this.weights.key}|${this.dtype}|${name}`);
        }
      }
      m.set(name, t);
    }
    return t;
  }

  private readonly perGraphQ = new WeakMap<Graph, Map<string, QuantizedMatrix>>();

  /** A linear weight as the graph reads it: a float [in, out] tensor, or MatMulNBits blocks of a quantized base. */
  linearWeight(g: Graph, name: string, opts: BuildOptions = {}): Tensor | QuantizedMatrix {
    if (opts.weightsAsInputs || !this.weights.isQuantized(name)) return this.weight(g, name, opts);
    let m = this.perGraphQ.get(g);
    if (!m) this.perGraphQ.set(g, (m = new Map()));
    let q = m.get(name);
    if (!q) {
      const [n, k] = this.weights.quantizedShape(name);
      const bits = this.weights.bitsOf(name);
      const pack = this.weights.pack(this.packNames());
      let b: Tensor;
      let scales: Tensor;
      if (pack) {
        const [rb, rs] = [pack.ref(`${name}.qb`), pack.ref(`${name}.qs`)];
        b = g.externalInitializer(`${name}.qb`, rb.dtype, rb.shape, rb.external, `${pack.id}|${name}.qb`);
        scales = g.externalInitializer(`${name}.qs`, rs.dtype, rs.shape, rs.external, `${pack.id}|${name}.qs`);
      } else {
        const w = this.weights.quantized(name);
        const blocks = Math.ceil(k! / QUANT_BLOCK);
        const key = `${this.weights.key}|${this.dtype}|${this.weights.quantization}|${name}`;
        b = g.initializer(`${name}.qb`, 'uint8', [n!, blocks, (QUANT_BLOCK * bits) / 8], w.b, `${key}.qb`);
        scales = g.initializer(`${name}.qs`, this.dtype, [n!, blocks], w.scales, `${key}.qs`);
      }
      q = { b, scales, k: k!, n: n!, bits, blockSize: QUANT_BLOCK, accuracyLevel: this.accuracyLevel };
      m.set(name, q);
    }
    return q;
  }

  /** Token embeddings [B, T, D]: rows of the float table, or of int8 blocks (see PreparedWeights.embedBlocks). */
  private embedding(g: Graph, ids: Tensor, opts: BuildOptions): Tensor {
    const src = opts.weightsAsInputs ? undefined : this.weights.embedBlocks();
    if (!src) return op.gather(this.weight(g, 'embed', opts), ids, 0);
    const q = this.linearWeight(g, src, opts) as QuantizedMatrix;
    // The same bytes as q.b ([N, blocks, block]) seen as [N, blocks · block]: GatherBlockQuantized
    // wants data and scales of one rank. From the pack it is a second view of the same file range.
    const shape = op.blockRowsShape(q);
    const pack = this.weights.pack(this.packNames());
    const rows = pack
      ? g.externalInitializer(`${src}.rows`, 'uint8', shape, pack.ref(`${src}.qb`).external, `${pack.id}|${src}.rows`)
      : g.initializer(
          `${src}.rows`,
          'uint8',
          shape,
          this.weights.quantized(src).b,
          `${this.weights.key}|${this.dtype}|${this.weights.quantization}|${src}.rows`,
        );
    return op.gatherBlockQuantized(q, rows, ids);
  }

  /** MatMulNBits' accuracy level for the quantized base (4: the fast path; 0: float inputs, for gradient checks). */
  accuracyLevel = QUANT_ACCURACY;

  private lora(g: Graph, opts: BuildOptions, layer: number | 'lm_head', m: LoraTarget, x: Tensor): Linear['lora'] {
    const spec = opts.lora;
    if (!spec || !spec.targets.includes(m)) return undefined;
    const [i, o] = linearDims(this.cfg, m);
    const mod = m === 'lm_head' ? undefined : m;
    // Adapter tensors are float32 (float64 in float64 test graphs) and cast to the compute dtype.
    const io = this.dtype === 'float64' ? 'float64' : 'float32';
    const cast = (t: Tensor) => (this.dtype === io ? t : op.cast(t, this.dtype));
    const a = cast(g.input(loraInputName(layer, 'a', mod), io, [i, spec.rank]));
    const b = cast(g.input(loraInputName(layer, 'b', mod), io, [spec.rank, o]));
    let dropout: Tensor | undefined;
    if (opts.loraDropout) {
      const name = layer === 'lm_head' ? 'lora.lm_head.drop' : `lora.${layer}.${m}.drop`;
      dropout = cast(g.input(name, io, [...x.shape.slice(0, -1), i]));
    }
    return { a, b, scale: spec.alpha / spec.rank, dropout };
  }

  decoder(g: Graph, inp: DecoderInputs, opts: BuildOptions = {}): DecoderOutputs {
    const c = this.cfg;
    const S = inp.mask.shape[1]!;
    const T = inp.ids.shape[1]!;
    let x = this.embedding(g, inp.ids, opts); // [B, T, D]
    const invFreq = g.constant('float32', [c.headDim / 2], Float32Array.from(ropeInvFreq(c)));
    const rope = ropeTables(inp.positions, invFreq, this.dtype);
    const bias = attentionBias(inp.mask, T, S, this.dtype === 'float64' ? 'float64' : 'float32');
    const ks: Tensor[] = [];
    const vs: Tensor[] = [];
    const layerInputs: Tensor[] = [];
    const layerWeights: LayerWeights[] = [];
    const shape = { numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, eps: c.rmsNormEps };
    for (let l = 0; l < c.numLayers; l++) {
      const W = (n: string) => this.weight(g, `layers.${l}.${n}`, opts);
      const lin = (m: LinearModule, withBias = false): Linear => ({
        weight: this.linearWeight(g, `layers.${l}.${m}`, opts),
        bias: withBias ? W(`${m}_bias`) : undefined,
        lora: this.lora(g, opts, l, m, x),
      });
      const w: LayerWeights = {
        inputNorm: W('input_norm'),
        postNorm: W('post_norm'),
        q: lin('q', c.qkvBias),
        k: lin('k', c.qkvBias),
        v: lin('v', c.qkvBias),
        o: lin('o'),
        qNorm: c.qkNorm ? W('q_norm') : undefined,
        kNorm: c.qkNorm ? W('k_norm') : undefined,
        gate: lin('gate'),
        up: lin('up'),
        down: lin('down'),
      };
      // The LoRA dropout mask of `down` and `o` has their own input widths; lin() sized it from x's
      // leading dims, which are the same [B, T] for every module.
      const past = inp.past?.[l];
      const pastBKPE = past
        ? { k: op.transpose(past.k, [1, 2, 0, 3]), v: op.transpose(past.v, [1, 2, 0, 3]) }
        : undefined;
      layerInputs.push(x);
      layerWeights.push(w);
      const out = decoderLayer(x, w, shape, rope, bias, pastBKPE);
      x = out.out;
      ks.push(out.k);
      vs.push(out.v);
    }
    layerInputs.push(x);
    const hidden = op.rmsNorm(x, this.weight(g, 'final_norm', opts), c.rmsNormEps);
    const layer = (l: number, xl: Tensor) => {
      if (inp.past) throw new Error('decoder: a layer is recomputed only without a past');
      return decoderLayer(xl, layerWeights[l]!, shape, rope, bias).out;
    };
    return { hidden, k: ks, v: vs, layer, layerInputs };
  }

  /** Logits in float32 (float64 in float64 graphs): [..., V]. */
  logits(g: Graph, hidden: Tensor, opts: BuildOptions = {}): Tensor {
    // Tied embeddings in full training: the head is the (trainable) embedding, transposed.
    const tiedInput = this.cfg.tieWordEmbeddings && opts.weightsAsInputs;
    const head: Linear = {
      weight: tiedInput ? op.transpose(this.weight(g, 'embed', opts), [1, 0]) : this.linearWeight(g, 'lm_head', opts),
      lora: this.lora(g, opts, 'lm_head', 'lm_head', hidden),
    };
    const y = isQuantized(head.weight) ? op.matmulNBits(hidden, head.weight) : op.matmul(hidden, head.weight);
    let out = y;
    if (head.lora) {
      const xin = head.lora.dropout ? op.mul(hidden, head.lora.dropout) : hidden;
      const low = op.matmul(op.matmul(xin, head.lora.a), head.lora.b);
      out = op.add(y, op.mul(low, head.lora.scale));
    }
    return this.dtype === 'float64' ? out : op.cast(out, 'float32');
  }

  /** The mask spans the keys: T without a cache, P+T with one (named so shapes line up symbolically). */
  private inputs(g: Graph, keys: string): { ids: Tensor; mask: Tensor; positions: Tensor } {
    return {
      ids: g.input('ids', 'int64', ['B', 'T']),
      mask: g.input('mask', 'int64', ['B', keys]),
      positions: g.input('positions', 'int64', ['B', 'T']),
    };
  }

  /**
   * Score graph: inputs ids, mask (S = T), positions, targets [B, T]; output `logprobs` [B, T] with
   * logprobs[b, t] = log p(targets[b, t] | ids[b, ..t]). The caller passes targets = ids shifted left.
   */
  scoreGraph(opts: BuildOptions = {}): Graph {
    const g = new Graph(`score_${this.cfg.architecture}_${loraSpecKey(opts.lora)}`);
    const inp = this.inputs(g, 'T');
    const targets = g.input('targets', 'int64', ['B', 'T']);
    const dec = this.decoder(g, inp, opts);
    const lsm = op.logSoftmax(this.logits(g, dec.hidden, opts), -1); // [B, T, V]
    const picked = op.squeeze(op.gatherElements(lsm, op.unsqueeze(targets, [-1]), -1), [-1]); // [B, T]
    g.output(picked, 'logprobs');
    return g;
  }

  /**
   * Step graph: prefill (P = 0) or decode. Inputs ids [B, T], mask [B, S], positions [B, T],
   * past_k.<l>/past_v.<l> [P, B, K, E]; outputs `logits` [B, V] of the last position and
   * new_k.<l>/new_v.<l> [T, B, K, E] — only the new rows, for the caller to append to its cache.
   * With cacheOnDevice: present_k.<l>/present_v.<l> [P+T, B, K, E] instead, the whole cache, for a
   * GPU provider to keep in device memory and feed back as the next past.
   */
  stepGraph(opts: BuildOptions & { cacheOnDevice?: boolean } = {}): Graph {
    const c = this.cfg;
    const g = new Graph(`step_${c.architecture}_${loraSpecKey(opts.lora)}${opts.cacheOnDevice ? '_devcache' : ''}`);
    const inp = this.inputs(g, 'P+T');
    const past = Array.from({ length: c.numLayers }, (_, l) => ({
      k: g.input(`past_k.${l}`, this.dtype, ['P', 'B', c.numKvHeads, c.headDim]),
      v: g.input(`past_v.${l}`, this.dtype, ['P', 'B', c.numKvHeads, c.headDim]),
    }));
    const dec = this.decoder(g, { ...inp, past }, opts);
    const last = op.slice(dec.hidden, [-1], [Infinity], [1]); // [B, 1, D]
    const logits = this.logits(g, last, opts); // [B, 1, V]
    g.output(op.squeeze(logits, [1]), 'logits');
    for (let l = 0; l < c.numLayers; l++) {
      const k = op.transpose(dec.k[l]!, [2, 0, 1, 3]); // [T, B, K, E]
      const v = op.transpose(dec.v[l]!, [2, 0, 1, 3]);
      if (opts.cacheOnDevice) {
        // The whole cache comes out, to stay in device memory as the next step's past: appending
        // on the device costs a copy there, instead of the cache crossing the bus every token.
        g.output(op.concat([past[l]!.k, k], 0), `present_k.${l}`); // [P+T, B, K, E]
        g.output(op.concat([past[l]!.v, v], 0), `present_v.${l}`);
      } else {
        g.output(k, `new_k.${l}`);
        g.output(v, `new_v.${l}`);
      }
    }
    return g;
  }
}
