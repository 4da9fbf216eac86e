// A rough peak-memory estimate of a LoRA distillation run, so that the CLI can warn before a run
// that would swap or be killed: the base's weights at their stored precision, plus what a train
// step holds per token (the student's activations kept for the backward pass, the teacher's
// transient forward, and the [B, A, V] logits at the answer positions) times batch and length.
import type { ModelConfig } from '../models/config';
import type { BaseQuantization } from '../models/quantize';
import { largeVocabulary } from '../models/weights';
import { checkpointByDefault } from './graph';

/** Bytes per linear weight: float32, or MatMulNBits blocks of 32 with one float32 scale each. */
const BYTES_PER_WEIGHT: Record<BaseQuantization, number> = { none: 4, int8: 1 + 4 / 32, int4: 0.5 + 4 / 32 };

/**
 * Fixed overhead of the process: Node, onnxruntime's code, the tokenizer, the graphs' protobufs.
 * A measured floor (a tiny model's run peaks near this), not a derivation.
 */
const PROCESS_BYTES = 600 * 2 ** 20;

export interface TrainMemoryInput {
  batchSize: number;
  /** The longest teacher sequence (passage + question + answer) in tokens. */
  teacherTokens: number;
  /** The longest student sequence (question + answer) in tokens. */
  studentTokens: number;
  /** The longest answer in tokens. */
  answerTokens: number;
  quantize?: BaseQuantization;
  /** Activation checkpointing (default: checkpointByDefault, as the trainer decides). */
  checkpoint?: boolean;
}

export interface TrainMemoryEstimate {
  weightBytes: number;
  activationBytes: number;
  totalBytes: number;
}

/**
 * The base's weight bytes as the engine holds them. Float32: the embedding (a tied head reads it).
 * Quantized: the layers' linear weights in blocks of `quantize`; a large vocabulary's head and
 * embedding as int8 blocks (one table when tied), a small one's as float32 (see
 * PreparedWeights.isQuantized and embedBlocks), except an int4 base's head, which is int8 always.
 */
export function baseWeightBytes(cfg: ModelConfig, quantize: BaseQuantization = 'none'): number {
  const { hiddenSize: D, intermediateSize: I, numHeads: H, numKvHeads: K, headDim: E, vocabSize: V } = cfg;
  const perLayer = D * H * E * 2 + D * K * E * 2 + 3 * D * I;
  const linear = cfg.numLayers * perLayer;
  const small = cfg.numLayers * (2 * D + (cfg.qkvBias ? (H + 2 * K) * E : 0) + (cfg.qkNorm ? 2 * E : 0)) + D;
  const bpw = BYTES_PER_WEIGHT[quantize];
  let tables: number;
  if (quantize === 'none') tables = (cfg.tieWordEmbeddings ? 1 : 2) * V * D * 4;
  else if (largeVocabulary(cfg)) tables = (cfg.tieWordEmbeddings ? 1 : 2) * V * D * BYTES_PER_WEIGHT.int8;
  else tables = V * D * 4 + (quantize === 'int4' ? V * D * BYTES_PER_WEIGHT.int8 : V * D * 4);
  return tables + linear * bpw + small * 4;
}

/**
 * The estimated peak of a train step. The weights are resident once: mapped from the weight pack,
 * with no pre-packed or transposed copy (the train sessions are created without either). Per
 * student token and layer the backward pass keeps about thirty hidden-sized and eight
 * intermediate-sized float32 vectors (norm intermediates, q/k/v before and after RoPE, the keys and
 * values repeated to every head, the attention output, gate/up/SiLU and their product, and their
 * gradients while the backward runs) and five heads × length attention maps (scores, mask,
 * probabilities, their gradients); the teacher's forward is transient,
 * but its largest layer's buffers live at once; the [B, A, V] answer logits are made eight
 * times (the student's and the teacher's logits, scaled and log-softmaxed, the teacher's
 * probabilities, and the backward's softmax and gradient), about four of them live at once: with
 * DocDistill's malloc settings (src/common/leanMalloc.ts) a freed one goes back to the system. A
 * quantized base's backward dequantizes its weights in pieces of at most 64 MB (matmulDequantizedT),
 * which the margin covers.
 *
 * Measured without activation checkpointing (`npm run bench -- trainMemory`, batch 4, a ≈ 600-token
 * passage, r 16; this estimate in brackets): llama3.2-1b float32 6.40 GiB (7.1), int8 4.03 (4.8),
 * int4 4.01 (4.2); qwen2.5-0.5b float32 3.28 (3.8). The shape bench's train phase (batch 8, teacher
 * 384 / student 64): qwen2.5-0.5b 7.0 (7.2), qwen2.5-1.5b 14.5 (14.6). With checkpointing and the
 * malloc settings, that phase at qwen2.5-0.5b: float32 3.54 GB (3.83 GiB = 4.1 GB), int8 2.54–2.55
 * GB (2.7 GB), int4 2.36 GB.
 * It errs high on short samples, which is the safe side for a warning.
 */
export function estimateTrainMemory(cfg: ModelConfig, x: TrainMemoryInput): TrainMemoryEstimate {
  const { hiddenSize: D, intermediateSize: I, numHeads: H, numLayers: L, vocabSize: V } = cfg;
  const B = x.batchSize;
  const perLayerToken = (31 * D + 8 * I + 5 * H * x.studentTokens) * 4;
  // With activation checkpointing the layers keep their inputs, and about three layers' worth is
  // live at once while one is recomputed and differentiated (fitted to the measurements above).
  const perStudentToken =
    (x.checkpoint ?? checkpointByDefault(cfg)) ? 3 * perLayerToken + 2 * L * D * 4 : L * perLayerToken;
  const teacherLayer = (10 * D + 3 * I + H * x.teacherTokens) * 4 * x.teacherTokens;
  const logits = 4 * x.answerTokens * V * 4;
  const activationBytes = B * (perStudentToken * x.studentTokens + teacherLayer + logits);
  const weightBytes = baseWeightBytes(cfg, x.quantize);
  return { weightBytes, activationBytes, totalBytes: weightBytes + activationBytes + PROCESS_BYTES };
}

const gb = (b: number) => (b / 2 ** 30).toFixed(1);

/**
 * A warning when the estimate exceeds the machine's memory (os.totalmem()), suggesting the
 * quantization that fits; undefined when it fits.
 */
export function trainMemoryWarning(cfg: ModelConfig, x: TrainMemoryInput, totalMem: number): string | undefined {
  const est = estimateTrainMemory(cfg, x);
  if (est.totalBytes <= totalMem) return undefined;
  const q = x.quantize ?? 'none';
  const fits = (['int8', 'int4'] as const).filter(
    (o) =>
      BYTES_PER_WEIGHT[o] < BYTES_PER_WEIGHT[q] &&
      estimateTrainMemory(cfg, { ...x, quantize: o }).totalBytes <= totalMem,
  );
  const advice = fits.length
    ? `use --quantize ${fits[0]}${x.batchSize > 1 ? ' (or a smaller --batch-size)' : ''}`
    : `use a smaller --batch-size or shorter passages${q !== 'int4' ? ', and --quantize int4' : ''}, or a smaller model`;
  return `training this model is estimated to peak at ${gb(est.totalBytes)} GB (weights ${gb(est.weightBytes)} GB, activations ${gb(est.activationBytes)} GB at batch ${x.batchSize}, ${x.teacherTokens} teacher tokens), more than this machine's ${gb(totalMem)} GB: ${advice}`;
}
