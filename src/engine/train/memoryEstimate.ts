// A rough peak-memory estimate of a LoRA distillation run, so that the CLI can warn before a run
// that would swap or be killed: the base's weights at their stored precision, plus what a train
// step holds per token (the student's activations kept for the backward pass, the teacher's
// transient forward, and the [B, A, V] logits at the answer positions) times batch and length.
import type { ModelConfig } from '../models/config';
import type { BaseQuantization } from '../models/quantize';

/** Bytes per linear weight: float32, or MatMulNBits blocks of 32 with one float32 scale each. */
const BYTES_PER_WEIGHT: Record<BaseQuantization, number> = { none: 4, int8: 1 + 4 / 32, int4: 0.5 + 4 / 32 };

/**
 * Fixed overhead of the process: Node, onnxruntime's code and arenas, the tokenizer. A measured
 * floor (a tiny model's run peaks near this), not a derivation.
 */
const PROCESS_BYTES = 400 * 2 ** 20;
const WEIGHT_COPIES = 3;

export interface TrainMemoryInput {
  batchSize: number;
  /** The longest teacher sequence (passage + question + answer) in tokens. */
  teacherTokens: number;
  /** The longest student sequence (question + answer) in tokens. */
  studentTokens: number;
  /** The longest answer in tokens. */
  answerTokens: number;
  quantize?: BaseQuantization;
}

export interface TrainMemoryEstimate {
  weightBytes: number;
  activationBytes: number;
  totalBytes: number;
}

/** The base's weight bytes as the engine holds them (the embedding stays float32 for its gather). */
export function baseWeightBytes(cfg: ModelConfig, quantize: BaseQuantization = 'none'): number {
  const { hiddenSize: D, intermediateSize: I, numHeads: H, numKvHeads: K, headDim: E, vocabSize: V } = cfg;
  const perLayer = D * H * E * 2 + D * K * E * 2 + 3 * D * I;
  const linear = cfg.numLayers * perLayer;
  const small = cfg.numLayers * (2 * D + (cfg.qkvBias ? (H + 2 * K) * E : 0) + (cfg.qkNorm ? 2 * E : 0)) + D;
  const bpw = BYTES_PER_WEIGHT[quantize];
  // A quantized base gets its own quantized head; a float32 tied head reads the embedding itself.
  const head = cfg.tieWordEmbeddings && quantize === 'none' ? 0 : V * D * bpw;
  return V * D * 4 + head + linear * bpw + small * 4;
}

/**
 * The estimated peak of a train step. Per student token and layer the backward pass keeps about
 * ten hidden-sized and three intermediate-sized float32 vectors (norm inputs, q/k/v, attention
 * output, gate/up/SiLU), plus the attention probabilities (heads × length); the teacher's forward
 * is transient but its largest layer's buffers live at once; the answer logits appear about four
 * times (logits, log-softmax, the teacher's log-probs and the gradient).
 */
export function estimateTrainMemory(cfg: ModelConfig, x: TrainMemoryInput): TrainMemoryEstimate {
  const { hiddenSize: D, intermediateSize: I, numHeads: H, numLayers: L, vocabSize: V } = cfg;
  const B = x.batchSize;
  const perStudentToken = L * (10 * D + 3 * I + H * x.studentTokens) * 4;
  const teacherLayer = (10 * D + 3 * I + H * x.teacherTokens) * 4 * x.teacherTokens;
  const logits = 4 * x.answerTokens * V * 4;
  const activationBytes = B * (perStudentToken * x.studentTokens + teacherLayer + logits);
  // The weights are resident about three times over during a step: a 1B float32 run (4.6 GiB of
  // weights, batch 4, a 700-token teacher) peaked at 14.5 GiB (bench/trainMemory.bench.ts). A
  // measured factor, conservative for quantized bases until they are measured too.
  const weightBytes = WEIGHT_COPIES * baseWeightBytes(cfg, x.quantize);
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
