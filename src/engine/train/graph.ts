// Train-step graphs: loss and gradients with respect to the trainable tensors (LoRA A/B, or every
// weight in full training), emitted by autodiff as one ONNX graph.
//
// Distillation (loss 'kl'): the teacher is the same weights without the adapter reading the teacher
// ids (doc + question + answer); the student is base + LoRA reading the student ids (question +
// answer). For each answer token j, both predict it from the position before it (tIdx / sIdx).
//   token loss  = τ² · Σ_v p_T(v) (log p_T(v) − log p_S(v)),  p = softmax(logits / τ)
//   sample loss = mean over its answer tokens;  batch loss = Σ_b w_b · sample_b / Σ_b w_b
// Cross-entropy (loss 'ce', the SFT baseline): token loss = −log softmax(student logits)[answer].
// Language modelling (loss 'lm', for training a model itself): token loss = −log p(target) on
// every position with a per-token weight; batch loss = Σ w·loss / Σ w.
import { Graph, op, type Tensor } from '../graph';
import { gradients } from '../autodiff';
import type { BuildOptions, DecoderOutputs, LlamaGraphs, LoraSpec } from '../models/llama';
import { runtimeZero } from '../graph/ops/quant';
import { loraInputs } from '../models/llama';

export type LossKind = 'kl' | 'ce' | 'lm';

export interface TrainGraphOptions {
  loss: LossKind;
  lora?: LoraSpec;
  /** LoRA dropout probability; > 0 makes the dropout masks graph inputs. */
  dropout?: number;
  /** Distillation temperature τ (kl only). */
  temperature?: number;
  /** Full-parameter training: gradients for every weight (fed as inputs). */
  full?: boolean;
  /**
   * kl only: the teacher's log-probs at the answer positions are an input [B, A, V] computed
   * earlier (cached), instead of a teacher forward pass inside the graph (on the fly).
   */
  teacherInput?: boolean;
  /**
   * kl only: the teacher's k most likely tokens at each answer position, as inputs computed once
   * (buildTeacherTopKGraph) instead of a teacher forward pass in every step: teacher_top_idx and
   * teacher_top_lp [B, A, k], and the rest of its mass as one more outcome, teacher_tail_p and
   * teacher_tail_lp [B, A]. The KL is then over those k + 1 outcomes (the student's tail is
   * 1 − its mass on the k), which is never more than the full KL (merging outcomes cannot increase
   * a divergence) and equals it when the tail is empty.
   */
  teacherTopK?: number;
  /**
   * Activation checkpointing (LoRA only): the student's layers keep only their inputs from the
   * forward pass and are computed again, one at a time, in the backward pass, so a step holds one
   * layer's activations instead of every layer's, for one more forward pass of the student.
   */
  checkpoint?: boolean;
}

/** layers × hidden from which a LoRA train step recomputes its layers by default (SmolLM2-135M: 17,280). */
export const CHECKPOINT_MIN = 8192;

/** Whether a LoRA train step of this model checkpoints its activations unless told (TrainerConfig.checkpoint). */
export const checkpointByDefault = (c: { numLayers: number; hiddenSize: number }): boolean =>
  c.numLayers * c.hiddenSize >= CHECKPOINT_MIN;

/** Names of the trainable inputs of a train graph, in gradient-output order (grad.<name>). */
export function trainableNames(graphs: LlamaGraphs, o: TrainGraphOptions): string[] {
  if (o.full) return graphs.weightNames().map((n) => `w.${n}`);
  if (!o.lora) throw new Error('a train graph needs a LoRA spec or full training');
  return loraInputs(graphs.cfg, o.lora).map((i) => i.name);
}

/** Rows of x [B, T, D] at the positions idx [B, A] → [B, A, D]. */
function pickRows(x: Tensor, idx: Tensor, D: number): Tensor {
  const B = x.shape[0]!;
  const A = idx.shape[1]!;
  const full = op.expand(op.unsqueeze(idx, [-1]), [B, A, D]);
  return op.gatherElements(x, full, 1);
}

export function buildTrainGraph(graphs: LlamaGraphs, o: TrainGraphOptions): Graph {
  const cfg = graphs.cfg;
  const D = cfg.hiddenSize;
  const g = new Graph(
    `train_${o.loss}_${o.full ? 'full' : `lora_r${o.lora?.rank}`}_${cfg.architecture}${o.teacherInput ? '_cached' : ''}${o.teacherTopK ? `_top${o.teacherTopK}` : ''}${o.dropout ? '_drop' : ''}`,
  );
  const build: BuildOptions = {
    lora: o.full ? undefined : o.lora,
    loraDropout: !!o.dropout && !o.full,
    weightsAsInputs: !!o.full,
  };
  const acc = graphs.dtype === 'float64' ? 'float64' : 'float32';

  const ids = g.input('ids', 'int64', ['B', 'T']);
  const mask = g.input('mask', 'int64', ['B', 'T']);
  const positions = g.input('positions', 'int64', ['B', 'T']);
  const student = graphs.decoder(g, { ids, mask, positions }, build);

  let loss: Tensor;
  if (o.loss === 'lm') {
    const targets = g.input('targets', 'int64', ['B', 'T']);
    const weights = g.input('weights', acc, ['B', 'T']);
    const lsm = op.logSoftmax(graphs.logits(g, student.hidden, build), -1); // [B, T, V]
    const nll = op.neg(op.squeeze(op.gatherElements(lsm, op.unsqueeze(targets, [-1]), -1), [-1])); // [B, T]
    const total = op.reduceSum(op.mul(nll, weights), [0, 1], false);
    loss = op.div(total, op.max2(op.reduceSum(weights, [0, 1], false), g.scalar(1e-9, acc)));
  } else {
    const sIdx = g.input('student_idx', 'int64', ['B', 'A']);
    const aMask = g.input('answer_mask', acc, ['B', 'A']);
    const sampleW = g.input('sample_weights', acc, ['B']);
    const hS = pickRows(student.hidden, sIdx, D); // [B, A, D]
    const sLogits = graphs.logits(g, hS, build); // [B, A, V]
    let tokenLoss: Tensor; // [B, A]
    if (o.loss === 'ce') {
      const targets = g.input('answer_ids', 'int64', ['B', 'A']);
      const lsm = op.logSoftmax(sLogits, -1);
      tokenLoss = op.neg(op.squeeze(op.gatherElements(lsm, op.unsqueeze(targets, [-1]), -1), [-1]));
    } else {
      const tau = o.temperature ?? 2;
      const sLsm = op.logSoftmax(tau === 1 ? sLogits : op.mul(sLogits, 1 / tau), -1);
      let kl: Tensor; // [B, A]
      if (o.teacherTopK) {
        const k = o.teacherTopK;
        const tIdx = g.input('teacher_top_idx', 'int64', ['B', 'A', k]);
        const tTop = g.input('teacher_top_lp', acc, ['B', 'A', k]);
        const tTailP = g.input('teacher_tail_p', acc, ['B', 'A']);
        const tTailLp = g.input('teacher_tail_lp', acc, ['B', 'A']);
        const sTop = op.gatherElements(sLsm, tIdx, -1); // [B, A, k]
        // The student's log-mass outside the teacher's k, summed over those tokens themselves (a
        // log-sum-exp with the k pushed to −1e4) rather than as log(1 − Σ top): that difference
        // cancels to nothing, or to rounding noise, when the student is confident, and a floor
        // under it would cut the gradient that moves mass back into the tail. With k = V every
        // token is masked, the tail mass of the teacher is 0 and the term vanishes.
        const masked = op.add(
          sLsm,
          op.scatterElements(op.zeros(sLsm.shape, acc, sLsm), tIdx, op.add(op.zeros(tTop.shape, acc, tTop), -1e4), -1),
        );
        const mMax = op.reduceMax(masked, [-1], true);
        const sTail = op.squeeze(op.add(mMax, op.log(op.reduceSum(op.exp(op.sub(masked, mMax)), [-1], true))), [-1]);
        const top = op.reduceSum(op.mul(op.exp(tTop), op.sub(tTop, sTop)), [-1], false);
        kl = op.add(top, op.mul(tTailP, op.sub(tTailLp, sTail)));
      } else {
        let tLsm: Tensor; // teacher log-probs at τ, [B, A, V]
        if (o.teacherInput) {
          tLsm = g.input('teacher_logprobs', acc, ['B', 'A', cfg.vocabSize]);
        } else {
          tLsm = teacherLogProbs(g, graphs, tau, !!o.full);
        }
        kl = op.reduceSum(op.mul(op.exp(tLsm), op.sub(tLsm, sLsm)), [-1], false);
      }
      tokenLoss = tau === 1 ? kl : op.mul(kl, tau * tau);
    }
    const perSample = op.div(
      op.reduceSum(op.mul(tokenLoss, aMask), [1], false),
      op.max2(op.reduceSum(aMask, [1], false), g.scalar(1, acc)),
    ); // [B]
    g.output(perSample, 'sample_loss');
    loss = op.div(
      op.reduceSum(op.mul(perSample, sampleW), [0], false),
      op.max2(op.reduceSum(sampleW, [0], false), g.scalar(1e-9, acc)),
    );
  }

  const names = trainableNames(graphs, o);
  const wrt = names.map((n) => g.inputs.find((t) => t.name === n) ?? missing(n));
  const grads = o.checkpoint && !o.full ? checkpointedGradients(loss, student, wrt) : gradients(loss, wrt);
  g.output(loss, 'loss');
  // Gradients leave in float32 (float64 in float64 test graphs), whatever the compute dtype.
  grads.forEach((gr, i) => g.output(gr.dtype === acc ? gr : op.cast(gr, acc), `grad.${names[i]}`));
  return g;
}

/**
 * Gradients of `loss` with respect to `wrt` (LoRA inputs, named lora.<layer>.… or lora.lm_head.…)
 * with the student's layers recomputed in the backward pass: first through the head and the loss
 * down to the last layer's output, then for each layer from the last, the layer computed again from
 * its saved input and differentiated with the gradient of its output as the seed. Each recomputed
 * layer reads its input through a run-time dependency on that gradient (an integer zero from its
 * shape, which carries no gradient), so ONNX Runtime cannot run it before the backward pass reaches
 * it, and its activations live only while its own backward runs.
 */
function checkpointedGradients(loss: Tensor, student: DecoderOutputs, wrt: readonly Tensor[]): Tensor[] {
  const L = student.layerInputs.length - 1;
  const out = new Map<Tensor, Tensor>();
  const ofLayer = (l: number | 'lm_head') => wrt.filter((w) => w.name.startsWith(`lora.${l}.`));
  const head = ofLayer('lm_head');
  const layered = new Set(Array.from({ length: L }, (_, l) => ofLayer(l)).flat());
  const rest = wrt.filter((w) => !head.includes(w) && !layered.has(w));
  if (rest.length) throw new Error(`checkpointed gradients: ${rest.map((w) => w.name).join(', ')} belong to no layer`);
  const top = gradients(loss, [student.layerInputs[L]!, ...head]);
  head.forEach((w, i) => out.set(w, top[i + 1]!));
  let dx = top[0]!;
  for (let l = L - 1; l >= 0; l--) {
    const x = student.layerInputs[l]!;
    const xl = op.add(x, op.cast(runtimeZero(dx), x.dtype)); // x, once dx exists
    const params = ofLayer(l);
    const gs = gradients(student.layer(l, xl), [xl, ...params], { seed: dx });
    params.forEach((w, i) => out.set(w, gs[i + 1]!));
    dx = gs[0]!;
  }
  return wrt.map((w) => out.get(w)!);
}

/** The teacher's log-probs at τ at its answer positions [B, A, V], from teacher_ids/mask/positions/idx inputs. */
function teacherLogProbs(g: Graph, graphs: LlamaGraphs, tau: number, weightsAsInputs: boolean): Tensor {
  const tIds = g.input('teacher_ids', 'int64', ['B', 'Tt']);
  const tMask = g.input('teacher_mask', 'int64', ['B', 'Tt']);
  const tPos = g.input('teacher_positions', 'int64', ['B', 'Tt']);
  const tIdx = g.input('teacher_idx', 'int64', ['B', 'A']);
  const teacher = graphs.decoder(g, { ids: tIds, mask: tMask, positions: tPos }, { weightsAsInputs });
  const tLogits = graphs.logits(g, pickRows(teacher.hidden, tIdx, graphs.cfg.hiddenSize), { weightsAsInputs });
  return op.logSoftmax(tau === 1 ? tLogits : op.mul(tLogits, 1 / tau), -1);
}

/**
 * The teacher's k most likely tokens at each answer position, once per sample (for
 * TrainGraphOptions.teacherTopK): outputs top_lp (log-probs at τ, descending) and top_idx, [B, A, k].
 */
export function buildTeacherTopKGraph(graphs: LlamaGraphs, o: { temperature: number; k: number }): Graph {
  const g = new Graph(`teacher_top${o.k}_${graphs.cfg.architecture}`);
  const { values, indices } = op.topK(teacherLogProbs(g, graphs, o.temperature, false), o.k);
  g.output(values, 'top_lp');
  g.output(indices, 'top_idx');
  return g;
}

/** The teacher's whole distribution at each answer position, once per sample (for teacherInput): lp [B, A, V]. */
export function buildTeacherLogProbsGraph(graphs: LlamaGraphs, o: { temperature: number }): Graph {
  const g = new Graph(`teacher_lp_${graphs.cfg.architecture}`);
  g.output(teacherLogProbs(g, graphs, o.temperature, false), 'lp');
  return g;
}

function missing(n: string): never {
  throw new Error(`train graph: no input named ${n}`);
}
